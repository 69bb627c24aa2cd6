"""The Fly target: each environment is one Fly app, each region its machine(s), driven by flyctl.

Inventory: `environments.<name>.fly_app` and `.hostname`, `image.config_dir`,
`image.data_dir` and `image.deploy_dir`; nothing Fly-specific beyond that.

The image carries every region's configuration in both positions of the
switch (bin/refresh renders the region from the inventory in the image), so a
deployment writes no file: the Fly target's operations are commands only.

- A deployment to a new desired state: unless `--image REF` was given, one
  build per desired state (`fly deploy --app APP --build-only --push
  --image-label orchestrate-<hash of the desired files>` from the rendered
  `<deploy_dir>/<env>/`; run once per target even when several regions share
  it), then the switch is written on the region's volume and the image is
  deployed to the region's machines only: `fly deploy --app APP --regions R
  --image REF --strategy rolling --wait-timeout 5m`. The image must hold the
  desired *mode* for the region (the rendered deploy directory, or the image
  given); the switch comes from the volume, so either image switch works.
- The quick switch (same mode, only websocket_enabled differs; the rollback
  is always one): no new image. `fly ssh console --app APP --region R -C "sh -c
  '<write <data_dir>/cable-orchestrator/websocket atomically>; FLY_REGION=R
  <config_dir>/bin/refresh && navigator -s reload'"`. bin/refresh honours the
  file (orchestrator/refresh.py), at boot too, so the switch survives a restart.
  FLY_REGION is set explicitly: an ssh session's environment is not promised to
  carry it. Where the side processes change (action_cable on <-> off: Navigator's
  reload does not start a process it removed), the reload is followed by
  `fly machine restart ID... --app APP` of the region's machines. The ids are
  not known when the plan is built: the command carries the placeholder
  `{machines:R}` and `run` replaces it with the ids of the region's machines from
  `fly machine list --json` (`fly apps restart` would restart every region).
- Probes (`publish_command`, `memory_command`) run on the machine through
  `fly ssh console -C "python3 -c ..."`, the ssh target's scripts. Secrets are
  never sent: the machine's environment (Fly secrets) provides the variables
  the probes name.
- Gates: `http_url`/`cable_url` are the public app, https://<hostname>, and
  the gates send `fly-prefer-region: R` with every request (`request_headers`)
  so that Fly's proxy routes them to the step's region rather than the nearest
  one. The memory gate and the probes run on the region's machine.
- `--to-previous`: `previous_image(environment)` reads `fly releases --json`
  (`ImageRef` of the newest completed release older than the current one);
  releases are per app, not per region.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import InputError
from orchestrator.model import Inventory
from orchestrator.render.image import REGION_SETTINGS
from orchestrator.rollout.model import Command, Operation, RegionKey, RegionState, WriteFile
from orchestrator.targets.base import CommandResult, TargetError
from orchestrator.targets.local import needs_restart
from orchestrator.targets.ssh import PROBE_TIMEOUT_SECONDS, memory_argv, publish_argv

SWITCH_FILE = "cable-orchestrator/websocket"  # under image.data_dir; orchestrator/refresh.py reads it
NAVIGATOR_PID_FILE = "/tmp/navigator.pid"
WAIT_TIMEOUT = "5m"
DEPLOY_TIMEOUT_SECONDS = 5 * 60 + 60
BUILD_TIMEOUT_SECONDS = 30 * 60
SSH_TIMEOUT_SECONDS = 120.0
MACHINES_PLACEHOLDER = "{{machines:{region}}}"
EXIT_TIMEOUT = 124
EXIT_MISSING = 3


@dataclass(frozen=True)
class FlyRegion:
    """One region's app and paths, from the inventory (pure)."""

    key: RegionKey
    app: str
    hostname: str
    config_dir: str
    data_dir: str
    deploy_dir: str
    front_port: int
    pid_file: str = NAVIGATOR_PID_FILE

    @property
    def switch_path(self) -> str:
        return posixpath.join(self.data_dir, SWITCH_FILE)

    def path_of(self, name: str) -> str:
        """navigator.yml: the active one bin/refresh writes; the others: the region's files in the image."""
        if name == "navigator.yml":
            return posixpath.join(self.config_dir, name)
        return posixpath.join(self.config_dir, "regions", self.key.region, name)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    output: str


@dataclass(frozen=True)
class Machine:
    id: str
    region: str
    state: str
    image_ref: str
    checks: tuple[Check, ...]


def fly_region(inventory: Inventory, key: RegionKey) -> FlyRegion:
    environment = inventory.environments.get(key.environment)
    if environment is None or key.region not in environment.regions:
        raise InputError([f"{key}: not a region of {inventory.name}"])
    image = inventory.image
    # Without a hostname in the inventory, Fly's own name of the app.
    hostname = environment.hostname or f"{environment.fly_app}.fly.dev"
    return FlyRegion(key, environment.fly_app, hostname, image.config_dir, image.data_dir,
                     image.deploy_dir, int(inventory.app.listen))


# --- pure command builders ---------------------------------------------------------------------


def image_label(desired: RegionState) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(desired.hashes.items()):
        digest.update(f"{name}\0{value}\n".encode())
    return f"orchestrate-{digest.hexdigest()[:12]}"


def build_command(where: FlyRegion, desired: RegionState, fly: str = "fly") -> tuple[Command, str]:
    """The build-and-push of the rendered deploy directory, and the image it names."""
    label = image_label(desired)
    env_dir = posixpath.join(where.deploy_dir, where.key.environment)
    argv = (fly, "deploy", "--app", where.app, "--build-only", "--push", "--image-label", label,
            "--config", posixpath.join(env_dir, "fly.toml"), "--dockerfile", posixpath.join(env_dir, "Dockerfile"))
    return (Command(argv, f"build {label} of {where.app} from {env_dir}", timeout_seconds=BUILD_TIMEOUT_SECONDS),
            f"registry.fly.io/{where.app}:{label}")


def deploy_command(where: FlyRegion, image: str, fly: str = "fly") -> Command:
    argv = (fly, "deploy", "--app", where.app, "--regions", where.key.region, "--image", image,
            "--strategy", "rolling", "--wait-timeout", WAIT_TIMEOUT)
    return Command(argv, f"deploy {image} to {where.key}", timeout_seconds=DEPLOY_TIMEOUT_SECONDS)


def ssh_command(where: FlyRegion, argv: tuple[str, ...], label: str, fly: str = "fly",
                timeout: float = SSH_TIMEOUT_SECONDS) -> Command:
    """argv run on the region's machine: `fly ssh console -C` takes one string, split into words there."""
    return Command((fly, "ssh", "console", "--app", where.app, "--region", where.key.region, "-C", shlex.join(argv)),
                   label, timeout_seconds=timeout)


def write_switch_script(where: FlyRegion, enabled: bool) -> str:
    """Shell that puts "on"/"off" in the switch file atomically (a temporary file beside it, renamed)."""
    path = where.switch_path
    directory = posixpath.dirname(path)
    temporary = posixpath.join(directory, ".websocket.orchestrate.tmp")
    value = "on" if enabled else "off"
    return (f"mkdir -p {shlex.quote(directory)} && printf {value} > {shlex.quote(temporary)} && "
            f"mv -f {shlex.quote(temporary)} {shlex.quote(path)}")


def switch_command(where: FlyRegion, enabled: bool, fly: str = "fly") -> Command:
    """The quick switch: the volume's file, bin/refresh, then Navigator's reload; no new image."""
    refresh = f"FLY_REGION={shlex.quote(where.key.region)} {shlex.quote(posixpath.join(where.config_dir, 'bin', 'refresh'))}"
    script = f"{write_switch_script(where, enabled)} && {refresh} && navigator -s reload"
    return ssh_command(where, ("sh", "-c", script),
                       f"switch the websocket {'on' if enabled else 'off'} on {where.key} and reload", fly)


def set_switch_command(where: FlyRegion, enabled: bool, fly: str = "fly") -> Command:
    """Before a deploy: the switch the new machine's boot refresh will honour."""
    return ssh_command(where, ("sh", "-c", write_switch_script(where, enabled)),
                       f"set the websocket switch {'on' if enabled else 'off'} on {where.key}'s volume", fly)


def restart_command(where: FlyRegion, fly: str = "fly") -> Command:
    placeholder = MACHINES_PLACEHOLDER.format(region=where.key.region)
    return Command((fly, "machine", "restart", placeholder, "--app", where.app),
                   f"restart {where.key}'s machines (ids from fly machine list --json)",
                   timeout_seconds=DEPLOY_TIMEOUT_SECONDS)


def machine_list_command(app: str, fly: str = "fly") -> Command:
    return Command((fly, "machine", "list", "--app", app, "--json"), f"list the machines of {app}")


def releases_command(app: str, fly: str = "fly") -> Command:
    return Command((fly, "releases", "--app", app, "--json"), f"list the releases of {app}")


def live_file_command(where: FlyRegion, name: str, fly: str = "fly") -> Command:
    path = shlex.quote(where.path_of(name))
    return ssh_command(where, ("sh", "-c", f"test -e {path} || exit {EXIT_MISSING}; cat {path}"),
                       f"read {where.path_of(name)} on {where.key}", fly)


def is_quick_switch(current: RegionState | None, desired: RegionState) -> bool:
    return current is not None and current.mode == desired.mode and current.websocket_enabled != desired.websocket_enabled


def build_operations(where: FlyRegion, current: RegionState | None, desired: RegionState, image: str | None,
                     fly: str = "fly") -> tuple[Operation, ...]:
    if is_quick_switch(current, desired):
        operations: list[Operation] = [switch_command(where, desired.websocket_enabled, fly)]
        if needs_restart(current, desired):
            operations.append(restart_command(where, fly))
        return tuple(operations)
    operations = []
    if image is None:
        build, image = build_command(where, desired, fly)
        operations.append(build)
    operations.append(set_switch_command(where, desired.websocket_enabled, fly))
    operations.append(deploy_command(where, image, fly))
    return tuple(operations)


# --- flyctl's JSON -----------------------------------------------------------------------------


def _image_ref(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        name = "/".join(part for part in (value.get("registry"), value.get("repository")) if part)
        if value.get("tag"):
            name += f":{value['tag']}"
        if value.get("digest") and not value.get("tag"):
            name += f"@{value['digest']}"
        return name
    return ""


def parse_machines(text: str) -> tuple[Machine, ...]:
    """`fly machine list --json`: id, region, state, image_ref (object or string), checks."""
    try:
        entries = json.loads(text)
    except ValueError as error:
        raise TargetError(f"fly machine list --json printed no JSON: {error}") from None
    if not isinstance(entries, list):
        raise TargetError("fly machine list --json printed no list")
    return tuple(
        Machine(
            id=str(entry.get("id", "")),
            region=str(entry.get("region", "")),
            state=str(entry.get("state", "")),
            image_ref=_image_ref(entry.get("image_ref")),
            checks=tuple(Check(str(check.get("name", "")), str(check.get("status", "")), str(check.get("output", "")))
                         for check in entry.get("checks") or () if isinstance(check, dict)),
        )
        for entry in entries if isinstance(entry, dict)
    )


def parse_previous_image(text: str) -> str | None:
    """`fly releases --json`: the ImageRef of the newest completed release whose image differs from the current one."""
    try:
        releases = json.loads(text)
    except ValueError as error:
        raise TargetError(f"fly releases --json printed no JSON: {error}") from None
    done = sorted((release for release in releases if isinstance(release, dict) and release.get("ImageRef")
                   and str(release.get("Status", "complete")).lower() in ("complete", "succeeded")),
                  key=lambda release: int(release.get("Version", 0)), reverse=True)
    if not done:
        return None
    current = done[0]["ImageRef"]
    return next((release["ImageRef"] for release in done[1:] if release["ImageRef"] != current), None)


# --- the target --------------------------------------------------------------------------------


class FlyTarget:
    name = "fly"

    def __init__(self, inventory: Inventory, image: str | None, fly: str = "fly") -> None:
        self.inventory = inventory
        self.image = image
        self.fly = fly
        self._built: dict[tuple[str, ...], CommandResult] = {}

    def __enter__(self) -> FlyTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def where(self, key: RegionKey) -> FlyRegion:
        return fly_region(self.inventory, key)

    # --- pure ---

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        return build_operations(self.where(key), current, desired, self.image, self.fly)

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        where = self.where(key)
        argv, _names = publish_argv(self.inventory, where, self._mode(key), stream, data_json)  # type: ignore[arg-type]
        return ssh_command(where, argv, f"publish a probe on {key}", self.fly, PROBE_TIMEOUT_SECONDS + 30)

    def memory_command(self, key: RegionKey) -> Command:
        where = self.where(key)
        return ssh_command(where, memory_argv(where), f"read memory of {key}", self.fly,  # type: ignore[arg-type]
                           PROBE_TIMEOUT_SECONDS + 30)

    def http_url(self, key: RegionKey, path: str) -> str:
        """The public app; the gates send `request_headers` with it so that Fly's proxy routes to `key`'s region."""
        return f"https://{self.where(key).hostname}{path}"

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        # Fly's proxy sends a request to the nearest region unless told which one.
        return {"fly-prefer-region": key.region}

    def cable_url(self, key: RegionKey, path: str) -> str:
        """The public app's cable path, reached in `key`'s region like http_url."""
        return f"wss://{self.where(key).hostname}{path}"

    # --- effects ---

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        raise TargetError(f"{key}: the fly target writes no file ({operation.path}): the configuration is in the image")

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        argv = command.argv
        placeholder = MACHINES_PLACEHOLDER.format(region=key.region)
        if placeholder in argv:
            try:
                ids = [machine.id for machine in self.machines(key.environment) if machine.region == key.region]
            except TargetError as error:
                return CommandResult(1, "", f"{command.label}: {error}")
            if not ids:
                return CommandResult(1, "", f"{command.label}: no machine of {self.where(key).app} in {key.region}")
            index = argv.index(placeholder)
            argv = (*argv[:index], *ids, *argv[index + 1:])
        is_build = "--build-only" in argv
        if is_build and argv in self._built:
            return self._built[argv]  # one build per desired state
        result = self._execute(argv, command.label, command.timeout_seconds)
        if is_build and result.ok:
            self._built[argv] = result
        return result

    def _execute(self, argv: tuple[str, ...], label: str, timeout: float) -> CommandResult:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return CommandResult(EXIT_TIMEOUT, "", f"{label}: no answer within {timeout:g} s")
        except OSError as error:
            return CommandResult(127, "", f"{label}: {argv[0]}: {error.strerror}")
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def machines(self, environment: str) -> tuple[Machine, ...]:
        app = self.inventory.environments[environment].fly_app
        command = machine_list_command(app, self.fly)
        result = self._execute(command.argv, command.label, command.timeout_seconds)
        if not result.ok:
            raise TargetError(f"{command.label}: {result.stderr.strip() or f'exit {result.exit_code}'}")
        return parse_machines(result.stdout)

    def previous_image(self, environment: str) -> str | None:
        app = self.inventory.environments[environment].fly_app
        command = releases_command(app, self.fly)
        result = self._execute(command.argv, command.label, command.timeout_seconds)
        if not result.ok:
            raise TargetError(f"{command.label}: {result.stderr.strip() or f'exit {result.exit_code}'}")
        return parse_previous_image(result.stdout)

    def live_files(self, key: RegionKey, names: tuple[str, ...]) -> Mapping[str, str | None]:
        where = self.where(key)
        files: dict[str, str | None] = {}
        for name in names:
            command = live_file_command(where, name, self.fly)
            result = self._execute(command.argv, command.label, command.timeout_seconds)
            if result.exit_code == EXIT_MISSING:
                files[name] = None
            elif result.ok:
                files[name] = result.stdout
            else:
                raise TargetError(f"{key}: {command.label}: {result.stderr.strip() or f'exit {result.exit_code}'}")
        return files

    def close(self) -> None:
        """Nothing to release: every flyctl call is its own process."""

    def _mode(self, key: RegionKey) -> str:
        text = self.live_files(key, (REGION_SETTINGS,))[REGION_SETTINGS]
        try:
            mode = json.loads(text or "").get("mode")
        except (ValueError, AttributeError):
            mode = None
        if not isinstance(mode, str):
            raise TargetError(f"{key}: no mode in {self.where(key).path_of(REGION_SETTINGS)}: is the region deployed?")
        return mode
