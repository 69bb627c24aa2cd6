"""Rules derived from the regions and the tenant list: fly-replays to other regions, and paths that need no login.

Navigator serves a path that no replay rule matches locally, by whichever
tenant's prefix matches it (the index tenant catches everything else), so every
path that belongs to another region needs a rule here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from orchestrator.model import REGION_PLACEHOLDER, Inventory, RegionSettings, Tenant


def region_replays(inventory: Inventory, settings: RegionSettings) -> list[dict[str, Any]]:
    """Replay rules that send other regions' paths and tenants of this environment to their region."""
    here = settings.region.code
    others = sorted(set(settings.environment.regions) - {here})
    rules = []
    for region in others:
        prefix = inventory.app.region_prefix(region)
        if prefix is not None:
            rules.append(_replay(f"^{re.escape(prefix)}.+$", region))
    by_region: dict[str, list[Tenant]] = defaultdict(list)
    for tenant in inventory.tenants.events:
        if tenant.region in others:
            by_region[tenant.region].append(tenant)
    for region in others:
        rules.extend(_studio_replays(inventory, region, by_region[region]))
    return rules


def _studio_replays(inventory: Inventory, region: str, tenants: list[Tenant]) -> list[dict[str, Any]]:
    """One rule per year and kind of studio: a prerendered studio index stays local, the rest replays.

    `/.+$` keeps `/2025/raleigh/` (the prerendered index of a studio with
    several events) local; `(?:/.*)?$` also replays `/2025/kennesaw` without
    its trailing slash, which would otherwise reach the local index tenant.
    """
    root = re.escape(inventory.app.root_path)
    keeps_index = inventory.tenants.prerendered_studio_indexes
    groups: dict[tuple[int, bool], set[str]] = defaultdict(set)
    for tenant in tenants:
        groups[(tenant.year, keeps_index and tenant.has_events)].add(tenant.studio)
    rules = []
    for (year, local_index), studios in sorted(groups.items(), key=lambda item: (not item[0][1], -item[0][0])):
        tail = "/.+$" if local_index else "(?:/.*)?$"
        rules.append(_replay(f"^{root}/(?:{year})/(?:{_alternatives(studios)}){tail}", region))
    return rules


def public_patterns(inventory: Inventory, settings: RegionSettings) -> list[dict[str, str]]:
    """auth_patterns for what needs no login: every region's cable path and demo, studio indexes, events' public paths."""
    regions = sorted(settings.environment.regions)
    patterns = []
    if inventory.websocket.public_path:
        patterns.append(_any_region(inventory.websocket.cable_path, regions, "$"))
    for fixed in (inventory.tenants.index, inventory.tenants.demo):
        if fixed is not None and fixed.public:
            patterns.append(_any_region(fixed.path, regions, ""))
    root = re.escape(inventory.app.root_path)
    served = [tenant for tenant in inventory.tenants.events if tenant.region in regions]
    if inventory.tenants.prerendered_studio_indexes:
        for year, studios in _by_year((t.year, t.studio) for t in served if t.has_events):
            patterns.append(f"^{root}/{year}/(?:{_alternatives(studios)})/?$")
    for public in inventory.tenants.public_event_paths:
        for year, scopes in _by_year((t.year, f"{t.studio}/{t.event}") for t in served if t.event):
            patterns.append(f"^{root}/{year}/(?:{_alternatives(scopes)})/{re.escape(public)}")
    return [{"pattern": pattern, "action": "off"} for pattern in patterns]


def _any_region(template: str, regions: Iterable[str], end: str) -> str:
    before, _, after = template.partition(REGION_PLACEHOLDER)
    if not _:
        return f"^{re.escape(template)}{end}"
    return f"^{re.escape(before)}(?:{_alternatives(regions)}){re.escape(after)}{end}"


def _by_year(pairs: Iterable[tuple[int, str]]) -> list[tuple[int, set[str]]]:
    years: dict[int, set[str]] = defaultdict(set)
    for year, value in pairs:
        years[year].add(value)
    return sorted(years.items(), reverse=True)


def _alternatives(values: Iterable[str]) -> str:
    return "|".join(re.escape(value) for value in sorted(values))


def _replay(path: str, region: str) -> dict[str, Any]:
    return {"path": path, "region": region, "status": 307}
