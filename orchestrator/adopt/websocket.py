"""Which WebSocket mode a region's navigator.yml runs, and the settings of that mode.

Navigator's own `cable` block is the integrated mode; a Puma serving cable/config.ru (with its Redis) is
Action Cable; anycable-go is the anycable mode; this project's hub is the hub mode. The processes and the
reverse proxy of a mode are the generator's to write, so they are taken out of what stays in the inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.inventory import GENERATED_ENV
from orchestrator.model import Mode

DEFAULT_CABLE_PATH = "/cable"  # Navigator's (parser.go), and Action Cable's mount point
DEFAULT_BROADCAST_PATH = "/_broadcast"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Recognised:
    mode: Mode
    enabled: bool
    cable_path: str
    broadcast_path: str
    settings: dict[str, Any]  # modes.<mode> of the inventory
    processes: tuple[int, ...] = ()  # managed_processes the mode accounts for
    proxies: tuple[int, ...] = ()  # reverse_proxies the mode accounts for
    rails_root: str | None = None
    evidence: tuple[str, ...] = field(default=())


def recognise(config: dict[str, Any]) -> Recognised:
    processes = config.get("managed_processes") or []
    env = (config.get("applications") or {}).get("env") or {}
    cable = config.get("cable") or {}
    broadcast_path = cable.get("broadcast_path", DEFAULT_BROADCAST_PATH)
    for index, process in enumerate(processes):
        found = _server_mode(process)
        if found is None:
            continue
        mode, port, settings = found
        proxies = _proxies_to(config, port)
        cable_path = env.get("RAILS_CABLE_PATH") or _literal_path(config, proxies) or DEFAULT_CABLE_PATH
        accounted = [index]
        if mode == "action_cable":
            redis = [i for i, p in enumerate(processes) if "redis-server" in (p.get("command"), p.get("name"))]
            accounted += redis
            if redis and (processes[redis[0]].get("args") or [""])[0].endswith(".conf"):
                settings["redis_config"] = processes[redis[0]]["args"][0]
        evidence = (f"managed process {process.get('name')!r} ({process.get('command')}) serves the cable on port "
                    f"{port}",)
        return Recognised(mode, True, cable_path, broadcast_path, settings, tuple(sorted(accounted)), proxies,
                          process.get("working_dir") if mode == "action_cable" else None, evidence)
    enabled = cable.get("enabled", True)  # absent means on (parser.go:127-131)
    evidence = ("Navigator's own cable" + (" (cable.enabled absent: on by default)" if "enabled" not in cable else ""),)
    return Recognised("integrated", bool(enabled), cable.get("path", DEFAULT_CABLE_PATH), broadcast_path, {},
                      evidence=evidence)


def _server_mode(process: dict[str, Any]) -> tuple[Mode, int | None, dict[str, Any]] | None:
    args = [str(arg) for arg in process.get("args") or []]
    words = [str(process.get("command", "")), *args]
    if process.get("name") == "action-cable" or any(arg.endswith("cable/config.ru") for arg in args):
        port = _flag(args, "-p", "--port")
        settings: dict[str, Any] = {"port": port} if port else {}
        own_env = {k: v for k, v in (process.get("env") or {}).items() if k not in GENERATED_ENV}
        if own_env:
            settings["env"] = own_env
        if url := (process.get("env") or {}).get("CABLE_URL"):
            settings["redis_url"] = url
        return "action_cable", port, settings
    if any("anycable-go" in word for word in words):
        port, broadcast = _flag(args, "--port"), _flag(args, "--http_broadcast_port")
        return "anycable", port, {k: v for k, v in (("port", port), ("broadcast_port", broadcast)) if v}
    if process.get("name") == "cable-hub" or words[:3] == ["python3", "-m", "hub"]:
        return "hub", None, {}
    return None


def _flag(args: list[str], *names: str) -> int | None:
    for index, arg in enumerate(args[:-1]):
        if arg in names and args[index + 1].isdigit():
            return int(args[index + 1])
    return None


def _proxies_to(config: dict[str, Any], port: int | None) -> tuple[int, ...]:
    """The WebSocket reverse proxies to the cable server's loopback port (any port when it is not known)."""
    proxies = (config.get("routes") or {}).get("reverse_proxies") or []
    found = []
    for index, proxy in enumerate(proxies):
        target = re.match(r"https?://([^/:]+|\[[^]]+\])(?::(\d+))?", str(proxy.get("target", "")))
        if proxy.get("websocket") and target and target[1].strip("[]") in _LOOPBACK and port in (None, _int(target[2])):
            found.append(index)
    return tuple(found)


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _literal_path(config: dict[str, Any], proxies: tuple[int, ...]) -> str | None:
    """The one path a proxy's pattern matches, when it matches only one (`^/app/regions/ord(/cable)$`)."""
    for index in proxies:
        pattern = str(config["routes"]["reverse_proxies"][index].get("path", ""))
        literal = re.sub(r"[()]", "", pattern.removeprefix("^").removesuffix("$")).replace("\\", "")
        if pattern.startswith("^") and pattern.endswith("$") and not re.search(r"[][*+?|{}.^$]", literal):
            return literal
    return None
