"""What each WebSocket mode adds to a region's navigator.yml, and to the app's image.

The one place that knows the modes. With the WebSocket switched off a mode
keeps everything the Rails processes still talk to (Redis in action_cable
mode), drops the WebSocket server and its route, and leaves every other line
as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from orchestrator.errors import RenderError
from orchestrator.model import Broker, Inventory, Mode, RegionSettings


def cable_block(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    """navigator.yml's `cable`: Navigator enables its built-in cable when the key is absent, so always say."""
    if settings.mode != "integrated":
        return {"enabled": False}
    return {
        "enabled": settings.websocket_enabled,
        "path": inventory.websocket.cable_path_for(settings.region.code),
        "broadcast_path": inventory.websocket.broadcast_path,
    }


def rails_env(inventory: Inventory, settings: RegionSettings) -> dict[str, str]:
    """applications.env entries that tell every Rails process which adapter to broadcast through, and where.

    The same in on and off: with the WebSocket off a broadcast still goes to the
    same place and fails fast (404 or connection refused), or reaches a Redis
    that has no subscriber.
    """
    cable_path = inventory.websocket.cable_path_for(settings.region.code)
    env = {"RAILS_CABLE_PATH": cable_path}
    if settings.mode == "action_cable":
        return env | {"CABLE_ADAPTER": "redis", "CABLE_URL": inventory.action_cable.redis_url}
    if settings.mode == "anycable":
        return env | {"CABLE_ADAPTER": "any_cable_http", "CABLE_URL": broadcast_url(inventory, "anycable")}
    url = broadcast_url(inventory, settings.mode)
    # TURBO_CABLE_BROADCAST_URL is where the turbo_cable gem posts; the generated adapter reads CABLE_URL.
    return env | {"CABLE_ADAPTER": "http_broadcast", "CABLE_URL": url, "TURBO_CABLE_BROADCAST_URL": url}


def broadcast_url(inventory: Inventory, mode: Mode) -> str:
    """Where the Rails app POSTs broadcasts in an HTTP-broadcasting mode: in `hub` mode straight to the hub's
    loopback port, never through Navigator (which does not proxy the broadcast path)."""
    port = {"anycable": inventory.anycable.broadcast_port, "hub": inventory.hub.port}.get(mode, inventory.app.listen)
    return f"http://localhost:{port}{inventory.websocket.broadcast_path}"


def managed_processes(inventory: Inventory, settings: RegionSettings) -> list[dict[str, Any]]:
    if settings.mode == "action_cable":
        processes = [_redis(inventory)]
        if settings.websocket_enabled:
            processes.insert(0, _action_cable(inventory, settings))
        return processes
    if settings.mode in ("anycable", "hub") and settings.websocket_enabled:
        broker = inventory.broker_for(settings.region.code, settings.mode)
        local = [_nats_server(broker, settings)] if broker is not None and broker.local_port is not None else []
        server = _anycable(inventory, settings, broker) if settings.mode == "anycable" else _hub(inventory, settings)
        return [*local, server]
    return []


def reverse_proxies(inventory: Inventory, settings: RegionSettings) -> list[dict[str, Any]]:
    """The cable path, and only that exact path, to the WebSocket server's loopback port."""
    if settings.mode == "integrated" or not settings.websocket_enabled:
        return []
    port = {"action_cable": inventory.action_cable.port, "anycable": inventory.anycable.port}.get(
        settings.mode, inventory.hub.port)
    cable_path = inventory.websocket.cable_path_for(settings.region.code)
    return [{
        "name": "cable",
        "path": f"^({re.escape(cable_path)})$",
        "target": f"http://localhost:{port}$1",
        "websocket": True,
    }]


def image_packages(modes: Iterable[Mode], brokers: Iterable[Broker] = (), anycable_brokers: Iterable[Broker] = ()) -> list[str]:
    """Debian packages the image needs for these modes and the brokers of its hubs and of its anycable-go (the
    hub needs only the Python and PyYAML the refresh comes with; nats-py, which Debian does not package, is
    carried in the image's tool copy; anycable-go carries its own clients)."""
    packages = ["redis-server"] if "action_cable" in set(modes) else []
    used = list(brokers)
    if any(broker.kind == "redis" for broker in used):
        packages.append("python3-redis")
    if any(broker.local_port is not None for broker in [*used, *anycable_brokers]):
        packages.append("nats-server")
    return packages


def region_config_dir(inventory: Inventory, settings: RegionSettings) -> str:
    """Where the machine keeps the region's live navigator.yml and hub.yml (the image's layout)."""
    return f"{inventory.image.config_dir}/regions/{settings.region.code}"


def _action_cable(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    # Navigator gives managed processes only its own environment plus `env`,
    # never applications.env: the cable server needs its adapter settings here.
    cable = inventory.action_cable
    return {
        "name": "action-cable",
        "command": "bundle",
        "args": ["exec", "puma", "-p", str(cable.port), "cable/config.ru"],
        "working_dir": inventory.app.rails_root,
        "env": {**cable.env, **rails_env(inventory, settings)},
        "auto_restart": True,
        "start_delay": "1s",
    }


def _redis(inventory: Inventory) -> dict[str, Any]:
    # Debian's redis.conf says `daemonize yes`: the forked server would look like
    # a clean exit, and Navigator would neither restart nor stop it.
    return {
        "name": "redis",
        "command": "redis-server",
        "args": [inventory.action_cable.redis_config, "--daemonize", "no"],
        "auto_restart": True,
        "start_delay": "1s",
    }


def _anycable(inventory: Inventory, settings: RegionSettings, broker: Broker | None) -> dict[str, Any]:
    """anycable-go v1.5.1 (tag 01a996ed); file:line references below are to its source at that tag."""
    websocket = inventory.websocket
    anycable = inventory.anycable
    flags = [
        # On Fly, anycable-go's preset would bind 0.0.0.0 and start an
        # unauthenticated NATS on the private network.
        "--presets", "none",
        "--host", "127.0.0.1",
        "--port", str(anycable.port),
        "--path", websocket.cable_path_for(settings.region.code),
        "--broadcast_adapter", "http",
        "--http_broadcast_port", str(anycable.broadcast_port),
        "--http_broadcast_path", websocket.broadcast_path,
        "--norpc",
        "--noauth",
    ]
    if websocket.public_streams:
        flags.append("--public_streams")
    if websocket.turbo_streams:
        flags.append("--turbo_streams")
    if websocket.cable_ready:
        # CableReady::Stream is routed only with --cable_ready and a secret (cli/cli.go:506-509); with no
        # --cable_ready_secret it is --secret, ANYCABLE_SECRET below (streams/config.go:46-52, cli/options.go:274-278).
        flags.append("--cable_ready")
    # anycable-go reads its secrets from ANYCABLE_* variables and fails open when
    # the secret is empty; the shell maps the inventory's variables onto them
    # (so no secret is in navigator.yml or in the process's arguments) and
    # refuses to start when one is unset.
    checks: list[str] = []
    exports = [_require("ANYCABLE_SECRET", websocket.signing_secret_env)]
    if websocket.broadcast_key_env:
        exports.append(_require("ANYCABLE_BROADCAST_KEY", websocket.broadcast_key_env))
    if broker is not None:
        pubsub_flags, pubsub_checks, pubsub_exports = _anycable_pubsub(broker)
        flags += pubsub_flags
        checks += pubsub_checks
        exports += pubsub_exports
    flags.extend(anycable.extra_args)
    script = "".join(f"{check}; " for check in checks) + f'{" ".join(exports)} exec anycable-go "$@"'
    return {
        "name": "anycable",
        "command": "/bin/sh",
        "args": ["-c", script, "anycable-go", *flags],
        # There is no flag for it: telemetry is on unless this variable says otherwise.
        "env": {"ANYCABLE_DISABLE_TELEMETRY": "true"},
        "auto_restart": True,
        "start_delay": "1s",
    }


# What a Redis password may hold where anycable-go reads it inside a URL: the URL's unreserved characters, which
# need no escaping (a "/", "?", "#", "%", "," or "@" would change what the URL names, and a URL that does not parse
# is quoted whole in Go's error message).
_URL_SAFE = "A-Za-z0-9._~-"


def _anycable_pubsub(broker: Broker) -> tuple[list[str], list[str], list[str]]:
    """anycable-go's flags, the shell's checks and its ANYCABLE_* exports for sharing broadcasts through `broker`.

    - `--pubsub nats|redis` (cli/options.go:486-491): the default is none (config/config.go:38, unset in NewConfig
      61-91), which delivers on this process only (cli/runner_options.go:110-112, pubsub/subscriber.go:53-55), so
      each anycable-go would deliver only the broadcasts posted to it; nats and redis: runner_options.go:113-116.
    - `--broker memory`: without a broker the legacy one passes a broadcast to the pub/sub only when this machine
      has a subscriber to its stream (broker/broker.go:146-150), so what the HTTP broadcaster takes
      (broadcast/http.go:199) would never reach the other machines' clients; the memory broker always publishes
      (broker/memory.go:236-248; cli/runner_options.go:159-169). It also keeps each stream's last 100
      broadcasts for 300 s on the machine that took them (broker/config.go:12-20), for clients that ask for history.
    - The URL goes in `--nats_servers` / `--redis_url` (cli/options.go:616-623, 526-534). A Redis password goes
      in the URL too (rueidis v1.0.26 url.go:59-62), so then the URL is ANYCABLE_REDIS_URL (options.go:532),
      built by the shell from the machine's environment; anycable-go logs only the Redis host
      (pubsub/redis.go:70-77). NATS credentials would have to go in the URL as well (nats.go v1.31.0
      nats.go:2446-2457), and anycable-go logs that URL whole (pubsub/nats.go:65, and nats.go:51 on reconnect):
      `validate` refuses them (inventory.mode_problems), and so does this.
    """
    kind = broker.kind
    flags = ["--broker", "memory", "--pubsub", kind]
    if kind == "nats":
        if broker.token_env or broker.password_env:
            raise RenderError("anycable-go logs its NATS URL, credentials included: give it a NATS broker without "
                              "token_env or password_env")
        return flags + ["--nats_servers", broker.url], [], []
    secret = broker.password_env
    if secret is None:
        return flags + ["--redis_url", broker.url], [], []
    scheme, rest = broker.url.split("://", 1)
    check = (f'case "${{{secret}:?{secret} is not set}}" in *[!{_URL_SAFE}]*) '
             f'echo "{secret}: anycable-go reads it inside a URL, so it may hold only {_URL_SAFE}" >&2; exit 1;; esac')
    return flags, [check], [f'ANYCABLE_REDIS_URL="{scheme}://{broker.user or ""}:${{{secret}}}@{rest}"']


def _hub(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    # The hub reads everything from hub.yml; its secrets come from Navigator's own
    # environment (the machine's), since managed processes never get applications.env.
    tool = f"{inventory.image.config_dir}/tool"
    return {
        "name": "cable-hub",
        "command": "python3",
        "args": ["-m", "hub", "--hub-config", f"{region_config_dir(inventory, settings)}/hub.yml"],
        "working_dir": tool,
        "env": {"PYTHONPATH": tool, "PYTHONDONTWRITEBYTECODE": "1"},
        "auto_restart": True,
        "start_delay": "1s",
    }


def _nats_server(broker: Broker, settings: RegionSettings) -> dict[str, Any]:
    """nats-server in the foreground on loopback; a region of several machines clusters them over the private
    network (Fly's <region>.<app>.internal names every machine of the region)."""
    region, app = settings.region.code, settings.environment.fly_app
    flags = ["-a", "127.0.0.1", "-p", str(broker.local_port)]
    if settings.region.machines > 1:
        flags += ["--cluster_name", f"cable-{region}", "--cluster", f"nats://[::]:{broker.cluster_port}",
                  "--routes", f"nats://{region}.{app}.internal:{broker.cluster_port}"]
    process: dict[str, Any] = {"name": "nats-server", "command": "nats-server", "args": flags, "auto_restart": True}
    # A secret reaches the server from the machine's environment through the shell, never through this file;
    # unset, the server refuses to start rather than run open.
    if broker.token_env:
        script = f'{_require("NATS_TOKEN", broker.token_env)} exec nats-server "$@" --auth "$NATS_TOKEN"'
    elif broker.user and broker.password_env:
        script = (f'{_require("NATS_PASSWORD", broker.password_env)} exec nats-server "$@" '
                  f'--user {broker.user} --pass "$NATS_PASSWORD"')
    else:
        return process
    return {**process, "command": "/bin/sh", "args": ["-c", script, "nats-server", *flags]}


def _require(target: str, source: str) -> str:
    return f'{target}="${{{source}:?{source} is not set}}"'
