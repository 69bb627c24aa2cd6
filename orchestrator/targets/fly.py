"""The Fly target: each environment is one Fly app; a region is that app's machines there, in any state.

What runs where. On the operator's machine: flyctl (`fly`, at least 0.4.20, logged
in or with FLY_API_TOKEN set), which builds the image from the app's checkout,
deploys it, and lists, starts and puts back machines. On each Fly machine,
through `fly ssh console --machine ID`: the WebSocket switch on its volume, its
refresh and Navigator's reload, and every probe of the gates (the health path,
the WebSocket round trip and the memory, all over the machine's loopback).

What flyctl does, from its source (superfly/flyctl ad0172fa with fly-go v0.9.6),
and what this target does about it:

- Which fly.toml: `--config FILE`, else ./fly.toml of the working directory,
  else the app's configuration stored at Fly (internal/command/command.go:741-756,
  internal/command/deploy/deploy.go:737-744). Every `fly deploy` here passes
  `--config <checkout>/<deploy_dir>/<env>/fly.toml`, and the build names the
  checkout as its working directory (deploy.go:215, ChangeWorkingDirectoryToFirstArgIfPresent),
  so nothing depends on where `orchestrate` runs.
- `fly ssh console` considers started machines only, then the region
  (internal/command/ssh/console.go:265-285), takes the first when several are
  left and says so on stdout (:370-375); `--machine ID` picks one, if it is
  started (:297-331). So every command here names its machine, and a machine
  that is not started is started for the operation (`fly machine start`, then
  `fly machine wait --state started`) and put back afterwards (`fly machine
  suspend` or `fly machine stop`).
- A remote command's exit status is not passed on: any failure is exit 1
  (ssh/io.go:87-93, 125-145; internal/cli/cli.go:104-129). So every command run
  on a machine is framed: it prints a first line naming the machine that runs it
  ($FLY_MACHINE_ID, else its hostname, which Fly sets to the machine's id) and a
  last line with its exit status, both marked with a random token. The result is
  read from those lines, never from flyctl's exit status; output flyctl adds
  around them is ignored, and an answer from another machine is a failure.
- `fly deploy --regions R` updates the existing machines of R only
  (internal/command/deploy/machines.go:447-452) and does not start the stopped
  or suspended ones (machines_launchinput.go:296-313): they take the new image
  at their next start.
- Releases are per app, the last 25 (internal/command/apps/releases.go:57-68),
  so `--to-previous` does not read them: each machine gets back, by
  `fly machine update ID --image REF`, exactly the image the journal recorded
  for it (the exact reference with its digest, from `fly machine list --json`).

The quick rollback, for every machine whatever its state: the switch lives on
the machine's volume (`<image.data_dir>/cable-orchestrator/websocket`), the
only storage that survives a restart or an update, and the image's bin/refresh,
which renders the region at every boot (Navigator's ready hook), honours it.
Writing it needs the machine running, so a suspended or stopped machine is
started, switched (file, refresh, `navigator -s reload`, and a restart of the
machine where the side processes change), checked, and put back: suspended
again with the new configuration in memory, or stopped, to boot with it.

Gates run on each machine (`python3 -c` of orchestrator/targets/onhost.py):
the answer names the machine that gave it, and a gate whose answer cannot be
tied to the machine it asked does not pass. The secrets the probes need come
from the machine's own environment (Fly secrets); no value is ever sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.model import Inventory
from orchestrator.rollout.model import Command, Gate, Machine, Operation, RegionKey, RegionState, Step, WriteFile
from orchestrator.targets.base import CommandResult, TargetError
from orchestrator.targets.host_probes import REMOTE_PYTHON, gate_argv, memory_argv, metrics_argv
from orchestrator.targets.local import needs_restart
from orchestrator.targets.onhost import program

SWITCH_FILE = "cable-orchestrator/websocket"  # under image.data_dir; orchestrator/refresh.py reads it
NAVIGATOR_PID_FILE = "/tmp/navigator.pid"
# `fly machine wait` (internal/command/machine/wait.go) came with flyctl 0.4.20.
MINIMUM_FLYCTL = (0, 4, 20)
WAIT_TIMEOUT = "5m"
STATE_TIMEOUT = "60s"
DEPLOY_TIMEOUT_SECONDS = 5 * 60 + 60
BUILD_TIMEOUT_SECONDS = 30 * 60
MACHINE_TIMEOUT_SECONDS = 120.0
# Reaching a machine (WireGuard, an SSH certificate) comes on top of what the command itself may take.
SSH_OVERHEAD_SECONDS = 60.0
EXIT_TIMEOUT = 124
EXIT_NOT_RUN = 127
PLACEHOLDER = "{machine}"
# Machines that are not the app's: flyctl's one-off release-command, console and test machines.
EPHEMERAL_GROUPS = frozenset({"fly_app_release_command", "fly_app_console", "fly_app_test_machine_command"})
GONE_STATES = frozenset({"destroyed", "destroying"})
# States a machine is left in; anything else is on its way to one of them.
SETTLED_STATES = frozenset({"started", "stopped", "suspended", "created", "failed"})
_FRAME = 'printf "%s %s\\n" "$0" "${FLY_MACHINE_ID:-$(cat /proc/sys/kernel/hostname)}"; "$@"; status=$?; printf "\\n%s %s\\n" "$0" "$status"'
_REACHED = re.compile(r'reached state "([a-z_]+)"')


@dataclass(frozen=True)
class FlyRegion:
    """One region's app and paths, from the inventory (pure)."""

    key: RegionKey
    app: str
    config_dir: str
    data_dir: str
    front_port: int
    deploy: Path | None  # <checkout>/<deploy_dir>/<environment>: what `orchestrate render` wrote for the app
    checkout: Path | None
    pid_file: str = NAVIGATOR_PID_FILE

    @property
    def switch_path(self) -> str:
        return posixpath.join(self.data_dir, SWITCH_FILE)

    @property
    def config_file(self) -> str:
        return str(self.deploy / "fly.toml") if self.deploy else "<app.checkout>/fly.toml"

    def path_of(self, name: str) -> str:
        """navigator.yml: the active one bin/refresh writes; the others: the region's files in the image."""
        if name == "navigator.yml":
            return posixpath.join(self.config_dir, name)
        return posixpath.join(self.config_dir, "regions", self.key.region, name)


def fly_region(inventory: Inventory, key: RegionKey, checkout: Path | None) -> FlyRegion:
    environment = inventory.environments.get(key.environment)
    if environment is None or key.region not in environment.regions:
        raise InputError([f"{key}: not a region of {inventory.name}"])
    image = inventory.image
    deploy = checkout / image.deploy_dir / key.environment if checkout else None
    return FlyRegion(key, environment.fly_app, image.config_dir, image.data_dir, int(inventory.app.listen), deploy, checkout)


def parse_version(text: str) -> tuple[int, ...] | None:
    """flyctl's version ("0.4.87", "2026.8.21", "v0.4.87-beta-1") as numbers; None when it is none."""
    found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    return tuple(int(part) for part in found.groups()) if found else None


# --- pure command builders ---------------------------------------------------------------------


def image_label(desired: RegionState) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(desired.hashes.items()):
        digest.update(f"{name}\0{value}\n".encode())
    return f"orchestrate-{digest.hexdigest()[:12]}"


def build_command(where: FlyRegion, desired: RegionState, fly: str = "fly") -> tuple[Command, str]:
    """The build-and-push of the rendered deploy folder from the app's checkout, and the image it names."""
    label = image_label(desired)
    argv = (fly, "deploy", str(where.checkout or "<app.checkout>"), "--app", where.app, "--config", where.config_file,
            "--build-only", "--push", "--image-label", label)
    return (Command(argv, f"build {label} of {where.app} from {where.checkout}", timeout_seconds=BUILD_TIMEOUT_SECONDS),
            f"registry.fly.io/{where.app}:{label}")


def deploy_command(where: FlyRegion, image: str, fly: str = "fly") -> Command:
    argv = (fly, "deploy", "--app", where.app, "--config", where.config_file, "--regions", where.key.region,
            "--image", image, "--strategy", "rolling", "--wait-timeout", WAIT_TIMEOUT)
    return Command(argv, f"deploy {image} to the machines of {where.key}", timeout_seconds=DEPLOY_TIMEOUT_SECONDS)


def ssh_command(where: FlyRegion, machine: str, argv: tuple[str, ...], label: str, fly: str = "fly",
                timeout: float = MACHINE_TIMEOUT_SECONDS) -> Command:
    """argv run on one machine: `fly ssh console -C` takes one string, split into words there."""
    return Command((fly, "ssh", "console", "--app", where.app, "--machine", machine, "--quiet", "-C", shlex.join(argv)),
                   f"{label} on {_on(where, machine)}", timeout_seconds=timeout, host=_on(where, machine), machine=machine)


def machine_command(where: FlyRegion, machine: str, verb: str, *extra: str, fly: str = "fly") -> Command:
    """`fly machine VERB ID --app APP ...`: start, stop, suspend, restart, wait, update."""
    return Command((fly, "machine", verb, machine, "--app", where.app, *extra), f"{verb} {_on(where, machine)}",
                   timeout_seconds=DEPLOY_TIMEOUT_SECONDS if verb in ("update", "restart") else MACHINE_TIMEOUT_SECONDS,
                   host=_on(where, machine), machine=machine)


def _on(where: FlyRegion, machine: str) -> str:
    return f"each machine of {where.key.region}" if machine == PLACEHOLDER else f"machine {machine} of {where.key.region}"


def write_switch_script(where: FlyRegion, enabled: bool) -> str:
    """Shell that puts "on"/"off" in the switch file atomically (a temporary file beside it, renamed)."""
    path = where.switch_path
    directory = posixpath.dirname(path)
    temporary = posixpath.join(directory, ".websocket.orchestrate.tmp")
    value = "on" if enabled else "off"
    return (f"mkdir -p {shlex.quote(directory)} && printf {value} > {shlex.quote(temporary)} && "
            f"mv -f {shlex.quote(temporary)} {shlex.quote(path)}")


def switch_command(where: FlyRegion, machine: str, enabled: bool, fly: str = "fly") -> Command:
    """The quick switch on one machine: the volume's file, bin/refresh, then Navigator's reload; no new image."""
    refresh = f"FLY_REGION={shlex.quote(where.key.region)} {shlex.quote(posixpath.join(where.config_dir, 'bin', 'refresh'))}"
    script = f"{write_switch_script(where, enabled)} && {refresh} && navigator -s reload"
    return ssh_command(where, machine, ("sh", "-c", script), f"switch the websocket {'on' if enabled else 'off'} and reload", fly)


def set_switch_command(where: FlyRegion, machine: str, enabled: bool, fly: str = "fly") -> Command:
    """Before a new image: the switch the machine's boot refresh will honour."""
    return ssh_command(where, machine, ("sh", "-c", write_switch_script(where, enabled)),
                       f"set the websocket switch {'on' if enabled else 'off'} on the volume", fly)


def framed(command: str, token: str) -> str:
    """`command` (one -C string) inside the frame that tells which machine ran it and how it ended."""
    return shlex.join(("sh", "-c", _FRAME, token, *shlex.split(command)))


def unframe(stdout: str, token: str) -> tuple[str, int, str] | None:
    """(the command's own output, its exit status, the machine that ran it) from a framed run's
    stdout; None when the frame is not whole (the command never ran, or never finished)."""
    begin = stdout.find(f"{token} ")
    end = stdout.rfind(f"\n{token} ")
    if begin < 0 or end < begin or (begin > 0 and stdout[begin - 1] != "\n"):
        return None
    first_line_end = stdout.find("\n", begin)
    machine = stdout[begin + len(token) + 1:first_line_end].strip()
    status = stdout[end + len(token) + 2:].split("\n", 1)[0].strip()
    if not status.isdigit():
        return None
    return stdout[first_line_end + 1:end], int(status), machine


def is_quick_switch(current: RegionState | None, desired: RegionState) -> bool:
    return current is not None and current.mode == desired.mode and current.websocket_enabled != desired.websocket_enabled


def build_operations(where: FlyRegion, machines: Sequence[str] | None, current: RegionState | None,
                     desired: RegionState, image: str | None, fly: str = "fly") -> tuple[Operation, ...]:
    """The operations that take the region's machines from `current` to `desired`, each machine's together.

    `machines`: the ids of the region's machines, or None when they could not be asked for (the commands
    then say "each machine of R" and cannot run). A `desired` that records images is a restore: each
    machine gets back its own image and no image is built.
    """
    enabled = desired.websocket_enabled
    if desired.images:
        operations: list[Operation] = []
        for machine, restored in sorted(desired.images.items()):
            if current is not None and current.images.get(machine) == restored:
                operations.append(switch_command(where, machine, enabled, fly))
                if needs_restart(current, desired):
                    operations.append(machine_command(where, machine, "restart", fly=fly))
            else:
                operations.append(set_switch_command(where, machine, enabled, fly))
                operations.append(machine_command(where, machine, "update", "--image", restored, "--yes", fly=fly))
        return tuple(operations)
    ids = tuple(machines) if machines is not None else (PLACEHOLDER,)
    if is_quick_switch(current, desired):
        operations = []
        for machine in ids:
            operations.append(switch_command(where, machine, enabled, fly))
            if needs_restart(current, desired):
                operations.append(machine_command(where, machine, "restart", fly=fly))
        return tuple(operations)
    operations = []
    if image is None:
        build, image = build_command(where, desired, fly)
        operations.append(build)
    operations.extend(set_switch_command(where, machine, enabled, fly) for machine in ids)
    operations.append(deploy_command(where, image, fly))
    return tuple(operations)


# --- flyctl's JSON -----------------------------------------------------------------------------


def _image_ref(value: Any) -> str:
    """fly-go's FullImageRef (machine_types.go:72-86): registry/repository[:tag][@digest]."""
    if not isinstance(value, dict):
        return ""
    name = "/".join(str(part) for part in (value.get("registry"), value.get("repository")) if part)
    if value.get("tag"):
        name += f":{value['tag']}"
    if value.get("digest"):
        name += f"@{value['digest']}"
    return name


def parse_machines(text: str) -> dict[str, tuple[Machine, ...]]:
    """`fly machine list --json` (fly-go machine_types.go:46-65) by region: the app's machines, without
    destroyed ones and flyctl's one-off release-command, console and test machines."""
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise TargetError(f"fly machine list --json printed no JSON: {error}") from None
    if not isinstance(entries, list):
        raise TargetError("fly machine list --json printed no list")
    regions: dict[str, list[Machine]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            continue
        state = str(entry.get("state", ""))
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        metadata = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
        if state in GONE_STATES or metadata.get("fly_process_group") in EPHEMERAL_GROUPS:
            continue
        regions.setdefault(str(entry.get("region", "")), []).append(Machine(entry["id"], state, _image_ref(entry.get("image_ref"))))
    return {region: tuple(machines) for region, machines in regions.items()}


# --- the target --------------------------------------------------------------------------------


class FlyTarget:
    name = "fly"

    def __init__(self, inventory: Inventory, image: str | None, checkout: Path | None, fly: str = "fly",
                 listed: Mapping[str, dict[str, tuple[Machine, ...]]] | None = None) -> None:
        self.inventory = inventory
        self.image = image
        self.checkout = checkout
        self.fly = fly
        self._built: dict[tuple[str, ...], CommandResult] = {}
        # Per app: its machines by region when the plan was made (`listed` gives them), or why they could not be listed.
        self._listed: dict[str, dict[str, tuple[Machine, ...]] | str] = dict(listed or {})

    def __enter__(self) -> FlyTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def where(self, key: RegionKey) -> FlyRegion:
        return fly_region(self.inventory, key, self.checkout)

    # --- planning ---

    def planned_machines(self, key: RegionKey) -> tuple[Machine, ...] | None:
        """The region's machines as flyctl lists them when the plan is made (asked once per app); None when
        flyctl cannot be asked, which readiness() reports."""
        app = self.where(key).app
        if app not in self._listed:
            try:
                self._listed[app] = self._list(app)
            except TargetError as error:
                self._listed[app] = str(error)
        listed = self._listed[app]
        return None if isinstance(listed, str) else listed.get(key.region, ())

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        machines = self.planned_machines(key)
        ids = None if machines is None else tuple(machine.id for machine in machines)
        return build_operations(self.where(key), ids, current, desired, self.image, self.fly)

    def probe_command(self, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Command:
        where = self.where(key)
        mode = gate.mode or self.inventory.settings(key.environment, key.region).mode
        argv = gate_argv(self.inventory, where.front_port, mode, gate, timeout)
        return ssh_command(where, machine, argv, f"{gate.kind} probe", self.fly, timeout + SSH_OVERHEAD_SECONDS)

    def memory_command(self, key: RegionKey, machine: str) -> Command:
        where = self.where(key)
        return ssh_command(where, machine, memory_argv(where.pid_file), "read memory", self.fly)

    def metrics_command(self, key: RegionKey, machine: str) -> Command:
        return ssh_command(self.where(key), machine, metrics_argv(self.inventory), "read the hub's metrics", self.fly)

    # --- before the first operation ---

    def readiness(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """flyctl on PATH and recent enough; each app reachable (logged in, existing) with machines in every
        region a step changes; the secrets the inventory names set on the app; for a build, the rendered
        deploy folder holding what the step deploys; for a restore, an image recorded for every machine."""
        found = shutil.which(self.fly)
        if found is None:
            return (f"{self.fly} is not on PATH: install flyctl {_dotted(MINIMUM_FLYCTL)} or later "
                    f"(https://fly.io/docs/flyctl/install/)",)
        problems = list(self._version_problems())
        if problems:
            return tuple(problems)
        for app in sorted({self.where(step.key).app for step in steps}):
            listed = self._listed.get(app)
            if listed is None or isinstance(listed, str):
                try:
                    self._listed[app] = self._list(app)
                except TargetError as error:
                    problems.append(f"{error} (is {self.fly} logged in, `fly auth login` or FLY_API_TOKEN, "
                                    f"and does the app {app} exist?)")
                    continue
            problems.extend(self._secret_problems(app))
        for step in steps:
            problems.extend(self._step_problems(step))
        return tuple(dict.fromkeys(problems))

    def _version_problems(self) -> list[str]:
        result = self._execute((self.fly, "version", "--json"), "fly version", MACHINE_TIMEOUT_SECONDS)
        try:
            version = json.loads(result.stdout).get("Version", "") if result.ok else ""
        except (ValueError, AttributeError):
            version = ""
        parsed = parse_version(str(version))
        if parsed is None:
            return [f"`{self.fly} version --json` gave no version ({_last_line(result) or 'no output'})"]
        if parsed < MINIMUM_FLYCTL:
            return [f"flyctl {version} is too old: this target needs {_dotted(MINIMUM_FLYCTL)} or later (`fly version upgrade`)"]
        return []

    def _secret_problems(self, app: str) -> list[str]:
        wanted = self.inventory.secret_env_names()
        if not wanted:
            return []
        argv = (self.fly, "secrets", "list", "--app", app, "--json")
        result = self._execute(argv, f"list the secrets of {app}", MACHINE_TIMEOUT_SECONDS)
        try:
            entries = json.loads(result.stdout) if result.ok else None
        except (ValueError, RecursionError):
            entries = None
        if not isinstance(entries, list):
            return [f"cannot list the secrets of {app}: {_last_line(result) or 'no JSON list printed'}"]
        names = {entry.get("name") for entry in entries if isinstance(entry, dict)}
        missing = [name for name in wanted if name not in names]
        return [f"{app} has no secret {name} (the inventory names it; `fly secrets set --app {app} {name}=...`)"
                for name in missing]

    def _step_problems(self, step: Step) -> list[str]:
        key, where = step.key, self.where(step.key)
        machines = self.planned_machines(key)
        if machines is None:
            return []
        problems = []
        if step.action == "restore" and not step.desired.images:
            problems.append(f"{key}: the journal recorded no image for the machines of its previous deployment (it "
                            f"predates per-machine images): deploy the image you want with `orchestrate rollout --region "
                            f"{key.region} --image REF --mode {step.desired.mode} --websocket {step.desired.switch}`")
        if not machines:
            # flyctl would try to create one, which needs an unattached volume (internal/command/deploy/machines.go:654-661).
            problems.append(f"{key}: {where.app} has no machine in {key.region}: create it first (`fly volumes create` "
                            f"and `fly machine clone` into {key.region}); the rollout only changes machines that exist")
        deployments = [step.deployment, *([step.fallback] if step.fallback else [])]
        commands = [op for deployment in deployments for op in deployment.operations if isinstance(op, Command)]
        if any(command.argv[1:2] == ("deploy",) for command in commands):
            problems.extend(self._deploy_folder_problems(where, step.desired, builds=any("--build-only" in c.argv for c in commands)))
        if step.desired.images:
            listed = {machine.id for machine in machines}
            recorded = set(step.desired.images)
            problems.extend(f"{key}: machine {machine} has no image recorded in the journal to go back to"
                            for machine in sorted(listed - recorded))
            problems.extend(f"{key}: machine {machine}, recorded in the journal, is no longer in {where.app}"
                            for machine in sorted(recorded - listed))
        return problems

    def _deploy_folder_problems(self, where: FlyRegion, desired: RegionState, builds: bool) -> list[str]:
        if where.deploy is None or where.checkout is None:
            return ["the app's checkout is not known: give `rollout --app PATH` or set app.checkout in the inventory "
                    "(the folder `orchestrate render --out <checkout>/<deploy_dir>` wrote)"]
        render = f"orchestrate render {self.inventory.located.source} --out {where.deploy.parent}"
        names = ["fly.toml", *(("Dockerfile",) if builds else ())]
        missing = [str(where.deploy / name) for name in names if not (where.deploy / name).is_file()]
        if missing:
            return [f"{', '.join(missing)} missing: render the app into its checkout first ({render})"]
        if not builds:
            return []
        rendered = where.deploy / "navigator" / "regions" / where.key.region
        stale = [name for name, text in sorted(desired.files.items()) if _read(rendered / name) != text]
        if stale:
            return [f"{where.key}: {', '.join(str(rendered / name) for name in stale)} differ from what this step deploys, "
                    f"so the image built from them would too: render again ({render}, with the same --mode/--websocket)"]
        return []

    # --- effects ---

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        raise TargetError(f"{key}: the fly target writes no file ({operation.path}): the configuration is in the image")

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        argv = command.argv
        if PLACEHOLDER in argv:
            return CommandResult(EXIT_NOT_RUN, "", f"{command.label}: the machines of {key} were not known when the "
                                                   f"plan was made (could {self.fly} list them?)")
        if "--build-only" in argv and argv in self._built:
            return self._built[argv]  # one build per desired state
        if argv[1:3] == ("ssh", "console"):
            return self._on_machine(command)
        result = self._execute(argv, command.label, command.timeout_seconds)
        if "--build-only" in argv and result.ok:
            self._built[argv] = result
        return result

    def _on_machine(self, command: Command) -> CommandResult:
        """Run a `fly ssh console -C` command framed, and read its result from the frame."""
        token = f"orchestrate-{secrets.token_hex(8)}"
        index = command.argv.index("-C") + 1
        argv = (*command.argv[:index], framed(command.argv[index], token), *command.argv[index + 1:])
        result = self._execute(argv, command.label, command.timeout_seconds)
        found = unframe(result.stdout, token)
        if found is None:
            why = _last_line(result) or f"{self.fly} exited {result.exit_code}"
            return CommandResult(result.exit_code or 1, "", f"{command.label}: no answer from machine {command.machine}: {why}")
        stdout, status, answered = found
        if answered != command.machine:
            return CommandResult(1, "", f"{command.label}: machine {answered or '(unnamed)'} answered, not {command.machine}")
        return CommandResult(status, stdout, result.stderr)

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        return self._list(self.where(key).app).get(key.region, ())

    @contextmanager
    def awake(self, key: RegionKey, machine: Machine) -> Iterator[None]:
        where = self.where(key)
        state = machine.state
        if state not in SETTLED_STATES:
            state = self._wait(where, machine.id, "settled")
        if state == "started":
            yield
            return
        self._checked(machine_command(where, machine.id, "start", fly=self.fly))
        if self._wait(where, machine.id, "started") != "started":
            raise TargetError(f"machine {machine.id} of {key} did not start")
        back = "suspend" if state == "suspended" else "stop"
        try:
            yield
        except BaseException:
            self._execute(machine_command(where, machine.id, back, "--wait-timeout", STATE_TIMEOUT, fly=self.fly).argv,
                          f"{back} machine {machine.id}", MACHINE_TIMEOUT_SECONDS)
            raise
        self._checked(machine_command(where, machine.id, back, "--wait-timeout", STATE_TIMEOUT, fly=self.fly))

    def live_files(self, key: RegionKey, names: tuple[str, ...], machine: str) -> Mapping[str, str | None]:
        where = self.where(key)
        paths = {name: where.path_of(name) for name in names}
        command = ssh_command(where, machine, (REMOTE_PYTHON, "-c", program(), "files", *paths.values()), "read the live files",
                              self.fly)
        result = self.run(key, command)
        try:
            found = json.loads(result.stdout) if result.ok else None
        except (ValueError, RecursionError):
            found = None
        if not isinstance(found, dict):
            raise TargetError(f"{key}: {command.label}: {_last_line(result) or 'no answer'}")
        return {name: found.get(path) for name, path in paths.items()}

    def close(self) -> None:
        """Nothing to release: every flyctl call is its own process."""

    # --- helpers ---

    def _list(self, app: str) -> dict[str, tuple[Machine, ...]]:
        command = (self.fly, "machine", "list", "--app", app, "--json")
        result = self._execute(command, f"list the machines of {app}", MACHINE_TIMEOUT_SECONDS)
        if not result.ok:
            raise TargetError(f"`{shlex.join(command)}` failed: {_last_line(result) or f'exit {result.exit_code}'}")
        return parse_machines(result.stdout)

    def _wait(self, where: FlyRegion, machine: str, state: str) -> str:
        """Wait (bounded) for the machine to reach `state` ("settled": any settled one); the state it reached."""
        result = self._checked(machine_command(where, machine, "wait", "--state", state, "--wait-timeout", STATE_TIMEOUT,
                                               fly=self.fly))
        reached = _REACHED.search(result.stdout)
        if reached is None:
            raise TargetError(f"machine {machine} of {where.key}: `fly machine wait` did not say which state it reached")
        return reached.group(1)

    def _checked(self, command: Command) -> CommandResult:
        result = self._execute(command.argv, command.label, command.timeout_seconds)
        if not result.ok:
            raise TargetError(f"{command.label}: {_last_line(result) or f'exit {result.exit_code}'}")
        return result

    def _execute(self, argv: tuple[str, ...], label: str, timeout: float) -> CommandResult:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return CommandResult(EXIT_TIMEOUT, "", f"{label}: no answer within {timeout:g} s")
        except OSError as error:
            return CommandResult(EXIT_NOT_RUN, "", f"{label}: {argv[0]}: {error.strerror}")
        return CommandResult(done.returncode, done.stdout, done.stderr)


def _last_line(result: CommandResult) -> str:
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
