"""Helpers for the end-to-end tests: servers as real subprocesses on
127.0.0.1, Node clients from tests/node read as JSON-line event streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.polling import wait_for
from tests.ports import start_failed

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
RAILS_CONFIG_RU = REPO / "bench" / "hub" / "actioncable" / "config.ru"
INSTALL_HINT = "run `npm ci --prefix tests/node` first"

SECRET_ENV = "E2E_CABLE_SECRET"
SECRET = "e2e-signing-secret-0123456789abcdef"

Event = dict[str, Any]


def http_request(port: int, path: str, method: str = "GET", body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def broadcast(port: int, stream: str, data: Any, path: str = "/_broadcast") -> None:
    status = http_request(port, path, "POST", {"stream": stream, "data": data})
    assert status == 201, f"broadcast to {stream!r} answered {status}"


def is_up(port: int, path: str = "/up") -> bool:
    try:
        return http_request(port, path) == 200
    except OSError:
        return False


def hub_listening_port(output: str) -> int | None:
    """The port in the hub's `listening` line (JSON log format), once it is there."""
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == "listening":
            return int(record["port"])
    return None


@dataclass
class ServerProcess:
    """A server subprocess with its combined output kept in a log file.

    `command(port)` is its command line. With port 0 the server binds a port of its own choosing
    and `reported_port` reads that port from its output; a restart then asks for the same port
    again, since clients reconnect to the address they had.
    """

    command: Callable[[int], list[str]]
    port: int
    log_path: Path
    env: dict[str, str]
    cwd: Path
    reported_port: Callable[[str], int | None] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        argv = self.command(self.port)
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        try:
            if self.port == 0:
                assert self.reported_port is not None, "port 0 needs a server that reports the port it chose"
                reported = self.reported_port
                found = wait_for(lambda: reported(self.log(offset)) or self.exited(), timeout, f"{argv[0]} to report its port")
                if found is not True:
                    self.port = found
            if not self.exited():
                wait_for(lambda: is_up(self.port) or self.exited(), timeout, f"{argv[0]} to answer /up")
            if self.exited():
                raise start_failed(argv[0], self.process.returncode, self.log(offset))
        except BaseException:
            self.kill()
            raise

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.exited():
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and not self.exited():
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=5)

    def log(self, offset: int = 0) -> str:
        """The server's output, from byte `offset` of the log on."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


@dataclass
class Hub:
    server: ServerProcess
    navigator_yml: Path
    navigator: dict[str, Any]

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def cable_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.navigator['cable']['path']}"

    def rewrite_navigator(self, **cable: Any) -> None:
        self.navigator["cable"].update(cable)
        self.navigator_yml.write_text(yaml.safe_dump(self.navigator))


def navigator_config(port: int) -> dict[str, Any]:
    return {
        "server": {"listen": port, "health_check": {"path": "/up"}},
        "cable": {"enabled": True, "path": "/cable", "broadcast_path": "/_broadcast"},
    }


def hub_options() -> dict[str, Any]:
    return {
        "public_streams": True,
        "signing_secret_env": SECRET_ENV,
        "channels": {
            "CurrentHeatChannel": {"stream": "current-heat-{database}"},
            # Showcase's ScoresChannel has no params: the database comes from the URL's query.
            "ScoresChannel": {"stream": "live-scores-{database}"},
            "OfflinePlaylistChannel": {"stream": "offline_playlist_{database}_{user}", "signed": True},
        },
        "ping_interval_seconds": 3,
        "limits": {"shutdown_timeout_seconds": 5},
    }


@dataclass
class NodeClient:
    """A Node client script; its JSON-line events are collected as they arrive."""

    process: subprocess.Popen[str]
    events: list[Event] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    stdout_closed: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unparsed", "line": line.rstrip()}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.stdout_closed = True
            self._changed.notify_all()

    def collect_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip())

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [event for event in self.events if event["event"] == name]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stdout_closed:
                    raise AssertionError(f"timed out waiting for {what}\n{self.transcript()}")
                self._changed.wait(min(remaining, 0.5))

    def wait_count(self, name: str, count: int, timeout: float) -> list[Event]:
        self.wait_for(
            lambda events: sum(event["event"] == name for event in events) >= count,
            timeout,
            f"{count} x {name!r}",
        )
        return self.named(name)

    def wait_exit(self, timeout: float) -> Event:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"client still running after {timeout}s\n{self.transcript()}") from None
        self.wait_for(lambda events: any(e["event"] == "exit" for e in events), 5, "the exit event")
        return self.named("exit")[-1]

    def transcript(self) -> str:
        lines = [json.dumps(event) for event in self.events] + self.stderr
        return "client transcript:\n" + "\n".join(lines)


