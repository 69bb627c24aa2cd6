"""The local fleet, the embedded default: every region a directory under the state directory.

A region's home holds its deployed files in `config/`; `localctl` (run as a
command, like `navigator -s reload` on a real host) starts, reloads and stops
its processes: in front the real Navigator when one is found (find_navigator),
else the hub standing in for it, and local stand-ins for the managed processes
its navigator.yml names (Action Cable on Puma with redis-server, or a hub for
anycable-go). The target runs its own localctl commands in this process: the
same code, one interpreter start fewer each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from orchestrator.atomic import write_file_atomic
from orchestrator.errors import InputError
from orchestrator.rollout.model import Command, Machine, Operation, RegionKey, RegionState, Step, WriteFile
from orchestrator.targets import localctl
from orchestrator.targets.base import CommandResult, TargetError
from hub.yaml_loader import load_yaml_text

LOCALCTL = (sys.executable, "-m", "orchestrator.targets.localctl")
# A restart waits for every process of the region to answer; Puma with Rails takes a few seconds.
START_TIMEOUT_SECONDS = 60.0
LOCAL_MACHINE = "localhost"
# What the local fleet runs for a managed process of navigator.yml, and the Debian package it comes from.
STAND_IN_PROGRAMS = {"redis": ("redis-server", "redis-server"), "action-cable": (localctl.PUMA, "puma ruby-actioncable"),
                     "nats-server": ("nats-server", "nats-server")}


class LocalTarget:
    name = "local"

    def __init__(self, state_dir: Path, secret_env_names: tuple[str, ...] = (), navigator: str | None = None) -> None:
        self.root = state_dir / "fleet"
        # The processes read these from the environment they inherit; only the names are ever shown.
        self.secret_env_names = secret_env_names
        # Each region's front: this Navigator (`navigator`: the inventory's rollout.navigator), else the stand-in.
        self.navigator = localctl.find_navigator(navigator)

    def home(self, key: RegionKey) -> Path:
        return self.root / key.environment / key.region

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        config = self.home(key) / "config"
        writes: list[Operation] = [WriteFile(str(config / name), text) for name, text in sorted(desired.files.items())]
        stale = sorted(set(current.files) - set(desired.files)) if current else []
        if stale:
            writes.append(Command(("rm", "-f", *(str(config / name) for name in stale)), "remove files of the old mode"))
        return (*writes, self.control_command(key, "restart" if needs_restart(current, desired) else "reload"))

    def control_command(self, key: RegionKey, action: str) -> Command:
        """localctl start, restart, reload or stop of the region, as Navigator's own controls would be used;
        the first three name the front, so the plan shows it."""
        front = ("--front", self.navigator or localctl.STAND_IN) if action in localctl.FRONTED else ()
        return Command(
            (*LOCALCTL, action, "--home", str(self.home(key)), "--timeout", f"{START_TIMEOUT_SECONDS:g}", *front),
            f"{action} {key}",
            env_names=self.secret_env_names,
            timeout_seconds=START_TIMEOUT_SECONDS + 30,
        )

    def front_of(self, key: RegionKey) -> str:
        """What runs in front of the region, as localctl recorded it when it started the region."""
        record = localctl.front_record(str(self.home(key)))
        version = f" ({record['version']})" if record["version"] else ""
        return localctl.describe_front(record["navigator"]) + version

    def deployed_here(self, key: RegionKey) -> bool:
        return (self.home(key) / "config" / "navigator.yml").is_file()

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        path = Path(operation.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(path, operation.text)
        except OSError as error:
            raise TargetError(f"{key}: cannot write {path}: {error.strerror}") from None

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if command.argv[: len(LOCALCTL)] == LOCALCTL:
            # The same code as the command line, without an interpreter start per
            # command: gating a wave of regions runs dozens of these at once.
            return CommandResult(*localctl.execute(list(command.argv[len(LOCALCTL):])))
        try:
            done = subprocess.run(
                command.argv, capture_output=True, text=True, timeout=command.timeout_seconds, env=os.environ.copy()
            )
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{command.label}: no answer within {command.timeout_seconds:g} s")
        except OSError as error:
            return CommandResult(127, "", f"{command.label}: {error.strerror}")
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        """A local region is one machine, this one, always up to take commands."""
        return (Machine(LOCAL_MACHINE),)

    def awake(self, key: RegionKey, machine: Machine) -> AbstractContextManager[None]:
        return nullcontext()

    def readiness(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """The secrets the region's processes and the gates read from this environment, and the programs that
        stand in for the managed processes the steps deploy (Debian's redis-server, puma, nats-server)."""
        problems = [f"{name} is not set: the local fleet's processes and the gates read it from this environment "
                    f"(export {name}=...: the app's value, or for a rehearsal any, e.g. $(openssl rand -hex 32))"
                    for name in self.secret_env_names if not os.environ.get(name)]
        problem = localctl.navigator_problem(self.navigator) if self.navigator else None
        if problem:
            problems.append(f"the Navigator to run in front of each region (rollout.navigator, else "
                            f"${localctl.NAVIGATOR_ENV}, else navigator on PATH): {problem}")
        wanted = {process for step in steps for deployment in (step.deployment, step.fallback) if deployment
                  for process in side_processes(deployment.state)}
        for process, (program, package) in sorted(STAND_IN_PROGRAMS.items()):
            if process in wanted and shutil.which(program) is None:
                problems.append(f"{program} is not installed, and the local fleet runs it for the managed process "
                                f"{process} (apt-get install {package})")
        return tuple(problems)

    def live_files(self, key: RegionKey, names: tuple[str, ...], machine: str = LOCAL_MACHINE) -> Mapping[str, str | None]:
        config = self.home(key) / "config"
        return {name: _read(config / name) for name in names}

    def http_url(self, key: RegionKey, path: str) -> str:
        return f"http://127.0.0.1:{self._port(key, 'front')}{path}"

    def cable_url(self, key: RegionKey, path: str) -> str:
        """Through the front when it is Navigator (its own cable, or its proxy to the cable process); the
        stand-in front proxies nothing, so outside the integrated mode the cable process on its own port."""
        home = self.home(key)
        mode = json.loads(_read(home / "config" / "render.json") or "{}").get("mode", "")
        port = self._port(key, localctl.cable_port_name(mode, localctl.read_front(str(home))))
        return f"ws://127.0.0.1:{port}{path}"

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        return {}

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        argv = (*LOCALCTL, "publish", "--home", str(self.home(key)), "--stream", stream, "--data", data_json)
        return Command(argv, f"publish a probe on {key}", timeout_seconds=15)

    def memory_command(self, key: RegionKey, machine: str = LOCAL_MACHINE) -> Command:
        return Command((*LOCALCTL, "rss", "--home", str(self.home(key))), f"read memory of {key}", timeout_seconds=15)

    def metrics_command(self, key: RegionKey, machine: str = LOCAL_MACHINE) -> Command:
        return Command((*LOCALCTL, "metrics", "--home", str(self.home(key)), "--timeout", "10"),
                       f"read the hub's metrics of {key}", timeout_seconds=15)

    def leak_command(self, key: RegionKey, mb_per_minute: float) -> Command:
        """A rehearsed leak: a process of the region growing at `mb_per_minute`, stopped with the region."""
        return Command((*LOCALCTL, "leak", "--home", str(self.home(key)), "--mb-per-minute", f"{mb_per_minute:g}"),
                       f"start a leak of {mb_per_minute:g} MB a minute in {key}", timeout_seconds=15)

    def close(self) -> None:
        """Nothing to release: the region's processes outlive the command on purpose."""

    def _port(self, key: RegionKey, name: str) -> int:
        ports = json.loads(_read(self.home(key) / "run" / "ports.json") or "{}")
        if name not in ports:
            raise TargetError(f"{key}: no {name} port recorded in {self.home(key) / 'run' / 'ports.json'}: is the region running?")
        return int(ports[name])


def needs_restart(current: RegionState | None, desired: RegionState) -> bool:
    """Whether Navigator's reload (SIGHUP) would leave the region short of `desired`. Its reload
    (UpdateManagedProcesses) compares managed processes by name only: it stops the removed ones but keeps
    them listed, so one of that name never starts again; it leaves one whose command, arguments or
    environment changed running as it was; and no managed process re-reads its files (the hub its hub.yml).
    Any of those changes needs a restart (process/manager.go:294-341; main.go:350-426 reloads nothing else of
    theirs)."""
    if current is None:
        return True
    return (current.mode != desired.mode or managed_processes(current) != managed_processes(desired)
            or _read_by_the_hub(current) != _read_by_the_hub(desired))


def managed_processes(state: RegionState) -> list[dict[str, object]]:
    """navigator.yml's managed_processes entries."""
    try:
        config = load_yaml_text(state.files["navigator.yml"], "navigator.yml").data
    except (InputError, KeyError):
        return []
    processes = config.get("managed_processes") if isinstance(config, dict) else None
    return [entry for entry in processes or () if isinstance(entry, dict)]


def side_processes(state: RegionState) -> frozenset[str]:
    return frozenset(str(entry.get("name", "")) for entry in managed_processes(state))


def _read_by_the_hub(state: RegionState) -> str | None:
    """hub.yml, where the hub is a managed process (elsewhere it is only the stand-in front's options)."""
    return state.files.get("hub.yml") if "cable-hub" in side_processes(state) else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
