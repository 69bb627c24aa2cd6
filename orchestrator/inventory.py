"""Load an inventory: strict YAML, schema check, cross-reference checks, typed model.

Every problem found is collected and reported at once, each naming its path
and the line it is on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.cable import template_problem
from orchestrator.errors import InputError
from orchestrator.model import (
    MODES,
    ActionCableMode,
    AnyCableMode,
    App,
    ChannelMapping,
    Environment,
    HealthCheck,
    IntegratedMode,
    Inventory,
    MemoryBudget,
    Mode,
    Pool,
    Region,
    Rollout,
    Stage,
    Tenant,
    WebSocket,
)
from orchestrator.schema_check import format_path, schema_problems
from orchestrator.tenants import inline_tenants, load_showcases
from orchestrator.yaml_loader import LoadedYaml, Path_, load_yaml_file

INVENTORY_SCHEMA = "inventory.schema.json"

# Resident memory per component, in MB, from the migration plan's measurements:
# Action Cable on Puma 137.8 + Redis 13.5 beside a 17.6 MB Navigator; anycable-go
# 20-30 MB with no Redis; the integrated front process 25-35 MB. Upper bounds.
DEFAULT_MEMORY_BUDGETS_MB: dict[Mode, dict[str, float]] = {
    "action_cable": {"navigator": 17.6, "cable_server": 137.8, "redis": 13.5},
    "anycable": {"navigator": 17.6, "cable_server": 30.0, "redis": 0.0},
    "integrated": {"navigator": 35.0, "cable_server": 0.0, "redis": 0.0},
}

PLACEHOLDER_SHA256 = "0" * 64


def load_inventory(path: Path) -> Inventory:
    loaded = load_yaml_file(path)
    data = loaded.data
    problems = [
        f"{format_path(where)}: {message} ({loaded.where(where)})"
        for where, message in schema_problems(INVENTORY_SCHEMA, data)
    ]
    if problems:
        raise InputError(problems)
    tenants = _load_tenants(path, data["tenants"])
    inventory = _build(path, data, tenants)
    problems = _cross_reference_problems(data, inventory, loaded)
    if problems:
        raise InputError(problems)
    return inventory


def warnings_for(inventory: Inventory, modes: set[Mode]) -> list[str]:
    """Things that are valid but will bite once the given modes are rendered."""
    found = []
    if "anycable" in modes and inventory.anycable.sha256 == PLACEHOLDER_SHA256:
        found.append(
            "modes.anycable.sha256 is the all-zero placeholder: an anycable image build fails its "
            "checksum check until it holds the published digest of anycable-go-linux-amd64 "
            f"v{inventory.anycable.version}"
        )
    return found


def _load_tenants(inventory_path: Path, spec: dict[str, Any]) -> list[Tenant]:
    if spec["source"] == "inline":
        return inline_tenants(spec["events"])
    showcases = (inventory_path.parent / spec["file"]).resolve()
    try:
        return load_showcases(showcases)
    except InputError as error:
        raise InputError([f"tenants.file: {problem}" for problem in error.problems]) from None


def _cross_reference_problems(data: dict[str, Any], inventory: Inventory, loaded: LoadedYaml) -> list[str]:
    problems: list[str] = []

    def report(path: Path_, message: str) -> None:
        problems.append(f"{format_path(path)}: {message} ({loaded.where(path)})")

    known = _check_unique_regions(data["regions"], report)
    if data["app"]["primary_region"] not in known:
        report(("app", "primary_region"), f"region {data['app']['primary_region']!r} is not listed in regions")
    environments = data["environments"]
    for env_name, environment in environments.items():
        _check_region_list(("environments", env_name, "regions"), environment["regions"], known, report)
    _check_tenant_regions(data, list(inventory.tenants), environments, report)
    _check_channels(data["websocket"].get("channels", {}), report)
    _check_ports(inventory, report)
    _check_stages(data.get("rollout", {}).get("stages", []), environments, report)
    return problems


Reporter = Callable[[Path_, str], None]


def _check_unique_regions(regions: list[dict[str, Any]], report: Reporter) -> set[str]:
    first_index: dict[str, int] = {}
    for index, region in enumerate(regions):
        code = region["code"]
        if code in first_index:
            report(("regions", index, "code"), f"duplicate region {code!r} (also regions[{first_index[code]}])")
        else:
            first_index[code] = index
    return set(first_index)


def _check_region_list(path: Path_, codes: list[str], allowed: set[str], report: Reporter, what: str = "regions") -> None:
    seen: set[str] = set()
    for index, code in enumerate(codes):
        if code not in allowed:
            report(path + (index,), f"region {code!r} is not listed in {what}")
        elif code in seen:
            report(path + (index,), f"region {code!r} is listed twice")
        seen.add(code)


def _check_tenant_regions(
    data: dict[str, Any], tenants: list[Tenant], environments: dict[str, Any], report: Reporter
) -> None:
    served = {code for environment in environments.values() for code in environment["regions"]}
    if data["tenants"]["source"] == "inline":
        for index, tenant in enumerate(tenants):
            if tenant.region not in served:
                report(("tenants", "events", index, "region"), f"region {tenant.region!r} is in no environment")
        return
    unserved = sorted({tenant.region for tenant in tenants} - served)
    for code in unserved:
        count = sum(1 for tenant in tenants if tenant.region == code)
        report(("tenants", "file"), f"{count} events are in region {code!r}, which no environment serves")


def _check_channels(channels: dict[str, Any], report: Reporter) -> None:
    for name, mapping in channels.items():
        if why := template_problem(mapping["stream"]):
            report(("websocket", "channels", name, "stream"), why)


def _check_ports(inventory: Inventory, report: Reporter) -> None:
    listen = inventory.app.listen
    # The Action Cable and AnyCable servers never run together, so they may share a port.
    cable_ports: list[tuple[Path_, int]] = [
        (("modes", "action_cable", "port"), inventory.action_cable.port),
        (("modes", "anycable", "port"), inventory.anycable.port),
        (("modes", "anycable", "broadcast_port"), inventory.anycable.broadcast_port),
    ]
    for path, port in cable_ports:
        if port == listen:
            report(path, f"port {port} is already app.listen")
    if inventory.anycable.port == inventory.anycable.broadcast_port:
        report(("modes", "anycable", "broadcast_port"), f"port {inventory.anycable.port} is already modes.anycable.port")


def _check_stages(stages: list[dict[str, Any]], environments: dict[str, Any], report: Reporter) -> None:
    names: dict[str, int] = {}
    deployed: dict[tuple[str, str], str] = {}
    for index, stage in enumerate(stages):
        if stage["name"] in names:
            report(("rollout", "stages", index, "name"), f"duplicate stage name (also stages[{names[stage['name']]}])")
        names.setdefault(stage["name"], index)
        env_name = stage["environment"]
        if env_name not in environments:
            report(("rollout", "stages", index, "environment"), f"environment {env_name!r} is not defined")
            continue
        allowed = set(environments[env_name]["regions"])
        _check_region_list(("rollout", "stages", index, "regions"), stage["regions"], allowed, report,
                           what=f"environments.{env_name}.regions")
        for position, code in enumerate(stage["regions"]):
            earlier = deployed.setdefault((env_name, code), stage["name"])
            if earlier != stage["name"]:
                report(("rollout", "stages", index, "regions", position),
                       f"region {code!r} is already rolled out by stage {earlier!r}")


def _build(path: Path, data: dict[str, Any], tenants: list[Tenant]) -> Inventory:
    app_data = data["app"]
    pool_data = app_data.get("pool", {})
    app = App(
        name=app_data["name"],
        root_path=app_data["root_path"],
        listen=app_data["listen"],
        primary_region=app_data["primary_region"],
        rails_root=app_data.get("rails_root", "/rails"),
        database_dir=app_data.get("database_dir", "/data/db"),
        ruby_version=app_data.get("ruby_version", "3.4"),
        navigator_image=app_data.get("navigator_image", "samruby/navigator:latest"),
        pool=Pool(
            default_memory_limit=pool_data.get("default_memory_limit", "768M"),
            start_port=pool_data.get("start_port", 4000),
            timeout=pool_data.get("timeout", "5m"),
            user=pool_data.get("user", "rails"),
            group=pool_data.get("group", "rails"),
        ),
        idle_timeout=app_data.get("idle_timeout", "15m"),
    )
    environments = {
        name: Environment(name, env["fly_app"], env.get("hostname"), tuple(env["regions"]))
        for name, env in data["environments"].items()
    }
    regions = {
        region["code"]: Region(
            code=region["code"],
            memory_mb=region.get("memory_mb", 2048),
            websocket_enabled=region.get("websocket", {}).get("enabled"),
            mode=region.get("websocket", {}).get("mode"),
        )
        for region in data["regions"]
    }
    ws = data["websocket"]
    websocket = WebSocket(
        enabled=ws["enabled"],
        mode=ws["mode"],
        cable_path=ws.get("cable_path", f"{app.root_path}/cable"),
        broadcast_path=ws.get("broadcast_path", "/_broadcast"),
        public_streams=ws.get("public_streams", False),
        signing_secret_env=ws.get("signing_secret_env", "CABLE_SIGNING_SECRET"),
        broadcast_key_env=ws.get("broadcast_key_env"),
        channels=tuple(
            ChannelMapping(name, mapping["stream"], mapping.get("signed", False))
            for name, mapping in sorted(ws.get("channels", {}).items())
        ),
    )
    modes = data.get("modes", {})
    action_cable = modes.get("action_cable", {})
    anycable = modes.get("anycable", {})
    integrated = modes.get("integrated", {})
    budgets = data.get("memory_budgets_mb", {})
    rollout = data.get("rollout", {})
    health = rollout.get("health_check", {})
    return Inventory(
        name=path.name,
        app=app,
        environments=environments,
        regions=regions,
        tenants=tuple(tenants),
        websocket=websocket,
        action_cable=ActionCableMode(
            port=action_cable.get("port", 28080),
            redis=action_cable.get("redis", True),
            redis_url=action_cable.get("redis_url", "redis://localhost:6379/1"),
            redis_config=action_cable.get("redis_config", "/etc/redis/redis.conf"),
        ),
        anycable=AnyCableMode(
            version=anycable.get("version", "1.5.1"),
            sha256=anycable.get("sha256", PLACEHOLDER_SHA256),
            port=anycable.get("port", 28080),
            broadcast_port=anycable.get("broadcast_port", 28081),
            extra_args=tuple(anycable.get("extra_args", ())),
        ),
        integrated=IntegratedMode(
            max_connections=integrated.get("max_connections", 10000),
            max_message_bytes=integrated.get("max_message_bytes", 65536),
        ),
        memory_budgets_mb={
            mode: MemoryBudget(**{**DEFAULT_MEMORY_BUDGETS_MB[mode], **budgets.get(mode, {})}) for mode in MODES
        },
        rollout=Rollout(
            health_check=HealthCheck(
                path=health.get("path", "/up"),
                interval_seconds=health.get("interval_seconds", 1),
                timeout_seconds=health.get("timeout_seconds", 5),
                deadline_seconds=health.get("deadline_seconds", 30),
                failure_limit=health.get("failure_limit", 1),
            ),
            stages=tuple(
                Stage(stage["name"], stage["environment"], tuple(stage["regions"]), stage["bake"])
                for stage in rollout.get("stages", ())
            ),
        ),
    )
