"""Load an inventory: strict YAML, schema checks, cross-reference checks, typed model.

Every problem found is collected and reported at once (duplicate keys, types,
cross references), each naming its path and the line it is on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hub.cable import placeholders, template_problem
from orchestrator.errors import InputError
from orchestrator.model import (
    MODES,
    ActionCableMode,
    AnyCableMode,
    App,
    Broker,
    ChannelMapping,
    Environment,
    FixedTenant,
    HealthCheck,
    Hook,
    HttpService,
    Image,
    HubMode,
    IntegratedMode,
    Inventory,
    MemoryBudget,
    Mode,
    Region,
    Rollout,
    RuntimeConfig,
    ShippedFile,
    SshSettings,
    Stage,
    Tenant,
    Tenants,
    Vm,
    Volume,
    WatchRule,
    WatchSettings,
    WebSocket,
)
from orchestrator.schema_check import format_path, schema_problems
from orchestrator.stream_templates import per_user_placeholders, templates_overlap
from orchestrator.tenant_env import TENANT_FIELDS
from orchestrator.tenants import inline_tenants, load_showcases
from hub.yaml_loader import LoadedYaml, Path_, parse_yaml_file

INVENTORY_SCHEMA = "inventory.schema.json"
NAVIGATOR_SCHEMA = "navigator.schema.json"

# Resident memory per component, in MB: a measured figure plus a stated margin, so that a gate
# passing on one machine does not fail on the next by a fraction of a megabyte (the memory
# gate's evidence shows what is left). Measured: Navigator 14.0 MB idle with Showcase's whole
# configuration (v1.2.0), 17.6 = +25% (also its author's published figure); in integrated mode
# Navigator's own cable adds about 31.8 KB per connection, 35 = room for some 650; Action Cable
# on Puma 138-153 MB and Redis 13.5 MB (Navigator's author, Nov 2025), budgeted at the low end
# of their range, as the plan did; anycable-go 20-30 MB (the plan), at the top; the hub 18.3 MB
# idle as the image runs it plus about 2.3 KB per connection (bench/results/hub.md), 25 = +35%,
# room for some 2,900; a local nats-server 10.8 MB idle, 14 = +30%. A region's own
# memory_budgets_mb overrides these; the local fleet's front is a hub standing in for
# Navigator (about 21 MB), so rehearsing a mode with a cable process there needs roomier ones.
DEFAULT_MEMORY_BUDGETS_MB: dict[Mode, dict[str, float]] = {
    "action_cable": {"navigator": 17.6, "cable_server": 137.8, "redis": 13.5},
    "anycable": {"navigator": 17.6, "cable_server": 30.0, "redis": 0.0, "broker": 14.0},
    "integrated": {"navigator": 35.0, "cable_server": 0.0, "redis": 0.0},
    "hub": {"navigator": 17.6, "cable_server": 25.0, "redis": 0.0, "broker": 14.0},
}

# navigator.yml keys the generator writes, and what it writes them from.
GENERATED_NAVIGATOR_KEYS: dict[Path_, str] = {
    ("server", "listen"): "app.listen",
    ("server", "hostname"): "environments.*.hostname",
    ("server", "root_path"): "app.root_path",
    ("cable",): "websocket",
    ("applications", "tenants"): "tenants",
    ("applications", "pools", "max_size"): "the machine's memory",
    ("maintenance", "enabled"): "the boot configuration",
}
# applications.env entries that tell the Rails processes where the cable is.
GENERATED_ENV = ("CABLE_ADAPTER", "CABLE_URL", "RAILS_CABLE_PATH", "TURBO_CABLE_BROADCAST_URL")

Reporter = Callable[[Path_, str], None]


def load_inventory(path: Path, tenants_file: Path | None = None) -> Inventory:
    """The inventory at `path`; `tenants_file` replaces the showcases file it names (the image's run-time list)."""
    loaded = parse_yaml_file(path)
    data = loaded.data
    problems = list(loaded.duplicates)

    def report(where: Path_, message: str) -> None:
        problems.append(f"{format_path(where)}: {message} ({loaded.where(where)})")

    for where, message in schema_problems(INVENTORY_SCHEMA, data):
        report(where, message)
    if not isinstance(data, dict):
        raise InputError(problems or [f"{path}: expected a mapping at the top level"])
    _check_navigator_section(data.get("navigator"), report)
    tenants, tenant_list = _load_tenants(path, data.get("tenants"), tenants_file, problems)
    _cross_reference_problems(data, tenants, report)
    if problems:
        raise InputError(problems)
    return _build(path, loaded, tenants, tenant_list)


def mode_problems(inventory: Inventory, regions_by_mode: Mapping[Mode, list[str]]) -> list[str]:
    """What the given modes cannot do for this app (regions_by_mode: the regions that would run each mode)."""
    found = []
    where = inventory.located.where
    for mode, regions in sorted(regions_by_mode.items()):
        if not regions:
            continue
        in_regions = f"regions in {mode} mode: {', '.join(sorted(set(regions)))}"
        for channel in inventory.websocket.channels:
            path: Path_ = ("websocket", "channels", channel.name)
            if mode == "anycable":
                # anycable-go v1.5.1 routes only these without RPC (cli/cli.go:493-511).
                why = ("anycable-go without RPC rejects every channel but $pubsub, Turbo::StreamsChannel (with "
                       "websocket.turbo_streams) and CableReady::Stream (with websocket.cable_ready); subscribe to "
                       "its stream with turbo_stream_from or as a signed $pubsub stream")
            elif mode == "integrated":
                why = ("Navigator's built-in cable speaks only its own protocol, so an Action Cable channel gets no "
                       "answer; subscribe to its stream with the turbo_cable gem")
            else:
                continue
            found.append(f"{format_path(path)}: {mode} mode cannot serve this channel: {why} "
                         f"({in_regions}) ({where(path)})")
        for code in sorted(set(regions)):
            region = inventory.regions[code]
            path = ("regions", list(inventory.regions).index(code), "machines")
            if region.machines > 1 and mode == "integrated":
                found.append(f"{format_path(path)}: {region.machines} machines in integrated mode: Navigator's cable "
                             f"delivers a broadcast only to the clients of the machine that took it; use the hub mode "
                             f"with a broker ({where(path)})")
            elif region.machines > 1 and mode == "hub" and inventory.broker_for(code) is None:
                found.append(f"{format_path(path)}: {region.machines} machines in hub mode need a broker (the "
                             f"region's broker or modes.hub.broker), or a broadcast reaches only the clients of the "
                             f"machine that took it ({where(path)})")
            elif region.machines > 1 and mode == "anycable" and inventory.broker_for(code, mode) is None:
                # anycable-go v1.5.1's pub/sub is none unless --pubsub names one (config/config.go:38, no default in
                # NewConfig 61-91; cli/runner_options.go:110-112 picks the local-only pubsub/subscriber.go:53-55):
                # each machine's anycable-go delivers only what was posted to it.
                found.append(f"{format_path(path)}: {region.machines} machines in anycable mode need a broker (the "
                             f"region's broker or modes.anycable.broker): anycable-go shares nothing between machines "
                             f"without a pub/sub, so a broadcast reaches only the clients of the machine that took it "
                             f"({where(path)})")
        if mode == "anycable":
            found.extend(_anycable_nats_credentials(inventory, regions))
        if mode == "anycable" and inventory.anycable.image is None:
            path = ("modes", "anycable", "image")
            found.append(f"{format_path(path)}: anycable mode needs the official anycable-go image pinned by "
                         f"digest (anycable/anycable-go:1.5.1@sha256:<digest>), since its releases publish no "
                         f"checksums ({in_regions}) ({where(path[:-1])})")
    return found


def _anycable_nats_credentials(inventory: Inventory, regions: list[str]) -> list[str]:
    """A NATS token or password for anycable-go: v1.5.1 takes them only inside its server URL (nats.go v1.31.0
    nats.go:2446-2457) and logs that URL whole when it starts (pubsub/nats.go:65) and reconnects (pubsub/nats.go:51).
    A Redis password stays out of its log (pubsub/redis.go:70-77)."""
    by_path: dict[Path_, list[str]] = {}
    for code in sorted(set(regions)):
        broker = inventory.broker_for(code, "anycable")
        if broker is None or broker.kind != "nats" or not (broker.token_env or broker.password_env):
            continue
        where: Path_ = ("modes", "anycable", "broker")
        if inventory.regions[code].broker is not None:
            where = ("regions", list(inventory.regions).index(code), "broker")
        by_path.setdefault((*where, "token_env" if broker.token_env else "password_env"), []).append(code)
    return [f"{format_path(path)}: anycable-go writes its NATS URL to its log, credentials included, and takes them "
            f"nowhere else, so it cannot use this secret: give the anycable regions a NATS without a token or password "
            f"(a local broker's client port listens on loopback only) or a Redis broker (regions in anycable mode: "
            f"{', '.join(codes)}) ({inventory.located.where(path)})"
            for path, codes in sorted(by_path.items(), key=lambda item: format_path(item[0]))]


def mode_warnings(inventory: Inventory, regions_by_mode: Mapping[Mode, list[str]]) -> list[str]:
    """What the given modes would do that the operator should know, though it works: exposed per-user
    streams, templates that can produce each other's names, broadcasts trusted for coming from loopback."""
    found = []
    where = inventory.located.where
    websocket = inventory.websocket
    unsigned_channels = [channel for channel in websocket.channels if not channel.signed]
    for mode, regions in sorted(regions_by_mode.items()):
        if not regions:
            continue
        in_regions = f"regions in {mode} mode: {', '.join(sorted(set(regions)))}"
        if mode == "integrated" or (mode == "hub" and websocket.public_streams):
            why = ("Navigator's built-in cable authorizes no stream" if mode == "integrated"
                   else "websocket.public_streams lets any client subscribe to any unsigned stream")
            remedy = "the hub mode with a signed channel" if mode == "integrated" else "a signed channel with public_streams off"
            for index, stream in enumerate(websocket.streams):
                if users := per_user_placeholders(stream):
                    path: Path_ = ("websocket", "streams", index)
                    found.append(f"{format_path(path)}: {stream!r} is one user's stream ({', '.join(users)}), yet {why}: "
                                 f"anyone who can guess the name can read it; use {remedy} ({in_regions}) ({where(path)})")
        if mode == "hub" and not websocket.public_streams:
            for index, stream in enumerate(websocket.streams):
                if not any(templates_overlap(stream, channel.stream) for channel in unsigned_channels):
                    path = ("websocket", "streams", index)
                    found.append(f"{format_path(path)}: pages that subscribe to {stream!r} by name get nothing in "
                                 f"hub mode: no unsigned channel maps to it and public_streams is off; map it in "
                                 f"websocket.channels ({in_regions}) ({where(path)})")
        if mode in ("hub", "anycable"):
            for channel in unsigned_channels:
                if users := per_user_placeholders(channel.stream):
                    path = ("websocket", "channels", channel.name)
                    found.append(f"{format_path(path)}: {channel.stream!r} is one user's stream "
                                 f"({', '.join(users)}) on an unsigned channel: any client can subscribe with another "
                                 f"user's id; make the channel signed ({in_regions}) ({where(path)})")
        if mode == "hub" and not websocket.broadcast_key_env:
            path = ("websocket", "broadcast_key_env")
            found.append(f"{format_path(path)}: not set, so the hub takes broadcasts from loopback without a key. That "
                         f"holds in this layout: the hub listens on 127.0.0.1:{inventory.hub.port} only, Navigator "
                         f"proxies just the cable path to it, and a broadcast that arrives through a proxy (with "
                         f"forwarding headers) is refused; still, any process on the machine can broadcast. Set it "
                         f"to require a key ({in_regions}) ({where(path[:-1])})")
    if any(regions for mode, regions in regions_by_mode.items() if mode in ("hub", "anycable")):
        found.extend(_overlapping_channels(inventory))
    return found


def _overlapping_channels(inventory: Inventory) -> list[str]:
    """An unsigned channel whose stream can also be a signed channel's: the hub refuses such subscriptions."""
    found = []
    channels = inventory.websocket.channels
    for unsigned in (channel for channel in channels if not channel.signed):
        for signed in (channel for channel in channels if channel.signed):
            if templates_overlap(unsigned.stream, signed.stream):
                path = ("websocket", "channels", unsigned.name, "stream")
                found.append(f"{format_path(path)}: {unsigned.stream!r} can produce names of the signed channel "
                             f"{signed.name} ({signed.stream!r}); the hub refuses those subscriptions, so give the two "
                             f"channels distinct prefixes ({inventory.located.where(path)})")
    return found


def _check_navigator_section(section: Any, report: Reporter) -> None:
    """The inventory's `navigator` block is navigator.yml minus what the generator writes."""
    if not isinstance(section, dict):
        return
    for where, message in schema_problems(NAVIGATOR_SCHEMA, section):
        report(("navigator", *where), message)
    for key_path, source in GENERATED_NAVIGATOR_KEYS.items():
        if _dig(section, key_path) is not None:
            report(("navigator", *key_path), f"written by the generator from {source}; remove it here")
    env = _dig(section, ("applications", "env"))
    for name in GENERATED_ENV:
        if isinstance(env, dict) and name in env:
            report(("navigator", "applications", "env", name), "written by the generator for the WebSocket mode; remove it here")
    hooks = _dig(section, ("hooks",))
    for group, kinds in (hooks or {}).items() if isinstance(hooks, dict) else ():
        for kind, entries in (kinds or {}).items() if isinstance(kinds, dict) else ():
            for index, hook in enumerate(entries if isinstance(entries, list) else ()):
                if isinstance(hook, dict) and "reload_config" in hook:
                    report(("navigator", "hooks", group, kind, index, "reload_config"),
                           "the generator decides which hooks reload the configuration (see runtime_config)")
    scripts = _dig(section, ("server", "cgi_scripts"))
    for index, script in enumerate(scripts if isinstance(scripts, list) else ()):
        if isinstance(script, dict) and "reload_config" in script:
            report(("navigator", "server", "cgi_scripts", index, "reload_config"),
                   "list the script's path in runtime_config.refresh_cgi instead")


def _dig(value: Any, keys: Path_) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _load_tenants(
    inventory_path: Path, spec: Any, override: Path | None, problems: list[str]
) -> tuple[list[Tenant], ShippedFile | None]:
    if not isinstance(spec, dict):
        return [], None
    if spec.get("source") == "inline":
        events = _list(spec.get("events"))
        valid = all(
            isinstance(e, dict) and isinstance(e.get("year"), int) and isinstance(e.get("studio"), str)
            and isinstance(e.get("region"), str) for e in events
        )
        return (inline_tenants(events), None) if valid else ([], None)
    if not isinstance(spec.get("file"), str):
        return [], None
    showcases = override or (inventory_path.parent / spec["file"]).resolve()
    try:
        return load_showcases(showcases)
    except InputError as error:
        problems.extend(f"tenants.file: {problem}" for problem in error.problems)
        return [], None


def _cross_reference_problems(data: dict[str, Any], tenants: list[Tenant], report: Reporter) -> None:
    """Checks across sections, on the raw data: a section that failed its schema check is skipped, not trusted."""
    known = _check_unique_regions(_list(data.get("regions")), report)
    app = _mapping(data.get("app"))
    if isinstance(app.get("primary_region"), str) and app["primary_region"] not in known:
        report(("app", "primary_region"), f"region {app['primary_region']!r} is not listed in regions")
    environments = {
        name: env for name, env in _mapping(data.get("environments")).items()
        if isinstance(env, dict) and isinstance(env.get("regions"), list)
    }
    for env_name, environment in environments.items():
        _check_region_list(("environments", env_name, "regions"), environment["regions"], known, report)
        primary = environment.get("primary_region")
        if isinstance(primary, str) and primary not in environment["regions"]:
            report(("environments", env_name, "primary_region"), f"region {primary!r} is not one of this environment's regions")
        for key in ("hosts", "front_ports"):
            for code in _mapping(_mapping(environment.get("ssh")).get(key)):
                if code not in environment["regions"]:
                    report(("environments", env_name, "ssh", key, code), f"region {code!r} is not one of this environment's regions")
    tenant_spec = _mapping(data.get("tenants"))
    _check_tenant_regions(tenant_spec, tenants, environments, report)
    _check_tenant_env(tenant_spec, report)
    websocket = _mapping(data.get("websocket"))
    _check_channels(_mapping(websocket.get("channels")), report)
    for index, stream in enumerate(_list(websocket.get("streams"))):
        if isinstance(stream, str) and (why := template_problem(stream)):
            report(("websocket", "streams", index), why)
    _check_region_paths(app, websocket, tenant_spec, report)
    modes = _mapping(data.get("modes"))
    _check_ports(app, modes, report)
    brokers: list[tuple[Path_, Any]] = [(("modes", mode, "broker"), _mapping(modes.get(mode)).get("broker"))
                                        for mode in ("hub", "anycable")]
    brokers += [(("regions", index, "broker"), _mapping(region).get("broker")) for index, region in enumerate(_list(data.get("regions")))]
    for where, broker in brokers:
        if isinstance(broker, dict):
            _check_broker(where, broker, report)
    if "prefix" in _mapping(_mapping(modes.get("anycable")).get("broker")):
        # anycable-go publishes each broadcast under the stream's own name (pubsub/nats.go:118-130,
        # pubsub/redis.go:130-153 at v1.5.1); it has no setting that would put a prefix before it.
        report(("modes", "anycable", "broker", "prefix"), "anycable-go has no pub/sub prefix: it publishes each "
               "broadcast under the stream's own name; remove it")
    _check_refresh_cgi(_mapping(data.get("runtime_config")), _mapping(data.get("navigator")), report)
    _check_stages(_list(_mapping(data.get("rollout")).get("stages")), environments, report)


def _mapping(value: Any) -> dict[str, Any]:
    """A section of raw data, or an empty one when it is missing or not a mapping (the schema check said so)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_unique_regions(regions: list[Any], report: Reporter) -> set[str]:
    first_index: dict[str, int] = {}
    for index, region in enumerate(regions):
        code = region.get("code") if isinstance(region, dict) else None
        if not isinstance(code, str):
            continue
        if code in first_index:
            report(("regions", index, "code"), f"duplicate region {code!r} (also regions[{first_index[code]}])")
        else:
            first_index[code] = index
    return set(first_index)


def _check_region_list(path: Path_, codes: list[Any], allowed: set[str], report: Reporter, what: str = "regions") -> None:
    seen: set[str] = set()
    for index, code in enumerate(codes):
        if not isinstance(code, str):
            continue
        if code not in allowed:
            report(path + (index,), f"region {code!r} is not listed in {what}")
        elif code in seen:
            report(path + (index,), f"region {code!r} is listed twice")
        seen.add(code)


def _check_tenant_regions(spec: dict[str, Any], tenants: list[Tenant], environments: dict[str, Any], report: Reporter) -> None:
    served = {code for environment in environments.values() for code in environment["regions"]}
    if not served:
        return
    if spec.get("source") == "inline":
        for index, tenant in enumerate(tenants):
            if tenant.region not in served:
                report(("tenants", "events", index, "region"), f"region {tenant.region!r} is in no environment")
        return
    for code in sorted({tenant.region for tenant in tenants} - served):
        count = sum(1 for tenant in tenants if tenant.region == code)
        report(("tenants", "file"), f"{count} events are in region {code!r}, which no environment serves")


def _check_tenant_env(spec: dict[str, Any], report: Reporter) -> None:
    for name, value in _mapping(spec.get("env")).items():
        if not isinstance(value, str):
            continue
        if why := template_problem(value):
            report(("tenants", "env", name), why)
        elif unknown := sorted(set(placeholders(value)) - set(TENANT_FIELDS)):
            report(("tenants", "env", name),
                   f"unknown field {{{unknown[0]}}} (fields: {', '.join(TENANT_FIELDS)})")


def _check_channels(channels: dict[str, Any], report: Reporter) -> None:
    for name, mapping in channels.items():
        stream = _mapping(mapping).get("stream")
        if isinstance(stream, str) and (why := template_problem(stream)):
            report(("websocket", "channels", name, "stream"), why)


def _check_region_paths(app: dict[str, Any], websocket: dict[str, Any], tenants: dict[str, Any], report: Reporter) -> None:
    """Another region's cable path and demo must fall under region_paths, or nothing replays them there."""
    prefix = app.get("region_paths")
    if not isinstance(prefix, str):
        return
    paths: list[tuple[Path_, Any]] = [
        (("websocket", "cable_path"), websocket.get("cable_path")),
        (("tenants", "demo", "path"), _mapping(tenants.get("demo")).get("path")),
    ]
    for where, path in paths:
        if isinstance(path, str) and "{region}" in path and not path.startswith(prefix):
            report(where, f"{path!r} is not under app.region_paths {prefix!r}, so other regions would serve it locally")


def _check_ports(app: dict[str, Any], modes: dict[str, Any], report: Reporter) -> None:
    listen = app.get("listen")
    action_cable = _mapping(modes.get("action_cable"))
    anycable = _mapping(modes.get("anycable"))
    hub = _mapping(modes.get("hub"))
    # The Action Cable server, anycable-go and the hub never run together, so they may share a port.
    ports: list[tuple[Path_, Any]] = [
        (("modes", "action_cable", "port"), action_cable.get("port", 28080)),
        (("modes", "anycable", "port"), anycable.get("port", 28080)),
        (("modes", "anycable", "broadcast_port"), anycable.get("broadcast_port", 28081)),
        (("modes", "hub", "port"), hub.get("port", 28080)),
    ]
    for path, port in ports:
        if port == listen:
            report(path, f"port {port} is already app.listen")
    if anycable.get("port", 28080) == anycable.get("broadcast_port", 28081):
        report(("modes", "anycable", "broadcast_port"), f"port {anycable.get('port', 28080)} is already modes.anycable.port")


def _check_broker(where: Path_, broker: dict[str, Any], report: Reporter) -> None:
    kind, url = broker.get("kind"), broker.get("url")
    if kind == "redis":
        for key in ("local", "token_env"):
            if key in broker:
                report((*where, key), "nats only: a redis broker has no local server and no token")
        if url is None:
            report(where, "a redis broker needs a url (redis://host:port/db)")
    else:
        if url is None and "local" not in broker:
            report(where, "a nats broker needs a url, or local: {} to run nats-server on the region's machines")
        if "token_env" in broker and ("user" in broker or "password_env" in broker):
            report((*where, "token_env"), "a NATS token or a user and password, not both")
        elif "password_env" in broker and "user" not in broker:
            report((*where, "password_env"), "a NATS password needs its user")
    if isinstance(url, str) and isinstance(kind, str) and not url.startswith(f"{kind}://"):
        report((*where, "url"), f"{url!r} is not a {kind}:// URL")


def _check_refresh_cgi(runtime: dict[str, Any], navigator: dict[str, Any], report: Reporter) -> None:
    scripts = _list(_dig(navigator, ("server", "cgi_scripts")))
    known = {_mapping(script).get("path") for script in scripts}
    for index, path in enumerate(_list(runtime.get("refresh_cgi"))):
        if path not in known:
            report(("runtime_config", "refresh_cgi", index), f"{path!r} is not a path of navigator.server.cgi_scripts")


def _check_stages(stages: list[Any], environments: dict[str, Any], report: Reporter) -> None:
    names: dict[str, int] = {}
    deployed: dict[tuple[str, str], str] = {}
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("regions"), list):
            continue
        name = str(stage.get("name"))
        if name in names:
            report(("rollout", "stages", index, "name"), f"duplicate stage name (also stages[{names[name]}])")
        names.setdefault(name, index)
        env_name = stage.get("environment")
        if env_name not in environments:
            report(("rollout", "stages", index, "environment"), f"environment {env_name!r} is not defined")
            continue
        allowed = set(environments[env_name]["regions"])
        _check_region_list(("rollout", "stages", index, "regions"), stage["regions"], allowed, report,
                           what=f"environments.{env_name}.regions")
        for position, code in enumerate(stage["regions"]):
            earlier = deployed.setdefault((env_name, code), name)
            if earlier != name:
                report(("rollout", "stages", index, "regions", position),
                       f"region {code!r} is already rolled out by stage {earlier!r}")


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


def _build(path: Path, loaded: LoadedYaml, events: list[Tenant], tenant_list: ShippedFile | None) -> Inventory:
    data = loaded.data
    app_data = data["app"]
    app = App(
        name=app_data["name"],
        root_path=app_data["root_path"],
        listen=app_data["listen"],
        primary_region=app_data["primary_region"],
        rails_root=app_data.get("rails_root", "/rails"),
        region_paths=app_data.get("region_paths"),
        checkout=app_data.get("checkout"),
    )
    image_data = data.get("image", {})
    image = Image(
        ruby_version=image_data.get("ruby_version", "3.4"),
        navigator_version=image_data.get("navigator_version", "v1.2.0"),
        deploy_dir=image_data.get("deploy_dir", "deploy"),
        config_dir=image_data.get("config_dir", "/etc/navigator"),
        data_dir=image_data.get("data_dir", "/data"),
        build_packages=tuple(image_data.get("build_packages", ("build-essential", "git", "libyaml-dev", "pkg-config"))),
        packages=tuple(image_data.get("packages", ("curl", "libjemalloc2", "sqlite3"))),
        build_commands=tuple(image_data.get("build_commands", ())),
        prepare_commands=tuple(image_data.get("prepare_commands", ())),
        writable_dirs=tuple(image_data.get("writable_dirs", ("db", "log", "storage", "tmp"))),
        env=_frozen(image_data.get("env")),
    )
    environments = {name: _environment(name, env, app) for name, env in data["environments"].items()}
    budgets = data.get("memory_budgets_mb", {})
    regions = {
        region["code"]: Region(
            code=region["code"],
            memory_mb=region.get("memory_mb"),
            websocket_enabled=region.get("websocket", {}).get("enabled"),
            mode=region.get("websocket", {}).get("mode"),
            memory_budgets_mb=_budgets(budgets, region["memory_budgets_mb"]) if "memory_budgets_mb" in region else None,
            machines=region.get("machines", 1),
            broker=_broker(region.get("broker")),
            watch_rules=_watch_rules(region["watch_rules"]) if "watch_rules" in region else None,
        )
        for region in data["regions"]
    }
    ws = data["websocket"]
    websocket = WebSocket(
        enabled=ws["enabled"],
        mode=ws["mode"],
        cable_path=ws.get("cable_path", f"{app.root_path}/cable"),
        broadcast_path=ws.get("broadcast_path", "/_broadcast"),
        public_path=ws.get("public_path", False),
        public_streams=ws.get("public_streams", False),
        turbo_streams=ws.get("turbo_streams", False),
        signing_secret_env=ws.get("signing_secret_env", "CABLE_SIGNING_SECRET"),
        broadcast_key_env=ws.get("broadcast_key_env"),
        channels=tuple(
            ChannelMapping(name, mapping["stream"], mapping.get("signed", False))
            for name, mapping in sorted(ws.get("channels", {}).items())
        ),
        streams=tuple(ws.get("streams", ())),
        cable_ready=ws.get("cable_ready", False),
    )
    modes = data.get("modes", {})
    action_cable = modes.get("action_cable", {})
    anycable = modes.get("anycable", {})
    integrated = modes.get("integrated", {})
    hub = modes.get("hub", {})
    rollout = data.get("rollout", {})
    health = rollout.get("health_check", {})
    runtime = data.get("runtime_config", {})
    return Inventory(
        name=path.name,
        source_text=path.read_text(encoding="utf-8"),
        tenant_list=tenant_list,
        located=loaded,
        app=app,
        image=image,
        environments=environments,
        regions=regions,
        tenants=_tenants(data["tenants"], events),
        websocket=websocket,
        navigator=data.get("navigator", {}),
        runtime=RuntimeConfig(
            sync=tuple(_hook(hook) for hook in runtime.get("sync", ())),
            refresh_cgi=tuple(runtime.get("refresh_cgi", ())),
            refresh_timeout=runtime.get("refresh_timeout", "1m"),
        ),
        action_cable=ActionCableMode(
            port=action_cable.get("port", 28080),
            redis_url=action_cable.get("redis_url", "redis://localhost:6379/1"),
            redis_config=action_cable.get("redis_config", "/etc/redis/redis.conf"),
            env=_frozen(action_cable.get("env")),
        ),
        anycable=AnyCableMode(
            image=anycable.get("image"),
            port=anycable.get("port", 28080),
            broadcast_port=anycable.get("broadcast_port", 28081),
            extra_args=tuple(anycable.get("extra_args", ())),
            broker=_broker(anycable.get("broker")),
        ),
        integrated=IntegratedMode(
            max_connections=integrated.get("max_connections", 10000),
            max_message_bytes=integrated.get("max_message_bytes", 65536),
        ),
        hub=HubMode(
            port=hub.get("port", 28080),
            max_connections=hub.get("max_connections", 10000),
            max_message_bytes=hub.get("max_message_bytes", 65536),
            broker=_broker(hub.get("broker")),
            client_ip_header=hub.get("client_ip_header", "Fly-Client-IP"),
        ),
        memory_budgets_mb=_budgets(budgets),
        rollout=Rollout(
            health_check=HealthCheck(
                path=health.get("path", "/up"),
                interval_seconds=health.get("interval_seconds", 1),
                timeout_seconds=health.get("timeout_seconds", 5),
                deadline_seconds=health.get("deadline_seconds", 30),
                failure_limit=health.get("failure_limit", 1),
                count=health.get("count", 1),
            ),
            stages=tuple(
                Stage(stage["name"], stage["environment"], tuple(stage["regions"]), stage["bake"])
                for stage in rollout.get("stages", ())
            ),
            parallel=rollout.get("parallel", 4),
            max_failures=rollout.get("max_failures", 1),
            state_dir=rollout.get("state_dir"),
            target=rollout.get("target", "local"),
            navigator=rollout.get("navigator"),
            watch=_watch(rollout["watch"]) if "watch" in rollout else None,
        ),
    )


# Without rules of its own, a watched bake switches a region back on three failed observations in a row of
# either gate, or on a memory trend over the last hour that would cross the budget before the bake ends.
DEFAULT_WATCH_RULES = (
    WatchRule("consecutive_failures", gate="http", count=3),
    WatchRule("consecutive_failures", gate="websocket", count=3),
    WatchRule("memory_trend", window_seconds=3600),
)


def _watch(spec: dict[str, Any]) -> WatchSettings:
    return WatchSettings(
        interval_seconds=spec.get("interval_seconds", 15),
        max_gap_seconds=spec.get("max_gap_seconds", 300),
        samples_per_region=spec.get("samples_per_region", 2000),
        rules=_watch_rules(spec["rules"]) if "rules" in spec else DEFAULT_WATCH_RULES,
    )


DEFAULT_WATCH_SETTINGS = _watch({})


def _watch_rules(specs: list[dict[str, Any]]) -> tuple[WatchRule, ...]:
    return tuple(
        WatchRule(
            kind=spec["kind"],
            gate=spec.get("gate", ""),
            count=spec.get("count", 3),
            window_seconds=spec.get("window_seconds", 3600),
            counter=spec.get("counter", ""),
            max_per_minute=spec.get("max_per_minute", 0.0),
        )
        for spec in specs
    )


def _broker(spec: dict[str, Any] | None) -> Broker | None:
    if spec is None:
        return None
    local = spec.get("local")
    local_port = local.get("port", 4222) if local is not None else None
    return Broker(
        kind=spec["kind"],
        url=spec.get("url") or f"nats://127.0.0.1:{local_port}",
        prefix=spec.get("prefix", "cable-hub"),
        user=spec.get("user"),
        password_env=spec.get("password_env"),
        token_env=spec.get("token_env"),
        local_port=local_port,
        cluster_port=local.get("cluster_port", 6222) if local is not None else 6222,
    )


def _budgets(*layers: dict[str, Any]) -> dict[Mode, MemoryBudget]:
    """Each mode's budget: the defaults, then each layer's values over them (the inventory's, a region's)."""
    merged: dict[Mode, MemoryBudget] = {}
    for mode in MODES:
        values = dict(DEFAULT_MEMORY_BUDGETS_MB[mode])
        for layer in layers:
            values.update(layer.get(mode, {}))
        merged[mode] = MemoryBudget(**values)
    return merged


def _environment(name: Any, env: dict[str, Any], app: App) -> Environment:
    regions = tuple(env["regions"])
    vm = env.get("vm", {})
    volume = env.get("volume")
    service = env.get("http_service", {})
    return Environment(
        name=name,
        fly_app=env["fly_app"],
        hostname=env.get("hostname"),
        regions=regions,
        primary_region=env.get("primary_region", app.primary_region if app.primary_region in regions else regions[0]),
        vm=Vm(vm.get("cpu_kind", "shared"), vm.get("cpus", 1), vm.get("memory_mb", 2048)),
        volume=None if volume is None else Volume(
            volume["name"],
            volume.get("auto_extend_size_threshold"),
            volume.get("auto_extend_size_increment"),
            volume.get("auto_extend_size_limit"),
        ),
        http_service=HttpService(
            force_https=service.get("force_https", True),
            auto_stop_machines=service.get("auto_stop_machines", False),
            auto_start_machines=service.get("auto_start_machines", True),
            min_machines_running=service.get("min_machines_running", 1),
        ),
        build_args=_frozen(env.get("build_args")),
        env=_frozen(env.get("env")),
        ssh=None if "ssh" not in env else SshSettings(**{**env["ssh"], "hosts": _frozen(env["ssh"]["hosts"]), "front_ports": _frozen(env["ssh"].get("front_ports"))}),
    )


def _tenants(spec: dict[str, Any], events: list[Tenant]) -> Tenants:
    return Tenants(
        events=tuple(events),
        runtime_file=spec.get("runtime_file"),
        env=_frozen(spec.get("env")),
        default_logo=spec.get("default_logo"),
        index=_fixed_tenant(spec.get("index")),
        demo=_fixed_tenant(spec.get("demo")),
        prerendered_studio_indexes=spec.get("prerendered_studio_indexes", False),
        public_event_paths=tuple(spec.get("public_event_paths", ())),
    )


def _fixed_tenant(spec: dict[str, Any] | None) -> FixedTenant | None:
    if spec is None:
        return None
    return FixedTenant(
        path=spec.get("path", "/"),
        database=spec.get("database", "index"),
        root=spec.get("root"),
        env=_frozen(spec.get("env")),
        public=spec.get("public", False),
    )


def _hook(spec: dict[str, Any]) -> Hook:
    return Hook(spec["command"], tuple(spec.get("args", ())), spec.get("timeout"))
