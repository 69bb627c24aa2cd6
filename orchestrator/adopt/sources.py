"""An app's own configuration files, read strictly: each navigator.yml with file:line for every problem."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.yaml_loader import LoadedYaml, Path_, load_yaml_file
from orchestrator.errors import InputError
from orchestrator.schema_check import format_path, schema_problems

NAVIGATOR_SCHEMA = "navigator.schema.json"
NAVIGATOR_SECTIONS = ("server", "cable", "auth", "routes", "applications", "managed_processes", "hooks", "logging",
                      "maintenance")
REGION_CODE = re.compile(r"^[a-z]{3}$")
# navigator.<region>.yml, as Showcase's generator names one region's file.
_REGION_IN_NAME = re.compile(r"(?:^|[._-])([a-z]{3})\.ya?ml$")

# Keys Navigator v1.2.0 parses but never copies into its runtime configuration (or forces back), with why
# dropping them changes nothing (../reference: "Silently ignored although people write them"). `*` is any
# list item.
IGNORED_KEYS: dict[Path_, str] = {
    ("server", "bot_detection"): "Navigator ignores server.bot_detection",
    ("server", "disable_compression"): "Navigator ignores server.disable_compression",
    ("applications", "framework"): "Navigator ignores applications.framework (it starts each tenant's Rails itself)",
    ("applications", "startup_timeout"): "Navigator ignores applications.startup_timeout",
    ("applications", "hooks"): "Navigator ignores applications.hooks",
    ("applications", "track_websockets"): "Navigator forces applications.track_websockets back to true",
    ("hooks", "server", "stop"): "Navigator ignores hooks.server.stop",
    ("routes", "fly", "sticky_sessions"): "Navigator ignores routes.fly.sticky_sessions",
    **{("applications", "tenants", "*", key): f"Navigator ignores a tenant's {key}"
       for key in ("name", "working_dir", "memory_limit", "user", "group", "startup_timeout", "bot_detection")},
}


@dataclass(frozen=True)
class Dropped:
    """A key of the original that Navigator ignores, where it was, and why leaving it out changes nothing."""

    where: str
    reason: str


@dataclass(frozen=True)
class RegionFile:
    region: str
    loaded: LoadedYaml
    config: dict[str, Any]  # what Navigator reads, without the keys it ignores
    dropped: tuple[Dropped, ...]

    @property
    def source(self) -> str:
        return self.loaded.source


def region_of(path: str) -> str | None:
    """The region a file's name gives (navigator.ord.yml: ord), if any."""
    found = _REGION_IN_NAME.search(Path(path).name)
    return found[1] if found and found[1] not in ("yml", "nav") else None


def read_region_file(path: str, region: str) -> RegionFile:
    """One navigator.yml, checked against what Navigator parses; every problem at once, with file:line."""
    loaded = load_yaml_file(path)
    data = loaded.data
    if not isinstance(data, dict) or not set(data) & set(NAVIGATOR_SECTIONS):
        raise InputError([f"{loaded.where(())}: not Navigator's configuration: no {', '.join(NAVIGATOR_SECTIONS[:5])} "
                          f"or other section Navigator reads at the top level"])
    config, dropped = _without_ignored(data, loaded)
    problems = [f"{loaded.where(where)}: {format_path(where)}: {_navigator_message(message)}"
                for where, message in schema_problems(NAVIGATOR_SCHEMA, config)]
    if problems:
        raise InputError(problems)
    return RegionFile(region, loaded, config, tuple(dropped))


def _navigator_message(message: str) -> str:
    if message.startswith("unknown key"):
        return f"Navigator does not read this key, so it would be silently ignored: {message}"
    return message


def _without_ignored(data: dict[str, Any], loaded: LoadedYaml) -> tuple[dict[str, Any], list[Dropped]]:
    config = copy.deepcopy(data)
    dropped: list[Dropped] = []
    for pattern, reason in IGNORED_KEYS.items():
        for where in _expand(config, pattern):
            parent = config
            for key in where[:-1]:
                parent = parent[key]
            del parent[where[-1]]
            dropped.append(Dropped(loaded.where(where), reason))
    return config, sorted(dropped, key=lambda entry: entry.where)


def _expand(data: Any, pattern: Path_, prefix: Path_ = ()) -> list[Path_]:
    """The paths in `data` that `pattern` names (`*` is every item of a list)."""
    if not pattern:
        return [prefix]
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        items = enumerate(data) if isinstance(data, list) else ()
        return [path for index, item in items for path in _expand(item, rest, (*prefix, index))]
    if isinstance(data, dict) and head in data:
        return _expand(data[head], rest, (*prefix, head))
    return []

