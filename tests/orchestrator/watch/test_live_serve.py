"""The live page's server: in this process with small bounds for the attacks, and as the real
`orchestrate status --serve --port 0`, stopped by a signal."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.rollout.journal import Actor, Journal, utc_now
from orchestrator.rollout.model import RegionKey
from orchestrator.watch.live_page import CONTENT_SECURITY_POLICY, PAGE
from orchestrator.watch.serve import LiveServer
from tests.orchestrator.rollout.fleet import Fleet, make_fleet
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(120)

ORD = RegionKey("production", "ord")
URL_LINE = re.compile(r"http://127\.0\.0\.1:(\d+)/")
STATE = {"inventory": "demo", "regions": []}


@contextmanager
def running(state: Callable[[], dict[str, Any]] = lambda: STATE, **bounds: Any) -> Iterator[LiveServer]:
    server = LiveServer(0, state, **bounds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(port: int, path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def answered(port: int) -> int | None:
    """The status of GET /, or None when the connection was closed unanswered."""
    try:
        return get(port)[0]
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        return read_to_end(connection)


def read_to_end(connection: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_the_page_and_its_data_are_served_with_a_policy_that_loads_nothing_from_elsewhere() -> None:
    with running() as server:
        status, headers, body = get(server.port)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert body.decode() == PAGE and int(headers["content-length"]) == len(body)
        policy = headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert policy.startswith("default-src 'none'; script-src 'sha256-") and "connect-src 'self'" in policy
        assert "unsafe" not in policy and headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        status, headers, body = get(server.port, "/state.json?now=1")
        assert status == 200 and headers["content-type"] == "application/json" and json.loads(body) == STATE
        status, headers, body = get(server.port, "/", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) == len(PAGE.encode())
        assert get(server.port, "/journal.sqlite3")[0] == 404
        assert server.server_address[0] == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/"


def test_the_journal_is_read_at_most_once_per_state_seconds_however_many_ask_at_once() -> None:
    asked: list[int] = []

    def state() -> dict[str, Any]:
        asked.append(1)
        time.sleep(0.2)  # a slow journal: the requests meanwhile wait for this reading rather than make their own
        return {**STATE, "read": len(asked)}

    with running(state, state_seconds=3600) as server:
        bodies: list[bytes] = []
        askers = [threading.Thread(target=lambda: bodies.append(get(server.port, "/state.json")[2]), daemon=True)
                  for _ in range(6)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(timeout=30)
        bodies.append(get(server.port, "/state.json")[2])
    assert [json.loads(body) for body in bodies] == [{**STATE, "read": 1}] * 7 and asked == [1]
    with running(state, state_seconds=0) as server:  # no reuse: each request reads afresh
        assert [json.loads(get(server.port, "/state.json")[2])["read"] for _ in range(2)] == [2, 3]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO"])
def test_only_get_and_head_are_answered(method: str) -> None:
    asked: list[int] = []
    with running(lambda: asked.append(1) or STATE) as server:
        status, headers, body = get(server.port, "/state.json", method=method, body=b"{}")
    assert status == 405 and headers["allow"] == "GET, HEAD" and b"read-only" in body
    assert asked == []


def test_a_request_for_another_host_is_refused() -> None:
    with running() as server:
        assert get(server.port, headers={"Host": "rebound.example"})[0] == 421
        assert get(server.port, headers={"Host": f"localhost:{server.port}"})[0] == 200
        assert raw(server.port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 421 ")  # no Host at all


def test_a_request_head_over_the_bound_is_refused_or_dropped_at_once() -> None:
    with running(head_bytes=4096, head_seconds=30) as server:
        started = time.monotonic()
        long_line = raw(server.port, b"GET /" + b"a" * 8000 + b" HTTP/1.0\r\n\r\n")
        headers = raw(server.port, b"GET / HTTP/1.0\r\nHost: x\r\n" + b"X-Padding: " + b"b" * 8000 + b"\r\n\r\n")
        assert time.monotonic() - started < 5
    assert long_line == b""  # the request line alone is over the bound: closed unanswered
    assert headers.startswith(b"HTTP/1.0 431 ")


def test_a_request_that_trickles_in_is_dropped_at_its_deadline() -> None:
    with running(head_seconds=0.5) as server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as peer:
        def trickle() -> None:
            try:
                for byte in b"GET / HTTP/1.0\r\n" + b"X-Slow: " + b"s" * 1000:
                    peer.send(bytes([byte]))
                    time.sleep(0.02)  # the attack's pace, not a synchronisation
            except OSError:
                pass  # the server closed the connection, as it should

        sender = threading.Thread(target=trickle, daemon=True)
        started = time.monotonic()
        sender.start()
        answer = read_to_end(peer)
        elapsed = time.monotonic() - started
        sender.join(timeout=30)
    assert answer == b"" and 0.4 < elapsed < 3


def test_connections_beyond_the_cap_are_closed_at_once_and_served_again_once_there_is_room() -> None:
    with running(max_connections=2, head_seconds=60) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        try:
            def refused() -> bool:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as probe:
                    probe.settimeout(1)
                    try:
                        return probe.recv(1) == b""
                    except TimeoutError:  # served: this probe took the last free slot, the next one will not get in
                        idle.append(probe.dup())
                        return False

            wait_for(refused, 10, "a connection beyond the cap to be closed at once")
        finally:
            for connection in idle:
                connection.close()
        wait_for(lambda: answered(server.port) == 200, 10, "the page once the idle connections are gone")


# --- the real command -----------------------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=15)


@contextmanager
def serving(fleet: Fleet, *arguments: str) -> Iterator[Served]:
    """`orchestrate status --serve --port 0` as a process, once it says where it listens; killed if still running."""
    process = fleet.start("status", "--serve", "--port", "0", *arguments)
    output: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        line = wait_for(lambda: next((line for line in output if URL_LINE.search(line)), None) or process.poll() is not None,
                        30, "orchestrate status --serve to say where it listens")
        assert isinstance(line, str), f"it exited with {process.returncode}: {''.join(output)}"
        match = URL_LINE.search(line)
        assert match is not None
        yield Served(process, int(match[1]), output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)
        reader.join(timeout=5)


def listening_addresses(port: int) -> set[str]:
    """The local addresses a socket listens on at `port`, as the kernel lists them (127.0.0.1 is 0100007F)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return make_fleet(tmp_path)


def test_status_serve_serves_the_journal_on_loopback_read_only_until_sigterm(fleet: Fleet) -> None:
    with Journal.open(fleet.state) as journal:
        now = utc_now()
        for minute in range(3):
            journal.record_samples([(ORD, "m1", now - timedelta(minutes=3 - minute),
                                     {"state": "started", "budget_mb": 40.0, "memory_mb": 30.0 + minute})], 1000, 600)
        journal.audit(Actor.current(), "watch started", "the baking regions")
    before = fleet.query("SELECT count(*) FROM audit")

    with serving(fleet) as served:
        assert listening_addresses(served.port) == {"0100007F"}
        status, headers, body = get(served.port)
        assert status == 200 and "content-security-policy" in headers and b"<svg" not in body  # drawn by its script
        state = json.loads(get(served.port, "/state.json")[2])
        ord_region = next(region for region in state["regions"] if region["region"] == "production/ord")
        assert [point[1] for point in ord_region["machines"][0]["memory"]] == [30.0, 31.0, 32.0]
        assert state["audit"][-1].endswith("watch started: the baking regions")
        assert get(served.port, "/state.json", method="POST")[0] == 405
        assert raw(served.port, b"GET /" + b"a" * 20000 + b" HTTP/1.0\r\n\r\n") == b""
        assert get(served.port)[0] == 200  # still serving
        assert served.stop(signal.SIGTERM) == 0
    assert "stopped by SIGTERM" in "".join(served.output)
    assert fleet.query("SELECT count(*) FROM audit") == before  # nothing was written


def test_without_a_journal_the_page_says_so_creates_none_and_stops_on_sigint(fleet: Fleet) -> None:
    with serving(fleet, "--region", "ord") as served:
        state = json.loads(get(served.port, "/state.json")[2])
        assert state["problem"].startswith(f"no journal at {fleet.state / 'journal.sqlite3'}")
        assert [region["region"] for region in state["regions"]] == ["production/ord"]
        assert served.stop(signal.SIGINT) == 0
    assert "stopped by SIGINT" in "".join(served.output)
    assert not (fleet.state / "journal.sqlite3").exists()


def test_a_port_that_cannot_be_listened_on_is_bad_input(fleet: Fleet) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fleet.orchestrate("status", "--serve", "--port", str(port), timeout=60)
    assert result.code == 2
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}: Address already in use" in result.err
    assert "--port 0 for any free one" in result.err


@pytest.mark.parametrize(("arguments", "message"), [
    (("--serve", "--json"), "not allowed with argument"),
    (("--serve", "--port", "65536"), "'65536' is not a port (0 to 65535)"),
    (("--serve", "--port", "-1"), "'-1' is not a port (0 to 65535)"),
])
def test_what_serve_refuses_on_the_command_line(fleet: Fleet, arguments: tuple[str, ...], message: str) -> None:
    result = fleet.orchestrate("status", *arguments, timeout=60)
    assert result.code == 2 and message in result.err
