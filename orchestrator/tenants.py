"""Tenants from a Showcase-format showcases.yml or from the inventory itself.

showcases.yml maps year -> studio -> {:name, :region, :logo, :locale, :events}.
Its keys are Ruby symbols: `:name: X` in the file is the key `:name`. A studio
without `:events` is a single event served at the studio's own path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.model import ShippedFile, Tenant
from hub.yaml_loader import LoadedYaml, load_yaml_text, read_text_file

_SLUG_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def load_showcases(path: Path) -> tuple[list[Tenant], ShippedFile]:
    """The tenants of a showcases.yml, and the file itself (the image ships it)."""
    text = read_text_file(path)
    loaded = load_yaml_text(text, str(path))
    problems: list[str] = []
    tenants: list[Tenant] = []
    if not isinstance(loaded.data, dict):
        raise InputError([f"{loaded.where(())}: expected a mapping of years to studios"])
    for year, studios in loaded.data.items():
        if not isinstance(year, int) or not isinstance(studios, dict):
            problems.append(f"{loaded.where((year,))}: expected a year (integer) mapping to studios")
            continue
        for studio, entry in studios.items():
            tenants.extend(_studio_tenants(loaded, year, studio, entry, problems))
    if problems:
        raise InputError(problems)
    return tenants, ShippedFile(path.name, text)


def _studio_tenants(
    loaded: LoadedYaml, year: int, studio: Any, entry: Any, problems: list[str]
) -> list[Tenant]:
    where = loaded.where((year, studio))
    if not _is_slug(studio):
        problems.append(f"{where}: studio key {studio!r} is not a lowercase slug")
        return []
    if not isinstance(entry, dict):
        problems.append(f"{where}: studio {year}/{studio}: expected a mapping")
        return []
    region = entry.get(":region")
    if not isinstance(region, str):
        problems.append(f"{where}: studio {year}/{studio}: missing :region")
        return []
    studio_name = str(entry.get(":name", studio))
    logo = _optional_text(loaded, (year, studio, ":logo"), entry.get(":logo"), problems)
    locale = _optional_text(loaded, (year, studio, ":locale"), entry.get(":locale"), problems)
    events = entry.get(":events")
    if events is None:
        return [Tenant(year, studio, None, region, studio_name, studio_name, logo, locale, has_events=False)]
    if not isinstance(events, dict):
        problems.append(f"{loaded.where((year, studio, ':events'))}: :events must be a mapping")
        return []
    tenants = []
    for event, details in events.items():
        if not _is_slug(event):
            problems.append(
                f"{loaded.where((year, studio, ':events', event))}: event key {event!r} is not a lowercase slug"
            )
            continue
        event_name = details.get(":name", event) if isinstance(details, dict) else event
        tenants.append(
            Tenant(year, studio, event, region, f"{studio_name}: {event_name}", studio_name, logo, locale, has_events=True)
        )
    return tenants


def _optional_text(loaded: LoadedYaml, where: tuple[Any, ...], value: Any, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{loaded.where(where)}: {where[-1]} must be text")
    return None


def _is_slug(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value[0] != "-" and set(value) <= _SLUG_CHARACTERS


def inline_tenants(entries: list[dict[str, Any]]) -> list[Tenant]:
    """Tenants listed in the inventory (already checked against the schema)."""
    with_events = {(entry["year"], entry["studio"]) for entry in entries if "event" in entry}
    return [
        Tenant(
            year=entry["year"],
            studio=entry["studio"],
            event=entry.get("event"),
            region=entry["region"],
            name=entry.get("name", entry["studio"]),
            owner=entry.get("owner", entry["studio"]),
            logo=entry.get("logo"),
            locale=entry.get("locale"),
            has_events=(entry["year"], entry["studio"]) in with_events,
        )
        for entry in entries
    ]
