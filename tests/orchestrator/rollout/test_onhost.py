"""The probes that run on a region's host or machine, run as they are there: Debian's python3, isolated,
nothing but `python3 -c <program()>`, against real hub processes on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.targets.onhost import MAX_MESSAGE_BYTES, program
from tests.hub.hub_testkit import HubProcess

HOST_PYTHON = "/usr/bin/python3"
SECRET_ENV = "ONHOST_TEST_SECRET"
NAVIGATOR = "server: {listen: 9999, health_check: {path: /up}}\ncable: {enabled: %s, path: /cable, broadcast_path: /_broadcast}\n"

pytestmark = pytest.mark.skipif(not os.access(HOST_PYTHON, os.X_OK), reason=f"{HOST_PYTHON} (Debian's python3) is missing")


def on_host(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The program as a host runs it: isolated (no site, no PYTHONPATH), from an empty directory."""
    return subprocess.run([HOST_PYTHON, "-I", "-c", program(), *argv], capture_output=True, text=True, timeout=60,
                          cwd="/", env={"PATH": "/usr/bin:/bin", **(env or {})})


def verdict(done: subprocess.CompletedProcess[str]) -> tuple[bool, str]:
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return found["ok"], found["evidence"]


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    started: list[HubProcess] = []

    def start(enabled: bool = True, hub: str | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> HubProcess:
        directory = tmp_path / f"hub{len(started)}"
        directory.mkdir()
        started.append(HubProcess(directory, NAVIGATOR % str(enabled).lower(), hub, args, env))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def websocket(hub: HubProcess, protocol: str, wanted: str = "open", publish_port: int | None = None,
              env: dict[str, str] | None = None) -> tuple[bool, str]:
    broadcast = f"http://127.0.0.1:{publish_port or hub.port}/_broadcast"
    return verdict(on_host("websocket", hub.ws_url("/cable"), protocol, wanted, "5", SECRET_ENV, "http", broadcast, "", "",
                           env=env))


def test_the_program_needs_nothing_but_the_standard_library() -> None:
    done = on_host("nothing")
    assert done.returncode == 2 and "usage: publish|memory|files|http|metrics|websocket" in done.stderr
    assert "import orchestrator" not in program() and "from hub.signing import sign" in program()


def test_http_probe(start_hub: Callable[..., HubProcess]) -> None:
    hub = start_hub()
    ok, evidence = verdict(on_host("http", f"{hub.base}/up", "5"))
    assert ok and evidence.startswith(f"GET {hub.base}/up: 200 in ")
    ok, evidence = verdict(on_host("http", f"{hub.base}/nothing-here", "5"))
    assert not ok and evidence.startswith(f"GET {hub.base}/nothing-here: 404 in ")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    ok, evidence = verdict(on_host("http", f"http://127.0.0.1:{port}/up", "5"))
    assert not ok and evidence.startswith(f"GET http://127.0.0.1:{port}/up: cannot connect (")


def test_navigator_protocol_round_trip_through_the_front(start_hub: Callable[..., HubProcess]) -> None:
    hub = start_hub(args=("--public-streams",))
    ok, evidence = websocket(hub, "navigator")
    assert ok, evidence
    assert evidence.startswith(f"probe received over {hub.ws_url('/cable')} (navigator protocol) in ")


def test_actioncable_round_trip_signed_with_the_secret_from_the_host_s_environment(start_hub: Callable[..., HubProcess]) -> None:
    secret = os.urandom(16).hex()
    hub = start_hub(hub=f"signing_secret_env: {SECRET_ENV}\npublic_streams: false\n", env={SECRET_ENV: secret})
    ok, evidence = websocket(hub, "actioncable", env={SECRET_ENV: secret})
    assert ok, evidence
    ok, evidence = websocket(hub, "actioncable", env={SECRET_ENV: "not-the-secret"})
    assert (ok, evidence) == (False, "Turbo::StreamsChannel subscription to the probe stream rejected (reject_subscription)")
    ok, evidence = websocket(hub, "actioncable")
    assert not ok and evidence.startswith(f"environment variable {SECRET_ENV} (the actioncable probe's signing secret) is not set")
    assert secret not in evidence


def test_with_the_switch_off_the_refused_upgrade_is_what_passes(start_hub: Callable[..., HubProcess]) -> None:
    off = start_hub(enabled=False)
    assert websocket(off, "navigator", "refused") == (True, "upgrade refused: HTTP 503")
    ok, evidence = websocket(off, "navigator", "open")
    assert not ok and evidence == f"{off.ws_url('/cable')} refused the upgrade: HTTP 503"
    on = start_hub(args=("--public-streams",))
    assert websocket(on, "navigator", "refused") == (False, "cable path still accepts WebSocket upgrades")


def test_a_publish_that_fails_is_the_evidence(start_hub: Callable[..., HubProcess]) -> None:
    hub = start_hub(args=("--public-streams",))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    ok, evidence = websocket(hub, "navigator", publish_port=port)
    assert not ok and evidence.startswith(f"publish failed: POST http://127.0.0.1:{port}/_broadcast: ")


def test_files_are_read_whole_and_a_missing_one_is_null(tmp_path: Path) -> None:
    (tmp_path / "navigator.yml").write_text("server: {}\n")
    done = on_host("files", str(tmp_path / "navigator.yml"), str(tmp_path / "render.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {str(tmp_path / "navigator.yml"): "server: {}\n", str(tmp_path / "render.json"): None}


def test_a_message_larger_than_the_probe_s_is_refused_unread() -> None:
    """A peer that announces a huge frame gets no allocation: the length is checked before the payload is read."""
    def huge_frame(connection: socket.socket, request: bytes) -> None:
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        connection.recv(4096)  # the subscribe
        connection.sendall(struct.pack("!BBQ", 0x81, 127, MAX_MESSAGE_BYTES * 1024))

    port, close = _peer(huge_frame)
    try:
        ok, evidence = verdict(on_host("websocket", f"ws://127.0.0.1:{port}/cable", "navigator", "open", "5", "", "http",
                                       f"http://127.0.0.1:{port}/_broadcast", "", ""))
        assert (ok, evidence) == (False, f"a message over {MAX_MESSAGE_BYTES} bytes, not the probe's")
    finally:
        close()


def test_metrics_are_the_unlabelled_samples_of_the_hub_s_metrics(start_hub: Callable[..., HubProcess]) -> None:
    hub = start_hub()
    done = on_host("metrics", f"{hub.base}/metrics", "5")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found and all(isinstance(value, float) and "{" not in name for name, value in found.items())
    done = on_host("metrics", f"{hub.base}/nothing-here", "5")
    assert done.returncode == 1 and done.stderr.strip() == f"GET {hub.base}/nothing-here: 404"


def _peer(answer: Callable[[socket.socket, bytes], None]) -> tuple[int, Callable[[], None]]:
    """A one-connection server on loopback that reads the request's head, then answers with `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                received = connection.recv(4096)
                if not received:
                    return
                request += received
            try:
                answer(connection, request)
            except OSError:
                pass  # the probe gave up and closed

    server = threading.Thread(target=serve, daemon=True)
    server.start()

    def close() -> None:
        listener.close()
        server.join(10)

    return listener.getsockname()[1], close


def test_metrics_from_a_peer_that_drips_its_answer_end_at_the_timeout() -> None:
    """Each byte comes well within the timeout and the whole answer takes 10 s, so only a deadline on the whole
    answer ends the wait with this error (a timeout per read would have read it all)."""
    def drip(connection: socket.socket, request: bytes) -> None:
        connection.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        for _ in range(200):
            connection.sendall(b"# ")
            time.sleep(0.05)

    port, close = _peer(drip)
    try:
        done = on_host("metrics", f"http://127.0.0.1:{port}/metrics", "1")
        assert done.returncode == 1 and done.stderr.strip() == f"GET http://127.0.0.1:{port}/metrics: no answer within 1 s"
    finally:
        close()


def test_metrics_larger_than_the_bound_are_refused() -> None:
    from orchestrator.targets.onhost import MAX_METRICS_BYTES

    def flood(connection: socket.socket, request: bytes) -> None:
        connection.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"a 1\n" * (MAX_METRICS_BYTES // 4 + 1))

    port, close = _peer(flood)
    try:
        done = on_host("metrics", f"http://127.0.0.1:{port}/metrics", "5")
        assert done.returncode == 1 and done.stderr.strip() == f"GET http://127.0.0.1:{port}/metrics: more than {MAX_METRICS_BYTES} bytes"
    finally:
        close()
