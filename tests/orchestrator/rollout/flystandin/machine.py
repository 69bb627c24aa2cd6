"""The per-machine runtime of the stand-in `fly`: every machine is a small isolated system on this host.

A Fly machine is a VM booted from its image, with its own network, its own root
file system (reset to the image on every boot) and its volume mounted where
fly.toml's [[mounts]] says. Here a machine is a set of Linux namespaces:

- boot: a detached init (`setsid --fork`, so it outlives the `fly` process that
  booted it) runs under `unshare --mount --net --pid --uts --fork` and, still
  seeing the host's file system, brings its loopback up, mounts a fresh tmpfs
  holding an overlayfs upper and work dir, overlays lowerdir=/ on the machine's
  rootfs directory, mounts proc, binds /dev, gives it an empty /tmp, hides the
  repository checkout and the stand-in's own state, binds the volume directory
  at the mount's destination, copies the image's trees to their destinations,
  installs the stand-in navigator as /usr/local/bin/navigator, takes the machine
  id as host name, chroots and starts the image's CMD with the machine's
  environment. It stays pid 1 of the machine, reaping children; when the CMD
  exits it exits too and the kernel ends everything left in the namespace (the
  machine has stopped), or after an hour at most, so that a test run that died
  before stopping its machines leaves none behind for long.
- inside, only Debian's packages and what the image holds are there to use:
  /usr/bin/python3 with python3-yaml and python3-jinja2.
- suspend: SIGSTOP to every process of the machine; resume: SIGCONT.
- stop: SIGKILL to the init; the kernel ends its pid namespace, and with the
  last process the mount namespace, the overlay and its tmpfs go.
- a command "over ssh": `nsenter` into the init's namespaces and root.

Run as `python3 -I machine.py init BOOT_JSON`, this file is that init; imported,
it is the host side. The init part uses the standard library only.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PYTHON = "/usr/bin/python3"  # Debian's: the only Python a machine has
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACES = ("--mount", "--net", "--pid", "--uts")
REPOSITORY = Path(__file__).resolve().parents[4]
NAVIGATOR = Path(__file__).with_name("navigator.py")
BOOT_TIMEOUT = 30.0
LIFETIME = 3600  # seconds: a test run that died before stopping its machines leaves none running for longer
STOP_TIMEOUT = 10.0
POLL = 0.05
STATUS = "init.json"


class MachineError(Exception):
    """A machine that could not be booted or stopped."""


@dataclass(frozen=True)
class Init:
    """A machine's init as the host sees it; its start time tells it from a process that reused the pid."""

    pid: int
    start: str


@dataclass(frozen=True)
class Layout:
    """Where a machine lives on the host: the volume, and what a boot needs (the rootfs mount point, the scratch
    tmpfs's, the boot spec, the init's status) with its console log."""

    directory: Path

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    @property
    def scratch(self) -> Path:
        return self.directory / "scratch"

    @property
    def volume(self) -> Path:
        return self.directory / "volume"

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    @property
    def status(self) -> Path:
        return self.directory / STATUS


# --- host side ----------------------------------------------------------------------------------


def deadline_loop(timeout: float, what: str) -> Callable[[], None]:
    """A waiter that sleeps one poll interval per call and raises once `timeout` has passed."""
    end = time.monotonic() + timeout

    def wait() -> None:
        if time.monotonic() > end:
            raise MachineError(f"{what}: still not done after {timeout:g}s")
        time.sleep(POLL)

    return wait


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[19] if fields else None  # field 22, starttime


def alive(init: Init) -> bool:
    fields = stat_fields(init.pid)
    return fields is not None and fields[0] not in "ZX" and fields[19] == init.start


def boot(layout: Layout, spec: dict) -> Init:
    """Boot a machine from `spec` (see `init_main`) and return its init once the image's CMD runs."""
    for directory in (layout.rootfs, layout.scratch, layout.volume):
        directory.mkdir(parents=True, exist_ok=True)
    layout.status.unlink(missing_ok=True)
    boot_file = layout.directory / "boot.json"
    boot_file.write_text(json.dumps(spec, indent=2))
    argv = ["setsid", "--fork", "unshare", *NAMESPACES, "--fork", PYTHON, "-I", str(Path(__file__).resolve()),
            "init", str(boot_file)]  # fmt: skip
    with open(layout.console, "ab") as console:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console, env={"PATH": PATH},
                       check=True, timeout=BOOT_TIMEOUT)  # fmt: skip
    return wait_booted(layout)


def read_status(layout: Layout) -> dict | None:
    try:
        return json.loads(layout.status.read_text())
    except FileNotFoundError:
        return None


def wait_booted(layout: Layout) -> Init:
    wait = deadline_loop(BOOT_TIMEOUT, f"boot of {layout.directory.name}")
    while True:
        status = read_status(layout)
        if status is not None and status["state"] != "booting":
            break
        try:
            wait()
        except MachineError:
            if status is not None:
                kill(Init(status["pid"], status["start"]))
            raise
    if status["state"] != "running":
        raise MachineError(f"machine {layout.directory.name} did not boot: {status.get('error', status['state'])}\n"
                           f"{console_tail(layout)}")  # fmt: skip
    return Init(status["pid"], status["start"])


def console_tail(layout: Layout, lines: int = 20) -> str:
    try:
        text = layout.console.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def kill(init: Init) -> None:
    """Stop the machine: SIGKILL to its init, which takes every process of its pid namespace with it."""
    if not alive(init):
        return
    os.kill(init.pid, signal.SIGKILL)
    wait = deadline_loop(STOP_TIMEOUT, f"stop of pid {init.pid}")
    while alive(init):
        wait()


def processes(init: Init) -> list[int]:
    """Every process of the machine (its init included), as host pids."""
    try:
        namespace = os.readlink(f"/proc/{init.pid}/ns/pid")
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                    found.append(int(entry.name))
            except (FileNotFoundError, PermissionError):
                continue
    return found


def suspend(init: Init) -> None:
    """SIGSTOP to every process of the machine, again until all of them are stopped (a fork may race the first)."""
    wait = deadline_loop(STOP_TIMEOUT, f"suspend of pid {init.pid}")
    while True:
        running = [pid for pid in processes(init) if (stat_fields(pid) or ["T"])[0] not in "TtZX"]
        if not running:
            return
        for pid in running:
            signal_process(pid, signal.SIGSTOP)
        wait()


def resume(init: Init) -> None:
    for pid in processes(init):
        signal_process(pid, signal.SIGCONT)


def signal_process(pid: int, number: signal.Signals) -> None:
    """A signal to a process of the machine, which may have exited since it was listed."""
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def enter_argv(init: Init, argv: list[str]) -> list[str]:
    """`argv` run inside the machine: its namespaces, its root, and its init's working directory (/)."""
    return ["nsenter", "--target", str(init.pid), *NAMESPACES, "--root", "--wd", "--", *argv]


def run_in(init: Init, argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(enter_argv(init, argv), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip


HTTP_CHECK = """
import http.client, sys
port, path, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
try:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("GET", path)
    response = connection.getresponse()
except OSError as error:
    print(f"GET {path}: {error}")
    sys.exit(1)
print(f"GET {path}: {response.status} {response.reason}")
sys.exit(0 if 200 <= response.status < 300 else 1)
"""


def http_check(init: Init, port: int, path: str, timeout: float) -> tuple[bool, str]:
    """An HTTP check from inside the machine's network, as Fly's checks reach the machine's own port."""
    argv = ["nsenter", "--target", str(init.pid), "--net", "--", PYTHON, "-I", "-c", HTTP_CHECK,
            str(port), path, str(timeout)]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"GET {path}: no answer within {timeout:g}s"
    return done.returncode == 0, (done.stdout.strip() or done.stderr.strip())


PROBE = """
import os, subprocess, sys
scratch, rootfs = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "--make-rprivate", "/"], check=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", scratch], check=True)
os.makedirs(scratch + "/upper"); os.makedirs(scratch + "/work")
subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir=/,upperdir={scratch}/upper,workdir={scratch}/work", rootfs], check=True)
import yaml, jinja2
"""


@functools.cache
def unavailable() -> str | None:
    """Why machines cannot run on this host, or None: root, util-linux, Debian's Python, namespaces, overlayfs."""
    if os.geteuid() != 0:
        return "the Fly stand-in's machines need root (namespaces, mounts)"
    missing = [name for name in ("unshare", "nsenter", "setsid", "mount") if shutil.which(name) is None]
    if missing:
        return f"the Fly stand-in's machines need util-linux: {', '.join(missing)} not found"
    if not os.access(PYTHON, os.X_OK):
        return f"the Fly stand-in's machines need Debian's {PYTHON}"
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryDirectory() as rootfs:
        done = subprocess.run(["unshare", *NAMESPACES, "--fork", PYTHON, "-I", "-c", PROBE, scratch, rootfs],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    if done.returncode != 0:
        return ("the Fly stand-in's machines need namespaces, overlayfs over / and python3-yaml and python3-jinja2 "
                f"(scripts/setup-env): {(done.stderr.strip().splitlines() or ['?'])[-1]}")  # fmt: skip
    return None


# --- inside: the machine's init -----------------------------------------------------------------

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, IFF_RUNNING = 0x8913, 0x8914, 0x1, 0x40


def loopback_up() -> None:
    """`ip link set lo up`, without iproute2: SIOCSIFFLAGS on lo."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP | IFF_RUNNING))


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def inside(rootfs: str, path: str) -> str:
    return os.path.join(rootfs, path.lstrip("/"))


def lay_out_root(spec: dict) -> None:
    """The machine's root file system: the host's / under a fresh overlay, then what the image and Fly add."""
    rootfs, scratch = spec["rootfs"], spec["scratch"]
    mount("--make-rprivate", "/")
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", scratch)
    os.makedirs(f"{scratch}/upper")
    os.makedirs(f"{scratch}/work")
    mount("-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={scratch}/upper,workdir={scratch}/work", rootfs)
    mount("-t", "proc", "proc", inside(rootfs, "/proc"))
    mount("--rbind", "/dev", inside(rootfs, "/dev"))
    mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", inside(rootfs, "/tmp"))
    for path in spec["hide"]:
        if os.path.isdir(inside(rootfs, path)):
            mount("-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", inside(rootfs, path))
    if spec["volume"] is not None:
        source, destination = spec["volume"]
        os.makedirs(inside(rootfs, destination), exist_ok=True)
        mount("--bind", source, inside(rootfs, destination))
    for tree, destination in spec["copies"]:
        shutil.copytree(tree, inside(rootfs, destination), symlinks=True, dirs_exist_ok=True)
    navigator = inside(rootfs, "/usr/local/bin/navigator")
    os.makedirs(os.path.dirname(navigator), exist_ok=True)
    shutil.copyfile(spec["navigator"], navigator)
    os.chmod(navigator, 0o755)


def write_status(directory: int, status: dict) -> None:
    """init.json in the machine's host directory, through a descriptor opened before the chroot."""
    descriptor = os.open(f"{STATUS}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=directory)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(status, handle)
    os.rename(f"{STATUS}.tmp", STATUS, src_dir_fd=directory, dst_dir_fd=directory)


def start_cmd(cmd: list[str], env: dict[str, str]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.execvpe(cmd[0], cmd, env)
        except OSError as error:
            print(f"cannot run {cmd}: {error}", file=sys.stderr, flush=True)
        os._exit(127)
    return pid


def init_main(boot_file: str) -> None:
    spec = json.loads(Path(boot_file).read_text())
    directory = os.open(os.path.dirname(boot_file), os.O_RDONLY | os.O_DIRECTORY)
    host_pid = int(os.readlink("/proc/self"))  # /proc is still the host's: the host's pid, not 1
    status = {"pid": host_pid, "start": start_time(host_pid)}
    write_status(directory, {**status, "state": "booting"})
    try:
        loopback_up()
        lay_out_root(spec)
        socket.sethostname(spec["hostname"])
        os.chroot(spec["rootfs"])
        os.chdir("/")
        main = start_cmd(spec["cmd"], spec["env"])
    except (OSError, subprocess.CalledProcessError) as error:
        detail = error.stderr.strip() if isinstance(error, subprocess.CalledProcessError) else ""
        write_status(directory, {**status, "state": "failed", "error": f"{error} {detail}".strip()})
        sys.exit(1)
    print(f"[machine {spec['hostname']}] booted; running {spec['cmd']} as pid {main}", flush=True)
    write_status(directory, {**status, "state": "running"})
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))  # the kernel then ends the whole machine
    signal.alarm(LIFETIME)
    while True:
        pid, code = os.wait()
        if pid == main:
            break
    print(f"[machine {spec['hostname']}] main process exited ({code}); the machine stops", flush=True)
    write_status(directory, {**status, "state": "exited", "wait_status": code})


if __name__ == "__main__" and sys.argv[1:2] == ["init"]:
    init_main(sys.argv[2])
