"""A region's navigator.yml as data: the inventory's Navigator settings plus what the generator derives.

Two configurations per region: the full one, and the boot one Navigator starts
with, which serves the maintenance page until the app's sync has fetched the
tenant list and databases and the full configuration was rendered from them.
"""

from __future__ import annotations

from typing import Any

from orchestrator.model import REGION_PLACEHOLDER, FixedTenant, Hook, Inventory, RegionSettings
from orchestrator.render import modes
from orchestrator.render.routing import public_patterns, region_replays
from orchestrator.schema_check import in_schema_order
from orchestrator.tenant_env import tenant_env, tenant_fields

# Where the image keeps the commands that render the configuration again (see image.py).
REFRESH_COMMAND = "bin/refresh"
CGI_REFRESH_COMMAND = "bin/cgi-refresh"
CGI_SCRIPT_VARIABLE = "ORCHESTRATE_CGI_SCRIPT"
NAVIGATOR_SCHEMA = "navigator.schema.json"


def full_config(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    section = _with_region(inventory.navigator, settings.region.code)
    config: dict[str, Any] = {
        "server": _server(inventory, settings, section),
        "cable": modes.cable_block(inventory, settings),
    }
    _copy(section, config, "auth")
    config["routes"] = _routes(section, modes.reverse_proxies(inventory, settings))
    config["applications"] = _applications(inventory, settings, section)
    processes = section.get("managed_processes", []) + modes.managed_processes(inventory, settings)
    if processes:
        config["managed_processes"] = processes
    config["hooks"] = _hooks(inventory, section)
    _copy(section, config, "logging", "maintenance")
    config = in_schema_order(config, NAVIGATOR_SCHEMA)
    # The long generated lists come last, already in order: each is the last key of its object.
    if config.get("auth", {}).get("enabled"):
        config["auth"].setdefault("auth_patterns", []).extend(public_patterns(inventory, settings))
    _add_replays(config, inventory, settings)
    config["applications"]["tenants"] = _tenants(inventory, settings)
    return config


def boot_config(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    """Maintenance page, no tenants, no cable, no login: until the ready hook has synced and rendered."""
    section = _with_region(inventory.navigator, settings.region.code)
    server = _server(inventory, settings, section)
    # A machine must not suspend in the middle of its first sync.
    server.pop("idle", None)
    config: dict[str, Any] = {
        "server": server,
        "cable": {"enabled": False},
        "routes": _routes(section, []),
        "hooks": {"server": {"ready": _refreshing(inventory)}},
    }
    _copy(section, config, "logging")
    config["maintenance"] = {**section.get("maintenance", {}), "enabled": True}
    config = in_schema_order(config, NAVIGATOR_SCHEMA)
    _add_replays(config, inventory, settings)
    return config


def _add_replays(config: dict[str, Any], inventory: Inventory, settings: RegionSettings) -> None:
    # After the inventory's own rules (another app's paths, e.g. PDFs): the first match wins.
    replays = config["routes"].setdefault("fly", {}).setdefault("replay", [])
    replays.extend(region_replays(inventory, settings))
    if not replays:
        del config["routes"]["fly"]


def _with_region(section: Any, region: str) -> Any:
    """A deep copy with {region} replaced in every string."""
    if isinstance(section, dict):
        return {key: _with_region(value, region) for key, value in section.items()}
    if isinstance(section, list):
        return [_with_region(value, region) for value in section]
    if isinstance(section, str):
        return section.replace(REGION_PLACEHOLDER, region)
    return section  # numbers, booleans, null: immutable


def _copy(source: dict[str, Any], target: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if key in source:
            target[key] = source[key]


def _server(inventory: Inventory, settings: RegionSettings, section: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = {"listen": inventory.app.listen}
    if settings.environment.hostname:
        server["hostname"] = settings.environment.hostname
    server["root_path"] = inventory.app.root_path
    server.update(section.get("server", {}))
    if "cgi_scripts" in server:
        server["cgi_scripts"] = [_cgi_script(inventory, script) for script in server["cgi_scripts"]]
    return server


def _cgi_script(inventory: Inventory, script: dict[str, Any]) -> dict[str, Any]:
    """A refreshing CGI script runs through a wrapper that renders the configuration after it."""
    if script["path"] not in inventory.runtime.refresh_cgi:
        return script
    return {
        **script,
        "script": f"{inventory.image.config_dir}/{CGI_REFRESH_COMMAND}",
        "env": {**script.get("env", {}), CGI_SCRIPT_VARIABLE: script["script"]},
        "reload_config": inventory.image.active_config,
    }


def _routes(section: dict[str, Any], cable_proxies: list[dict[str, Any]]) -> dict[str, Any]:
    routes = dict(section.get("routes", {}))
    proxies = routes.get("reverse_proxies", []) + cable_proxies
    if proxies:
        routes["reverse_proxies"] = proxies
    return routes


def _applications(inventory: Inventory, settings: RegionSettings, section: dict[str, Any]) -> dict[str, Any]:
    applications = dict(section.get("applications", {}))
    applications["pools"] = {"max_size": settings.pool_max_size, **applications.get("pools", {})}
    applications["env"] = {**applications.get("env", {}), **modes.rails_env(inventory, settings)}
    return applications


def _tenants(inventory: Inventory, settings: RegionSettings) -> list[dict[str, Any]]:
    region = settings.region.code
    tenants = inventory.tenants
    entries = [_fixed(fixed, region) for fixed in (tenants.index, tenants.demo) if fixed is not None]
    for tenant in inventory.tenants_in(region):
        entry: dict[str, Any] = {"path": tenant.path(inventory.app.root_path)}
        env = tenant_env(tenants.env, tenant_fields(tenant, tenants.default_logo))
        if env:
            entry["env"] = dict(sorted(env.items()))
        entry["var"] = {"database": tenant.database}
        entries.append(entry)
    return entries


def _fixed(tenant: FixedTenant, region: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": tenant.path.replace(REGION_PLACEHOLDER, region)}
    if tenant.root:
        entry["root"] = tenant.root
    if tenant.env:
        entry["env"] = _with_region(dict(sorted(tenant.env.items())), region)
    entry["var"] = {"database": tenant.database}
    return entry


def _hooks(inventory: Inventory, section: dict[str, Any]) -> dict[str, Any]:
    hooks = section.get("hooks", {})  # already a copy of the inventory's (_with_region)
    server = hooks.setdefault("server", {})
    # On resume the tenant list may have changed while the machine slept.
    server["resume"] = server.get("resume", []) + _refreshing(inventory)
    return hooks


def _refreshing(inventory: Inventory) -> list[dict[str, Any]]:
    """The app's sync commands, then the refresh, which reloads Navigator when the configuration changed."""
    hooks = [_hook(hook) for hook in inventory.runtime.sync]
    refresh = Hook(f"{inventory.image.config_dir}/{REFRESH_COMMAND}", (), inventory.runtime.refresh_timeout)
    return hooks + [{**_hook(refresh), "reload_config": inventory.image.active_config}]


def _hook(hook: Hook) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": hook.command, "args": list(hook.args)}
    if hook.timeout:
        entry["timeout"] = hook.timeout
    return entry
