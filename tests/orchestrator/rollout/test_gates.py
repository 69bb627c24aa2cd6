"""Health gates: the Watch's arithmetic, and every probe against real hub processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from hub.signing import verify

from orchestrator.rollout import gates as gates_module
from orchestrator.rollout.gates import (
    GateResult,
    Observation,
    Verdict,
    Watch,
    observe,
    observe_on_machine,
    observe_once,
    probe_http,
    probe_memory,
    probe_websocket,
    run_gate,
    run_gates,
    secrets_missing,
)
from orchestrator.rollout.model import Command, Deployment, Gate, GateTiming, RegionKey, RegionState, Step, WriteFile
from orchestrator.targets.base import CommandResult, TargetError
from tests.hub.hub_testkit import HubProcess
from tests.polling import wait_for

W, P, F = Verdict.WAIT, Verdict.PASS, Verdict.FAIL
KEY = RegionKey("staging", "iad")
MIB = 1024 * 1024
SECRET_ENV = "GATE_TEST_SIGNING_SECRET"
STREAM = re.compile(r"^orchestrate-probe-[0-9a-f]{16}$")

NAVIGATOR_ON = """
server: {listen: 9999, health_check: {path: /up}}
cable: {enabled: true, path: /cable, broadcast_path: /_broadcast}
"""
NAVIGATOR_OFF = """
server: {listen: 9999, health_check: {path: /up}}
cable: {enabled: false, path: /cable, broadcast_path: /_broadcast}
"""
SIGNED_HUB = f"signing_secret_env: {SECRET_ENV}\npublic_streams: false\n"

PUBLISH_SCRIPT = """
import json, sys, httpx
url, stream, data = sys.argv[1:]
r = httpx.post(url, json={"stream": stream, "data": json.loads(data)}, trust_env=False, timeout=5)
if r.status_code not in (200, 201):
    sys.exit(f"broadcast answered {r.status_code}")
"""
RSS_SCRIPT = """
import json, sys
pid = sys.argv[1]
with open(f"/proc/{pid}/status") as f:
    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
print(json.dumps({"hub": kb * 1024}))
"""


def timing(
    interval: float = 1.0, timeout: float = 5.0, deadline: float = 10.0, count: int = 3, failure_limit: int = 1
) -> GateTiming:
    return GateTiming(interval, timeout, deadline, count, failure_limit)


def http_gate(path: str = "/up", **kw) -> Gate:
    return Gate("http", path, timing(**kw))


def ws_gate(protocol: str | None = "navigator", path: str = "/cable", expect_open: bool = True, **kw) -> Gate:
    return Gate("websocket", path, timing(**kw), protocol=protocol, expect_open=expect_open)  # type: ignore[arg-type]


def memory_gate(budget_mb: float | None, **kw) -> Gate:
    return Gate("memory", None, timing(**kw), budget_mb=budget_mb)


# --- hubs and a target over them ----------------------------------------------------------------


@pytest.fixture
def secret() -> str:
    return os.urandom(16).hex()


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    started: list[HubProcess] = []

    def start(navigator: str = NAVIGATOR_ON, hub: str | None = None, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> HubProcess:
        directory = tmp_path / f"hub{len(started)}"
        directory.mkdir()
        process = HubProcess(directory, navigator, hub, args, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()  # kills the hub by its pid


@pytest.fixture
def public_hub(start_hub) -> HubProcess:
    return start_hub(args=("--public-streams",))


@pytest.fixture
def signed_hub(start_hub, secret: str) -> HubProcess:
    return start_hub(hub=SIGNED_HUB, env={SECRET_ENV: secret})


class HubTarget:
    """The Target protocol over one real hub process: commands run as local subprocesses."""

    name = "test-hub"

    def __init__(self, hub: HubProcess, publish_argv: tuple[str, ...] | None = None, memory_argv: tuple[str, ...] | None = None) -> None:
        self.hub = hub
        self.publish_argv = publish_argv
        self.memory_argv = memory_argv
        self.commands: list[Command] = []

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple:
        return ()

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        raise TargetError(f"{key}: {operation.label}: not supported by the test target")

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        assert key == KEY, key  # the region asked about, passed through unchanged
        self.commands.append(command)
        try:
            done = subprocess.run(command.argv, capture_output=True, text=True, timeout=command.timeout_seconds)
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{command.label}: timed out after {command.timeout_seconds:g} s")
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def live_files(self, key: RegionKey, names: tuple[str, ...]) -> Mapping[str, str | None]:
        return {name: None for name in names}

    def http_url(self, key: RegionKey, path: str) -> str:
        assert key == KEY, key  # the region asked about, passed through unchanged
        return f"{self.hub.base}{path}"

    def cable_url(self, key: RegionKey, path: str) -> str:
        assert key == KEY, key  # the region asked about, passed through unchanged
        return self.hub.ws_url(path)

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        pass

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        assert key == KEY, key  # the region asked about, passed through unchanged
        argv = self.publish_argv or (sys.executable, "-c", PUBLISH_SCRIPT, f"{self.hub.base}/_broadcast", stream, data_json)
        return Command(argv, label="publish probe")

    def memory_command(self, key: RegionKey, machine: str = "") -> Command:
        assert key == KEY, key  # the region asked about, passed through unchanged
        return Command(self.memory_argv or (sys.executable, "-c", RSS_SCRIPT, str(self.hub.proc.pid)), label="measure rss")


class SilentPublishTarget(HubTarget):
    """Its publish succeeds and sends nothing: a broadcast lost on the way."""

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if command.label == "publish probe":
            assert key == KEY, key
            self.commands.append(command)
            return CommandResult(0, "", "")
        return super().run(key, command)


class BrokenTarget(HubTarget):
    def run(self, key: RegionKey, command: Command) -> CommandResult:
        raise TargetError(f"{key}: {command.label}: ssh: connect to host iad: Connection timed out")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def poster(hub: HubProcess, calls: list[tuple[str, str]], data: object = None) -> Callable[[str, str], Observation]:
    """A publish that POSTs to the hub's broadcast path from the test (optionally other data than asked)."""

    def publish(stream: str, data_json: str) -> Observation:
        calls.append((stream, data_json))
        payload = json.loads(data_json) if data is None else data
        response = httpx.post(f"{hub.base}/_broadcast", json={"stream": stream, "data": payload}, trust_env=False, timeout=5)
        return Observation(response.status_code in (200, 201), f"broadcast answered {response.status_code}")

    return publish


# --- peers that misbehave on purpose --------------------------------------------------------------
# The hub answers correctly; these stand in for a server that does not, to reach the probe's other paths.


class ScriptedPeer:
    """A WebSocket server (the websockets library's, in a thread) that plays a script to each client.

    A script is a list of steps: ("recv",) reads the client's subscribe; ("send", f) sends f(ctx)
    (a dict is sent as JSON, str and bytes as they are); ("publish",) waits for the probe's publish;
    ("close", code, reason) closes; ("drop",) shuts the socket without a close frame. After the
    script the peer waits for the client to close. ctx holds "stream" or "identifier" from the
    subscribe and "data" from the publish.
    """

    def __init__(self, script: list[tuple], subprotocols: list[str] | None = None) -> None:
        self.script = script
        self.published: queue.Queue[tuple[str, str]] = queue.Queue()
        self.received: list[Any] = []
        self.server = serve(self._handle, "127.0.0.1", 0, subprotocols=subprotocols, compression=None)  # type: ignore[arg-type]
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/cable") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def publish(self, stream: str, data_json: str) -> Observation:
        self.published.put((stream, data_json))
        return Observation(True, "queued")

    def _handle(self, ws: ServerConnection) -> None:
        ctx: dict[str, Any] = {}
        try:
            for step in self.script:
                if step[0] == "recv":
                    message = json.loads(ws.recv(timeout=10))
                    self.received.append(message)
                    ctx["stream"] = message.get("stream")
                    ctx["identifier"] = message.get("identifier")
                elif step[0] == "send":
                    out = step[1](ctx)
                    ws.send(json.dumps(out) if isinstance(out, dict) else out)
                elif step[0] == "publish":
                    stream, data_json = self.published.get(timeout=10)
                    ctx["data"] = json.loads(data_json)
                    ctx["published_stream"] = stream
                elif step[0] == "close":
                    ws.close(step[1], step[2])
                    return
                elif step[0] == "drop":
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    return
            for _ in ws:
                pass
        except ConnectionClosed:
            pass

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def peer() -> Iterator[Callable[..., ScriptedPeer]]:
    started: list[ScriptedPeer] = []

    def start(script: list[tuple], subprotocols: list[str] | None = None) -> ScriptedPeer:
        started.append(ScriptedPeer(script, subprotocols))
        return started[-1]

    yield start
    for p in started:
        p.stop()


class RawPeer:
    """A TCP server that answers each connection's request head with fixed bytes (or never, with None)."""

    def __init__(self, answer: Callable[[], bytes] | None) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.heads: list[bytes] = []  # each connection's request head, as received
        if answer is not None:
            self.thread = threading.Thread(target=self._serve, daemon=True)
            self.thread.start()

    def _serve(self) -> None:
        assert self.answer is not None
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            self.heads.append(head)
            conn.sendall(self.answer())

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[..., RawPeer]]:
    started: list[RawPeer] = []

    def start(answer: Callable[[], bytes] | None) -> RawPeer:
        started.append(RawPeer(answer))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def nav_subscribed(ctx: dict) -> dict:
    return {"type": "subscribed", "stream": ctx["stream"]}


def nav_message(ctx: dict) -> dict:
    return {"type": "message", "stream": ctx["stream"], "data": ctx["data"]}


def ping(ctx: dict) -> dict:
    return {"type": "ping"}


def welcome(ctx: dict) -> dict:
    return {"type": "welcome", "sid": "s1"}


def confirm(ctx: dict) -> dict:
    return {"identifier": ctx["identifier"], "type": "confirm_subscription"}


def ac_message(ctx: dict) -> dict:
    return {"identifier": ctx["identifier"], "message": ctx["data"]}


def const(value: Any) -> Callable[[dict], Any]:
    return lambda ctx: value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms_pattern(prefix: str) -> str:
    return "^" + re.escape(prefix) + r"\d+ ms$"


# --- Watch ----------------------------------------------------------------------------------------

WATCH_CASES = [
    # (name, count, failure_limit, deadline, [(ok, now)], verdicts, failures, successes in a row at the end)
    ("count in a row", 3, 1, 10, [(True, 0), (True, 1), (True, 2)], [W, W, P], 0, 3),
    ("count 1", 1, 0, 10, [(True, 0)], [P], 0, 1),
    ("a failure resets the run", 3, 1, 10, [(True, 0), (True, 1), (False, 2), (True, 3), (True, 4), (True, 5)], [W, W, W, W, W, P], 1, 3),
    ("failure limit 0: the first failure fails", 3, 0, 10, [(False, 0)], [F], 1, 0),
    ("failure limit 1: one failure is tolerated", 3, 1, 10, [(False, 0), (True, 1)], [W, W], 1, 1),
    ("failure limit 1: failures count even when apart", 3, 1, 10, [(False, 0), (True, 1), (False, 2)], [W, W, F], 2, 0),
    ("failure limit 2", 5, 2, 10, [(False, 0), (False, 1), (False, 2)], [W, W, F], 3, 0),
    ("just before the deadline", 3, 5, 10, [(True, 0), (False, 9.99)], [W, W], 1, 0),
    ("at the deadline without a pass", 3, 5, 10, [(True, 0), (True, 10)], [W, F], 0, 2),
    ("after the deadline, a failure", 3, 5, 10, [(False, 11)], [F], 1, 0),
    ("a pass at the deadline is a pass", 2, 5, 10, [(True, 0), (True, 10)], [W, P], 0, 2),
    ("the verdict stays", 1, 0, 10, [(True, 0), (False, 1), (False, 20)], [P, P, P], 0, 1),
    ("a failure verdict stays", 1, 0, 10, [(False, 0), (True, 1)], [F, F], 1, 0),
]


@pytest.mark.parametrize(
    "count, failure_limit, deadline, observations, verdicts, failures, in_a_row",
    [case[1:] for case in WATCH_CASES],
    ids=[case[0] for case in WATCH_CASES],
)
def test_watch_verdicts(count, failure_limit, deadline, observations, verdicts, failures, in_a_row):
    watch = Watch(timing(deadline=deadline, count=count, failure_limit=failure_limit), started_at=0.0)
    assert [watch.observe(ok, now) for ok, now in observations] == verdicts
    assert (watch.failures, watch.successes_in_a_row) == (failures, in_a_row)
    assert watch.verdict == verdicts[-1]


def test_watch_deadline_counts_from_started_at():
    watch = Watch(timing(deadline=10, count=3, failure_limit=5), started_at=100.0)
    assert watch.observe(True, 109.9) is W
    assert watch.observe(True, 110.0) is F
    assert watch.reason == "deadline 10 s passed with 2 of 3 successes in a row"


def test_watch_reasons():
    passed = Watch(timing(count=2), 0.0)
    passed.observe(True, 0)
    assert passed.reason == ""
    passed.observe(True, 1)
    assert passed.reason == "2 successes in a row"
    one = Watch(timing(count=1), 0.0)
    one.observe(True, 0)
    assert one.reason == "1 success in a row"
    failed = Watch(timing(failure_limit=1), 0.0)
    failed.observe(False, 0)
    failed.observe(False, 1)
    assert failed.reason == "2 failures > failure limit 1"
    first = Watch(timing(failure_limit=0), 0.0)
    first.observe(False, 0)
    assert first.reason == "1 failure > failure limit 0"


def test_watch_next_at_is_one_interval_later_but_not_past_the_deadline():
    watch = Watch(timing(interval=2.5, deadline=10), started_at=100.0)
    assert watch.next_at(100.0) == 102.5
    assert watch.next_at(107.5) == 110.0
    assert watch.next_at(108.0) == 110.0


@pytest.mark.parametrize(
    "count, failure_limit, message",
    [(0, 1, "gate count must be at least 1, got 0"), (1, -1, "gate failure_limit must be at least 0, got -1")],
)
def test_watch_refuses_impossible_timings(count, failure_limit, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Watch(timing(count=count, failure_limit=failure_limit), 0.0)
    Watch(timing(count=1, failure_limit=0), 0.0)  # the smallest allowed


def test_gate_result_evidence():
    gate = http_gate()
    ok, bad = Observation(True, "GET /up: 200 in 1 ms"), Observation(False, "GET /up: 503 in 1 ms")
    assert GateResult(gate, P, (bad, ok), "1 success in a row").evidence == "GET /up: 200 in 1 ms"
    assert GateResult(gate, F, (ok, bad), "2 failures > failure limit 1").evidence == "GET /up: 503 in 1 ms"
    deadline = GateResult(gate, F, (ok,), "deadline 1 s passed with 1 of 3 successes in a row")
    assert deadline.evidence == "deadline 1 s passed with 1 of 3 successes in a row; last: GET /up: 200 in 1 ms"
    assert GateResult(gate, F, (), "why").evidence == "why"


# --- probe_http -----------------------------------------------------------------------------------


def test_probe_http_up(public_hub):
    url = f"{public_hub.base}/up"
    observation = probe_http(url, 5)
    assert observation.ok is True
    assert re.match(ms_pattern(f"GET {url}: 200 in "), observation.evidence)


def test_probe_http_wrong_path(public_hub):
    url = f"{public_hub.base}/nope"
    observation = probe_http(url, 5)
    assert observation.ok is False
    assert re.match(ms_pattern(f"GET {url}: 404 in "), observation.evidence)


def test_probe_http_refused():
    url = f"http://127.0.0.1:{closed_port()}/up"
    observation = probe_http(url, 5)
    assert observation.ok is False
    assert observation.evidence.startswith(f"GET {url}: cannot connect (")
    assert "refused" in observation.evidence.lower()


def test_probe_http_does_not_follow_redirects(public_hub, raw_peer):
    answer = f"HTTP/1.1 302 Found\r\nLocation: {public_hub.base}/up\r\nContent-Length: 0\r\n\r\n".encode()
    url = f"http://127.0.0.1:{raw_peer(lambda: answer).port}/up"
    observation = probe_http(url, 5)
    assert observation.ok is False
    assert re.match(ms_pattern(f"GET {url}: 302 in "), observation.evidence)


def test_probes_send_the_targets_headers(raw_peer):
    """The Fly target pins the region with a header; both probes must send it."""
    peer = raw_peer(lambda: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    headers = {"fly-prefer-region": "ord"}
    assert probe_http(f"http://127.0.0.1:{peer.port}/up", 5, headers).ok is False
    off = Gate("websocket", "/cable", timing(), protocol="navigator", expect_open=False)
    refused = probe_websocket(f"ws://127.0.0.1:{peer.port}/cable", off, lambda stream, data: Observation(True, ""), 5, None, headers)
    assert refused.ok is True
    assert len(peer.heads) == 2
    assert all(b"\r\nfly-prefer-region: ord\r\n" in head.lower() for head in peer.heads)


def test_probe_http_unsupported_url():
    observation = probe_http("ftp://127.0.0.1/up", 5)
    assert observation == Observation(False, "GET ftp://127.0.0.1/up: UnsupportedProtocol: Request URL has an unsupported protocol 'ftp://'.")


def test_probe_http_silent_server():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepted by the kernel, never answered
        url = f"http://127.0.0.1:{server.getsockname()[1]}/up"
        observation = probe_http(url, 0.2)
    assert observation == Observation(False, f"GET {url}: no answer within 0.2 s")


# --- probe_websocket: Navigator's protocol --------------------------------------------------------


def test_navigator_round_trip(public_hub):
    calls: list[tuple[str, str]] = []
    url = public_hub.ws_url("/cable")
    observation = probe_websocket(url, ws_gate("navigator"), poster(public_hub, calls), 5, None)
    assert observation.ok is True, observation.evidence
    assert re.match(ms_pattern(f"probe received over {url} (navigator protocol) in "), observation.evidence)
    [(stream, data_json)] = calls
    assert STREAM.match(stream)
    assert re.fullmatch(r'\{"probe": "[0-9a-f]{16}"\}', data_json)
    assert public_hub.wait_log("subscribed", stream=stream)
    assert public_hub.wait_log("broadcast", stream=stream, delivered=1)
    again = probe_websocket(url, ws_gate("navigator"), poster(public_hub, calls), 5, None)
    assert again.ok is True
    assert calls[1][0] != stream and calls[1][1] != data_json  # a new stream and token every time


def test_navigator_probe_that_never_arrives(public_hub):
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate("navigator"), lambda s, d: Observation(True, "sent"), 0.3, None)
    assert observation == Observation(False, "probe not received within 0.3 s")


def test_navigator_probe_with_other_data(public_hub):
    calls: list[tuple[str, str]] = []
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate("navigator"), poster(public_hub, calls, {"probe": "other"}), 5, None)
    assert observation == Observation(False, 'probe stream delivered different data: {"probe": "other"}')


def test_navigator_probe_whose_publish_fails(public_hub):
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate("navigator"), lambda s, d: Observation(False, "exit 7"), 5, None)
    assert observation == Observation(False, "publish failed: exit 7")


def test_navigator_subscription_refused_without_public_streams(start_hub):
    hub = start_hub()  # no --public-streams: the hub ignores a raw Navigator subscribe
    calls: list[tuple[str, str]] = []
    observation = probe_websocket(hub.ws_url("/cable"), ws_gate("navigator"), poster(hub, calls), 0.3, None)
    assert observation == Observation(False, "subscription confirmation for the probe stream not received within 0.3 s")
    assert calls == []


def test_navigator_probe_at_a_wrong_path(public_hub):
    url = public_hub.ws_url("/nope")
    observation = probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "sent"), 5, None)
    assert observation == Observation(False, f"{url} refused the upgrade: HTTP 404")


def test_navigator_probe_at_a_closed_port():
    url = f"ws://127.0.0.1:{closed_port()}/cable"
    observation = probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "sent"), 5, None)
    assert observation == Observation(False, f"cannot connect to {url}: Connection refused")


def _switch_off_during_publish(hub: HubProcess) -> Callable[[str, str], Observation]:
    def publish(stream: str, data_json: str) -> Observation:
        hub.navigator_path.write_text(NAVIGATOR_OFF)
        hub.signal(signal.SIGHUP)
        hub.wait_log("reloaded", cable_enabled=False)
        return Observation(True, "switched off instead")

    return publish


def test_navigator_probe_closed_by_the_server(public_hub):
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate("navigator"), _switch_off_during_publish(public_hub), 5, None)
    assert observation == Observation(False, "connection closed by the server (code 1001 cable disabled)")


# --- probe_websocket: Action Cable ----------------------------------------------------------------


def test_actioncable_round_trip(signed_hub, secret):
    calls: list[tuple[str, str]] = []
    url = signed_hub.ws_url("/cable")
    observation = probe_websocket(url, ws_gate("actioncable"), poster(signed_hub, calls), 5, secret.encode())
    assert observation.ok is True, observation.evidence
    assert re.match(ms_pattern(f"probe received over {url} (actioncable protocol) in "), observation.evidence)
    [(stream, _)] = calls
    assert STREAM.match(stream)
    assert signed_hub.wait_log("subscribed", stream=stream)
    assert signed_hub.wait_log("connected", protocol="actioncable-v1-json")


def test_actioncable_wrong_secret_is_rejected_and_not_shown(signed_hub, secret):
    wrong = os.urandom(16).hex()
    calls: list[tuple[str, str]] = []
    observation = probe_websocket(signed_hub.ws_url("/cable"), ws_gate("actioncable"), poster(signed_hub, calls), 5, wrong.encode())
    assert observation == Observation(False, "Turbo::StreamsChannel subscription to the probe stream rejected (reject_subscription)")
    assert calls == []
    assert signed_hub.wait_log("subscription_rejected", why="bad signature")
    assert wrong not in observation.evidence and secret not in observation.evidence
    assert "--" not in observation.evidence  # no signed name (base64--hex)


def test_actioncable_without_a_secret(signed_hub):
    observation = probe_websocket(signed_hub.ws_url("/cable"), ws_gate("actioncable"), lambda s, d: Observation(True, "sent"), 5, None)
    assert observation == Observation(False, "no signing secret for the actioncable probe")
    assert signed_hub.find("connected") is None  # nothing was attempted


def test_actioncable_probe_that_never_arrives(signed_hub, secret):
    observation = probe_websocket(signed_hub.ws_url("/cable"), ws_gate("actioncable"), lambda s, d: Observation(True, "sent"), 0.3, secret.encode())
    assert observation == Observation(False, "probe not received within 0.3 s")


def test_actioncable_probe_with_other_data(signed_hub, secret):
    calls: list[tuple[str, str]] = []
    observation = probe_websocket(signed_hub.ws_url("/cable"), ws_gate("actioncable"), poster(signed_hub, calls, ["x"]), 5, secret.encode())
    assert observation == Observation(False, 'probe stream delivered different data: ["x"]')


def test_actioncable_probe_disconnected_by_the_server(signed_hub, secret):
    observation = probe_websocket(signed_hub.ws_url("/cable"), ws_gate("actioncable"), _switch_off_during_publish(signed_hub), 5, secret.encode())
    assert observation == Observation(False, "server sent disconnect (reason remote) while waiting for probe")


def test_actioncable_probe_against_a_disabled_cable(start_hub, secret):
    hub = start_hub(NAVIGATOR_OFF)
    url = hub.ws_url("/cable")
    observation = probe_websocket(url, ws_gate("actioncable"), lambda s, d: Observation(True, "sent"), 5, secret.encode())
    assert observation == Observation(False, f"{url} refused the upgrade: HTTP 503")


def test_actioncable_pings_from_the_hub_are_skipped(start_hub, secret):
    hub = start_hub(hub=SIGNED_HUB + "ping_interval_seconds: 0.01\n", env={SECRET_ENV: secret})

    def publish(stream: str, data_json: str) -> Observation:
        # Pings queued ahead of the broadcast: a probe that does not skip them fails.
        sent = hub.metric("hub_bytes_sent_total")
        wait_for(lambda: hub.metric("hub_bytes_sent_total") >= sent + 3 * len('{"type":"ping","message":1700000000}'), what="pings")
        return poster(hub, [])(stream, data_json)

    observation = probe_websocket(hub.ws_url("/cable"), ws_gate("actioncable"), publish, 5, secret.encode())
    assert observation.ok is True, observation.evidence


# --- probe_websocket: a peer that misbehaves -----------------------------------------------------


def test_navigator_pings_in_every_phase_are_skipped(peer):
    p = peer([("send", ping), ("recv",), ("send", ping), ("send", nav_subscribed), ("send", ping), ("publish",), ("send", ping), ("send", nav_message)])
    observation = probe_websocket(p.url(), ws_gate("navigator"), p.publish, 5, None)
    assert observation.ok is True, observation.evidence
    [subscribe] = p.received
    assert subscribe == {"type": "subscribe", "stream": subscribe["stream"]} and STREAM.match(subscribe["stream"])


NAV_WAIT = "while waiting for subscription confirmation for the probe stream"


@pytest.mark.parametrize(
    "script, evidence",
    [
        ([("recv",), ("send", ping)], "subscription confirmation for the probe stream not received within 0.3 s"),
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", ping)], "probe not received within 0.3 s"),
    ],
    ids=["subscribing", "probing"],
)
def test_navigator_a_ping_is_not_an_answer(peer, script, evidence):
    p = peer(script)
    assert probe_websocket(p.url(), ws_gate("navigator"), p.publish, 0.3, None) == Observation(False, evidence)


@pytest.mark.parametrize(
    "script, evidence",
    [
        ([("send", ping)], "welcome not received within 0.3 s"),
        ([("send", welcome), ("recv",), ("send", ping)], "subscription confirmation for the probe stream not received within 0.3 s"),
        ([("send", welcome), ("recv",), ("send", confirm), ("publish",), ("send", ping), ("send", confirm)], "probe not received within 0.3 s"),
    ],
    ids=["welcoming", "subscribing", "probing"],
)
def test_actioncable_a_ping_is_not_an_answer(peer, secret, script, evidence):
    p = peer(script, subprotocols=["actioncable-v1-json"])
    assert probe_websocket(p.url(), ws_gate("actioncable"), p.publish, 0.3, secret.encode()) == Observation(False, evidence)


def test_unreachable_address():
    url = "ws://255.255.255.255:80/cable"  # refused locally by the kernel (no route / broadcast), never refused by a peer
    observation = probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "x"), 5, None)
    assert observation.ok is False and observation.evidence.startswith(f"cannot connect to {url}: ")
    assert not observation.evidence.endswith(f"{url}: ") and "None" not in observation.evidence
    refused = probe_websocket(url, ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert refused.ok is False and refused.evidence == observation.evidence


@pytest.mark.parametrize(
    "script, evidence",
    [
        ([("recv",), ("send", const({"type": "subscribed", "stream": "other"}))], f"unexpected message of type 'subscribed' {NAV_WAIT}"),
        ([("recv",), ("send", const({"stream": "x"}))], f"unexpected message of type none {NAV_WAIT}"),
        ([("recv",), ("send", const({"type": 7}))], f"unexpected message of type none {NAV_WAIT}"),
        ([("recv",), ("send", const({"type": "y" * 200}))], f"unexpected message of type '{'y' * 76}... {NAV_WAIT}"),
        ([("recv",), ("send", const(b"\x00\x01"))], f"unexpected binary message {NAV_WAIT}"),
        ([("recv",), ("send", const("[1, 2]"))], f"unexpected message that is not a JSON object {NAV_WAIT}"),
        ([("recv",), ("send", const("{oops"))], f"unexpected message that is not a JSON object {NAV_WAIT}"),
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", lambda c: {"type": "message", "stream": "other", "data": c["data"]})],
         "unexpected message of type 'message' while waiting for probe"),
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", nav_subscribed)], "unexpected message of type 'subscribed' while waiting for probe"),
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", lambda c: {"type": "message", "stream": c["stream"]})],
         "probe stream delivered different data: no data"),
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", lambda c: {"type": "message", "stream": c["stream"], "data": json.dumps(c["data"])})],
         "probe stream delivered different data: *"),  # the data as a string of JSON is not the data
        ([("recv",), ("send", nav_subscribed), ("publish",), ("send", const("x" * 70000))], "connection closed by the probe (code 1009 *"),
        ([("recv",), ("close", 1000, "")], "connection closed by the server (code 1000)"),
        ([("recv",), ("send", nav_subscribed), ("close", 4000, "bye now")], "connection closed by the server (code 4000 bye now)"),
        ([("recv",), ("drop",)], "connection closed by the server without a close frame"),
    ],
    ids=["other stream", "no type", "type not a string", "long type", "binary", "array", "not JSON", "message for another stream",
         "subscribed again", "no data", "data as a string", "too large", "close without reason", "close with reason", "dropped"],
)  # fmt: skip
def test_navigator_peer_misbehaving(peer, script, evidence):
    p = peer(script)
    observation = probe_websocket(p.url(), ws_gate("navigator"), p.publish, 5, None)
    assert observation.ok is False
    if evidence.endswith("*"):  # the rest is the library's wording
        assert observation.evidence.startswith(evidence[:-1])
    else:
        assert observation.evidence == evidence


def test_actioncable_pings_and_repeated_confirmations_are_skipped(peer, secret):
    p = peer(
        [("send", ping), ("send", welcome), ("send", ping), ("recv",), ("send", ping), ("send", confirm),
         ("publish",), ("send", ping), ("send", confirm), ("send", ac_message)],
        subprotocols=["actioncable-v1-json"],
    )  # fmt: skip
    observation = probe_websocket(p.url(), ws_gate("actioncable"), p.publish, 5, secret.encode())
    assert observation.ok is True, observation.evidence
    [subscribe] = p.received
    assert subscribe["command"] == "subscribe"
    params = json.loads(subscribe["identifier"])
    assert params["channel"] == "Turbo::StreamsChannel" and set(params) == {"channel", "signed_stream_name"}
    stream = verify(params["signed_stream_name"], secret.encode())
    assert stream is not None and STREAM.match(stream)


AC_SUB = "while waiting for subscription confirmation for the probe stream"


@pytest.mark.parametrize(
    "script, evidence",
    [
        ([("send", const({"type": "confirm_subscription", "identifier": "x"}))],
         "unexpected message of type 'confirm_subscription' for another subscription while waiting for welcome"),
        ([("send", const({"type": "disconnect", "reason": "unauthorized", "reconnect": False}))],
         "server sent disconnect (reason unauthorized) while waiting for welcome"),
        ([("send", const({"type": "disconnect"}))], "server sent disconnect (reason none given) while waiting for welcome"),
        ([("send", welcome), ("recv",), ("send", const({"identifier": "x", "type": "confirm_subscription"}))],
         f"unexpected message of type 'confirm_subscription' for another subscription {AC_SUB}"),
        ([("send", welcome), ("recv",), ("send", const({"identifier": "x", "type": "reject_subscription"}))],
         f"unexpected message of type 'reject_subscription' for another subscription {AC_SUB}"),
        ([("send", welcome), ("recv",), ("send", lambda c: {"identifier": c["identifier"], "type": "reject_subscription"})],
         "Turbo::StreamsChannel subscription to the probe stream rejected (reject_subscription)"),
        ([("send", welcome), ("recv",), ("send", welcome)], f"unexpected message of type 'welcome' {AC_SUB}"),
        ([("send", welcome), ("recv",), ("send", confirm), ("publish",), ("send", lambda c: {"identifier": "x", "message": c["data"]})],
         "unexpected message of type none for another subscription while waiting for probe"),
        ([("send", welcome), ("recv",), ("send", confirm), ("publish",), ("send", lambda c: {"identifier": c["identifier"], "type": "reject_subscription"})],
         "unexpected message of type 'reject_subscription' for the probe subscription while waiting for probe"),
        ([("send", welcome), ("recv",), ("send", confirm), ("publish",), ("send", lambda c: {"identifier": c["identifier"], "type": "x", "message": c["data"]})],
         "unexpected message of type 'x' for the probe subscription while waiting for probe"),
        ([("send", welcome), ("recv",), ("send", confirm), ("publish",), ("send", lambda c: {"type": "disconnect", "reason": "server_restart"})],
         "server sent disconnect (reason server_restart) while waiting for probe"),
    ],
    ids=["not welcome", "disconnect", "disconnect without reason", "confirm of another", "reject of another", "rejected",
         "welcome again", "message of another", "rejected late", "message with a type", "disconnect late"],
)  # fmt: skip
def test_actioncable_peer_misbehaving(peer, secret, script, evidence):
    p = peer(script, subprotocols=["actioncable-v1-json"])
    observation = probe_websocket(p.url(), ws_gate("actioncable"), p.publish, 5, secret.encode())
    assert observation == Observation(False, evidence)
    assert secret not in observation.evidence


def test_actioncable_subprotocol_not_accepted(peer, secret):
    p = peer([("send", welcome)], subprotocols=None)
    observation = probe_websocket(p.url(), ws_gate("actioncable"), p.publish, 5, secret.encode())
    assert observation == Observation(False, "server did not accept the actioncable-v1-json subprotocol")


@pytest.mark.parametrize("protocol", ["navigator", "actioncable"])
def test_no_handshake_answer(raw_peer, protocol):
    url = f"ws://127.0.0.1:{raw_peer(None).port}/cable"
    observation = probe_websocket(url, ws_gate(protocol), lambda s, d: Observation(True, "x"), 0.2, b"s")
    assert observation == Observation(False, f"no WebSocket handshake with {url} within 0.2 s")
    refused = probe_websocket(url, ws_gate(protocol, expect_open=False), lambda s, d: Observation(True, "x"), 0.2, None)
    assert refused == Observation(False, f"no answer to the WebSocket upgrade at {url} within 0.2 s")


def test_no_time_at_all(public_hub):
    url = public_hub.ws_url("/cable")
    assert probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "x"), 0, None) == Observation(False, f"no WebSocket handshake with {url} within 0 s")
    assert probe_websocket(url, ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 0, None) == Observation(False, f"no WebSocket handshake with {url} within 0 s")


BAD_ACCEPT = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"


def test_broken_upgrade_answer(raw_peer):
    url = f"ws://127.0.0.1:{raw_peer(lambda: BAD_ACCEPT).port}/cable"
    observation = probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "x"), 5, None)
    assert observation == Observation(False, f"WebSocket to {url} failed: InvalidHeaderValue: invalid Sec-WebSocket-Accept header: wrong")
    refused = probe_websocket(url, ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert refused == Observation(False, f"WebSocket upgrade at {url} failed: InvalidHeaderValue: invalid Sec-WebSocket-Accept header: wrong")


def test_not_a_websocket_url():
    url = "http://127.0.0.1:1/cable"
    why = f"InvalidURI: {url} isn't a valid URI: scheme isn't ws or wss"
    assert probe_websocket(url, ws_gate("navigator"), lambda s, d: Observation(True, "x"), 5, None) == Observation(False, f"WebSocket to {url} failed: {why}")
    assert probe_websocket(url, ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 5, None) == Observation(False, f"WebSocket upgrade at {url} failed: {why}")


@pytest.mark.parametrize("protocol", [None, "socketio"])
def test_unknown_protocol_is_a_programming_error(protocol):
    with pytest.raises(ValueError, match=f"websocket gate at /cable: unknown protocol {protocol!r}"):
        probe_websocket("ws://127.0.0.1:1/cable", ws_gate(protocol), lambda s, d: Observation(True, "x"), 5, None)


def test_probes_ignore_proxies_from_the_environment(public_hub, monkeypatch):
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert probe_http(f"{public_hub.base}/up", 5).ok is True
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate("navigator"), poster(public_hub, []), 5, None)
    assert observation.ok is True, observation.evidence


# --- probe_websocket: the switch is off ----------------------------------------------------------


@pytest.mark.parametrize("protocol", ["navigator", "actioncable", None])
def test_switch_off_refused_is_ok(start_hub, protocol):
    hub = start_hub(NAVIGATOR_OFF)
    observation = probe_websocket(hub.ws_url("/cable"), ws_gate(protocol, expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert observation == Observation(True, "upgrade refused: HTTP 503")
    assert hub.wait_log("upgrade_refused", why="cable disabled")


@pytest.mark.parametrize("protocol", ["navigator", "actioncable"])
def test_switch_off_but_accepted_is_not_ok(public_hub, protocol):
    observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate(protocol, expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert observation == Observation(False, "cable path still accepts WebSocket upgrades")
    expected = "navigator" if protocol == "navigator" else "actioncable-v1-json"
    assert public_hub.wait_log("connected", protocol=expected)


def test_switch_off_connection_refused_is_ok():
    observation = probe_websocket(f"ws://127.0.0.1:{closed_port()}/cable", ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert observation == Observation(True, "upgrade refused: connection refused")


def test_switch_off_wrong_path_is_ok(public_hub):
    observation = probe_websocket(public_hub.ws_url("/elsewhere"), ws_gate(expect_open=False), lambda s, d: Observation(True, "x"), 5, None)
    assert observation == Observation(True, "upgrade refused: HTTP 404")


# --- probe_memory ---------------------------------------------------------------------------------

RSS = json.dumps({"front": 12 * MIB, "cable": round(25.1 * MIB), "redis": round(4.1 * MIB)})


def test_probe_memory_over_budget():
    assert probe_memory(RSS, 30) == Observation(False, "rss 41.2 MB (front 12.0, cable 25.1, redis 4.1) > budget 30 MB by 11.2 MB")


def test_probe_memory_within_budget():
    assert probe_memory(RSS, 50) == Observation(True, "rss 41.2 MB (front 12.0, cable 25.1, redis 4.1) within budget 50 MB: 8.8 MB (18%) to spare")


def test_probe_memory_exactly_at_budget_is_within():
    at = json.dumps({"front": 10 * MIB, "cable": 20 * MIB})
    assert probe_memory(at, 30) == Observation(True, "rss 30.0 MB (front 10.0, cable 20.0) within budget 30 MB: 0.0 MB (0%) to spare")
    assert probe_memory(json.dumps({"front": 30 * MIB + 1}), 30).ok is False


@pytest.mark.parametrize(
    "text, evidence",
    [
        ("", "memory output is not JSON: empty"),
        ("rss: lots", "memory output is not JSON: rss: lots"),
        ("[1, 2]", "memory output is not an object of process: bytes: [1, 2]"),
        ('{"front": "12"}', 'memory output is not an object of process: bytes: {"front": "12"}'),
        ('{"front": true}', 'memory output is not an object of process: bytes: {"front": true}'),
        ('{"front": -1}', 'memory output is not an object of process: bytes: {"front": -1}'),
        ('{"front": NaN}', 'memory output is not an object of process: bytes: {"front": NaN}'),
        ("{}", "memory output names no processes"),
    ],
)
def test_probe_memory_bad_output(text, evidence):
    assert probe_memory(text, 30) == Observation(False, evidence)


def test_probe_memory_long_output_is_cut():
    assert probe_memory("x" * 500, 30) == Observation(False, "memory output is not JSON: " + "x" * 77 + "...")
    assert probe_memory("x" * 80, 30) == Observation(False, "memory output is not JSON: " + "x" * 80)
    assert probe_memory("x" * 81, 30) == Observation(False, "memory output is not JSON: " + "x" * 77 + "...")
    assert probe_memory("x  \n y", 30) == Observation(False, "memory output is not JSON: x y")


def test_probe_memory_zero_and_fractions_are_bytes():
    assert probe_memory('{"front": 0, "cable": 0.5}', 1) == Observation(True, "rss 0.0 MB (front 0.0, cable 0.0) within budget 1 MB: 1.0 MB (100%) to spare")


# --- run_gate ---------------------------------------------------------------------------------------


def test_run_gate_http_passes_after_count_in_a_row(public_hub):
    clock, seen = FakeClock(), []
    gate = http_gate("/up", count=3, failure_limit=0)
    result = run_gate(gate, HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, on_observation=lambda g, o: seen.append((g, o)))
    assert result.verdict is P
    assert result.reason == "3 successes in a row"
    assert len(result.observations) == 3 and all(o.ok for o in result.observations)
    assert seen == [(gate, o) for o in result.observations]
    assert clock.sleeps == [1.0, 1.0]
    assert re.match(ms_pattern(f"GET {public_hub.base}/up: 200 in "), result.evidence)


def test_run_gate_http_fails_past_the_failure_limit(public_hub):
    clock = FakeClock()
    result = run_gate(http_gate("/nope", failure_limit=1), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert result.reason == "2 failures > failure limit 1"
    assert [o.ok for o in result.observations] == [False, False]
    assert clock.sleeps == [1.0]
    assert re.match(ms_pattern(f"GET {public_hub.base}/nope: 404 in "), result.evidence)


def test_run_gate_deadline_before_enough_successes(public_hub):
    clock = FakeClock()
    result = run_gate(http_gate("/up", deadline=2, count=5), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert len(result.observations) == 3
    assert clock.sleeps == [1.0, 1.0]
    assert result.evidence.startswith(f"deadline 2 s passed with 3 of 5 successes in a row; last: GET {public_hub.base}/up: 200 in ")


def test_run_gate_sleeps_only_what_is_left_of_the_interval(public_hub):
    class SlowClock(FakeClock):
        def monotonic(self) -> float:
            self.now += 0.25  # every reading of the clock costs a quarter second
            return self.now

    clock = SlowClock()
    result = run_gate(http_gate("/up", interval=2, count=2, deadline=100), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is P
    # observation began at 0.5, interval 2 -> next at 2.5; the clock read 1.0 when the sleep was computed
    assert clock.sleeps == [1.5]


def test_run_gate_http_timeout_is_the_gates(public_hub, raw_peer):
    class SilentHttpTarget(HubTarget):
        def http_url(self, key: RegionKey, path: str) -> str:
            assert key == KEY
            return f"http://127.0.0.1:{silent.port}{path}"

    silent = raw_peer(None)
    clock = FakeClock()
    result = run_gate(http_gate("/up", timeout=0.2, failure_limit=0), SilentHttpTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.observations == (Observation(False, f"GET http://127.0.0.1:{silent.port}/up: no answer within 0.2 s"),)


def test_run_gate_no_sleep_when_the_interval_is_used_up(public_hub):
    class SlowClock(FakeClock):
        def monotonic(self) -> float:
            self.now += 0.25
            return self.now

    clock = SlowClock()
    result = run_gate(http_gate("/up", interval=0.5, count=2, deadline=100), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert (result.verdict, len(result.observations)) == (P, 2)
    assert clock.sleeps == []  # began at 0.5, next at 1.0, and it is 1.0 already


def test_run_gate_publish_that_never_delivers(public_hub):
    clock = FakeClock()
    target = SilentPublishTarget(public_hub)
    gate = ws_gate("navigator", interval=1, timeout=0.3, deadline=2, count=1, failure_limit=10)
    result = run_gate(gate, target, KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert result.observations == (Observation(False, "probe not received within 0.3 s"),) * 3
    assert result.evidence == "probe not received within 0.3 s"
    assert result.reason == "deadline 2 s passed with 0 of 1 successes in a row"
    assert clock.sleeps == [1.0, 1.0]
    assert [c.label for c in target.commands] == ["publish probe"] * 3
    assert all(c.timeout_seconds == 0.3 for c in target.commands)  # capped at the gate's timeout


def test_run_gate_navigator_through_the_targets_publish_command(public_hub):
    clock = FakeClock()
    target = HubTarget(public_hub)
    result = run_gate(ws_gate("navigator", count=1), target, KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is P, result.evidence
    assert result.evidence.startswith(f"probe received over {public_hub.ws_url('/cable')} (navigator protocol) in ")
    [command] = target.commands
    assert command.label == "publish probe" and command.timeout_seconds == 5.0
    assert STREAM.match(command.argv[-2])


def test_run_gate_publish_command_failing(public_hub):
    clock = FakeClock()
    argv = (sys.executable, "-c", "import sys; sys.stderr.write('connecting\\ncurl: (7) refused\\n'); sys.exit(7)")
    result = run_gate(ws_gate("navigator", failure_limit=0), HubTarget(public_hub, publish_argv=argv), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert result.evidence == "publish failed: publish probe exited 7: curl: (7) refused"


def test_run_gate_actioncable_with_the_secret_from_the_mapping(signed_hub, secret):
    clock, seen = FakeClock(), []
    result = run_gate(
        ws_gate("actioncable", count=1), HubTarget(signed_hub), KEY,
        monotonic=clock.monotonic, sleep=clock.sleep, on_observation=lambda g, o: seen.append(o),
        secrets={"PROBE_SECRET": secret}, signing_secret_env="PROBE_SECRET",
    )  # fmt: skip
    assert result.verdict is P, result.evidence
    assert "(actioncable protocol)" in result.evidence
    assert secret not in result.evidence and all(secret not in o.evidence for o in seen)


def test_run_gate_actioncable_with_the_secret_from_the_environment(signed_hub, secret, monkeypatch):
    monkeypatch.setenv("PROBE_SECRET_FROM_ENV", secret)
    clock = FakeClock()
    result = run_gate(ws_gate("actioncable", count=1), HubTarget(signed_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, signing_secret_env="PROBE_SECRET_FROM_ENV")
    assert result.verdict is P, result.evidence


def test_run_gate_actioncable_with_a_wrong_secret(signed_hub, secret):
    clock = FakeClock()
    wrong = os.urandom(8).hex()
    result = run_gate(
        ws_gate("actioncable", failure_limit=0), HubTarget(signed_hub), KEY,
        monotonic=clock.monotonic, sleep=clock.sleep, secrets={"PROBE_SECRET": wrong}, signing_secret_env="PROBE_SECRET",
    )  # fmt: skip
    assert result.verdict is F
    assert result.evidence == "Turbo::StreamsChannel subscription to the probe stream rejected (reject_subscription)"
    assert wrong not in repr(result) and secret not in repr(result)


@pytest.mark.parametrize(
    "env_name, secrets, evidence",
    [
        ("PROBE_SECRET", {}, "environment variable PROBE_SECRET (the actioncable probe's signing secret) is not set"),
        ("PROBE_SECRET", {"PROBE_SECRET": ""}, "environment variable PROBE_SECRET (the actioncable probe's signing secret) is not set"),
        (None, {"PROBE_SECRET": "s"}, "no environment variable named for the actioncable probe's signing secret"),
    ],
)
def test_run_gate_actioncable_without_a_secret_fails_at_once(signed_hub, env_name, secrets, evidence):
    clock, seen = FakeClock(), []
    gate = ws_gate("actioncable", failure_limit=5)
    result = run_gate(
        gate, HubTarget(signed_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep,
        on_observation=lambda g, o: seen.append((g, o)), secrets=secrets, signing_secret_env=env_name,
    )  # fmt: skip
    assert result == GateResult(gate, F, (Observation(False, evidence),), "signing secret missing")
    assert seen == [(gate, Observation(False, evidence))]
    assert clock.sleeps == []
    assert signed_hub.find("connected") is None


def test_run_gate_navigator_needs_no_secret(public_hub):
    clock = FakeClock()
    result = run_gate(ws_gate("navigator", count=1), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, secrets={}, signing_secret_env="ABSENT")
    assert result.verdict is P, result.evidence


def test_run_gate_switch_off(start_hub, public_hub):
    clock = FakeClock()
    off = run_gate(ws_gate(None, expect_open=False, count=1), HubTarget(start_hub(NAVIGATOR_OFF)), KEY, monotonic=clock.monotonic, sleep=clock.sleep, secrets={})
    assert (off.verdict, off.evidence) == (P, "upgrade refused: HTTP 503")
    on = run_gate(ws_gate("actioncable", expect_open=False, failure_limit=0), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, secrets={})
    assert (on.verdict, on.evidence) == (F, "cable path still accepts WebSocket upgrades")


def test_run_gate_memory_within_and_over_budget(public_hub):
    clock = FakeClock()
    within = run_gate(memory_gate(100000, count=1), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert within.verdict is P
    assert re.fullmatch(r"rss \d+\.\d MB \(hub \d+\.\d\) within budget 100000 MB: \d+\.\d MB \(100%\) to spare", within.evidence)
    over = run_gate(memory_gate(0.001, failure_limit=0), HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert over.verdict is F
    assert re.fullmatch(r"rss \d+\.\d MB \(hub \d+\.\d\) > budget 0.001 MB by \d+\.\d MB", over.evidence)


def test_run_gate_memory_command_failing(public_hub):
    clock = FakeClock()
    argv = (sys.executable, "-c", "import sys; sys.stderr.write('reading /proc\\nretrying\\nno such process 4242\\n\\n'); sys.exit(3)")
    result = run_gate(memory_gate(100, failure_limit=0), HubTarget(public_hub, memory_argv=argv), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert result.observations == (Observation(False, "measure rss exited 3: no such process 4242"),)
    silent = (sys.executable, "-c", "import sys; sys.exit(2)")
    result = run_gate(memory_gate(100, failure_limit=0), HubTarget(public_hub, memory_argv=silent), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.observations == (Observation(False, "measure rss exited 2: no output on stderr"),)


def test_run_gate_target_error_becomes_evidence(public_hub):
    clock = FakeClock()
    result = run_gate(memory_gate(100, failure_limit=0), BrokenTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.verdict is F
    assert result.observations == (Observation(False, "staging/iad: measure rss: ssh: connect to host iad: Connection timed out"),)


@pytest.mark.parametrize(
    "gate, message",
    [
        (memory_gate(None), "memory gate without a budget"),
        (Gate("http", None, timing()), "http gate without a path"),
        (Gate("http", "", timing()), "http gate without a path"),
        (Gate("websocket", None, timing(), protocol="navigator"), "websocket gate without a path"),
        (Gate("websocket", None, timing(), protocol="navigator", expect_open=False), "websocket gate without a path"),
        (Gate("websocket", "/cable", timing(), protocol=None), "websocket gate at /cable: unknown protocol None"),
        (Gate("websocket", "/cable", timing(), protocol="socketio"), "websocket gate at /cable: unknown protocol 'socketio'"),  # type: ignore[arg-type]
        (Gate("ftp", "/x", timing()), "unknown gate kind 'ftp'"),  # type: ignore[arg-type]
    ],
)
def test_run_gate_refuses_malformed_gates(public_hub, gate, message):
    clock, seen = FakeClock(), []
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        run_gate(gate, HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, on_observation=lambda g, o: seen.append(o))
    assert seen == [] and public_hub.find("connected") is None


# --- run_gates ---------------------------------------------------------------------------------------


def test_run_gates_in_order(public_hub):
    clock, seen = FakeClock(), []
    gates = [http_gate("/up", count=1), memory_gate(100000, count=1), ws_gate("navigator", count=1)]
    results = run_gates(gates, HubTarget(public_hub), KEY, monotonic=clock.monotonic, sleep=clock.sleep, on_observation=lambda g, o: seen.append(g))
    assert [(r.gate, r.verdict) for r in results] == [(g, P) for g in gates]
    assert seen == gates


def test_run_gates_stops_at_the_first_failure(public_hub):
    clock, seen = FakeClock(), []
    gates = [http_gate("/up", count=1), http_gate("/nope", failure_limit=0), memory_gate(100000, count=1)]
    target = HubTarget(public_hub)
    results = run_gates(gates, target, KEY, monotonic=clock.monotonic, sleep=clock.sleep, on_observation=lambda g, o: seen.append(g))
    assert [(r.gate, r.verdict) for r in results] == [(gates[0], P), (gates[1], F)]
    assert seen == gates[:2]
    assert target.commands == []  # the memory gate never ran


# --- on the machine, the target's headers, the probes' bounds (mutants: bench/results/mutation.md) -----------------


class OnMachineTarget:
    """A target whose gates are observed on each machine: every probe prints `printed` (or `result`, or raises
    `error`); the probe and memory commands are recorded with the region, machine, gate and timeout asked for."""

    name = "on-machine"

    def __init__(self, printed: str = '{"ok": true, "evidence": "seen on the machine"}', result: CommandResult | None = None,
                 error: str | None = None) -> None:
        self.result = result or CommandResult(0, printed, "")
        self.error = error
        self.probes: list[tuple[RegionKey, str, Gate, float]] = []
        self.memory: list[tuple[RegionKey, str]] = []

    def probe_command(self, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Command:
        self.probes.append((key, machine, gate, timeout))
        return Command(("probe", gate.kind), f"probe {gate.kind}", machine=machine)

    def memory_command(self, key: RegionKey, machine: str = "") -> Command:
        self.memory.append((key, machine))
        return Command(("memory",), "measure rss", machine=machine)

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        assert key == KEY, key
        if self.error is not None:
            raise TargetError(self.error)
        if command.label == "measure rss":
            return CommandResult(0, json.dumps({"front": MIB}), "")
        return self.result


@pytest.mark.parametrize(
    "printed, seen",
    [
        ('starting\n{"ok": true, "evidence": "GET /up: 200"}\n \n', Observation(True, "GET /up: 200")),
        ('{"ok": false, "evidence": "GET /up: 502"}', Observation(False, "GET /up: 502")),
        ('{"ok": true, "evidence": "' + "e" * 500 + '"}', Observation(True, "e" * 400)),
        ("", Observation(False, "machine m2: the probe printed no verdict: nothing")),
        ("  \n", Observation(False, "machine m2: the probe printed no verdict: nothing")),
        ("Traceback (most recent call last):\n  oops", Observation(False, "machine m2: the probe printed no verdict: Traceback (most recent call last): oops")),
        ('{"ok": true, "evidence": "e"}\nmore', Observation(False, 'machine m2: the probe printed no verdict: {"ok": true, "evidence": "e"} more')),
        ('{"ok": 1, "evidence": "e"}', Observation(False, 'machine m2: the probe printed no verdict: {"ok": 1, "evidence": "e"}')),
        ('{"ok": true}', Observation(False, 'machine m2: the probe printed no verdict: {"ok": true}')),
        ('{"ok": true, "evidence": 5}', Observation(False, 'machine m2: the probe printed no verdict: {"ok": true, "evidence": 5}')),
        ('[true, "e"]', Observation(False, 'machine m2: the probe printed no verdict: [true, "e"]')),
        ("[" * 100000, Observation(False, "machine m2: the probe printed no verdict: " + "[" * 77 + "...")),
    ],
    ids=["the last line", "a failure", "long evidence cut", "nothing", "blank", "not JSON", "JSON then more", "ok not a bool",
         "no evidence", "evidence not text", "not an object", "nested too deep"],
)
def test_an_observation_on_the_machine_is_the_verdict_it_printed_last(printed, seen):
    target = OnMachineTarget(printed)
    gate = http_gate(timeout=2.5)
    assert observe_on_machine(target, KEY, "m2", gate, 2.5) == seen  # type: ignore[arg-type]
    assert target.probes == [(KEY, "m2", gate, 2.5)]


def test_a_probe_on_the_machine_that_fails_or_cannot_run_says_why():
    failing = OnMachineTarget(result=CommandResult(3, "", "python3: starting\npython3: no such file\n\n"))
    assert observe_on_machine(failing, KEY, "m2", http_gate(), 5) == Observation(False, "probe http exited 3: python3: no such file")  # type: ignore[arg-type]
    broken = OnMachineTarget(error="staging/iad: fly machine exec: machine m2 is not started")
    assert observe_on_machine(broken, KEY, "m2", http_gate(), 5) == Observation(  # type: ignore[arg-type]
        False, "staging/iad: fly machine exec: machine m2 is not started")


def test_gates_on_the_machine_are_observed_there_with_the_gate_s_timeout_and_need_no_secret_here():
    clock = FakeClock()
    target = OnMachineTarget()
    signed = ws_gate("actioncable", timeout=2.5, count=1)
    result = run_gate(signed, target, KEY, machine="m2", monotonic=clock.monotonic, sleep=clock.sleep, secrets={}, signing_secret_env=None)
    assert (result.verdict, result.evidence, result.machine) == (P, "seen on the machine", "m2")
    assert target.probes == [(KEY, "m2", signed, 2.5)]
    assert observe(memory_gate(10), target, KEY, "m2") == Observation(True, probe_memory(json.dumps({"front": MIB}), 10).evidence)
    assert target.memory == [(KEY, "m2")]
    here = run_gate(ws_gate("actioncable"), FromHereTarget(closed_port()), KEY, machine="m3", secrets={}, signing_secret_env=None)
    assert (here.verdict, here.reason, here.machine) == (F, "signing secret missing", "m3")


class FromHereTarget:
    """Reached from here at 127.0.0.1:`port`; the headers it asks the gates to send are the region's own."""

    name = "from-here"

    def __init__(self, port: int) -> None:
        self.port = port

    def http_url(self, key: RegionKey, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cable_url(self, key: RegionKey, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        assert key == KEY, key
        return {"fly-prefer-region": key.region}

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        raise AssertionError("no probe gets as far as publishing here")


def test_every_gate_observed_from_here_sends_the_region_s_headers(raw_peer):
    peer = raw_peer(lambda: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    target = FromHereTarget(peer.port)
    clock = FakeClock()
    for gate in (http_gate(failure_limit=0), ws_gate("navigator", failure_limit=0), ws_gate(expect_open=False, count=1)):
        run_gate(gate, target, KEY, monotonic=clock.monotonic, sleep=clock.sleep)
    assert len(peer.heads) == 3
    assert all(b"\r\nfly-prefer-region: iad\r\n" in head.lower() for head in peer.heads)


def test_the_probes_are_bounded_by_the_gate_s_timeout(public_hub, monkeypatch):
    """The HTTP client and the WebSocket connection are given the gate's timeout; closing is bounded too."""
    clients: list[float | None] = []
    connections: list[tuple[float, float]] = []
    real_client, real_connect = httpx.Client, gates_module.connect

    def client(**kwargs):
        clients.append(kwargs.get("timeout"))
        return real_client(**kwargs)

    def connect(url, **kwargs):
        connections.append((kwargs.get("open_timeout"), kwargs.get("close_timeout")))
        return real_connect(url, **kwargs)

    monkeypatch.setattr(gates_module.httpx, "Client", client)
    monkeypatch.setattr(gates_module, "connect", connect)
    assert probe_http(f"{public_hub.base}/up", 7.5).ok is True
    assert clients == [7.5]
    for timeout in (7.5, 0.5):
        observation = probe_websocket(public_hub.ws_url("/cable"), ws_gate(expect_open=False), lambda s, d: Observation(True, ""), timeout, None)
        assert observation.ok is False  # the switch is on: what matters here is how the connection was opened
    (open_long, close_long), (open_short, close_short) = connections
    assert 0 < open_long <= 7.5 and close_long == 1.0
    assert 0 < open_short <= 0.5 and close_short == 0.5


# --- one observation for the watcher, and the secrets checked before a rollout starts -----------------


def test_observe_once_signs_the_actioncable_probe_with_the_environment_s_secret(signed_hub, secret, monkeypatch):
    monkeypatch.setenv("PROBE_SECRET_ONCE", secret)
    observation = observe_once(ws_gate("actioncable"), HubTarget(signed_hub), KEY, "", "PROBE_SECRET_ONCE")
    assert observation.ok is True, observation.evidence
    assert "(actioncable protocol)" in observation.evidence and secret not in observation.evidence
    assert observe_once(http_gate(), HubTarget(signed_hub), KEY, "", None).ok is True  # no secret needed


@pytest.mark.parametrize(
    "env_name, evidence",
    [
        ("PROBE_SECRET_UNSET", "environment variable PROBE_SECRET_UNSET (the actioncable probe's signing secret) is not set"),
        (None, "no environment variable named for the actioncable probe's signing secret"),
    ],
)
def test_observe_once_without_the_secret_is_a_failed_observation_that_says_so(signed_hub, monkeypatch, env_name, evidence):
    monkeypatch.delenv("PROBE_SECRET_UNSET", raising=False)
    assert observe_once(ws_gate("actioncable"), HubTarget(signed_hub), KEY, "", env_name) == Observation(False, evidence)
    assert signed_hub.find("connected") is None  # nothing was attempted


def test_observe_once_on_the_machine_needs_no_secret_here(monkeypatch):
    monkeypatch.delenv("PROBE_SECRET_UNSET", raising=False)
    target = OnMachineTarget()
    gate = ws_gate("actioncable", timeout=2.5)
    assert observe_once(gate, target, KEY, "m2", "PROBE_SECRET_UNSET") == Observation(True, "seen on the machine")  # type: ignore[arg-type]
    assert target.probes == [(KEY, "m2", gate, 2.5)]


def _step(region: str, gates: tuple[Gate, ...], fallback: tuple[Gate, ...] | None) -> Step:
    state = RegionState("integrated", True, {})
    off = RegionState("integrated", False, {})
    return Step(f"rollout:{region}", "wave", RegionKey("production", region), "deploy", None, Deployment(state, (), gates),
                None if fallback is None else Deployment(off, (), fallback))


def test_secrets_missing_names_each_missing_secret_once_with_how_to_set_it(monkeypatch):
    monkeypatch.delenv("PROBE_SECRET_UNSET", raising=False)
    signed = ws_gate("actioncable")
    steps = [_step("ams", (http_gate(), signed), (ws_gate("actioncable", expect_open=False),)),
             _step("dfw", (http_gate(),), (signed,)),  # needed by the fallback only
             _step("ord", (signed,), None)]
    target = FromHereTarget(closed_port())
    assert secrets_missing(steps, target, "PROBE_SECRET_UNSET") == [  # type: ignore[arg-type]
        "environment variable PROBE_SECRET_UNSET (the actioncable probe's signing secret) is not set: "
        "the actioncable gates sign their probe here (export PROBE_SECRET_UNSET=...)"]
    assert secrets_missing(steps[1:2], target, "PROBE_SECRET_UNSET") != []  # type: ignore[arg-type]
    assert secrets_missing(steps, target, None) == [  # type: ignore[arg-type]
        "no environment variable named for the actioncable probe's signing secret: "
        "the actioncable gates sign their probe here (export it=...)"]
    monkeypatch.setenv("PROBE_SECRET_UNSET", "s3cret")
    assert secrets_missing(steps, target, "PROBE_SECRET_UNSET") == []  # type: ignore[arg-type]


def test_secrets_missing_asks_nothing_of_gates_without_a_signed_probe_or_of_a_target_probed_on_the_machine(monkeypatch):
    monkeypatch.delenv("PROBE_SECRET_UNSET", raising=False)
    unsigned = [_step("ams", (http_gate(), ws_gate("navigator"), ws_gate("actioncable", expect_open=False), memory_gate(10)),
                      (ws_gate("actioncable", expect_open=False),))]
    assert secrets_missing(unsigned, FromHereTarget(closed_port()), "PROBE_SECRET_UNSET") == []  # type: ignore[arg-type]
    signed = [_step("ams", (ws_gate("actioncable"),), None)]
    assert secrets_missing(signed, OnMachineTarget(), "PROBE_SECRET_UNSET") == []  # type: ignore[arg-type]
    assert secrets_missing(signed, OnMachineTarget(), None) == []  # type: ignore[arg-type]
