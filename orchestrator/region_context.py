"""Everything the templates need for one region, as plain data.

This is the one place that decides what each mode puts into navigator.yml,
the Dockerfile and the Rails settings. Templates only lay it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orchestrator.model import Inventory, RegionSettings


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    command: str
    args: tuple[str, ...]
    working_dir: str | None
    start_delay: str


@dataclass(frozen=True)
class ReverseProxy:
    name: str
    path: str
    target: str


@dataclass(frozen=True)
class FlyReplay:
    path: str
    region: str


def region_context(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    app = inventory.app
    region = settings.region.code
    cable_path = inventory.websocket.cable_path_for(region)
    mode = settings.mode
    enabled = settings.websocket_enabled
    return {
        "inventory": inventory.name,
        "app": app,
        "environment": settings.environment,
        "region": settings.region,
        "mode": mode,
        "websocket": inventory.websocket,
        "websocket_enabled": enabled,
        "cable_path": cable_path,
        "env": _application_env(inventory, settings, cable_path),
        "tenants": [
            {"path": tenant.path(app.root_path), "database": tenant.database}
            for tenant in inventory.tenants_in(region)
        ],
        "fixed_tenants": [
            {"path": f"{app.root_path}/", "database": "index"},
            {"path": f"{app.root_path}/regions/{region}/demo/", "database": "demo"},
        ],
        "replays": _fly_replays(inventory, settings),
        "processes": _managed_processes(inventory, settings, cable_path) if enabled else [],
        "proxies": _reverse_proxies(inventory, settings, cable_path) if enabled else [],
        "anycable": inventory.anycable,
        "action_cable": inventory.action_cable,
        "integrated": inventory.integrated,
        "system_packages": _system_packages(inventory, settings),
    }


def broadcast_url(inventory: Inventory, settings: RegionSettings) -> str:
    """Where the Rails app POSTs broadcasts in this mode."""
    if settings.mode == "anycable":
        return f"http://localhost:{inventory.anycable.broadcast_port}{inventory.websocket.broadcast_path}"
    return f"http://localhost:{inventory.app.listen}{inventory.websocket.broadcast_path}"


def _application_env(inventory: Inventory, settings: RegionSettings, cable_path: str) -> dict[str, str]:
    app = inventory.app
    env = {
        "RAILS_ENV": "production",
        "RAILS_RELATIVE_URL_ROOT": app.root_path,
        "RAILS_APP_DB": "${database}",
        "DATABASE_URL": f"sqlite3://{app.database_dir}/${{database}}.sqlite3",
        "RAILS_CABLE_PATH": cable_path,
    }
    if settings.mode == "action_cable":
        env["REDIS_URL"] = inventory.action_cable.redis_url
    elif settings.mode == "anycable":
        env["ANYCABLE_HTTP_BROADCAST_URL"] = broadcast_url(inventory, settings)
    else:
        env["TURBO_CABLE_BROADCAST_URL"] = broadcast_url(inventory, settings)
    return env


def _fly_replays(inventory: Inventory, settings: RegionSettings) -> list[FlyReplay]:
    """Send requests for studios hosted elsewhere in this environment to their region."""
    here = settings.region.code
    elsewhere = set(settings.environment.regions) - {here}
    studios = {
        (tenant.year, tenant.studio, tenant.region) for tenant in inventory.tenants if tenant.region in elsewhere
    }
    return [
        FlyReplay(path=f"^{re.escape(inventory.app.root_path)}/{year}/{studio}/", region=region)
        for year, studio, region in sorted(studios)
    ]


def _managed_processes(inventory: Inventory, settings: RegionSettings, cable_path: str) -> list[ManagedProcess]:
    if settings.mode == "action_cable":
        cable = inventory.action_cable
        processes = [
            ManagedProcess(
                name="action-cable",
                command="bundle",
                args=("exec", "puma", "-p", str(cable.port), "cable/config.ru"),
                working_dir=inventory.app.rails_root,
                start_delay="1s",
            )
        ]
        if cable.redis:
            processes.append(
                ManagedProcess("redis", "redis-server", (cable.redis_config,), None, start_delay="2s")
            )
        return processes
    if settings.mode == "anycable":
        return [_anycable_process(inventory, cable_path)]
    return []


def _anycable_process(inventory: Inventory, cable_path: str) -> ManagedProcess:
    websocket = inventory.websocket
    anycable = inventory.anycable
    flags = [
        "--port", str(anycable.port),
        "--path", cable_path,
        "--broadcast_adapter", "http",
        "--http_broadcast_port", str(anycable.broadcast_port),
        "--http_broadcast_path", websocket.broadcast_path,
        "--norpc",
        "--noauth",
    ]
    if websocket.public_streams:
        flags.append("--public_streams")
    flags.extend(anycable.extra_args)
    # anycable-go reads its secrets from ANYCABLE_* variables. The inventory names
    # the variables that hold them; a shell maps one onto the other so no secret
    # is ever written into navigator.yml or shown in the process's arguments.
    exports = []
    if not websocket.public_streams:
        exports.append(f'ANYCABLE_SECRET="${websocket.signing_secret_env}"')
    if websocket.broadcast_key_env:
        exports.append(f'ANYCABLE_BROADCAST_KEY="${websocket.broadcast_key_env}"')
    if not exports:
        return ManagedProcess("anycable", "anycable-go", tuple(flags), None, start_delay="1s")
    script = f'{" ".join(exports)} exec anycable-go "$@"'
    return ManagedProcess("anycable", "/bin/sh", ("-c", script, "anycable-go", *flags), None, start_delay="1s")


def _reverse_proxies(inventory: Inventory, settings: RegionSettings, cable_path: str) -> list[ReverseProxy]:
    if settings.mode == "integrated":
        return []
    port = inventory.action_cable.port if settings.mode == "action_cable" else inventory.anycable.port
    return [ReverseProxy(name="cable", path=f"^({re.escape(cable_path)})$", target=f"http://localhost:{port}$1")]


def _system_packages(inventory: Inventory, settings: RegionSettings) -> list[str]:
    packages = ["curl", "libsqlite3-0", "libjemalloc2"]
    if settings.mode == "action_cable" and inventory.action_cable.redis:
        packages.append("redis-server")
    return sorted(packages)
