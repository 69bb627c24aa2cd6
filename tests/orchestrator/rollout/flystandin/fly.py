"""A STAND-IN for flyctl (`fly`), for the tests only: there is no Fly account here.

Written from flyctl's own source, superfly/flyctl at ad0172fa (HEAD of 2026-08),
with fly-go v0.9.6 (its go.mod's); every imitated behaviour names its file and
line. Where flyctl's source cannot tell (what Fly's Machines API server does)
the comment says so and the stand-in takes the conservative choice.

Run as `python3 fly.py ARGS...` (a `fly` wrapper on PATH execs it). Every call
appends its argv as one JSON line to $FLY_STANDIN_LOG. All state lives under
$FLY_STANDIN_ROOT: state.json, edited under an exclusive flock (concurrent
calls are safe), images/ (pushed images, content-addressed) and machines/<id>/
(each machine's volume, console log and boot files). Every machine is a real,
isolated little system on this host (machine.py), running the stand-in
navigator (navigator.py).

Commands: `version`, `machine list|start|stop|suspend|restart|wait|update`,
`secrets list`, `releases`, `deploy` (--build-only --push, or --image, with
--regions and the rolling strategy) and `ssh console -C CMD`. Flags parse the
way cobra/pflag do (anywhere, --flag value, --flag=value, shorthands); a flag
the stand-in does not know is refused like an unknown one, so no test can
lean on a flag that is silently ignored.

Not imitated (exit 2, "stand-in fly: ... is not imitated"): other commands'
behaviours named in the message, such as strategies other than rolling, a
deploy that would create machines, interactive sessions, images outside
registry.fly.io, Dockerfile instructions other than COPY of a directory to an
absolute destination and CMD (no RUN, ENV, packages: a machine runs on this
host's Debian).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

if __package__:
    from . import machine as runtime
else:  # run as a script: this file's folder is sys.path[0]
    import machine as runtime  # type: ignore[no-redef]

ROOT_COMMAND = "flyctl"  # root.go:83-90: the executable's base name; `fly` is a symlink to flyctl
REGISTRY = "registry.fly.io"
DEFAULT_VERSION = "0.4.87"
STANDIN_CONFIG_KEY = "fly_standin_config"  # stand-in only: which fly.toml a machine's config came from
RELEASES_SHOWN = 25
LEASE_TIMEOUT = 60.0
DESTROYED = ("destroyed", "destroying")  # fly-go machine_types.go:133-135: not active


class FlyError(Exception):
    """An error flyctl reports: "Error: MESSAGE" on stderr, exit 1 (internal/cli/cli.go:119-128, 153-171)."""

    def __init__(self, message: str, usage: str | None = None):
        super().__init__(message)
        self.usage = usage  # cli.go:122-126: an unknown command also prints "Run '... --help' for usage."


class NotImitated(Exception):
    """What flyctl would do here is outside the stand-in: exit 2, never mistaken for flyctl's own exit 1."""


# --- Go's formats ---------------------------------------------------------------------------------


def go_json(value: object, indent: int | None = None) -> str:
    """encoding/json's output: compact or indented, with <, > and & escaped as Go's HTML-safe encoder does."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text + "\n"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # time.Time as RFC 3339


DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds, with its error texts."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, position = 0.0, 0
    while position < len(body):
        match = DURATION_PART.match(body, position)
        if match is None:
            unitless = re.fullmatch(r"\d+\.?\d*|\.\d+", body[position:])
            raise ValueError(f'time: {"missing unit in" if unitless else "invalid"} duration "{text}"')
        total += float(match.group(1)) * DURATION_UNITS[match.group(2)]
        position = match.end()
    return -total if text.startswith("-") else total


def format_duration(seconds: float) -> str:
    """time.Duration.String: 1m0s, 5m0s, 1h0m0s, 1.5s, 250ms."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return f"{nanos / size:.9f}".rstrip("0").rstrip(".") + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def human_bytes(size: int) -> str:
    """go-humanize's Bytes (SI)."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value /= 1000
    return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"


# --- the command line, parsed like cobra and pflag -------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str
    short: str = ""
    kind: str = "string"  # bool, string, strings (pflag StringSlice), duration, int
    default: object = None
    alias: str = ""

    def label(self) -> str:
        return f"-{self.short}, --{self.name}" if self.short else f"--{self.name}"


@dataclass
class Invocation:
    values: dict[str, object]
    args: list[str]

    def __getitem__(self, name: str) -> object:
        return self.values[name]


@dataclass(frozen=True)
class Command:
    run: Callable[[Invocation], int]
    flags: tuple[Flag, ...]
    args: Callable[[str, list[str]], None]  # cobra's positional-argument check
    session: bool = True  # command.RequireSession (internal/command/command.go:567-597)


def bool_flag(name: str, short: str = "", alias: str = "") -> Flag:
    return Flag(name, short, "bool", False, alias)


PERSISTENT = (Flag("access-token", "t"), bool_flag("verbose"), bool_flag("debug"))  # root.go:99-102
APP = Flag("app", "a")  # internal/flag/flag.go:360-367
CONFIG = Flag("config", "c")  # flag.go:370-376
JSON = bool_flag("json", "j")  # flag.go:649-656
BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
         "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip


def convert(flag: Flag, value: str, previous: object) -> object:
    try:
        if flag.kind == "bool":
            return BOOLS[value]
        if flag.kind == "int":
            return int(value)
        if flag.kind == "duration":
            return parse_duration(value)
    except (KeyError, ValueError) as error:  # pflag's failf: invalid argument %q for %q flag: %v
        parser = "strconv.ParseBool" if flag.kind == "bool" else "strconv.ParseInt"
        reason = str(error) if flag.kind == "duration" else f'{parser}: parsing "{value}": invalid syntax'
        raise FlyError(f'invalid argument "{value}" for "{flag.label()}" flag: {reason}') from None
    if flag.kind == "strings":  # pflag's StringSlice: comma-separated, accumulating over repeats
        return [*(previous or []), *(part for part in value.split(",") if part)]
    return value


def parse_flags(flags: tuple[Flag, ...], words: list[str]) -> tuple[dict[str, object], list[str]]:
    by_name = {f.name: f for f in flags} | {f.alias: f for f in flags if f.alias}
    by_short = {f.short: f for f in flags if f.short}
    values: dict[str, object] = {f.name: f.default for f in flags}
    positionals: list[str] = []
    queue = list(words)

    def take(flag: Flag, value: str) -> None:
        values[flag.name] = convert(flag, value, values[flag.name])

    while queue:
        word = queue.pop(0)
        if word == "--":
            positionals += queue
            break
        if word.startswith("--"):
            name, equals, value = word[2:].partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise FlyError(f"unknown flag: --{name}")
            if not equals and flag.kind != "bool":
                if not queue:
                    raise FlyError(f"flag needs an argument: --{name}")
                value = queue.pop(0)
            take(flag, value if equals or flag.kind != "bool" else "true")
        elif word.startswith("-") and len(word) > 1:
            shorts = word[1:]
            while shorts:
                flag = by_short.get(shorts[0])
                if flag is None:
                    raise FlyError(f"unknown shorthand flag: '{shorts[0]}' in {word}")
                rest, shorts = shorts[1:], ""
                if flag.kind == "bool":
                    take(flag, rest[1:] if rest.startswith("=") else "true")
                    shorts = "" if rest.startswith("=") else rest
                elif rest:
                    take(flag, rest[1:] if rest.startswith("=") else rest)
                elif queue:
                    take(flag, queue.pop(0))
                else:
                    raise FlyError(f"flag needs an argument: '{flag.short}' in -{flag.short}")
        else:
            positionals.append(word)
    return values, positionals


def no_args(path: str, args: list[str]) -> None:
    """cobra.NoArgs."""
    if args:
        raise FlyError(f'unknown command "{args[0]}" for "{path}"')


def arbitrary_args(path: str, args: list[str]) -> None:
    """cobra.ArbitraryArgs (and cobra's default for a command without subcommands)."""


def at_most(count: int) -> Callable[[str, list[str]], None]:
    """cobra.MaximumNArgs."""

    def check(path: str, args: list[str]) -> None:
        if len(args) > count:
            raise FlyError(f"accepts at most {count} arg(s), received {len(args)}")

    return check


def between(low: int, high: int) -> Callable[[str, list[str]], None]:
    """cobra.RangeArgs."""

    def check(path: str, args: list[str]) -> None:
        if not low <= len(args) <= high:
            raise FlyError(f"accepts between {low} and {high} arg(s), received {len(args)}")

    return check


def find_command(argv: list[str]) -> tuple[tuple[str, ...], Command, list[str]]:
    """The command named by the leading words (with flyctl's aliases), and the words left for it."""
    words: list[str] = []
    rest = list(argv)
    while rest and not rest[0].startswith("-"):
        word = ALIASES.get((*words, rest[0]), rest[0])
        if (*words, word) not in COMMANDS and not any(key[: len(words) + 1] == (*words, word) for key in COMMANDS):
            break
        words.append(word)
        rest.pop(0)
        if tuple(words) in COMMANDS:
            return tuple(words), COMMANDS[tuple(words)], rest
    path = " ".join([ROOT_COMMAND, *words])
    if rest and not rest[0].startswith("-"):
        raise FlyError(f'unknown command "{rest[0]}" for "{path}"', usage=path)
    raise NotImitated(f"`{path}` without a subcommand (flyctl prints its help)")


# --- the state under $FLY_STANDIN_ROOT ------------------------------------------------------------


def standin_root() -> Path:
    return Path(os.environ["FLY_STANDIN_ROOT"])


def empty_state() -> dict:
    return {"logged_in": True, "version": DEFAULT_VERSION, "apps": {}}


@contextlib.contextmanager
def transaction(root: Path) -> Iterator[dict]:
    """state.json, read and written back under an exclusive flock; machines whose init died are stopped."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "state.json"
        state = json.loads(path.read_text()) if path.exists() else empty_state()
        notice_stopped_machines(state)
        try:
            yield state
        except (FlyError, NotImitated):
            save_state(path, state)  # what happened before flyctl's error happened on Fly too
            raise
        save_state(path, state)


def save_state(path: Path, state: dict) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(state, indent=1))
    os.replace(staged, path)


@contextlib.contextmanager
def lease(root: Path, machine_id: str) -> Iterator[None]:
    """One operation at a time per machine, like flyctl's leases (internal/machine/leasable_machine.go)."""
    directory = machine_dir(root, machine_id)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lease", "a") as handle:
        end = time.monotonic() + LEASE_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise FlyError(f"failed to obtain lease: machine {machine_id} is busy") from None
                time.sleep(0.05)
        yield


def machine_dir(root: Path, machine_id: str) -> Path:
    return root / "machines" / machine_id


def layout(root: Path, machine_id: str) -> runtime.Layout:
    return runtime.Layout(machine_dir(root, machine_id))


def init_of(record: dict) -> runtime.Init | None:
    init = record["runtime"].get("init")
    return runtime.Init(init["pid"], init["start"]) if init else None


def notice_stopped_machines(state: dict) -> None:
    """A machine whose main process exited has stopped (the stand-in's init exits with it)."""
    for app in state["apps"].values():
        for record in app["machines"].values():
            init = init_of(record)
            if init is not None and not runtime.alive(init):
                record["runtime"]["init"] = None
                set_state(record, "stopped")


def set_state(record: dict, new_state: str) -> None:
    record["machine"]["state"] = new_state
    record["machine"]["updated_at"] = now()


def app_of(state: dict, name: str, error: str) -> dict:
    if name not in state["apps"]:
        raise FlyError(error)
    return state["apps"][name]


def find_machine(state: dict, app_name: str | None, machine_id: str) -> tuple[str, dict]:
    """select.go:65-100 (the app from the machine when no app is named, :135-154); not found: :236-244."""
    for name, app in state["apps"].items():
        if machine_id in app["machines"] and app_name in (None, name):
            record = app["machines"][machine_id]
            if record["machine"]["state"] != "destroyed":
                return name, record
    if app_name is None:
        raise FlyError(f"could not get machine from GraphQL to determine app name: Could not find machine {machine_id}")
    raise FlyError(f"machine {machine_id} was not found in app '{app_name}'")


# --- fly.toml ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppConfig:
    path: str  # absolute path, or "remote"
    text: str
    data: dict = field(hash=False)

    @property
    def mounts(self) -> list[dict]:
        mounts = self.data.get("mounts") or []
        return [mounts] if isinstance(mounts, dict) else list(mounts)  # [mounts] or [[mounts]]



def parse_config(path: str, text: str) -> AppConfig:
    try:
        return AppConfig(path, text, tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise FlyError(f"failed loading app config from {path}: {error}") from None  # command.go:725-726


def local_config(inv: Invocation, working_dir: Path) -> AppConfig | None:
    """command.go:700-756: --config FILE (or FILE/fly.toml), else ./fly.toml in the working directory."""
    given = inv.values.get("config")
    candidates = [Path(given), Path(given) / "fly.toml"] if given else [Path("fly.toml")]
    for candidate in candidates:
        path = candidate if candidate.is_absolute() else working_dir / candidate
        if path.is_file():
            return parse_config(str(path.resolve()), path.read_text())
    if given:
        raise FlyError(f"config file not found at specified path: {given} (also tried: {Path(given) / 'fly.toml'})")
    return None


def app_name(inv: Invocation, config: AppConfig | None, required: bool) -> str | None:
    """RequireAppName (command.go:763-785): --app, else $FLY_APP, else the config's `app`."""
    name = inv.values.get("app") or os.environ.get("FLY_APP") or (config.data.get("app") if config else None)
    if not name and required:
        raise FlyError("the config for your app is missing an app name, add an app field to the fly.toml file "
                       "or specify with the -a flag")  # command.go:758
    return name or None


# --- images ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    repository: str
    tag: str
    digest: str

    @classmethod
    def parse(cls, ref: str) -> Reference:
        name, _, digest = ref.partition("@")
        registry, slash, repository = name.partition("/")
        if registry != REGISTRY or not slash:
            raise NotImitated(f"deploying an image outside {REGISTRY} ({ref})")
        repository, _, tag = repository.partition(":")
        return cls(repository, tag, digest)


def find_image(state: dict, ref: str) -> tuple[Reference, dict] | None:
    """An image pushed to registry.fly.io/APP, by digest when the reference has one, else by tag."""
    parsed = Reference.parse(ref)
    images = state["apps"].get(parsed.repository, {}).get("images", {})
    for image in images.values():
        if (parsed.digest and image["digest"] == parsed.digest) or (not parsed.digest and parsed.tag in image["tags"]):
            return parsed, image
    return None


def resolve_image(state: dict, ref: str) -> tuple[Reference, dict]:
    """resolver.go:190-236 via remote_image_resolver.go:26-71; deploy.go:384-386 wraps the failure."""
    print(f"Searching for image '{ref}' remotely...", file=sys.stderr)
    found = find_image(state, ref)
    if found is None:
        raise FlyError(f'failed to fetch an image or build from source: could not find image "{ref}"')
    print(f"image found: {found[1]['id']}", file=sys.stderr)
    return found


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments) if arguments.startswith("[") else ["/bin/sh", "-c", arguments]


def image_plan(dockerfile: Path, context: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The final stage's trees taken from the build context (a COPY of one directory to an absolute path) and its
    CMD; a stage built FROM an earlier one starts with what that one had."""
    stages: dict[str, tuple[list[tuple[Path, str]], list[str] | None]] = {}
    copies: list[tuple[Path, str]] = []
    cmd: list[str] | None = None
    for instruction, arguments in dockerfile_instructions(dockerfile.read_text()):
        words = exec_form(arguments) if arguments.startswith("[") else arguments.split()
        if instruction == "FROM":
            inherited = stages.get(words[0].lower(), ([], None))
            copies, cmd = list(inherited[0]), inherited[1]
            if len(words) == 3 and words[1].upper() == "AS":
                stages[words[2].lower()] = (copies, cmd)
        elif instruction == "CMD":
            cmd = exec_form(arguments)
        elif instruction == "COPY" and not any(word.startswith("--from") for word in words):
            paths = [word for word in words if not word.startswith("--")]
            source = (context / paths[0]).resolve() if len(paths) == 2 else None
            if source and paths[1].startswith("/") and source.is_dir() and source.is_relative_to(context.resolve()):
                copies.append((source, paths[1]))
    if cmd is None:
        raise NotImitated(f"an image without CMD ({dockerfile})")
    return copies, cmd


def tree_digest(copies: list[tuple[Path, str]], cmd: list[str], config_text: str) -> str:
    """The image's content hash: every file's path, mode and bytes, the destinations, the CMD and the config."""
    digest = hashlib.sha256(json.dumps([[dest for _, dest in copies], cmd, config_text]).encode())
    for source, _ in copies:
        for path in sorted(source.rglob("*")):
            relative = str(path.relative_to(source))
            if path.is_symlink():
                digest.update(f"L {relative} {os.readlink(path)}\n".encode())
            elif path.is_file():
                digest.update(f"F {relative} {path.stat().st_mode & 0o777:o} {path.stat().st_size}\n".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def store_image(root: Path, copies: list[tuple[Path, str]], hexdigest: str) -> tuple[list[list[str]], int]:
    """The image's trees under root/images/HEX (content-addressed: a second push of the same content reuses them)."""
    home = root / "images" / hexdigest
    if not home.exists():
        staged = Path(tempfile.mkdtemp(dir=root, prefix=".image-"))
        for index, (source, _) in enumerate(copies):
            shutil.copytree(source, staged / str(index), symlinks=True)
        home.parent.mkdir(exist_ok=True)
        os.replace(staged, home)
    size = sum(path.stat().st_size for path in home.rglob("*") if path.is_file() and not path.is_symlink())
    return [[str(home / str(index)), dest] for index, (_, dest) in enumerate(copies)], size


def dockerfile_path(inv: Invocation, config: AppConfig, working_dir: Path) -> Path:
    """deploy_build.go:292-312: the config's [build] dockerfile (against its folder) wins over --dockerfile."""
    configured = (config.data.get("build") or {}).get("dockerfile")
    found = working_dir / "Dockerfile"
    if configured and config.path != "remote":
        chosen = (Path(config.path).parent / configured).resolve()
        if found.exists() and found.resolve() != chosen:  # deploy_build.go:31-54, 106-109: a warning
            print(f"WARN ignoring {found}, and using {chosen} (from {config.path})", file=sys.stderr)
        return chosen
    given = inv["dockerfile"]
    return (working_dir / given).resolve() if given else found  # imgsrc.ResolveDockerfile: ./Dockerfile


def build(root: Path, state: dict, app: str, inv: Invocation, config: AppConfig, working_dir: Path) -> str:
    """`fly deploy --build-only --push --image-label L`: registry.fly.io/APP:L
    (internal/build/imgsrc/docker.go:859-876)."""
    label = inv["image-label"] or f"deployment-{secrets.token_hex(13).upper()}"  # docker.go:869-871 (a ULID there)
    ref = f"{REGISTRY}/{app}:{label}"
    dockerfile = dockerfile_path(inv, config, working_dir)
    if not dockerfile.is_file():
        raise FlyError(f"failed to fetch an image or build from source: Dockerfile not found: {dockerfile}")
    print("==> Building image", file=sys.stderr)  # deploy_build.go:90 (a TextBlock, on stderr: render.go:134-148)
    copies, cmd = image_plan(dockerfile, working_dir)
    hexdigest = tree_digest(copies, cmd, config.text)
    trees, size = store_image(root, copies, hexdigest)
    # deploy_build.go:183: pushed with --push or when not --build-only; an unpushed build is not kept here.
    if inv["push"] or not inv["build-only"]:
        images = state["apps"][app]["images"]
        for image in images.values():
            image["tags"] = [tag for tag in image["tags"] if tag != label]  # the label moves to the new image
        image = images.setdefault(hexdigest, {"id": f"img_{hexdigest[:16]}", "digest": f"sha256:{hexdigest}",
                                              "tags": [], "cmd": cmd, "copies": trees, "config": config.text,
                                              "size": size, "created_at": now()})  # fmt: skip
        image["tags"].append(label)
    print(f"image: {ref}\nimage size: {human_bytes(size)}", file=sys.stderr)  # deploy_build.go:282-285
    return ref


# --- machines -------------------------------------------------------------------------------------


def size_gb(text: object) -> int:
    """helpers.ParseSize in GB ("1GB" -> 1), as appconfig/machines.go:355-362 reads auto_extend sizes."""
    match = re.fullmatch(r"(\d+)\s*(gb|g|mb|m)?", str(text or "0").strip().lower())
    if match is None:
        return 0
    number = int(match.group(1))
    return number // 1000 if (match.group(2) or "gb").startswith("m") else number


def machine_config(config: AppConfig, image: str, version: str, release: dict | None, old: dict | None) -> dict:
    """appconfig/machines.go:295-371 (ToMachineConfig) with setMachineReleaseData (machines_launchinput.go:266-294)."""
    data = config.data
    env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    env["FLY_PROCESS_GROUP"] = "app"  # machines.go:333-337
    if data.get("primary_region"):
        env["PRIMARY_REGION"] = data["primary_region"]
    metadata = {**(old or {}).get("metadata", {}), "fly_platform_version": "v2", "fly_process_group": "app",
                "fly_flyctl_version": version, STANDIN_CONFIG_KEY: config.path}  # fmt: skip
    if release is not None:
        metadata |= {"fly_release_id": release["ID"], "fly_release_version": str(release["Version"])}
    mounts = [{"path": m["destination"], "name": m["source"],
               "extend_threshold_percent": int(m.get("auto_extend_size_threshold", 0)),
               "add_size_gb": size_gb(m.get("auto_extend_size_increment")),
               "size_gb_limit": size_gb(m.get("auto_extend_size_limit"))} for m in config.mounts]  # fmt: skip
    vm = (data.get("vm") or [{}])[0] if isinstance(data.get("vm"), list) else data.get("vm") or {}
    guest = {"cpu_kind": vm.get("cpu_kind", "shared"), "cpus": int(vm.get("cpus", 1)),
             "memory_mb": int(vm.get("memory_mb", 256))}  # fmt: skip
    services = http_services(data)  # fly-go's MachineConfig field order (machine_types.go:800-816)
    return {"env": env, "init": {}, "guest": guest, "metadata": metadata, **({"mounts": mounts} if mounts else {}),
            **({"services": services} if services else {}), "image": image}


def http_services(data: dict) -> list[dict]:
    """[http_service] as fly-go's MachineService (machine_types.go), its checks included."""
    service = data.get("http_service")
    if not service:
        return []
    checks = [{"type": "http", "method": c.get("method", "GET"), "path": c.get("path", "/"),
               "interval": c.get("interval"), "timeout": c.get("timeout"), "grace_period": c.get("grace_period")}
              for c in service.get("checks") or []]  # fmt: skip
    return [{"protocol": "tcp", "internal_port": int(service.get("internal_port", 8080)),
             "ports": [{"port": 80, "handlers": ["http"], "force_https": bool(service.get("force_https"))},
                       {"port": 443, "handlers": ["tls", "http"]}],
             "autostart": bool(service.get("auto_start_machines", True)), **({"checks": checks} if checks else {})}]


def new_machine(state: dict, root: Path, app: str, region: str, ref: Reference, image: dict, config: AppConfig) -> dict:
    machine_id = secrets.token_hex(7)
    count = sum(len(a["machines"]) for a in state["apps"].values()) + 1
    mconfig = machine_config(config, image_string(ref), state["version"], None, None)
    for mount in mconfig.get("mounts", []):
        mount |= {"volume": f"vol_{secrets.token_hex(8)}", "size_gb": 1}
    record = {
        "machine": {"id": machine_id, "name": f"{region}-standin-{count}", "state": "stopped", "region": region,
                    "image_ref": image_ref(ref, image), "instance_id": instance_id(),
                    "private_ip": f"fdaa:0:1:a7b:{count:x}::2", "created_at": now(), "updated_at": now(),
                    "config": mconfig, "host_status": "ok", "cordoned": False},
        "runtime": {"init": None, "env": {}, "config_text": config.text},
    }  # fmt: skip
    state["apps"][app]["machines"][machine_id] = record
    layout(root, machine_id).volume.mkdir(parents=True, exist_ok=True)
    return record


def image_string(ref: Reference) -> str:
    tag = f":{ref.tag}" if ref.tag else ""
    return f"{REGISTRY}/{ref.repository}{tag}" + (f"@{ref.digest}" if ref.digest else "")


def image_ref(ref: Reference, image: dict) -> dict:
    """fly-go's MachineImageRef (machine_types.go:285-291)."""
    return {"registry": REGISTRY, "repository": ref.repository, "tag": ref.tag, "digest": image["digest"]}


def instance_id() -> str:
    return "01" + "".join(secrets.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24))


def boot_env(app_name: str, app: dict, record: dict, image_ref_text: str) -> dict[str, str]:
    """What Fly puts in a machine's environment (Fly's docs, "The Machine runtime environment"; FLY_IMAGE_REF:
    internal/build/imgsrc/docker.go:862-863 says flyd sets it), FLY_PUBLIC_IP left out, then the config's env and
    the app's secrets."""
    machine = record["machine"]
    env = {"PATH": runtime.PATH, "FLY_APP_NAME": app_name, "FLY_MACHINE_ID": machine["id"],
           "FLY_ALLOC_ID": machine["id"], "FLY_REGION": machine["region"], "FLY_IMAGE_REF": image_ref_text,
           "FLY_MACHINE_VERSION": machine["instance_id"], "FLY_PRIVATE_IP": machine["private_ip"],
           "FLY_VM_MEMORY_MB": str(machine["config"]["guest"]["memory_mb"])}  # fmt: skip
    env |= machine["config"]["env"]
    env |= {name: secret["value"] for name, secret in app["secrets"].items()}
    return env


def boot_machine(root: Path, state: dict, app_name: str, record: dict) -> None:
    """Boot the machine on its image and config; the record ends started (or stopped, if it did not boot)."""
    machine = record["machine"]
    app = state["apps"][app_name]
    image = next(i for i in app_images(state) if i["digest"] == machine["image_ref"]["digest"])
    env = boot_env(app_name, app, record, machine["config"]["image"])
    mounts = machine["config"].get("mounts") or []
    where = layout(root, machine["id"])
    spec = {"rootfs": str(where.rootfs), "scratch": str(where.scratch),
            "hostname": machine["id"], "cmd": image["cmd"], "env": env, "copies": image["copies"],
            "volume": [str(where.volume), mounts[0]["path"]] if mounts else None,
            "hide": sorted({str(runtime.REPOSITORY), str(root.resolve())}),
            "navigator": str(runtime.NAVIGATOR)}  # fmt: skip
    record["runtime"]["env"] = env
    try:
        init = runtime.boot(where, spec)
    except runtime.MachineError as error:
        set_state(record, "stopped")
        raise FlyError(f"machine {machine['id']} failed to start: {error}") from None
    record["runtime"]["init"] = {"pid": init.pid, "start": init.start}
    set_state(record, "started")


def app_images(state: dict) -> Iterator[dict]:
    for app in state["apps"].values():
        yield from app["images"].values()


def stop_machine(record: dict) -> None:
    init = init_of(record)
    if init is not None:
        runtime.kill(init)
    record["runtime"]["init"] = None
    set_state(record, "stopped")


def checks_of(record: dict) -> list[dict]:
    """fly-go MachineCheckStatus (machine_types.go:664-669) for each http_service check, run from inside the
    machine's network now; a machine not started fails them (Fly's server decides this: not in flyctl)."""
    machine = record["machine"]
    results = []
    for index, service in enumerate(machine["config"].get("services") or []):
        for check in service.get("checks") or []:
            name = f"servicecheck-{index:02d}-http-{service['internal_port']}"
            init = init_of(record)
            if machine["state"] != "started" or init is None:
                results.append({"name": name, "status": "critical", "output": f"machine is {machine['state']}"})
                continue
            ok, output = runtime.http_check(init, service["internal_port"], check["path"],
                                            parse_duration(check.get("timeout") or "2s"))  # fmt: skip
            results.append({"name": name, "status": "passing" if ok else "critical", "output": output,
                            "updated_at": now()})  # fmt: skip
    return results


def machine_objects(root: Path, app_name: str, error: str) -> list[dict]:
    """What the Machines API lists: every machine but destroyed ones, in creation order, with its checks."""
    with transaction(root) as state:
        app = app_of(state, app_name, error)
        records = [r for r in app["machines"].values() if r["machine"]["state"] != "destroyed"]
    objects = []
    for record in records:
        machine = dict(record["machine"])
        tail = {key: machine.pop(key) for key in ("host_status", "cordoned")}  # after checks, as in fly-go's Machine
        checks = checks_of(record)
        objects.append({**machine, **({"checks": checks} if checks else {}), **tail})
    return objects


def wait_healthy(record: dict, timeout: float) -> None:
    """WaitForHealthchecksToPass (internal/machine/leasable_machine.go:367-430): every check passing within the
    timeout. A machine whose main process exited fails at once rather than at the deadline, naming why."""
    machine_id = record["machine"]["id"]
    end = time.monotonic() + timeout
    while True:
        init = init_of(record)
        if init is None or not runtime.alive(init):
            raise FlyError(f"machine {machine_id} stopped before its health checks passed: its main process exited")
        if all(check["status"] == "passing" for check in checks_of(record)):
            return
        if time.monotonic() > end:  # leasable_machine.go:401-404
            raise FlyError(f"timeout reached waiting for health checks to pass for machine {machine_id}: "
                           f"failed to get VM {machine_id}: context deadline exceeded")  # fmt: skip
        time.sleep(0.2)


# --- commands ---------------------------------------------------------------------------------------


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run_version(inv: Invocation) -> int:
    """internal/command/version/version.go:50-67: buildinfo.Info() (internal/buildinfo/buildinfo.go:60-97);
    version.Version marshals as its string (internal/version/version.go:298-300)."""
    with transaction(standin_root()) as state:
        version = state["version"]
    info = {"Name": ROOT_COMMAND, "Version": version, "Commit": "ad0172face303b77584eea95b46fa3ddc61d5ddd",
            "BranchName": "", "BuildDate": "2026-08-21T14:11:32Z", "OS": "linux", "Architecture": "amd64",
            "Environment": "production"}  # fmt: skip
    if inv["json"]:
        out(go_json(info))  # json.NewEncoder(out).Encode(info): one line
    else:
        out(f"{ROOT_COMMAND} v{version} linux/amd64 Commit: {info['Commit']} BuildDate: {info['BuildDate']}\n")
    return 0


def run_machine_list(inv: Invocation) -> int:
    """machine/list.go:56-81; flaps List (fly-go flaps/flaps_machines.go:149-169)."""
    root = standin_root()
    name = app_name(inv, local_config(inv, Path.cwd()), required=True)
    machines = machine_objects(root, name, "failed to list VMs: Could not find App")
    if inv["json"]:
        out(go_json(machines, indent=4))  # render.JSON (internal/render/render.go:16-21)
    elif not machines:
        out(f"No machines are available on this app {name}\n")
    else:
        out(f"{len(machines)} machines have been retrieved from app {name}.\n\n")
        out("".join(f"{m['id']}\t{m['name']}\t{m['state']}\t{m['region']}\t{m['config']['image']}\n" for m in machines))
    return 0


def run_secrets_list(inv: Invocation) -> int:
    """secrets/list.go:75-108 with the deployment status of :121-185, :306-333."""
    root = standin_root()
    name = app_name(inv, local_config(inv, Path.cwd()), required=True)
    with transaction(root) as state:
        app = app_of(state, name, "Could not find App")
        rows = [{"name": secret_name, "digest": secret["digest"], "status": secret_status(app, secret)}
                for secret_name, secret in sorted(app["secrets"].items())]
    if inv["json"]:
        out(go_json(rows, indent=4))
    else:
        out("".join(f"{r['name']}\t{r['digest']}\t{r['status']}\n" for r in rows))
    return 0


def secret_status(app: dict, secret: dict) -> str:
    machines = [r["machine"] for r in app["machines"].values() if r["machine"]["state"] not in DESTROYED]
    if not machines:
        return "Staged"
    created = {str(r["Version"]): r["CreatedAt"] for r in app["releases"]}
    with_secret = sum(1 for m in machines
                      if m["config"]["metadata"].get("fly_release_version") in created
                      and secret["updated_at"] <= created[m["config"]["metadata"]["fly_release_version"]])  # fmt: skip
    return "Staged" if with_secret == 0 else "Deployed" if with_secret == len(machines) else "Partial"


def run_releases(inv: Invocation) -> int:
    """apps/releases.go:50-73: the last 25 (GetAppReleasesMachines(..., 25)), newest first, Go field names."""
    name = app_name(inv, local_config(inv, Path.cwd()), required=True)
    with transaction(standin_root()) as state:
        app = app_of(state, name, f"failed retrieving app releases {name}: Could not find App")
        releases = sorted(app["releases"], key=lambda r: r["Version"], reverse=True)[:RELEASES_SHOWN]
    public = [{k: v for k, v in release.items() if k != "config"} for release in releases]
    if inv["json"]:
        out(go_json(public, indent=4))
    else:
        out("".join(f"v{r['Version']}\t{r['Status']}\t{r['Description']}\t{r['CreatedAt']}\n" for r in public))
    return 0


def selected_machines(inv: Invocation) -> tuple[str | None, list[str]]:
    """checkSelectConditions (machine/select.go:246-261): IDs, or an app and an interactive prompt."""
    name = app_name(inv, local_config(inv, Path.cwd()), required=False)  # command.LoadAppNameIfPresent
    if not inv.args:
        if name is None:
            raise FlyError("a machine ID or an app name is required")
        raise FlyError("a machine ID must be specified when not running interactively")
    return name, list(inv.args)


def each_machine(inv: Invocation) -> Iterator[tuple[Path, str, str]]:
    """The named machines in turn, each under its lease (select.go:65-100, then mach.AcquireLeases)."""
    root = standin_root()
    name, ids = selected_machines(inv)
    with transaction(root) as state:
        targets = [find_machine(state, name, machine_id) for machine_id in ids]
    for app, record in targets:
        with lease(root, record["machine"]["id"]):
            yield root, app, record["machine"]["id"]


@contextlib.contextmanager
def machine_record(root: Path, app: str, machine_id: str) -> Iterator[tuple[dict, dict]]:
    with transaction(root) as state:
        yield state, state["apps"][app]["machines"][machine_id]


def run_machine_start(inv: Invocation) -> int:
    """machine/start.go:43-93. A suspended machine resumes where it was; a stopped one boots. Starting a started
    machine is refused (the server's answer is not in flyctl; start.go:89-91 reports a status "error")."""
    for root, app, machine_id in each_machine(inv):
        with machine_record(root, app, machine_id) as (state, record):
            if record["machine"]["state"] == "started":
                raise FlyError(f"machine could not be started: machine {machine_id} is already started")
            if record["machine"]["state"] == "suspended":
                runtime.resume(init_of(record))
                set_state(record, "started")
            else:
                boot_machine(root, state, app, record)
        out(f"{machine_id} has been started\n")
    return 0


def run_machine_stop(inv: Invocation) -> int:
    """machine/stop.go:60-128. Stopping a machine that is not running is refused (the server's side: not in flyctl)."""
    for root, app, machine_id in each_machine(inv):
        out(f"Sending kill signal to machine {machine_id}...\n")
        with machine_record(root, app, machine_id) as (_, record):
            if record["machine"]["state"] not in ("started", "suspended"):
                raise FlyError(f"could not stop machine {machine_id}: machine is {record['machine']['state']}")
            stop_machine(record)
        out(f"{machine_id} has been successfully stopped\n")
    return 0


def run_machine_suspend(inv: Invocation) -> int:
    """machine/suspend.go:50-107. Only a started machine can be suspended (the server's side: not in flyctl)."""
    for root, app, machine_id in each_machine(inv):
        with machine_record(root, app, machine_id) as (_, record):
            if record["machine"]["state"] != "started":
                raise FlyError(f"could not suspend Machine {machine_id}: machine is {record['machine']['state']}")
            runtime.suspend(init_of(record))
            set_state(record, "suspended")
        out(f"{machine_id} has been suspended\n" if inv["wait-timeout"] else f"{machine_id} is being suspended\n")
    return 0


def run_machine_restart(inv: Invocation) -> int:
    """machine/restart.go:61-98 and internal/machine/restart.go:14-39: a reboot (a fresh root file system), the
    wait for started, then for the checks. A machine that is not started is refused (the server's side)."""
    for root, app, machine_id in each_machine(inv):
        out(f"Restarting machine {machine_id}\n")
        with machine_record(root, app, machine_id) as (state, record):
            if record["machine"]["state"] != "started":
                raise FlyError(f"failed to restart machine {machine_id}: could not stop machine {machine_id}: "
                               f"machine is {record['machine']['state']}")  # fmt: skip
            stop_machine(record)
            boot_machine(root, state, app, record)
        if not inv["skip-health-checks"]:
            wait_healthy(record, 300)
        out(f"Machine {machine_id} restarted successfully!\n")
    return 0


def run_machine_wait(inv: Invocation) -> int:
    """machine/wait.go:56-136; "settled" is any state that is not a transition (the stand-in has none)."""
    root = standin_root()
    if not inv["state"]:
        raise FlyError("state cannot be empty")
    name, machine_ids = selected_machines(inv)
    with transaction(root) as state:
        app, record = find_machine(state, name, machine_ids[0])
    machine_id, wanted, timeout = record["machine"]["id"], inv["state"], inv["wait-timeout"]
    out(f'Waiting up to {format_duration(timeout)} for machine {machine_id} to reach "{wanted}"...\n')
    end = time.monotonic() + timeout
    while True:
        with machine_record(root, app, machine_id) as (_, record):
            current = record["machine"]["state"]
        if wanted in ("settled", current):
            break
        if time.monotonic() > end:
            raise FlyError(f'machine {machine_id} did not reach "{wanted}" within {format_duration(timeout)}')
        time.sleep(0.1)
    out(f'Machine {machine_id} reached state "{current}"\n')
    return 0


def run_machine_update(inv: Invocation) -> int:
    """machine/update.go:79-178 and internal/machine/update.go:21-119, for --image: the machine reboots on the new
    image. With --skip-start it ends stopped, whatever it was: what the server does with a running machine there
    is not in flyctl; stopped is the conservative reading of skip_launch."""
    if not inv["image"]:
        raise NotImitated("`machine update` without --image")
    for root, app, machine_id in each_machine(inv):
        with transaction(root) as state:
            found = find_image(state, inv["image"])
        if found is None:
            raise FlyError(f'could not find image "{inv["image"]}"')  # build/imgsrc/resolver.go:233
        if not inv["yes"]:
            raise FlyError("yes flag must be specified when not running interactively")  # machine/config.go:52-53
        out(f"Updating machine {machine_id}\n")
        with machine_record(root, app, machine_id) as (state, record):
            ref, image = found
            stop_machine(record)
            record["machine"]["config"]["image"] = image_string(ref)
            record["machine"]["image_ref"] = image_ref(ref, image)
            record["machine"]["instance_id"] = instance_id()
            if not inv["skip-start"]:
                boot_machine(root, state, app, record)
        if not inv["skip-start"] and not inv["skip-health-checks"]:
            wait_healthy(record, inv["wait-timeout"])
        out(f"Machine {machine_id} updated successfully!\n")
        out(f"\nMonitor machine status here:\nhttps://fly.io/apps/{app}/machines/{machine_id}\n")
    return 0


def run_ssh_console(inv: Invocation) -> int:
    """ssh/console.go:165-230 with selectMachine (:261-379); the remote side runs -C (internal/ssh/io.go:87-93)."""
    root = standin_root()
    name = app_name(inv, local_config(inv, Path.cwd()), required=True)
    command = inv["command"]
    if not command or inv.args or inv["select"]:
        raise NotImitated("an interactive ssh session (no -C, an address argument or --select)")
    with transaction(root) as state:
        app_of(state, name, "get app: Could not find App")  # console.go:173-176
        record = select_machine(inv, name, state["apps"][name])
    try:
        argv = shlex.split(command)  # hallpass splits the command line into words, as a shell would
    except ValueError as error:
        raise NotImitated(f"a command hallpass could not split ({error})") from None
    if not inv["quiet"]:
        # ssh/connect.go:63-68, 100-107: not on a terminal, the spinner's text is printed once on stderr
        print(f"Connecting to {record['machine']['private_ip']}...", file=sys.stderr, flush=True)
    done = subprocess.run(runtime.enter_argv(init_of(record), argv), env=record["runtime"]["env"])
    return remote_status(done.returncode)


def remote_status(code: int) -> int:
    """The remote status is not passed on: sess.Run's *ssh.ExitError ("Process exited with status N", with "from
    signal S" for a signal: golang.org/x/crypto/ssh session.go) becomes "ssh shell: ..." (console.go:254-256), and
    every error exits 1 (cli.go:119-128)."""
    if code == 0:
        return 0
    if code < 0:
        name = signal.Signals(-code).name.removeprefix("SIG")
        raise FlyError(f"ssh shell: Process exited with status {128 - code} from signal {name}")
    raise FlyError(f"ssh shell: Process exited with status {code}")


def select_machine(inv: Invocation, name: str, app: dict) -> dict:
    """console.go:261-379 exactly: started machines only, then --region, then --machine among them, else the first."""
    machines = [r for r in app["machines"].values() if r["machine"]["state"] == "started"]  # :265-272
    if not machines:
        raise FlyError(f"app {name} has no started VMs.\nIt may be unhealthy or not have been deployed yet.\n"
                       "Try the following command to verify:\n\nfly status")  # :274-276 # fmt: skip
    if inv["region"]:
        machines = [r for r in machines if r["machine"]["region"] == inv["region"]]  # :278-285
        if not machines:
            raise FlyError(f"app {name} has no VMs in region {inv['region']}")
    if inv["machine"]:
        chosen = [r for r in machines if r["machine"]["id"] == inv["machine"]]  # :297-331
        if not chosen:
            raise FlyError(f'--machine="{inv["machine"]}" not found/started')
        return chosen[0]
    if len(machines) > 1:  # :370-375, on stdout
        first = machines[0]["machine"]
        out(f"No machine specified, using {first['id']} in region {first['region']}\n")
    return machines[0]


# --- deploy -----------------------------------------------------------------------------------------


def run_deploy(inv: Invocation) -> int:
    """deploy/deploy.go:250-479."""
    root = standin_root()
    working_dir = change_working_directory(inv)
    config = local_config(inv, working_dir)
    name = app_name(inv, config, required=True)
    with transaction(root) as state:
        app_of(state, name, f"the app name {name} could not be found, did you create the app or misspell it in the "
                            "fly.toml file or via -a?")  # deploy.go:309-313 # fmt: skip
        config = config or remote_config(state["apps"][name])  # deploy.go:737-744
        print("==> Verifying app config", file=sys.stderr)
        if inv["image"]:
            ref_text = inv["image"]
            resolve_image(state, ref_text)
        else:
            ref_text = build(root, state, name, inv, config, working_dir)
    if inv["build-only"]:
        return 0  # deploy.go:388-390
    strategy = inv["strategy"] or (config.data.get("deploy") or {}).get("strategy") or "rolling"
    if strategy != "rolling":
        raise NotImitated(f"the {strategy} strategy")
    out(f"\nWatch your deployment at https://fly.io/apps/{name}/monitoring\n\n")  # deploy.go:392-393
    deploy_to_machines(root, name, config, ref_text, inv["regions"] or [], deploy_wait_timeout(inv))
    if config.data.get("http_service"):
        out(f"\nVisit your newly deployed app at https://{name}.fly.dev/\n\n")  # deploy.go:466-470
    return 0


def change_working_directory(inv: Invocation) -> Path:
    """ChangeWorkingDirectoryToFirstArgIfPresent (command.go:837-860): relative paths then start from there."""
    if not inv.args:
        return Path.cwd()
    directory = Path(inv.args[0]).absolute()
    if not directory.is_dir():
        raise FlyError(f"failed changing working directory: chdir {directory}: no such file or directory")
    return directory


def remote_config(app: dict) -> AppConfig:
    """appconfig/remote.go:15-31: the latest release's config, else one rebuilt from the machines."""
    if app["releases"]:
        return parse_config("remote", max(app["releases"], key=lambda r: r["Version"])["config"])
    for record in app["machines"].values():
        return parse_config("remote", record["runtime"]["config_text"])
    raise FlyError("failed to grab app config from existing machines, error: the app has no machines")


def deploy_wait_timeout(inv: Invocation) -> float:
    """parseDurationFlag (deploy.go:481-508); none or unset: DefaultWaitTimeout, 5m (deploy/machines.go:39)."""
    text = inv["wait-timeout"]
    if text is None or text == "none":
        return 300.0
    try:
        return parse_duration(text)
    except ValueError as error:
        if "missing unit" in str(error) and text.isdigit():
            return float(text)
        raise FlyError(f"invalid duration value {text} used for --wait-timeout flag: valid options are a number of "
                       "seconds, number with time unit (i.e.: 5m, 180s) or 'none'") from None  # fmt: skip


def deploy_to_machines(root: Path, name: str, config: AppConfig, ref_text: str, regions: list[str],
                       timeout: float) -> None:
    """NewMachineDeployment (deploy/machines.go:244-337), then DeployMachinesApp
    (machines_deploymachinesapp.go:46-160)."""
    with transaction(root) as state:
        app = state["apps"][name]
        every = [r for r in app["machines"].values() if r["machine"]["state"] not in DESTROYED]
        chosen = [r for r in every if not regions or r["machine"]["region"] in regions]  # machines.go:446-453
        if regions:  # machines.go:409-418
            print(f"--regions filter applied, deploying to {len(chosen)}/{len(every)} machines", file=sys.stderr)
        validate_volumes(chosen, config, every)
        release = new_release(state, name, config, ref_text)
        ids = sorted(r["machine"]["id"] for r in chosen)  # machines_deploymachinesapp.go:854-857
    try:
        update_machines(root, name, config, ref_text, release, ids, timeout)
    except FlyError as error:
        finish_release(root, name, release["Version"], "failed", str(error))
        raise
    finish_release(root, name, release["Version"], "complete", "")


def validate_volumes(chosen: list[dict], config: AppConfig, every: list[dict]) -> None:
    """validateVolumeConfig (machines.go:568-667). The stand-in's volumes are all attached, none spare."""
    if not every:
        raise NotImitated("a first deploy (the app has no machines: flyctl would create them)")
    source = config.mounts[0]["source"] if config.mounts else None
    if not chosen:
        if source is None:  # machines_deploymachinesapp.go:357-378 would launch one in the primary region
            raise NotImitated("a deploy that launches a new machine (no machine matches and fly.toml has no mounts)")
        raise FlyError(f"creating a new machine in group 'app' requires an unattached '{source}' volume. "
                       f"Create it with `fly volume create {source}`")  # machines.go:654-661 # fmt: skip
    for record in chosen:
        machine = record["machine"]
        mounts = machine["config"].get("mounts") or []
        if source is None and mounts:  # machines.go:596-613: a prompt, refused when not interactive
            raise FlyError("yes flag must be specified when not running interactively")
        if source is not None and not mounts:  # machines.go:616-651
            raise FlyError(f"Process group 'app' needs volumes with name '{source}' to fulfill mounts defined in "
                           f"fly.toml; Run `fly volume create {source} -r REGION -n COUNT` for the following regions "
                           f"and counts: {machine['region']}=1")  # fmt: skip
        if source is not None and mounts[0]["name"] and mounts[0]["name"] != source:  # machines.go:622-629
            raise FlyError(f"machine {machine['id']} [app] can't update the attached volume {source} with name "
                           f"'{mounts[0]['volume']}' by '{mounts[0]['name']}'")  # fmt: skip


def new_release(state: dict, name: str, config: AppConfig, ref_text: str) -> dict:
    """createReleaseInBackend (machines.go:697-717), status "running" (machines_deploymachinesapp.go:71-75);
    fly-go's Release (types.go:625-639), plus the config the next deploy without a fly.toml reads back."""
    app = state["apps"][name]
    version = max((r["Version"] for r in app["releases"]), default=0) + 1
    release = {"ID": f"rel_{secrets.token_hex(8)}", "Version": version, "Stable": False, "InProgress": True,
               "Reason": "", "Description": "Deploy image", "Status": "running", "DeploymentStrategy": "ROLLING",
               "Metadata": None, "User": {"ID": "", "Name": "", "Email": "", "EnablePaidHobby": False},
               "EvaluationID": "", "CreatedAt": now(), "ImageRef": ref_text, "config": config.text}  # fmt: skip
    app["releases"].append(release)
    return release


def finish_release(root: Path, name: str, version: int, status: str, error: str) -> None:
    """machines_deploymachinesapp.go:90-119: complete, or failed with the error in the metadata."""
    with transaction(root) as state:
        release = next(r for r in state["apps"][name]["releases"] if r["Version"] == version)
        outcome = {"post_deployment_info": {"flyctl_version": state["version"], "error": error}}
        release |= {"Status": status, "Stable": status == "complete", "InProgress": False, "Metadata": outcome}


def update_machines(root: Path, name: str, config: AppConfig, ref_text: str, release: dict, ids: list[str],
                    timeout: float) -> None:
    """updateUsingRollingStrategy (machines_deploymachinesapp.go:850-916), one machine at a time: machines not
    started are updated without being started (shouldSkipLaunch, machines_launchinput.go:296-315), started ones
    are rebooted on the new image and waited for (waitForMachine, :210-246); the first failure ends the deploy."""
    out(f"Updating existing machines in '{name}' with rolling strategy\n")  # :624
    with transaction(root) as state:
        cold = [i for i in ids if state["apps"][name]["machines"][i]["machine"]["state"] != "started"]
    for machine_id in [*cold, *(i for i in ids if i not in cold)]:
        out(f"  Updating {machine_id}\n")
        with lease(root, machine_id):
            with machine_record(root, name, machine_id) as (state, record):
                ref, image = find_image(state, ref_text)
                skip_launch = record["machine"]["state"] != "started"
                apply_update(state, record, config, ref, image, release)
                if not skip_launch:
                    boot_machine(root, state, name, record)
            if not skip_launch:
                wait_healthy(record, timeout)
        out(f"  Machine {machine_id} update succeeded\n")


def apply_update(state: dict, record: dict, config: AppConfig, ref: Reference, image: dict, release: dict) -> None:
    """launchInputForUpdate (machines_launchinput.go:89-252): the new config and image, the volume kept (a
    changed mount path is updated in place, :173-180). The machine is stopped first: a suspended one is not
    resumed but ends stopped with the new image (what the server does with its snapshot is not in flyctl)."""
    machine = record["machine"]
    old_mounts = machine["config"].get("mounts") or []
    new_config = machine_config(config, image_string(ref), state["version"], release, machine["config"])
    for new, old in zip(new_config.get("mounts", []), old_mounts):
        if new["path"] != old["path"]:
            print(f"WARN Updating the mount path for volume {old['volume']} on machine {machine['id']} from "
                  f"{old['path']} to {new['path']} due to fly.toml [mounts] destination value",
                  file=sys.stderr)  # fmt: skip
        new |= {"volume": old["volume"], "size_gb": old.get("size_gb", 1)}
    stop_machine(record)
    machine["config"] = new_config
    machine["image_ref"] = image_ref(ref, image)
    machine["instance_id"] = instance_id()  # machine_types.go:52: unique for each version of the machine
    record["runtime"]["config_text"] = config.text


# --- the command table --------------------------------------------------------------------------------

WAIT_TIMEOUT = Flag("wait-timeout", "w", "duration", 0.0)  # machine/stop.go:49-54, suspend.go:39-44
YES = bool_flag("yes", "y", "auto-confirm")  # flag.go:350-357

COMMANDS: dict[tuple[str, ...], Command] = {
    ("version",): Command(run_version, (JSON,), no_args, session=False),  # version/version.go:20-48
    ("machine", "list"): Command(
        run_machine_list, (APP, CONFIG, JSON, bool_flag("quiet", "q")), no_args),  # list.go:25-54
    ("machine", "start"): Command(run_machine_start, (APP, CONFIG), arbitrary_args),  # start.go:18-41
    ("machine", "stop"): Command(
        run_machine_stop, (APP, CONFIG, Flag("signal", "s"), Flag("timeout", kind="int", default=0), WAIT_TIMEOUT),
        arbitrary_args),  # stop.go:20-58
    ("machine", "suspend"): Command(
        run_machine_suspend, (APP, CONFIG, WAIT_TIMEOUT), arbitrary_args),  # suspend.go:19-48
    ("machine", "restart"): Command(
        run_machine_restart, (APP, CONFIG, Flag("signal", "s"), Flag("time", kind="int", default=0), bool_flag("force"),
                              bool_flag("skip-health-checks")),
        arbitrary_args),  # restart.go:17-59
    ("machine", "wait"): Command(
        run_machine_wait, (APP, CONFIG, Flag("state", default="settled"), Flag("wait-timeout", "w", "duration", 300.0)),
        between(0, 1)),  # wait.go:20-54
    ("machine", "update"): Command(
        run_machine_update, (APP, CONFIG, Flag("image", "i"), YES, bool_flag("skip-start"),
                             bool_flag("skip-health-checks"), Flag("wait-timeout", kind="int", default=300)),
        between(0, 1)),  # update.go:21-77
    ("secrets", "list"): Command(run_secrets_list, (APP, CONFIG, JSON), arbitrary_args),  # secrets/list.go:43-73
    ("releases",): Command(run_releases, (APP, CONFIG, JSON, bool_flag("image")), no_args),  # apps/releases.go:22-48
    ("deploy",): Command(
        run_deploy, (APP, CONFIG, Flag("image", "i"), Flag("dockerfile"), bool_flag("build-only"), bool_flag("push"),
                     Flag("image-label"), Flag("strategy"), Flag("regions", kind="strings", alias="only-regions"),
                     Flag("wait-timeout"), YES),
        at_most(1)),  # deploy.go:39-248
    ("ssh", "console"): Command(
        run_ssh_console, (APP, CONFIG, Flag("command", "C"), Flag("machine"), bool_flag("select", "s"),
                          Flag("region", "r"), bool_flag("quiet", "q")),
        at_most(1)),  # ssh/console.go:32-85, 126-140
}  # fmt: skip
ALIASES = {("machines",): "machine", ("m",): "machine", ("machine", "ls"): "list", ("secrets", "ls"): "list"}


def parse(argv: list[str]) -> tuple[Command, Invocation]:
    words, command, rest = find_command(argv)
    path = " ".join([ROOT_COMMAND, *words])
    values, args = parse_flags(command.flags + PERSISTENT, rest)
    command.args(path, args)
    return command, Invocation(values, args)


def require_session() -> None:
    with transaction(standin_root()) as state:
        if not state["logged_in"]:
            raise FlyError("no access token available. Please login with 'flyctl auth login'")  # fly-go api.go:11


def main(argv: list[str]) -> int:
    if "FLY_STANDIN_ROOT" not in os.environ or "FLY_STANDIN_LOG" not in os.environ:
        print("stand-in fly: FLY_STANDIN_ROOT and FLY_STANDIN_LOG must be set", file=sys.stderr)
        return 2
    with open(os.environ["FLY_STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    try:
        command, inv = parse(argv)
        if command.session:
            require_session()  # a preparer: after cobra parsed flags and arguments
        return command.run(inv)
    except FlyError as error:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {error}\n")
        if error.usage:
            out(f"Run '{error.usage} --help' for usage.\n\n")
        return 1
    except NotImitated as error:
        sys.stdout.flush()
        sys.stderr.write(f"stand-in fly: {error} is not imitated\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
