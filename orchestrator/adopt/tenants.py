"""A region's applications.tenants as the inventory holds them: the index, the region's demo, events by
year/studio/event, and the templates of each event tenant's environment."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.model import REGION_PLACEHOLDER, Tenant
from orchestrator.tenant_env import TENANT_FIELDS, tenant_env, tenant_fields

_SLUG = r"[a-z0-9][a-z0-9-]*"


@dataclass(frozen=True)
class SortedTenants:
    index: dict[str, Any] | None
    demo: dict[str, Any] | None
    events: list[tuple[Tenant, dict[str, str]]]  # the tenant and its env in the file
    not_held: list[tuple[int, str]]  # position and why, of each tenant the inventory cannot hold


def sort_tenants(entries: list[dict[str, Any]], root_path: str, region: str, region_prefix: str | None) -> SortedTenants:
    event = re.compile(rf"^{re.escape(root_path)}/(\d{{4}})/({_SLUG})/(?:({_SLUG})/)?$")
    index = demo = None
    events, not_held = [], []
    for position, entry in enumerate(entries):
        path, env = entry.get("path", ""), dict(entry.get("env") or {})
        database = (entry.get("var") or {}).get("database")
        extra = sorted(set(entry) - {"path", "env", "var", "root"}) + [
            f"var.{name}" for name in sorted(entry.get("var") or {}) if name != "database"]
        found = event.match(path)
        if extra:
            not_held.append((position, f"its own {', '.join(extra)}: the inventory's tenants carry a path, "
                                       f"var.database and an environment"))
        elif path == f"{root_path}/" and index is None and database:
            index = _fixed(entry)
        elif region_prefix and path.startswith(region_prefix) and demo is None and database:
            demo = _fixed(entry)
        elif found and "root" not in entry and 2000 <= int(found[1]) <= 2100:
            tenant = Tenant(int(found[1]), found[2], found[3], region, found[2], found[2], None, None, False)
            if database in (None, tenant.database):
                events.append((tenant, {str(k): str(v) for k, v in env.items()}))
                continue
            not_held.append((position, f"its database {database!r} is not the event's {tenant.database!r}"))
        else:
            not_held.append((position, f"the inventory's tenants are the index and a demo per region (each with "
                                       f"var.database) and events at {root_path}/YEAR/STUDIO[/EVENT]/"))
    return SortedTenants(index, demo, events, not_held)


def _fixed(entry: dict[str, Any]) -> dict[str, Any]:
    fixed: dict[str, Any] = {"path": entry["path"], "database": entry["var"]["database"]}
    if entry.get("root"):
        fixed["root"] = entry["root"]
    if entry.get("env"):
        fixed["env"] = dict(entry["env"])
    return fixed


def placeholder(value: Any, region: str) -> Any:
    """`value` with the region's code, where it stands as a word (/ord/, -ord), written as {region}."""
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(region)}(?![A-Za-z0-9])")
    if isinstance(value, dict):
        return {key: placeholder(item, region) for key, item in value.items()}
    if isinstance(value, list):
        return [placeholder(item, region) for item in value]
    return word.sub(REGION_PLACEHOLDER, value) if isinstance(value, str) else value


# The order in which a template is tried for a variable: the most specific field first.
_PREFERRED = ("scope", "database", "owner", "name", "logo", "locale_underscored", "locale", "studio", "event", "year",
              "region")
assert set(_PREFERRED) == set(TENANT_FIELDS)


def env_templates(pairs: Iterable[tuple[Tenant, dict[str, str]]]) -> tuple[dict[str, str], str | None, list[str]]:
    """tenants.env and tenants.default_logo that give every tenant its environment, and the variables no
    template explains (they stay as they are: the proof reports them)."""
    pairs = list(pairs)
    names = sorted({name for _, env in pairs for name in env})
    templates: dict[str, str] = {}
    default_logo: str | None = None
    unexplained = []
    for name in names:
        # A default logo can fit only as the one value of every tenant without a logo of its own; and it changes
        # only {logo}: every other field is tried once.
        logos = {env.get(name) for tenant, env in pairs if tenant.logo is None}
        only = next(iter(logos)) if len(logos) == 1 else None
        logo_defaults = [default_logo] if default_logo else [None, *([only] if only else [])]
        for field in _PREFERRED:
            tried = logo_defaults if field == "logo" else logo_defaults[:1]
            fitting = next((logo for logo in tried if _fits(pairs, name, "{" + field + "}", logo)), "")
            if fitting != "":
                templates[name] = "{" + field + "}"
                default_logo = default_logo or (fitting if field == "logo" else None)
                break
        else:
            values = {env.get(name) for _, env in pairs}
            if len(values) == 1 and None not in values:
                templates[name] = values.pop()  # the same value for every tenant
            else:
                unexplained.append(name)
    return templates, default_logo, unexplained


def _fits(pairs: list[tuple[Tenant, dict[str, str]]], name: str, template: str, default_logo: str | None) -> bool:
    return all(tenant_env({name: template}, tenant_fields(tenant, default_logo)).get(name) == env.get(name)
               for tenant, env in pairs)
