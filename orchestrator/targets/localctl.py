"""Run one region of the local fleet on this machine.

    python -m orchestrator.targets.localctl COMMAND --home DIR [--timeout S] [--signing-secret-env NAME]
                                                   [--front stand-in|NAVIGATOR]

COMMAND is start, restart, stop, reload, status, rss, metrics, `publish --stream S
--data JSON` or `leak --mb-per-minute N` (a process that grows at that rate,
counted with the region's and stopped with it: a rehearsed leak).

DIR/config/ holds the region's deployed files (navigator.yml, render.json, maybe
hub.yml), written by someone else; DIR/run/ holds pid files, ports.json and front.json
(which front the region runs); DIR/log/<process>.log the processes' output. Each
managed process of navigator.yml gets a local stand-in (the real commands are for the
production image). The front is the real Navigator (`--front PATH` on start, restart
and reload) on the region's navigator.yml as local_navigator.py rewrites it, and it
starts the stand-ins as its managed processes; or the hub standing in for Navigator
(`--front stand-in`), beside which localctl starts the stand-ins itself. Without
--front: the front the region ran last, else the stand-in.

Exit status: 0 done, 1 a process failed (or nothing runs), 2 bad input.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from orchestrator.targets import local_navigator, onhost

MODES = ("integrated", "action_cable", "anycable", "hub")
FRONT = "front"
PORT_NAMES = ("front", "cable", "redis", "broker")
# The managed processes that serve the cable path behind Navigator's reverse proxy.
CABLE_SERVERS = ("action-cable", "anycable", "cable-hub")
# Which entry of ports.json each process listens on.
PORT_OF = {FRONT: "front", "redis": "redis", "nats-server": "broker", **{name: "cable" for name in CABLE_SERVERS}}
STAND_IN_BROADCAST_PATH = "/_broadcast"
STAND_IN_HEALTH_PATH = "/up"
DEFAULT_SECRET_ENV = "CABLE_SIGNING_SECRET"
STAND_IN = "stand-in"  # --front: the hub standing in for Navigator
FRONTED = ("start", "restart", "reload")  # the commands that take --front
NAVIGATOR_ENV = "NAVIGATOR_BIN"
PUMA = "/usr/bin/puma"
CONFIG_RU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "actioncable", "config.ru")
LOG_TAIL_LINES = 20
POLL_SECONDS = 0.05
LEAK = "leak"
# Writes its resident bytes at start (the interpreter's own, not the leak's) to argv[3], then holds written (so
# resident) bytes, growing at argv[1] MB a minute up to argv[2] MB.
LEAK_PROGRAM = """\
import os, sys, time
per_second, cap, base_file = float(sys.argv[1]) * 1048576 / 60, float(sys.argv[2]) * 1048576, sys.argv[3]
with open("/proc/self/status") as status:
    base = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
with open(base_file + ".tmp", "w") as out:
    out.write(str(base))
os.replace(base_file + ".tmp", base_file)
held, size, started = [], 0, time.monotonic()
while True:
    due = int(min(cap, per_second * (time.monotonic() - started)))
    if due > size:
        held.append(b"\\xa5" * (due - size))
        size = due
    time.sleep(0.2)
"""
LEAK_MAX_MB = 1024.0


class BadInput(Exception):
    """The region's files or the command line are wrong: exit 2."""


class Failure(Exception):
    """A process failed or is missing: exit 1."""


# --- the region's configuration --------------------------------------------------------


@dataclass(frozen=True)
class Region:
    home: str
    name: str
    mode: str
    websocket_enabled: bool
    navigator_path: str
    hub_path: str | None
    health_path: str
    cable_enabled: bool
    cable_path: str  # integrated: navigator.yml's cable.path
    broadcast_path: str
    managed: tuple[str, ...]
    stand_in_cable_path: str | None  # action_cable / anycable / hub: the path Navigator proxies to the cable process
    signing_secret_env: str
    broadcast_key_env: str | None = None  # hub.yml's: broadcasts then need the key, even from loopback
    cable_server_broadcast_path: str = STAND_IN_BROADCAST_PATH
    cable_server_health_path: str = STAND_IN_HEALTH_PATH
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # navigator.yml as parsed

    def path(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise BadInput(f"{path}: missing") from None
    except (OSError, ValueError) as error:
        raise BadInput(f"{path}: cannot read: {error}") from None


def _read_yaml(path: str) -> Any:
    # Imported here: `rss` and `stop` need no YAML, and each command line start counts in a rollout's gates.
    from orchestrator.errors import InputError
    from hub.yaml_loader import load_yaml_file

    if not os.path.exists(path):
        raise BadInput(f"{path}: missing")
    try:
        return load_yaml_file(path).data
    except InputError as error:
        raise BadInput("\n".join(error.problems)) from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a mapping")
    return value


_REGEX_META = set(".^$*+?()[]{}|\\")


def literal_path(pattern: str) -> str | None:
    """The path a reverse-proxy regex like `^(/a/b\\.c)$` matches, or None unless it matches exactly one path.

    Read character by character: the file is not trusted, so no regex of it is ever compiled.
    """
    body = pattern
    if body.startswith("^(") and body.endswith(")$"):
        body = body[2:-2]
    elif body.startswith("^") and body.endswith("$"):
        body = body[1:-1]
    else:
        return None
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if len(escaped) != 1 or escaped not in _REGEX_META | {"/", "-"}:
                return None  # \d, \w, a trailing backslash ...: not one literal path
            out.append(escaped)
        elif char in _REGEX_META:
            return None
        else:
            out.append(char)
    path = "".join(out)
    return path if path.startswith("/") else None


def _stand_in_cable_path(navigator: dict[str, Any], where: str) -> str:
    routes = _mapping(navigator.get("routes"), f"{where}: routes")
    proxies = routes.get("reverse_proxies") or []
    for proxy in proxies if isinstance(proxies, list) else []:
        if isinstance(proxy, dict) and proxy.get("name") == "cable":
            path = literal_path(str(proxy.get("path", "")))
            if path is None:
                raise BadInput(f"{where}: routes.reverse_proxies[name=cable].path is not one literal path: {proxy.get('path')!r}")
            return path
    raise BadInput(f"{where}: routes.reverse_proxies has no entry named cable, so the cable path is unknown")


def _path_value(section: dict[str, Any], key: str, default: str, where: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not value.startswith("/"):
        raise BadInput(f"{where}: expected a path starting with /, got {value!r}")
    return value


def load_region(home: str, secret_env: str | None) -> Region:
    config = os.path.join(home, "config")
    render_path = os.path.join(config, "render.json")
    navigator_path = os.path.join(config, "navigator.yml")
    hub_path = os.path.join(config, "hub.yml")
    render = _read_json(render_path)
    if not isinstance(render, dict) or render.get("mode") not in MODES:
        raise BadInput(f"{render_path}: mode must be one of {', '.join(MODES)}")
    navigator = _mapping(_read_yaml(navigator_path), navigator_path)
    server = _mapping(navigator.get("server"), f"{navigator_path}: server")
    health = _mapping(server.get("health_check"), f"{navigator_path}: server.health_check")
    cable = _mapping(navigator.get("cable"), f"{navigator_path}: cable")
    processes = navigator.get("managed_processes") or []
    if not isinstance(processes, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in processes):
        raise BadInput(f"{navigator_path}: managed_processes: expected a list of entries with a name")
    managed = tuple(p["name"] for p in processes)
    has_hub = os.path.exists(hub_path)
    hub = _mapping(_read_yaml(hub_path), hub_path) if has_hub else {}
    if secret_env is None:
        secret_env = hub.get("signing_secret_env")
    key_env = hub.get("broadcast_key_env")
    needs_stand_in_path = any(name in CABLE_SERVERS for name in managed)
    # The real hub (hub mode) serves the paths of its hub.yml; the stand-ins serve fixed ones.
    hub_server = _mapping(hub.get("server"), f"{hub_path}: server")
    return Region(
        home=home,
        name=str(render.get("region", "")),
        mode=render["mode"],
        websocket_enabled=render.get("websocket_enabled") is True,
        navigator_path=navigator_path,
        hub_path=hub_path if has_hub else None,
        health_path=_path_value(health, "path", STAND_IN_HEALTH_PATH, f"{navigator_path}: server.health_check.path"),
        cable_enabled=cable.get("enabled", True) is not False,  # Navigator: an absent key means enabled
        cable_path=_path_value(cable, "path", "/cable", f"{navigator_path}: cable.path"),
        broadcast_path=_path_value(cable, "broadcast_path", "/_broadcast", f"{navigator_path}: cable.broadcast_path"),
        managed=managed,
        stand_in_cable_path=_stand_in_cable_path(navigator, navigator_path) if needs_stand_in_path else None,
        signing_secret_env=secret_env if isinstance(secret_env, str) and secret_env else DEFAULT_SECRET_ENV,
        broadcast_key_env=key_env if isinstance(key_env, str) and key_env else None,
        cable_server_broadcast_path=_path_value(hub_server, "broadcast_path", STAND_IN_BROADCAST_PATH, f"{hub_path}: server.broadcast_path"),
        cable_server_health_path=_path_value(hub_server, "health_path", STAND_IN_HEALTH_PATH, f"{hub_path}: server.health_path"),
        config=navigator,
    )


# --- ports ---------------------------------------------------------------------------------


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def read_ports(home: str) -> dict[str, int]:
    try:
        with open(os.path.join(home, "run", "ports.json"), encoding="utf-8") as f:
            ports = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(ports, dict):
        return {}
    return {k: v for k, v in ports.items() if k in PORT_NAMES and isinstance(v, int) and not isinstance(v, bool)}


# Fleet ports come from below the kernel's ephemeral range when it leaves room: a port handed out from
# within it (bind to port 0) can be taken, while its region is stopped, as the local port of any
# outgoing connection on the machine, and the region's next start then finds it in use.
FIRST_FLEET_PORT = 10000
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def candidate_ports() -> Iterator[int]:
    """Ports to try for a region, in random order: below the ephemeral range, then (when that leaves no
    room, or all are taken) whatever the kernel hands out for port 0."""
    try:
        with open(EPHEMERAL_RANGE, encoding="ascii") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = FIRST_FLEET_PORT
    below = list(range(FIRST_FLEET_PORT, low))
    for index in range(len(below) - 1, 0, -1):  # Fisher-Yates with os.urandom: `random` is not needed for this
        other = int.from_bytes(os.urandom(4), "big") % (index + 1)
        below[index], below[other] = below[other], below[index]
    yield from below
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            yield s.getsockname()[1]


def ensure_ports(home: str) -> dict[str, int]:
    """ports.json, allocating what is missing once; later starts reuse the same ports.

    Regions start side by side (in threads, or in other processes), and a port handed out
    here is not bound until its process starts: allocation takes a lock shared by the regions
    beside this one and never hands out a port one of them has recorded.
    """
    ports = read_ports(home)
    missing = [name for name in PORT_NAMES if name not in ports]
    if not missing:
        return ports
    fleet = os.path.dirname(os.path.dirname(os.path.abspath(home)))
    with _exclusive(os.path.join(fleet, ".ports.lock")):
        taken = {port for other in glob.glob(os.path.join(fleet, "*", "*", "run", "ports.json"))
                 if os.path.dirname(os.path.dirname(other)) != os.path.abspath(home)
                 for port in read_ports(os.path.dirname(os.path.dirname(other))).values()}
        for port in candidate_ports():
            if not missing:
                break
            if port not in taken and port not in ports.values() and port_free(port):
                ports[missing.pop(0)] = port
        _write_atomically(os.path.join(home, "run", "ports.json"), json.dumps(ports, indent=2, sort_keys=True) + "\n")
    return ports


@contextmanager
def _exclusive(path: str) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- processes: pid files carry the pid and its start time, since pids are reused ----------


@dataclass(frozen=True)
class Record:
    name: str
    pid: int
    start_time: int


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from the third on (state, ppid, pgrp, session, ...), or None when the
    process is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when the process is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def is_running(record: Record) -> bool:
    return proc_start_time(record.pid) == record.start_time


def session_members(leader: Record) -> list[Record]:
    """The other processes of the session `leader` leads (localctl starts each process in a session of its
    own): a Navigator front's managed processes, named by their working directory (run/managed/<name>/),
    and theirs. Empty once `leader`'s pid is another process's: Linux gives no new process the id of a
    session that still has members, so by then none of the leader's is left."""
    if proc_start_time(leader.pid) not in (None, leader.start_time):
        return []
    members = []
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() and int(entry) != leader.pid else None
        if fields is not None and int(fields[3]) == leader.pid and int(fields[19]) >= leader.start_time:
            members.append(Record(_process_name(int(entry)), int(entry), int(fields[19])))
    return members


def _process_name(pid: int) -> str:
    """The managed process `pid` is, by its working directory; else its program's name."""
    try:
        name = local_navigator.managed_name(os.readlink(f"/proc/{pid}/cwd"))
        if name is not None:
            return name
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return f"pid {pid}"


def pid_file(home: str, name: str) -> str:
    return os.path.join(home, "run", f"{name}.pid")


def read_record(home: str, name: str) -> Record | None:
    try:
        with open(pid_file(home, name), encoding="ascii") as f:
            pid, start = f.read().split()[:2]
        return Record(name, int(pid), int(start))
    except (OSError, ValueError):
        return None


def recorded_names(home: str) -> list[str]:
    try:
        entries = os.listdir(os.path.join(home, "run"))
    except FileNotFoundError:
        return []
    return sorted(entry[: -len(".pid")] for entry in entries if entry.endswith(".pid"))


def _signal(record: Record, signum: int) -> None:
    if is_running(record):  # checked right before: the pid may belong to someone else by now
        try:
            os.kill(record.pid, signum)
        except ProcessLookupError:
            pass


def _wait_gone(records: list[Record], timeout: float) -> list[Record]:
    deadline = time.monotonic() + timeout
    while True:
        left = [r for r in records if is_running(r)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(POLL_SECONDS)


def stop_records(records: list[Record], timeout: float) -> list[Record]:
    """SIGTERM, wait up to `timeout`, then SIGKILL; returns what survived even that."""
    running = [r for r in records if is_running(r)]
    for record in running:
        _signal(record, signal.SIGTERM)
    left = _wait_gone(running, timeout)
    for record in left:
        _say(f"localctl: {record.name} (pid {record.pid}) ignored SIGTERM for {timeout:g}s; sending SIGKILL", error=True)
        _signal(record, signal.SIGKILL)
    return _wait_gone(left, 5.0)


def stop_with_sessions(records: list[Record], timeout: float) -> list[Record]:
    """stop_records, then whatever of the records' sessions outlived them (the managed processes of a
    Navigator that was killed); returns what survived even SIGKILL."""
    survivors = stop_records(records, timeout)
    # Looked for only now: Navigator may start a process while it shuts down (one it was due to restart).
    left = [member for record in records for member in session_members(record)]
    for member in left:
        _say(f"{member.name}: pid {member.pid} outlived the process that started it; stopping it")
    return survivors + stop_records(left, timeout)


def stop_all(home: str, timeout: float) -> None:
    names = recorded_names(home)
    records: list[Record] = []
    stale: list[Record] = []
    for name in names:
        record = read_record(home, name)
        if record is None:
            _say(f"{name}: unreadable pid file removed")
        elif is_running(record):
            records.append(record)
        else:
            stale.append(record)
            _say(f"{name}: pid {record.pid} was not running; stale pid file removed")
    survivors = stop_with_sessions(records + stale, timeout)
    for record in records:
        if record not in survivors:
            _say(f"{record.name}: stopped (pid {record.pid})")
    for name in names:
        if name not in {r.name for r in survivors}:
            _remove(pid_file(home, name))
    if survivors:
        raise Failure("still running after SIGKILL: " + ", ".join(f"{r.name} (pid {r.pid})" for r in survivors))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --- the front: the real Navigator, or the hub standing in for it -------------------------


def find_navigator(configured: str | None = None) -> str | None:
    """The Navigator the local fleet runs as each region's front: `configured` (the inventory's
    rollout.navigator), else $NAVIGATOR_BIN (set and empty: none), else `navigator` on PATH. None: the hub
    stands in for it."""
    if configured:
        return configured
    if NAVIGATOR_ENV in os.environ:
        return os.environ[NAVIGATOR_ENV] or None
    return shutil.which("navigator")


def navigator_problem(path: str) -> str | None:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return None
    return f"{path} is not an executable file"


def describe_front(navigator: str | None) -> str:
    return f"Navigator {navigator}" if navigator else "the hub standing in for Navigator"


def front_record(home: str) -> dict[str, Any]:
    """run/front.json: {"navigator": its path or None for the stand-in, "version": what it says it is}."""
    record: Any = {}
    try:
        with open(os.path.join(home, "run", "front.json"), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        pass
    return {"navigator": None, "version": None, **(record if isinstance(record, dict) else {})}


def read_front(home: str) -> str | None:
    """The Navigator the region was last started with; None for the stand-in (or nothing started yet)."""
    navigator = front_record(home).get("navigator")
    return navigator if isinstance(navigator, str) and navigator else None


def navigator_version(navigator: str | None) -> str | None:
    """What `navigator --version` says (None for the stand-in); Failure when it cannot run."""
    if navigator is None:
        return None
    try:
        done = subprocess.run([navigator, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Failure(f"{navigator} --version failed: {error}") from None
    return (done.stdout.strip().splitlines() or ["(no version printed)"])[0]


def write_front(home: str, navigator: str | None, version: str | None) -> None:
    _write_atomically(os.path.join(home, "run", "front.json"),
                      json.dumps({"navigator": navigator, "version": version}, indent=2) + "\n")


def chosen_front(value: str | None, home: str) -> str | None:
    """--front: the stand-in, a Navigator binary, or (not given) what the region ran last."""
    if value is None:
        return read_front(home)
    if value == STAND_IN:
        return None
    problem = navigator_problem(value)
    if problem is not None:
        raise BadInput(f"--front: {problem}")
    return value


def cable_port_name(mode: str, navigator: str | None) -> str:
    """Which port of ports.json serves the region's cable path: the front in every mode when it is Navigator
    (it proxies the path to the cable process), the stand-in front only in the integrated mode (it proxies
    nothing, so elsewhere the cable process is reached on its own port)."""
    return "front" if navigator or mode == "integrated" else "cable"


# --- what to start ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    argv: list[str]
    port: int
    health_path: str | None  # None: accepting connections is ready enough
    env: dict[str, str] = field(default_factory=dict)  # added to the caller's environment


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Failure(f"{name} is not installed (not found on PATH)")
    return found


def front_spec(region: Region, ports: dict[str, int]) -> Spec:
    """A hub standing in for Navigator: its built-in cable (any stream, 200 on broadcasts) or, when off, none."""
    hub_path = region.hub_path
    if region.mode != "integrated" or hub_path is None:
        # The front has no options of its own: hub.yml beside navigator.yml, if any, is the hub mode's cable process's.
        hub_path = region.path("run", "front-hub.yml")
        _write_atomically(hub_path, "# Written by localctl: the front stand-in has no hub options of its own.\n{}\n")
    argv = [sys.executable, "-m", "hub", "--config", region.navigator_path, "--hub-config", hub_path,
            "--host", "127.0.0.1", "--port", str(ports["front"]), "--navigator-protocol", "open"]  # fmt: skip
    return Spec(FRONT, argv, ports["front"], region.health_path)


def navigator_spec(region: Region, navigator: str, ports: dict[str, int]) -> Spec:
    """The real Navigator on run/navigator.yml (write_rehearsal). Ready when it answers its own health check;
    one whose file leaves the health check to the app (no `response`) is ready when it accepts connections:
    Navigator answers the path itself only with a `response` (server/handler.go:152-154, 260-263)."""
    health = (region.config.get("server") or {}).get("health_check") or {}
    health_path = region.health_path if health.get("response") is not None else None
    return Spec(FRONT, [navigator, region.path("run", "navigator.yml")], ports["front"], health_path)


def cable_hub_spec(region: Region, ports: dict[str, int]) -> Spec:
    """The hub mode's cable process: the real hub on the region's hub.yml, on the fleet's cable port."""
    if region.hub_path is None:
        raise BadInput(f"{region.navigator_path}: managed process cable-hub, but no hub.yml beside it")
    port = ports["cable"]
    argv = [sys.executable, "-m", "hub", "--hub-config", region.hub_path, "--host", "127.0.0.1", "--port", str(port)]
    if "nats-server" in region.managed:  # the region's own broker, on the fleet's port rather than the rendered one
        argv += ["--broker-url", f"nats://127.0.0.1:{ports['broker']}"]
    return Spec("cable-hub", argv, port, region.cable_server_health_path)


def nats_server_spec(region: Region, ports: dict[str, int]) -> Spec:
    """The region's local broker: Debian's nats-server in the foreground, alone (a local region is one machine)."""
    argv = [_program("nats-server"), "-a", "127.0.0.1", "-p", str(ports["broker"])]
    return Spec("nats-server", argv, ports["broker"], None)


def redis_spec(region: Region, ports: dict[str, int]) -> Spec:
    argv = [_program("redis-server"), "--port", str(ports["redis"]), "--bind", "127.0.0.1",
            "--daemonize", "no", "--save", "", "--appendonly", "no"]  # fmt: skip
    return Spec("redis", argv, ports["redis"], None)


def action_cable_spec(region: Region, ports: dict[str, int]) -> Spec:
    if not os.access(PUMA, os.X_OK):
        raise Failure(f"{PUMA} is missing: install the Debian packages puma and ruby-actioncable")
    port = ports["cable"]
    # -C - : no config/puma.rb lookup; no -w: single mode.
    argv = [PUMA, "-C", "-", "-e", "production", "-b", f"tcp://127.0.0.1:{port}",
            "--tag", f"{region.name}-action-cable", CONFIG_RU]  # fmt: skip
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/1",
        "CABLE_PATH": str(region.stand_in_cable_path),
        "BROADCAST_PATH": STAND_IN_BROADCAST_PATH,
        "CABLE_SIGNING_SECRET_ENV": region.signing_secret_env,
        "CABLE_CHANNEL_PREFIX": f"local_fleet_{region.name}",
    }
    return Spec("action-cable", argv, port, STAND_IN_HEALTH_PATH, env)


def anycable_spec(region: Region, ports: dict[str, int]) -> Spec:
    """A second hub standing in for anycable-go: signed streams only, broadcast on its own port."""
    port = ports["cable"]
    navigator_path = region.path("run", "anycable.yml")
    hub_path = region.path("run", "anycable-hub.yml")
    navigator = {
        "server": {"listen": port, "health_check": {"path": STAND_IN_HEALTH_PATH}},
        "cable": {"enabled": True, "path": region.stand_in_cable_path, "broadcast_path": STAND_IN_BROADCAST_PATH},
    }
    hub = {"signing_secret_env": region.signing_secret_env, "public_streams": False}
    header = "# Written by localctl: the anycable-go stand-in's configuration (JSON is YAML).\n"
    _write_atomically(navigator_path, header + json.dumps(navigator, indent=2) + "\n")
    _write_atomically(hub_path, header + json.dumps(hub, indent=2) + "\n")
    argv = [sys.executable, "-m", "hub", "--config", navigator_path, "--hub-config", hub_path,
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return Spec("anycable", argv, port, STAND_IN_HEALTH_PATH)


STAND_INS = {"redis": redis_spec, "action-cable": action_cable_spec, "anycable": anycable_spec,
             "cable-hub": cable_hub_spec, "nats-server": nats_server_spec}


def check_managed(region: Region) -> None:
    unknown = [name for name in region.managed if name not in STAND_INS]
    if unknown:
        raise BadInput(
            f"{region.navigator_path}: managed_processes: no local stand-in for {', '.join(map(repr, unknown))}"
            f" (known: {', '.join(sorted(STAND_INS))})"
        )


def start_order(region: Region) -> list[str]:
    """front first, then redis (Action Cable connects to it at boot), then the rest in file order."""
    managed = sorted(region.managed, key=lambda name: name != "redis")
    return [FRONT, *managed]


def write_rehearsal(region: Region, ports: dict[str, int]) -> dict[str, Spec]:
    """run/navigator.yml for the real Navigator: the region's own file with local_navigator's rewrites, its
    managed processes the local stand-ins. Returns their specs by name."""
    specs = {name: STAND_INS[name](region, ports) for name in region.managed}
    config = local_navigator.rehearsal_config(
        region.config, run_dir=region.path("run"), front_port=ports["front"], cable_port=ports["cable"],
        managed={name: (spec.argv, spec.env) for name, spec in specs.items()},
    )
    local_navigator.make_host_paths(region.path("run"), region.managed)
    header = (f"# Written by localctl: {region.navigator_path} as the real Navigator runs it here, with the\n"
              f"# rewrites of orchestrator/targets/local_navigator.py (JSON is YAML).\n")
    _write_atomically(region.path("run", "navigator.yml"), header + json.dumps(config, indent=2) + "\n")
    return specs


# --- starting -------------------------------------------------------------------------------


@dataclass
class Started:
    spec: Spec
    process: subprocess.Popen[bytes]
    record: Record
    log_path: str
    log_offset: int


class StartFailure(Failure):
    """`source`: a managed process of the Navigator front `started`, whose output is in Navigator's log."""

    def __init__(self, started: Started | None, name: str, why: str, source: str | None = None) -> None:
        super().__init__(f"{name} did not start: {why}")
        self.started = started
        self.source = source


def launch(region: Region, spec: Spec) -> Started:
    log_path = region.path("log", f"{spec.name}.log")
    with open(log_path, "ab") as log:
        log.write(f"--- localctl {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(spec.argv)}\n".encode())
        offset = log.tell()
        process = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=region.path("run"),
            env={**os.environ, **spec.env},
        )
    # The start time is fixed at fork, so reading it now is exact even before exec.
    start_time = proc_start_time(process.pid) or 0
    record = Record(spec.name, process.pid, start_time)
    _write_atomically(pid_file(region.home, spec.name), f"{process.pid}\n{start_time}\n")
    return Started(spec, process, record, log_path, offset)


def probe(spec: Spec, timeout: float) -> bool:
    """The port accepts and, for an HTTP server, the health path answers 200."""
    if spec.health_path is None:
        try:
            socket.create_connection(("127.0.0.1", spec.port), timeout=timeout).close()
            return True
        except OSError:
            return False
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=timeout)
    try:
        connection.request("GET", spec.health_path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_ready(started: Started, timeout: float, spec: Spec | None = None) -> None:
    """Until `spec` answers (by default the started process's own). `spec` given: a managed process of the
    Navigator front `started`, which fails as soon as Navigator's log says it exited or did not start."""
    spec = spec or started.spec
    managed = spec.name if spec is not started.spec else None
    deadline = time.monotonic() + timeout
    while True:
        code = started.process.poll()
        if code is not None:
            what = managed or "it"
            raise StartFailure(started, started.spec.name, f"exited with {_exit_status(code)} before {what} was ready")
        why = managed_failure(started, managed) if managed else None
        if why is not None:
            raise StartFailure(started, managed, why, source=managed)
        if probe(spec, min(2.0, max(0.1, deadline - time.monotonic()))):
            return
        if time.monotonic() > deadline:
            what = f"127.0.0.1:{spec.port}" + (spec.health_path or "")
            raise StartFailure(started, spec.name, f"not ready within {timeout:g}s ({what} did not answer)", managed)
        time.sleep(POLL_SECONDS)


def navigator_log(front: Started) -> Iterator[dict[str, Any]]:
    """The JSON records Navigator has logged since `front` started (the rewrite sets logging.format: json)."""
    for line in log_lines(front.log_path, front.log_offset):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # what Navigator writes before it reads logging.format
        if isinstance(record, dict):
            yield record


def managed_failure(front: Started, name: str) -> str | None:
    """Why Navigator's log says its managed process `name` is not running (it exited, or could not be
    started); None when it says nothing of the kind. Navigator logs an exit as "Process exited with error"
    with `name` (process/manager.go:188-190) and a failed start with `process` (manager.go:103-112, 334-336)."""
    for record in navigator_log(front):
        if record.get("level") == "ERROR" and name in (record.get("name"), record.get("process")):
            error = str(record.get("error", ""))
            if record.get("msg") == "Process exited with error":
                return f"exited with {error.removeprefix('exit ')}"  # Go's "exit status 1", "signal: killed"
            return f"{record.get('msg')}: {error}"
    return None


def _exit_status(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


def log_lines(path: str, offset: int) -> list[str]:
    """The lines written to `path` since `offset`."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()


def report_failure(error: StartFailure) -> None:
    _say(f"localctl: {error}", error=True)
    started = error.started
    if started is None:
        return
    if error.source is None:
        _say_tail(log_lines(started.log_path, started.log_offset), started.log_path)
        return
    # Navigator logs each stream of a managed process apart, a record {source, stream, message} for each line
    # the process wrote (process/logging.go:45-50, 80-88; manager.go:160-163).
    for stream in ("stdout", "stderr"):
        output = [str(record.get("message")) for record in navigator_log(started)
                  if record.get("source") == error.source and record.get("stream") == stream]
        _say_tail(output, f"{error.source}'s {stream} in {started.log_path}")


def _say_tail(lines: list[str], what: str) -> None:
    tail = lines[-LOG_TAIL_LINES:]
    _say(f"--- last {len(tail)} lines of {what} ---", error=True)
    for line in tail:
        _say(line, error=True)


def start(region: Region, navigator: str | None, timeout: float) -> None:
    check_managed(region)  # before anything is stopped: a bad file leaves the region as it runs
    version = navigator_version(navigator)  # likewise a Navigator that cannot run
    os.makedirs(region.path("run"), exist_ok=True)
    os.makedirs(region.path("log"), exist_ok=True)
    stop_all(region.home, timeout)
    ports = ensure_ports(region.home)
    write_front(region.home, navigator, version)
    _say(f"front: {describe_front(navigator)}")
    started: list[Started] = []
    try:
        if navigator is None:
            specs = [front_spec(region, ports) if name == FRONT else STAND_INS[name](region, ports)
                     for name in start_order(region)]
            for spec in specs:  # every port before the first launch: no region left half started
                _check_port(spec)
            for spec in specs:
                start_one(region, spec, started, timeout)
        else:
            start_under_navigator(region, navigator, ports, started, timeout)
    except Failure as error:
        if isinstance(error, StartFailure):
            report_failure(error)
        else:
            _say(f"localctl: {error}", error=True)
        _undo(region, started, timeout)
        raise Failure("start failed; everything it started was stopped") from None


def start_one(region: Region, spec: Spec, started: list[Started], timeout: float) -> None:
    _check_port(spec)
    try:
        started.append(launch(region, spec))
    except OSError as error:
        raise StartFailure(None, spec.name, f"cannot launch {spec.argv[0]}: {error}") from None
    wait_ready(started[-1], timeout)
    _say(f"{spec.name}: ready, pid {started[-1].process.pid}, 127.0.0.1:{spec.port}")


def start_under_navigator(
    region: Region, navigator: str, ports: dict[str, int], started: list[Started], timeout: float
) -> None:
    """Navigator on the rewritten file: it starts the stand-ins itself, as its managed processes (after
    their start_delay, process/manager.go:96-113), and restarts one that fails when it has auto_restart
    (manager.go:200-215). They inherit Navigator's session (no SysProcAttr, manager.go:146-170)."""
    specs = write_rehearsal(region, ports)
    navigator_front = navigator_spec(region, navigator, ports)
    for spec in (navigator_front, *specs.values()):  # every port before Navigator starts any of them
        _check_port(spec)
    start_one(region, navigator_front, started, timeout)
    front = started[0]
    for name in start_order(region)[1:]:
        wait_ready(front, timeout, specs[name])
        pids = [member.pid for member in session_members(front.record) if member.name == name]
        _say(f"{name}: ready, pid {pids[0] if pids else '?'}, 127.0.0.1:{specs[name].port} (started by Navigator)")


def _check_port(spec: Spec) -> None:
    if not port_free(spec.port):
        raise StartFailure(None, spec.name, f"port 127.0.0.1:{spec.port} is already in use by another process")


def _undo(region: Region, started: list[Started], timeout: float) -> None:
    survivors = stop_with_sessions([s.record for s in started], timeout)
    for item in started:
        item.process.poll()  # reap our own child
        if item.record not in survivors:
            _remove(pid_file(region.home, item.spec.name))


# --- the other commands ----------------------------------------------------------------------


def running_record(home: str, name: str) -> Record | None:
    record = read_record(home, name)
    return record if record is not None and is_running(record) else None


def reload(region: Region, navigator: str | None, timeout: float) -> None:
    """SIGHUP to the region's own front: what `navigator -s reload` does (main.go:192-194, utils/reload.go), but
    with the pid localctl recorded, since /tmp/navigator.pid (config/types.go:30), where Navigator writes its
    own, is one file for every region's Navigator. Navigator's reload re-reads its config file (main.go:350-426).
    A region that runs another front than `navigator` is restarted instead."""
    record = running_record(region.home, FRONT)
    if record is None:
        raise Failure(f"front is not running in {region.home}; nothing to reload (use start)")
    running = read_front(region.home)
    if running != navigator:
        _say(f"front: runs {describe_front(running)}, not {describe_front(navigator)}: restarting")
        start(region, navigator, timeout)
        return
    if navigator is not None:
        check_managed(region)
        # The target restarts instead when the managed processes change (local.needs_restart): Navigator's
        # reload would not apply that.
        write_rehearsal(region, ensure_ports(region.home))
    os.kill(record.pid, signal.SIGHUP)
    _say(f"front: reload requested (SIGHUP to pid {record.pid}, {describe_front(navigator)})")
    if not region.websocket_enabled:
        end_leak(region.home)


def urls(region: Region, ports: dict[str, int], navigator: str | None) -> tuple[str | None, str | None]:
    """(cable URL, broadcast URL): the cable path where the front serves it (cable_port_name); broadcasts to
    the front's own cable in integrated mode, else straight to the cable process, as the Rails processes post."""
    if region.mode == "integrated":
        cable_path, broadcast_port, broadcast_path = region.cable_path, ports.get("front"), region.broadcast_path
    elif any(name in CABLE_SERVERS for name in region.managed):
        cable_path, broadcast_port, broadcast_path = (region.stand_in_cable_path, ports.get("cable"),
                                                      region.cable_server_broadcast_path)
    else:
        return None, None
    cable_port = ports.get(cable_port_name(region.mode, navigator))
    if cable_port is None or broadcast_port is None:
        return None, None
    return f"ws://127.0.0.1:{cable_port}{cable_path}", f"http://127.0.0.1:{broadcast_port}{broadcast_path}"


def region_processes(home: str) -> dict[str, Record]:
    """Every process of the region running now, by name: those localctl started (its pid files) and the
    members of their sessions (a Navigator front's managed processes)."""
    found: dict[str, Record] = {}
    for name in recorded_names(home):
        record = running_record(home, name)
        if record is not None:
            found[name] = record
            for member in session_members(record):
                found.setdefault(member.name, member)
    return found


def status(region: Region) -> dict[str, Any]:
    ports = read_ports(region.home)
    running = region_processes(region.home)
    processes: dict[str, Any] = {}
    for name in dict.fromkeys([FRONT, *region.managed, *recorded_names(region.home)]):
        record = running.get(name) or read_record(region.home, name)
        processes[name] = {
            "pid": record.pid if record else None,
            "running": name in running,
            "port": ports.get(PORT_OF.get(name, "")),
        }
    navigator = read_front(region.home)
    cable_url, broadcast_url = urls(region, ports, navigator)
    return {
        "mode": region.mode,
        "websocket_enabled": region.websocket_enabled,
        "cable_enabled": region.cable_enabled,
        "front": {**front_record(region.home), "kind": "navigator" if navigator else STAND_IN},
        "processes": processes,
        "front_url": f"http://127.0.0.1:{ports['front']}" if "front" in ports else None,
        "cable_url": cable_url,
        "broadcast_url": broadcast_url,
    }


def resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss(home: str) -> dict[str, int]:
    """Every process of the region (region_processes), the front named `navigator` when it is Navigator."""
    front = "navigator" if read_front(home) else FRONT
    sizes: dict[str, int] = {}
    for name, record in region_processes(home).items():
        size = resident_bytes(record.pid)
        # Checked again after reading: the pid may have been reused in between.
        if size is not None and is_running(record):
            sizes[front if name == FRONT else name] = leaked_bytes(home, size) if name == LEAK else size
    if not sizes:
        raise Failure(f"no process of the region runs in {home}")
    return sizes


def metrics(region: Region, timeout: float) -> dict[str, float]:
    """The cable hub's /metrics as {name: value}; only the hub mode's cable process serves them."""
    record = region_processes(region.home).get("cable-hub")
    port = read_ports(region.home).get("cable")
    if record is None or port is None:
        raise Failure(f"{region.home}: no cable hub runs (mode {region.mode}): there are no hub metrics")
    try:
        return onhost.metrics(f"http://127.0.0.1:{port}/metrics", timeout)
    except onhost.ProbeFailed as failed:
        raise Failure(failed.evidence) from None


def leak(region: Region, mb_per_minute: float) -> None:
    """Start (or restart) the region's rehearsed leak, which stands for its cable's memory: `stop` and `restart`
    end it with the rest, and a reload with the WebSocket off ends it too."""
    if running_record(region.home, FRONT) is None:
        raise Failure(f"{region.home}: the region is not running")
    if mb_per_minute <= 0:
        raise BadInput("--mb-per-minute must be more than 0")
    end_leak(region.home)
    _remove(leak_base_file(region.home))
    argv = [sys.executable, "-c", LEAK_PROGRAM, f"{mb_per_minute:g}", f"{LEAK_MAX_MB:g}", leak_base_file(region.home)]
    started = launch(region, Spec(LEAK, argv, 0, None))
    _say(f"{LEAK}: growing {mb_per_minute:g} MB a minute (pid {started.record.pid})")


def leak_base_file(home: str) -> str:
    return os.path.join(home, "run", f"{LEAK}.base")


def leaked_bytes(home: str, resident: int) -> int:
    """What the rehearsed leak holds: its resident bytes less the interpreter's own (none before it started)."""
    try:
        with open(leak_base_file(home), encoding="ascii") as f:
            return max(0, resident - int(f.read()))
    except (OSError, ValueError):
        return 0


def end_leak(home: str) -> None:
    record = running_record(home, LEAK)
    if record is not None:
        stop_records([record], 5.0)
        _remove(pid_file(home, LEAK))
        _remove(leak_base_file(home))
        _say(f"{LEAK}: stopped (pid {record.pid})")


def publish(region: Region, stream: str, data_text: str, timeout: float) -> None:
    try:
        data = json.loads(data_text)
    except ValueError as error:
        raise BadInput(f"--data is not JSON: {error}") from None
    _, broadcast_url = urls(region, read_ports(region.home), read_front(region.home))
    if broadcast_url is None:
        raise Failure(f"{region.home}: no broadcast endpoint in mode {region.mode} with these managed processes")
    host_port, _, path = broadcast_url.removeprefix("http://").partition("/")
    port = int(host_port.rsplit(":", 1)[1])
    body = json.dumps({"stream": stream, "data": data}).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if region.broadcast_key_env:
        key = os.environ.get(region.broadcast_key_env)
        if not key:
            raise Failure(f"{region.broadcast_key_env} is not set: broadcasts to this region need its key")
        headers["Authorization"] = f"Bearer {key}"
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/" + path, body, headers)
        response = connection.getresponse()
        answer = response.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as error:
        raise Failure(f"POST {broadcast_url}: {error}") from None
    finally:
        connection.close()
    _say(str(response.status))
    if not 200 <= response.status < 300:
        raise Failure(f"POST {broadcast_url} answered {response.status}: {answer.strip()}")


# --- command line ------------------------------------------------------------------------------


@contextmanager
def home_lock(home: str) -> Iterator[None]:
    """One start/stop at a time per home: two would race for the same pid files and ports."""
    os.makedirs(os.path.join(home, "run"), exist_ok=True)
    with _exclusive(os.path.join(home, "run", ".lock")):
        yield


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", required=True, metavar="DIR", help="the region's home: config/, run/, log/")
    common.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="deadline for readiness, for stopping, and for publish (default 30)")  # fmt: skip
    common.add_argument("--signing-secret-env", metavar="NAME",
                        help=f"environment variable holding the stream signing secret "
                             f"(default: hub.yml's signing_secret_env, else {DEFAULT_SECRET_ENV})")  # fmt: skip
    parser = argparse.ArgumentParser(prog="localctl", description="Run one region of the local fleet on this machine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fronted = argparse.ArgumentParser(add_help=False)
    fronted.add_argument("--front", metavar="stand-in|NAVIGATOR",
                         help="the front: the hub standing in for Navigator, or the path of a Navigator binary "
                              "(default: the front the region ran last, else the stand-in)")  # fmt: skip
    for name, text in (
        ("start", "stop what runs, then start the front and the stand-ins of the managed processes"),
        ("restart", "the same as start"),
        ("stop", "SIGTERM the region's processes, SIGKILL after --timeout"),
        ("reload", "SIGHUP the front: it re-reads navigator.yml (a restart when --front names another front)"),
        ("status", "print the region's processes and URLs as JSON"),
        ("rss", "print {process: resident bytes} as JSON for the running processes"),
        ("metrics", "print the cable hub's /metrics as JSON {name: value}"),
    ):
        commands.add_parser(name, parents=[common, fronted] if name in FRONTED else [common], help=text)
    leak_parser = commands.add_parser("leak", parents=[common], help="start a process that grows at a set rate")
    leak_parser.add_argument("--mb-per-minute", type=float, required=True, metavar="N")
    publish_parser = commands.add_parser("publish", parents=[common], help="POST a broadcast from loopback")
    publish_parser.add_argument("--stream", required=True)
    publish_parser.add_argument("--data", required=True, metavar="JSON", help="any JSON value, sent as is")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    home = os.path.abspath(args.home)
    if args.command == "stop":
        with home_lock(home):
            stop_all(home, args.timeout)
        return
    if args.command == "rss":
        _say(json.dumps(rss(home), sort_keys=True))
        return
    region = load_region(home, args.signing_secret_env)
    if args.command in FRONTED:
        navigator = chosen_front(args.front, home)
        with home_lock(home):
            (reload if args.command == "reload" else start)(region, navigator, args.timeout)
    elif args.command == "status":
        _say(json.dumps(status(region), indent=2))
    elif args.command == "publish":
        publish(region, args.stream, args.data, args.timeout)
    elif args.command == "metrics":
        _say(json.dumps(metrics(region, args.timeout), sort_keys=True))
    elif args.command == "leak":
        with home_lock(home):
            leak(region, args.mb_per_minute)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except BadInput as error:
        _say(f"localctl: {error}", error=True)
        return 2
    except Failure as error:
        _say(f"localctl: {error}", error=True)
        return 1
    return 0


def execute(argv: list[str]) -> tuple[int, str, str]:
    """Run one command in this process and return (exit status, stdout, stderr), as a subprocess would."""
    _output.streams = (io.StringIO(), io.StringIO())
    try:
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse refusing the arguments
            code = exit.code if isinstance(exit.code, int) else 2
        out, err = _output.streams
        return code, out.getvalue(), err.getvalue()
    finally:
        _output.streams = None


# Where _say writes: the process's own stdout and stderr, or a thread's buffers during execute().
_output = threading.local()


def _say(text: str, error: bool = False) -> None:
    streams = getattr(_output, "streams", None)
    if streams is None:
        print(text, file=sys.stderr if error else sys.stdout, flush=True)
    else:
        streams[1 if error else 0].write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
