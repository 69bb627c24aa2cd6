"""Region files into the inventory's data: what every region shares, what the generator derives, what stays.

Each region's configuration is taken apart into what the inventory derives (listen, root path, cable, the
mode's processes and proxy, tenants, replays to other regions, their public paths, the refresh hooks) and
the rest, which is Navigator's own settings (`navigator:` in the inventory). That rest, with the region's
code written as {region}, must be the same in every region file: where it is not, no rule explains the
difference, and that is an error naming both places.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.adopt.loaded import differences, pruned
from orchestrator.adopt.sources import RegionFile
from orchestrator.adopt.tenants import SortedTenants, env_templates, sort_tenants, placeholder
from orchestrator.adopt.websocket import Recognised, recognise
from orchestrator.errors import InputError
from orchestrator.inventory import GENERATED_ENV
from orchestrator.model import REGION_PLACEHOLDER, Tenant
from orchestrator.schema_check import format_path

_PREFIX_REPLAY = re.compile(r"^\^(?P<prefix>/.*/)\.\+\$$")


@dataclass
class Translation:
    """The inventory's data, and what the report says about how it was made."""

    data: dict[str, Any]
    sources: dict[str, list[str]]  # inventory section -> the files (and keys) it came from
    current: dict[str, Recognised]  # each region's WebSocket mode as the app runs it today
    notes: list[str] = field(default_factory=list)  # what the inventory does not hold, with file:line


@dataclass
class _Region:
    file: RegionFile
    recognised: Recognised
    root_path: str
    listen: int
    others: list[str]
    region_prefix: str | None
    tenants: SortedTenants
    public: dict[str, Any]
    runtime: dict[str, Any]
    rest: dict[str, Any]


def translate(files: list[RegionFile], tenant_list: list[Tenant] | None) -> Translation:
    regions = [_take_apart(file) for file in files]
    first = regions[0]
    _check_agreement(regions)
    notes = [f"{r.file.loaded.where(('applications', 'tenants', i))}: tenant not held: {why}"
             for r in regions for i, why in r.tenants.not_held]
    codes = sorted({r.file.region for r in regions} | {code for r in regions for code in r.others})
    events = [pair for r in regions for pair in r.tenants.events]
    if tenant_list is not None:
        by_scope = {(t.year, t.studio, t.event): t for t in tenant_list}
        events = [(by_scope.get((t.year, t.studio, t.event), t), env) for t, env in events]
    templates, default_logo, unexplained = env_templates(events)
    notes += [f"tenants' {name}: no template gives every event tenant its value" for name in unexplained]
    app: dict[str, Any] = {"name": "app", "root_path": first.root_path, "listen": first.listen,
                           "primary_region": first.file.region}
    if first.recognised.rails_root:
        app["rails_root"] = first.recognised.rails_root
    if first.region_prefix:
        app["region_paths"] = placeholder(first.region_prefix, first.file.region)
    tenants: dict[str, Any] = {"source": "inline", "events": [_inline(t) for t, _ in events]}
    if templates:
        tenants["env"] = templates
    if default_logo:
        tenants["default_logo"] = default_logo
    for kind in ("index", "demo"):
        fixed = getattr(first.tenants, kind)
        if fixed is not None:
            public = first.public.get(kind, False)
            tenants[kind] = placeholder(fixed, first.file.region) | ({"public": True} if public else {})
    for key in ("prerendered_studio_indexes", "public_event_paths"):
        if key in first.public:
            tenants[key] = first.public[key]
    websocket = _websocket(first, codes)
    data: dict[str, Any] = {
        "app": app,
        "environments": {"production": {"fly_app": "app", "regions": codes}},
        "regions": [{"code": code} for code in codes],
        "tenants": tenants,
        "websocket": websocket,
        "navigator": first.rest,
    }
    hostname = first.file.config.get("server", {}).get("hostname")
    if hostname:
        data["environments"]["production"]["hostname"] = hostname
    if first.runtime:
        data["runtime_config"] = first.runtime
    mode = first.recognised.mode
    if first.recognised.settings:
        data["modes"] = {mode: first.recognised.settings}
    names = ", ".join(r.file.source for r in regions)
    sources = {
        "app": [f"{names}: server.root_path, server.listen; the primary region: the first file's"],
        "environments": [f"{names}: server.hostname; regions: the files' and those their fly.replay rules name"],
        "tenants": [f"{names}: applications.tenants; public ones: auth.auth_patterns"],
        "websocket": [f"{names}: {first.recognised.evidence[0]}"],
        "navigator": [f"{names}: everything else Navigator reads, with each region's code as {{region}}"],
        "runtime_config": [f"{names}: hooks and CGI scripts that reload the configuration"],
    }
    return Translation(data, sources, {r.file.region: r.recognised for r in regions}, notes)


def _take_apart(file: RegionFile) -> _Region:
    config, region, loaded = file.config, file.region, file.loaded
    server = dict(config.get("server") or {})
    root_path = str(server.get("root_path", "")).rstrip("/")
    listen = server.get("listen", 3000)
    problems = []
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", root_path):
        problems.append(f"{loaded.where(('server', 'root_path'))}: server.root_path {root_path or '/'!r}: the "
                        f"inventory holds an app mounted under a path such as /app (app.root_path)")
    if isinstance(listen, str) and listen.lstrip(":").isdigit():
        listen = int(listen.lstrip(":"))
    if not isinstance(listen, int):
        problems.append(f"{loaded.where(('server', 'listen'))}: server.listen {listen!r}: the inventory holds a port "
                        f"number (app.listen)")
    if problems:
        raise InputError(problems)
    recognised = recognise(config)
    rest = _without(config, recognised)
    others, region_prefix = _region_replays(rest, region)
    sorted_tenants = sort_tenants(list((config.get("applications") or {}).get("tenants") or []), root_path, region,
                                  region_prefix)
    public = _public_patterns(rest, root_path, recognised, sorted_tenants, region)
    runtime = _runtime(rest)
    rest = pruned(rest)
    if others:
        rest = placeholder(rest, region)
    return _Region(file, recognised, root_path, listen, others, region_prefix, sorted_tenants, public, runtime, rest)


def _without(config: dict[str, Any], recognised: Recognised) -> dict[str, Any]:
    """What is left for the inventory's `navigator:` section: the keys the generator does not write."""
    rest = copy.deepcopy(config)
    rest.pop("cable", None)
    server = rest.get("server", {})
    for key in ("listen", "hostname", "root_path"):
        server.pop(key, None)
    applications = rest.get("applications", {})
    applications.pop("tenants", None)
    for name in GENERATED_ENV:
        applications.get("env", {}).pop(name, None)
    applications.get("pools", {}).pop("max_size", None)
    processes = [p for i, p in enumerate(rest.pop("managed_processes", None) or []) if i not in recognised.processes]
    if processes:
        rest["managed_processes"] = processes
    routes = rest.get("routes", {})
    proxies = [p for i, p in enumerate(routes.pop("reverse_proxies", None) or []) if i not in recognised.proxies]
    if proxies:
        routes["reverse_proxies"] = proxies
    rest.get("maintenance", {}).pop("enabled", None)
    return rest


def _region_replays(rest: dict[str, Any], region: str) -> tuple[list[str], str | None]:
    """Other regions (their replay rules), and this region's own path prefix; the rules to regions go (the
    generator writes them from the regions and the tenant list), rules to other apps stay."""
    fly = rest.get("routes", {}).get("fly", {})
    rules = fly.get("replay", [])
    others, templates = [], set()
    for rule in rules:
        if "region" in rule:
            others.append(str(rule["region"]))
            found = _PREFIX_REPLAY.match(str(rule.get("path", "")).replace("\\", ""))
            if found and f"/{rule['region']}/" in found["prefix"]:
                templates.add(found["prefix"].replace(f"/{rule['region']}/", f"/{REGION_PLACEHOLDER}/", 1))
    kept = [rule for rule in rules if "region" not in rule]
    if kept:
        fly["replay"] = kept
    elif rules:
        del fly["replay"]
    prefix = templates.pop().replace(REGION_PLACEHOLDER, region) if len(templates) == 1 else None
    return sorted(set(others)), prefix


def _public_patterns(rest: dict[str, Any], root_path: str, recognised: Recognised, tenants: SortedTenants,
                     region: str) -> dict[str, Any]:
    """The auth patterns the generator writes from the cable path, the index and demo tenants and the
    events; they go, and what they say is returned as the inventory's settings."""
    auth = rest.get("auth", {})
    patterns = auth.get("auth_patterns", [])
    found: dict[str, Any] = {}
    kept, public_paths = [], []
    for entry in patterns:
        plain = str(entry.get("pattern", "")).replace("\\", "")
        alternatives = re.sub(r"\(\?:[^()]*\)", REGION_PLACEHOLDER, plain)
        if entry.get("action") != "off":
            kept.append(entry)
        elif alternatives in (f"^{placeholder(recognised.cable_path, region)}$", f"^{recognised.cable_path}$"):
            found["cable"] = True
        elif tenants.index and plain == f"^{tenants.index['path']}":
            found["index"] = True
        elif tenants.demo and alternatives == f"^{placeholder(tenants.demo['path'], region)}":
            found["demo"] = True
        elif re.fullmatch(rf"\^{re.escape(root_path)}/\d{{4}}/\{{region\}}/\?\$", alternatives):
            found["prerendered_studio_indexes"] = True
        elif tail := re.fullmatch(rf"\^{re.escape(root_path)}/\d{{4}}/\{{region\}}/(.+)", alternatives):
            public_paths.append(tail[1])
        else:
            kept.append(entry)
    if public_paths:
        found["public_event_paths"] = sorted(set(public_paths))
    if kept:
        auth["auth_patterns"] = kept
    elif patterns:
        del auth["auth_patterns"]
    return found


def _runtime(rest: dict[str, Any]) -> dict[str, Any]:
    """Hooks and CGI scripts that reload the configuration: the generator writes their reload."""
    runtime: dict[str, Any] = {}
    server_hooks = rest.get("hooks", {}).get("server", {})
    resume = server_hooks.get("resume", [])
    sync = [{k: v for k, v in hook.items() if k != "reload_config"} for hook in resume if "reload_config" in hook]
    if sync:
        runtime["sync"] = [{k: v for k, v in hook.items() if not (k == "args" and v == [])} for hook in sync]
        server_hooks["resume"] = [hook for hook in resume if "reload_config" not in hook]
    refreshing = []
    for script in rest.get("server", {}).get("cgi_scripts", []):
        if script.pop("reload_config", None) is not None:
            refreshing.append(script["path"])
    if refreshing:
        runtime["refresh_cgi"] = refreshing
    for group in rest.get("hooks", {}).values():
        for entries in group.values():
            for hook in entries:
                hook.pop("reload_config", None)  # only the generator's refresh reloads; the proof shows the change
                if hook.get("args") == []:
                    del hook["args"]
    return runtime


def _websocket(first: _Region, codes: list[str]) -> dict[str, Any]:
    recognised = first.recognised
    cable_path = placeholder(recognised.cable_path, first.file.region) if len(codes) > 1 else recognised.cable_path
    websocket: dict[str, Any] = {"enabled": recognised.enabled, "mode": recognised.mode, "cable_path": cable_path,
                                 "broadcast_path": recognised.broadcast_path}
    if first.public.get("cable"):
        websocket["public_path"] = True
    return websocket


def _inline(tenant: Tenant) -> dict[str, Any]:
    entry: dict[str, Any] = {"year": tenant.year, "studio": tenant.studio}
    if tenant.event:
        entry["event"] = tenant.event
    entry["region"] = tenant.region
    return entry


def _check_agreement(regions: list[_Region]) -> None:
    """Every region file must say the same, once its own code is {region}."""
    first = regions[0]
    problems = []
    for other in regions[1:]:
        for path, mine, theirs in differences(_shared(first), _shared(other)):
            problems.append(f"{other.file.loaded.where(path)}: {format_path(path)} is {theirs!r} here but {mine!r} in "
                            f"{first.file.loaded.where(path)}, and no rule of the inventory explains the difference "
                            f"(a region's own paths, replays, tenants): make the files agree")
    if problems:
        raise InputError(problems)


def _shared(region: _Region) -> dict[str, Any]:
    code = region.file.region
    return {**region.rest, "server": {**region.rest.get("server", {}), "root_path": region.root_path,
                                      "listen": region.listen},
            "cable": {"mode": region.recognised.mode, "path": placeholder(region.recognised.cable_path, code)},
            "applications": {**region.rest.get("applications", {}),
                             "tenants": [placeholder(t, code) for t in
                                         (region.tenants.index, region.tenants.demo) if t]}}
