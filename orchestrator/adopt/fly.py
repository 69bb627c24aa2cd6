"""fly.toml into an environment's Fly settings; every key the inventory cannot hold is reported by name."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from hub.yaml_loader import read_text_file
from orchestrator.errors import InputError

# Keys the generated fly.toml writes from elsewhere, and where from.
_WRITTEN_BY_THE_GENERATOR = {
    "build.dockerfile": "the generator writes the image's own Dockerfile",
    "http_service.processes": "the generated fly.toml runs one process group, app",
    "http_service.checks": "the generated fly.toml checks the health path of server.health_check",
    "mounts.destination": "written from image.data_dir",
}


@dataclass(frozen=True)
class FlySettings:
    environment: dict[str, Any]  # environments.<name> of the inventory, without regions
    data_dir: str | None
    internal_port: int | None
    not_held: tuple[str, ...]  # "<file>: <key>: why"


def read_fly(path: str) -> FlySettings:
    data = _parsed(path, read_text_file(path))
    if not isinstance(data.get("app"), str):
        raise InputError([f"{path}: not a Fly app's configuration: no app = \"NAME\""])
    environment: dict[str, Any] = {"fly_app": data.pop("app")}
    notes: list[str] = []
    if isinstance(data.get("primary_region"), str):
        environment["primary_region"] = data.pop("primary_region")
    build = _table(data, "build")
    if args := _table(build, "args"):
        environment["build_args"] = {key: str(value) for key, value in args.items()}
    if env := _table(data, "env"):
        environment["env"] = {key: str(value) for key, value in env.items()}
    data_dir = None
    mounts = _tables(data, "mounts", "source")
    if mounts:
        mount = mounts[0]
        volume = {"name": mount.pop("source")}
        data_dir = mount.pop("destination", None)
        for key in ("auto_extend_size_threshold", "auto_extend_size_increment", "auto_extend_size_limit"):
            if key in mount:
                volume[key] = mount.pop(key)
        environment["volume"] = volume
        notes += [f"mounts.{key}" for key in mount]
        notes += [f"mounts[{index}]" for index in range(1, len(mounts))]
    service = _table(data, "http_service")
    internal_port = service.pop("internal_port", None)
    held = {key: service.pop(key) for key in ("force_https", "auto_stop_machines", "auto_start_machines",
                                              "min_machines_running") if key in service}
    # Fly's own spellings of auto_stop_machines ("off", "stop", "suspend") are not the inventory's boolean.
    if isinstance(held.get("auto_stop_machines"), str):
        notes.append(f"http_service.auto_stop_machines = {held.pop('auto_stop_machines')!r}")
    if held:
        environment["http_service"] = held
    notes += [f"http_service.{key}" for key in service]
    if vms := _tables(data, "vm"):
        vm = vms[0]
        environment["vm"] = {key: vm.pop(key) for key in ("cpu_kind", "cpus", "memory_mb") if key in vm}
        notes += [f"vm.{key}" for key in vm]
        notes += [f"vm[{index}]" for index in range(1, len(vms))]
    notes += [f"build.{key}" for key in build] + list(data)
    return FlySettings(environment, data_dir, internal_port if isinstance(internal_port, int) else None,
                       tuple(f"{path}: {_why(key)}" for key in notes))


def _parsed(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as error:
        # tomllib recurses into nested arrays and inline tables: a deep enough nesting exhausts the stack.
        why = "nested too deep" if isinstance(error, RecursionError) else str(error)
        raise InputError([f"{path}: not valid TOML: {why}"]) from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    """`data[key]` taken out when it is a table (a copy); anything else stays, to be reported as not kept."""
    if not isinstance(data.get(key), dict):
        return {}
    return dict(data.pop(key))


def _tables(data: dict[str, Any], key: str, *required: str) -> list[dict[str, Any]]:
    """`data[key]`, a table or an array of tables each with the `required` keys, taken out as a list of copies;
    anything else stays, to be reported as not kept."""
    value = data.get(key)
    tables = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
    if not tables or not all(isinstance(table, dict) and all(name in table for name in required) for table in tables):
        return []
    del data[key]
    return [dict(table) for table in tables]


def _why(key: str) -> str:
    for written, why in _WRITTEN_BY_THE_GENERATOR.items():
        if key.startswith(written):
            return f"{key}: not kept: {why}"
    return f"{key}: not kept: the inventory has no place for it; carry it over by hand if the app needs it"
