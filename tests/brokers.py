"""Real brokers for the tests of hubs that share broadcasts: Debian's nats-server and redis-server.

Each is started on 127.0.0.1 only, on a free port (tests/ports.py: again on another port when the
chosen one was taken before the server bound it), with its output in a log file under the test's
directory, and stopped by its pid. `restart()` starts it again on the same port, since the hubs
under test have its URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polling import wait_for
from tests.ports import start_failed, start_on_free_port

KINDS = ("nats", "redis")


def _answers(port: int, probe: bytes, expected: tuple[bytes, ...]) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            if probe:
                connection.sendall(probe)
            return connection.recv(64).startswith(expected)
    except OSError:
        return False


class Broker:
    """One nats-server or redis-server process; `url` is what a hub's broker.url names."""

    def __init__(self, kind: str, directory: Path, password: str | None = None, user: str | None = None, token: str | None = None) -> None:
        if shutil.which("nats-server" if kind == "nats" else "redis-server") is None:
            pytest.fail(f"{kind} server missing: ./scripts/setup-env test installs it")
        self.kind = kind
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{kind}-server.log"
        self.user, self.password, self.token = user, password, token
        self.process: subprocess.Popen[bytes] | None = None
        self.port = start_on_free_port(self._start)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}" if self.kind == "nats" else f"redis://127.0.0.1:{self.port}/0"

    def _argv(self, port: int) -> list[str]:
        if self.kind == "nats":
            config = self.directory / "nats.conf"
            lines = [f"listen: 127.0.0.1:{port}", "max_payload: 2MB"]
            if self.token is not None:
                lines.append(f'authorization {{ token: "{self.token}" }}')
            elif self.password is not None:
                lines.append(f'authorization {{ user: "{self.user}", password: "{self.password}" }}')
            config.write_text("\n".join(lines) + "\n")
            return ["nats-server", "-c", str(config)]
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.directory)]  # fmt: skip
        if self.password is not None and self.user is not None:
            argv += ["--user", "default", "off", "--user", self.user, "on", f">{self.password}", "~*", "&*", "+@all"]
        elif self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    def _ready(self, port: int) -> bool:
        if self.kind == "nats":
            return _answers(port, b"", (b"INFO ",))
        return _answers(port, b"PING\r\n", (b"+PONG", b"-NOAUTH"))

    def _start(self, port: int) -> int:
        with self.log.open("ab") as output:
            offset = output.tell()
            process = subprocess.Popen(self._argv(port), stdout=output, stderr=subprocess.STDOUT, cwd=self.directory)
        try:
            wait_for(lambda: process.poll() is not None or self._ready(port), 30, f"{self.kind} server on port {port}")
            if process.poll() is not None:
                with self.log.open("rb") as log:
                    log.seek(offset)
                    raise start_failed(f"{self.kind}-server", process.returncode, log.read().decode(errors="replace"))
        except BaseException:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise
        self.process = process
        return port

    def stop(self) -> None:
        """Kill it (as a crash would) and wait until it is gone."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self._start(self.port)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def start_broker_on(kind: str, directory: Path, port: int) -> Broker:
    """A broker on a given port (a hub was told it before the broker ran); fails if the port was taken."""
    broker = Broker.__new__(Broker)
    broker.kind, broker.directory, broker.log = kind, directory, directory / f"{kind}-server.log"
    broker.user = broker.password = broker.token = None
    broker.process = None
    directory.mkdir(parents=True, exist_ok=True)
    broker.port = broker._start(port)
    return broker


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[list[Broker]]:
    """Brokers a test starts (append them); each is stopped at teardown (resumed first if paused)."""
    started: list[Broker] = []
    yield started
    for broker in started:
        if broker.process is not None and broker.process.poll() is None:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()
