"""The servers the tests start survive the race between choosing a port and binding it.

tests/ports.py chooses a free port for servers that cannot report one of their own (sshd, puma,
redis-server) and, when the server then finds the port taken, starts it again on another. Here
the first port handed out is one a socket already listens on, which is what losing that race
looks like; each server must end up on the next port. The hub binds port 0 and reports its port,
so nothing can take it first: its fixture reads the port from its log."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e_support import Hub, ServerProcess, is_up
from tests import ports
from tests.orchestrator.rollout.sshd import missing_programs, start_sshd


class TakenFirst:
    """Hands out a port a socket listens on, then free ports as usual."""

    def __init__(self) -> None:
        self.holder = socket.create_server(("127.0.0.1", 0))
        self.taken = self.holder.getsockname()[1]
        self.handed_out: list[int] = []
        self._free = ports.unused_port

    def __call__(self) -> int:
        port = self._free() if self.handed_out else self.taken
        self.handed_out.append(port)
        return port

    def assert_second_port_used(self, port: int) -> None:
        assert self.handed_out[0] == self.taken
        assert len(self.handed_out) == 2 and port == self.handed_out[1] != self.taken


@pytest.fixture
def taken_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[TakenFirst]:
    chooser = TakenFirst()
    monkeypatch.setattr(ports, "unused_port", chooser)
    yield chooser
    chooser.holder.close()


def test_redis_server_moves_to_another_port(taken_first: TakenFirst, tmp_path: Path) -> None:
    redis = shutil.which("redis-server")
    assert redis, "redis-server is missing: run scripts/setup-env test"
    process, port = ports.start_listening(
        lambda port: [redis, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        ports.redis_answers_ping,
        "redis-server",
        log=tmp_path / "redis.log",
    )
    try:
        taken_first.assert_second_port_used(port)
        assert ports.ADDRESS_IN_USE in (tmp_path / "redis.log").read_text().lower()  # it did try the taken port
    finally:
        process.kill()
        process.wait()


def test_sshd_moves_to_another_port(taken_first: TakenFirst, tmp_path: Path) -> None:
    missing = missing_programs()
    assert not missing, f"needs {', '.join(missing)}: run scripts/setup-env test"
    sshd = start_sshd(tmp_path / "sshd")
    try:
        taken_first.assert_second_port_used(sshd.port)
        assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ")
    finally:
        sshd.stop()


@pytest.fixture
def puma_after_a_taken_port(taken_first: TakenFirst, request: pytest.FixtureRequest) -> ServerProcess:
    return request.getfixturevalue("rails_cable")  # set up only once the first port is a taken one


def test_puma_moves_to_another_port(puma_after_a_taken_port: ServerProcess, taken_first: TakenFirst) -> None:
    taken_first.assert_second_port_used(puma_after_a_taken_port.port)
    assert is_up(puma_after_a_taken_port.port)
    assert ports.ADDRESS_IN_USE in puma_after_a_taken_port.log().lower()


def test_the_hub_listens_on_the_port_it_logged_and_comes_back_on_it(hub: Hub) -> None:
    [listening] = [record for record in map(json.loads, hub.server.log().splitlines()) if record["event"] == "listening"]
    assert listening["port"] == hub.port != 0 and is_up(hub.port)
    hub.server.stop()
    hub.server.start()
    assert is_up(hub.port)
    ports_logged = [record["port"] for record in map(json.loads, hub.server.log().splitlines()) if record["event"] == "listening"]
    assert ports_logged == [hub.port, hub.port]
