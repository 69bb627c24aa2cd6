#!/usr/bin/python3
"""A STAND-IN for Navigator, installed as /usr/local/bin/navigator in every machine of the stand-in `fly`.

What it imitates (/work/shared/reference/navigator.md, "Running Navigator"):
- `navigator CONFIG` writes its pid to /tmp/navigator.pid, serves CONFIG, and
  once the server answers runs the config's `hooks.server.ready` hooks in order
  (command + args, each bounded by its timeout); a hook with `reload_config:
  FILE` that succeeds makes FILE the configuration and reloads it.
- `navigator -s reload` sends SIGHUP to the pid in /tmp/navigator.pid; the
  server then reads its configuration file again.
The server is the project's hub as the front, the way the local fleet runs it
(orchestrator/targets/localctl.py, front_spec): `python3 -m hub --config
<active config> --hub-config <empty hub.yml> --host 127.0.0.1 --port
<server.listen> --navigator-protocol open`, from the image's own copy of the
tool (<config_dir>/tool, config_dir being the folder whose regions/<region>/
holds CONFIG, the generated image's layout). The navigator exec's the hub, so
the pid in /tmp/navigator.pid is the front's. That serves the health check and
Navigator's own cable (cable.enabled, path, broadcast_path); managed processes,
tenants, reverse proxies, static files and the other hooks are NOT run.

The active configuration is /tmp/navigator/navigator.yml, a symbolic link to
the file being served: a reload follows it, so after a ready hook's
reload_config a later `navigator -s reload` re-reads that FILE, as Navigator's
reload re-reads its current configuration file.

Runs on Debian's python3 with python3-yaml only (no repository code inside a machine).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

PID_FILE = Path("/tmp/navigator.pid")
RUN_DIR = Path("/tmp/navigator")
ACTIVE = RUN_DIR / "navigator.yml"
HUB_CONFIG = RUN_DIR / "hub.yml"
READY_TIMEOUT = 30.0
DEFAULT_HOOK_TIMEOUT = 300.0
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: object) -> float:
    """A Go duration ("10s", "1m", "1h30m") in seconds."""
    if duration is None:
        return DEFAULT_HOOK_TIMEOUT
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration))
    if not parts or "".join(number + unit for number, unit in parts) != str(duration):
        raise ValueError(f"invalid duration {duration!r}")
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def say(message: str) -> None:
    print(f"navigator (stand-in): {message}", flush=True)


def reload() -> int:
    try:
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as error:
        print(f"navigator: cannot signal the server in {PID_FILE}: {error}", file=sys.stderr)
        return 1
    return 0


def point_active_at(config: Path) -> None:
    """Swap the active-configuration link in one rename, so the server never reads a missing file."""
    staged = RUN_DIR / "navigator.yml.new"
    staged.unlink(missing_ok=True)
    staged.symlink_to(config.resolve())
    os.replace(staged, ACTIVE)


def answers(port: int, path: str) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", path)
        connection.getresponse().read()
    except OSError:
        return False
    return True


def run_ready_hooks(hooks: list[dict], server: int, port: int, health_path: str) -> None:
    """Navigator's ready hooks: once the server answers (so its SIGHUP handler is installed), in order."""
    end = time.monotonic() + READY_TIMEOUT
    while not answers(port, health_path):
        if time.monotonic() > end:
            say(f"the server did not answer on 127.0.0.1:{port} within {READY_TIMEOUT:g}s; no ready hooks run")
            return
        time.sleep(0.05)
    for hook in hooks:
        argv = [str(hook["command"]), *(str(arg) for arg in hook.get("args") or [])]
        try:
            code = subprocess.run(argv, timeout=seconds(hook.get("timeout")), stdin=subprocess.DEVNULL).returncode
        except (OSError, subprocess.TimeoutExpired) as error:
            say(f"ready hook {argv} failed: {error}")
            continue
        if code != 0:
            say(f"ready hook {argv} exited {code}; the configuration is kept")
        elif hook.get("reload_config"):
            point_active_at(Path(hook["reload_config"]))
            os.kill(server, signal.SIGHUP)
            say(f"ready hook {argv} succeeded; reloading {hook['reload_config']}")


def detach(work) -> None:
    """Run `work` in a grandchild that init (pid 1) reaps, so the server never holds a zombie of it."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            try:
                work()
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)


def listen_port(settings: dict) -> int:
    listen = str((settings.get("server") or {}).get("listen", "3000"))
    return int(listen.rsplit(":", 1)[-1])


def serve(config: Path) -> int:
    settings = yaml.safe_load(config.read_text()) or {}
    tool = config.resolve().parents[2] / "tool"
    if not (tool / "hub" / "__main__.py").exists():
        print(f"navigator (stand-in): no hub in the image at {tool}", file=sys.stderr)
        return 1
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    point_active_at(config)
    HUB_CONFIG.write_text("# The stand-in navigator's front has no hub options of its own.\n{}\n")
    PID_FILE.write_text(f"{os.getpid()}\n")
    port = listen_port(settings)
    health_path = ((settings.get("server") or {}).get("health_check") or {}).get("path") or "/"
    hooks = ((settings.get("hooks") or {}).get("server") or {}).get("ready") or []
    server = os.getpid()
    detach(lambda: run_ready_hooks(hooks, server, port, health_path))
    argv = ["python3", "-m", "hub", "--config", str(ACTIVE), "--hub-config", str(HUB_CONFIG),
            "--host", "127.0.0.1", "--port", str(port), "--navigator-protocol", "open"]  # fmt: skip
    os.execvpe("python3", argv, {**os.environ, "PYTHONPATH": str(tool)})


def main(argv: list[str]) -> int:
    if argv == ["-s", "reload"]:
        return reload()
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: navigator [config-file] | navigator -s reload", file=sys.stderr)
        return 1
    return serve(Path(argv[0] if argv else "config/navigator.yml"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
