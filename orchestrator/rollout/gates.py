"""Health gates: judge a region after a change, from observations repeated on a schedule.

Used by rollout, rollback and status. A gate is observed every `interval`; it
passes after `count` successes in a row and fails when its failures exceed
`failure_limit` or its deadline passes first (`Watch`, pure). Each observation
is one probe (`probe_http`, `probe_websocket`, `probe_memory`) that never
raises on what the network or the region does: it becomes an `Observation`
whose evidence says what was seen, short enough for a status line.

Secrets: the Action Cable probe signs its stream name with a secret read from
an environment variable named by the caller. Neither the secret nor the signed
name ever appears in evidence or in an exception.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from orchestrator.rollout.model import Command, Gate, GateTiming, RegionKey, Step
from orchestrator.targets.base import ProbedFromHere, ProbedOnMachine, Target, TargetError
from orchestrator.targets.onhost import (
    ACTION_CABLE_SUBPROTOCOL,
    MAX_MESSAGE_BYTES,
    ProbeFailed,
    actioncable_round_trip,
    excerpt,
    json_object,
    milliseconds_since,
    navigator_round_trip,
    probe_payload,
)

MIB = 1024 * 1024
# Closing after the verdict is known is cleanup: bounded, and short.
MAX_CLOSE_SECONDS = 1.0
# What a machine prints as evidence is kept, up to this much.
MAX_EVIDENCE_CHARS = 400

Publish = Callable[[str, str], "Observation"]


class Verdict(StrEnum):
    WAIT = "wait"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class Observation:
    ok: bool
    evidence: str


def _plural(n: int, word: str, words: str) -> str:
    return f"{n} {word if n == 1 else words}"


class Watch:
    """Counts one gate's observations into a verdict. Pure: the caller supplies the time.

    PASS after `count` successes in a row (a failure resets the run); FAIL when the
    failures (all of them, not only consecutive ones) exceed `failure_limit`; FAIL
    when an observation at or after `deadline_seconds` from `started_at` does not
    complete a PASS. Once decided, the verdict stays.
    """

    def __init__(self, timing: GateTiming, started_at: float) -> None:
        if timing.count < 1:
            raise ValueError(f"gate count must be at least 1, got {timing.count}")
        if timing.failure_limit < 0:
            raise ValueError(f"gate failure_limit must be at least 0, got {timing.failure_limit}")
        self.timing = timing
        self.started_at = started_at
        self.failures = 0
        self.successes_in_a_row = 0
        self.verdict = Verdict.WAIT
        self.reason = ""  # why the verdict was reached; "" while waiting

    def observe(self, ok: bool, now: float) -> Verdict:
        if self.verdict is not Verdict.WAIT:
            return self.verdict
        timing = self.timing
        if ok:
            self.successes_in_a_row += 1
            if self.successes_in_a_row >= timing.count:
                self.verdict = Verdict.PASS
                self.reason = f"{_plural(self.successes_in_a_row, 'success', 'successes')} in a row"
                return self.verdict
        else:
            self.failures += 1
            self.successes_in_a_row = 0
            if self.failures > timing.failure_limit:
                self.verdict = Verdict.FAIL
                self.reason = f"{_plural(self.failures, 'failure', 'failures')} > failure limit {timing.failure_limit}"
                return self.verdict
        if now - self.started_at >= timing.deadline_seconds:
            self.verdict = Verdict.FAIL
            self.reason = (
                f"deadline {timing.deadline_seconds:g} s passed with "
                f"{self.successes_in_a_row} of {timing.count} successes in a row"
            )
        return self.verdict

    def next_at(self, now: float) -> float:
        """When to observe next, given the time `now` of the observation just made: one
        interval later, but no later than the deadline (the last chance is taken at it)."""
        return min(now + self.timing.interval_seconds, self.started_at + self.timing.deadline_seconds)


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    verdict: Verdict  # PASS or FAIL
    observations: tuple[Observation, ...]
    reason: str = ""  # the Watch's reason: "3 successes in a row", "2 failures > failure limit 1", ...
    machine: str = ""  # the machine observed

    @property
    def evidence(self) -> str:
        """The last observation's evidence: for a FAIL the one that decided. When the
        deadline decided after a successful observation, that is said first."""
        if not self.observations:
            return self.reason
        last = self.observations[-1]
        if self.verdict is Verdict.FAIL and last.ok:
            return f"{self.reason}; last: {last.evidence}"
        return last.evidence


# --- probes -------------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return excerpt(lines[-1]) if lines else "no output on stderr"


def probe_http(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> Observation:
    """GET `url`; ok on 200. The body is never read. Proxies from the environment are not used."""
    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False, headers=headers) as client:
            with client.stream("GET", url) as response:
                status = response.status_code
    except httpx.TimeoutException:
        return Observation(False, f"GET {url}: no answer within {timeout:g} s")
    except httpx.ConnectError as error:
        return Observation(False, f"GET {url}: cannot connect ({excerpt(str(error)) or type(error).__name__})")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as error:
        return Observation(False, f"GET {url}: {type(error).__name__}: {excerpt(str(error))}")
    return Observation(status == 200, f"GET {url}: {status} in {milliseconds_since(started)} ms")


class _Probe:
    """One WebSocket probe's connection, deadline and messages."""

    def __init__(self, url: str, timeout: float, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def open(self, subprotocol: str | None) -> ClientConnection:
        remaining = self.remaining()
        if remaining <= 0:
            raise ProbeFailed(f"no WebSocket handshake with {self.url} within {self.timeout:g} s")
        return connect(
            self.url,
            subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
            compression=None,
            proxy=None,
            additional_headers=self.headers,
            open_timeout=remaining,
            ping_interval=None,
            close_timeout=min(MAX_CLOSE_SECONDS, self.timeout),
            max_size=MAX_MESSAGE_BYTES,
        )


class _Channel:
    """The round trips' view of a `websockets` connection: every message within the probe's deadline."""

    def __init__(self, probe: _Probe, ws: ClientConnection) -> None:
        self.probe = probe
        self.ws = ws

    def send(self, text: str) -> None:
        self.ws.send(text)

    def receive(self, waiting_for: str) -> dict[str, Any]:
        try:
            # A timeout of 0 still returns a message that has already arrived.
            text = self.ws.recv(timeout=self.probe.remaining())
        except TimeoutError:
            raise ProbeFailed(f"{waiting_for} not received within {self.probe.timeout:g} s") from None
        if isinstance(text, bytes):
            raise ProbeFailed(f"unexpected binary message while waiting for {waiting_for}")
        return json_object(text, waiting_for)


def _describe_closed(error: ConnectionClosed) -> str:
    if error.sent is not None and (error.rcvd is None or error.rcvd_then_sent is False):
        who, frame = "the probe", error.sent  # e.g. 1009 for a message over MAX_MESSAGE_BYTES
    elif error.rcvd is not None:
        who, frame = "the server", error.rcvd
    else:
        return "connection closed by the server without a close frame"
    reason = f" {excerpt(frame.reason)}" if frame.reason else ""
    return f"connection closed by {who} (code {frame.code}{reason})"


def probe_websocket(
    url: str,
    gate: Gate,
    publish: Publish,
    timeout: float,
    secret: bytes | None,
    headers: Mapping[str, str] | None = None,
) -> Observation:
    """With `gate.expect_open`: a probe published through `publish` arrives at `url` over
    `gate.protocol`. Without: `url` refuses the WebSocket upgrade. Within `timeout` overall
    (the publish itself is bounded by whoever runs it)."""
    if not gate.expect_open:
        return _probe_refused(url, gate, timeout, headers)
    if gate.protocol == "actioncable" and secret is None:
        return Observation(False, "no signing secret for the actioncable probe")
    stream, data, data_json = probe_payload()

    def publish_probe(stream: str, data_json: str) -> None:
        published = publish(stream, data_json)
        if not published.ok:
            raise ProbeFailed(f"publish failed: {published.evidence}")

    probe = _Probe(url, timeout, headers)
    try:
        if gate.protocol == "navigator":
            with probe.open(None) as ws:
                navigator_round_trip(_Channel(probe, ws), stream, data, data_json, publish_probe)
        elif gate.protocol == "actioncable":
            assert secret is not None
            with probe.open(ACTION_CABLE_SUBPROTOCOL) as ws:
                if ws.subprotocol != ACTION_CABLE_SUBPROTOCOL:
                    raise ProbeFailed(f"server did not accept the {ACTION_CABLE_SUBPROTOCOL} subprotocol")
                actioncable_round_trip(_Channel(probe, ws), stream, data, data_json, publish_probe, secret)
        else:
            raise ValueError(f"websocket gate at {gate.path}: unknown protocol {gate.protocol!r}")
    except ProbeFailed as failed:
        return Observation(False, failed.evidence)
    except ConnectionClosed as error:
        return Observation(False, _describe_closed(error))
    except InvalidStatus as error:
        return Observation(False, f"{url} refused the upgrade: HTTP {error.response.status_code}")
    except TimeoutError:
        return Observation(False, f"no WebSocket handshake with {url} within {timeout:g} s")
    except WebSocketException as error:
        return Observation(False, f"WebSocket to {url} failed: {type(error).__name__}: {excerpt(str(error))}")
    except OSError as error:
        return Observation(False, f"cannot connect to {url}: {excerpt(error.strerror or str(error))}")
    return Observation(True, f"probe received over {url} ({gate.protocol} protocol) in {milliseconds_since(probe.started)} ms")


def _probe_refused(url: str, gate: Gate, timeout: float, headers: Mapping[str, str] | None) -> Observation:
    probe = _Probe(url, timeout, headers)
    subprotocol = ACTION_CABLE_SUBPROTOCOL if gate.protocol == "actioncable" else None
    try:
        with probe.open(subprotocol):
            pass
    except InvalidStatus as error:
        return Observation(True, f"upgrade refused: HTTP {error.response.status_code}")
    except ConnectionRefusedError:
        return Observation(True, "upgrade refused: connection refused")
    except ProbeFailed as failed:
        return Observation(False, failed.evidence)
    except TimeoutError:
        return Observation(False, f"no answer to the WebSocket upgrade at {url} within {timeout:g} s")
    except WebSocketException as error:
        return Observation(False, f"WebSocket upgrade at {url} failed: {type(error).__name__}: {excerpt(str(error))}")
    except OSError as error:
        return Observation(False, f"cannot connect to {url}: {excerpt(error.strerror or str(error))}")
    return Observation(False, "cable path still accepts WebSocket upgrades")


def _is_bytes(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def resident_mb(rss_json: str) -> dict[str, float] | str:
    """`rss_json` ({process name: resident bytes}) as MB (MiB) by process, or why it is not that."""
    try:
        doc = json.loads(rss_json)
    except (ValueError, RecursionError):
        return f"memory output is not JSON: {excerpt(rss_json) or 'empty'}"
    if not isinstance(doc, dict) or not all(_is_bytes(v) for v in doc.values()):
        return f"memory output is not an object of process: bytes: {excerpt(rss_json)}"
    if not doc:
        return "memory output names no processes"
    return {str(name): value / MIB for name, value in doc.items()}


def probe_memory(rss_json: str, budget_mb: float) -> Observation:
    """`rss_json` is {process name: resident bytes}; ok when the sum is at most `budget_mb` MB (MiB)."""
    sizes = resident_mb(rss_json)
    if isinstance(sizes, str):
        return Observation(False, sizes)
    total = sum(sizes.values())
    parts = ", ".join(f"{name} {value:.1f}" for name, value in sizes.items())
    if total > budget_mb:
        return Observation(False, f"rss {total:.1f} MB ({parts}) > budget {budget_mb:g} MB by {total - budget_mb:.1f} MB")
    spare = budget_mb - total
    return Observation(True, f"rss {total:.1f} MB ({parts}) within budget {budget_mb:g} MB: "
                             f"{spare:.1f} MB ({spare / budget_mb:.0%}) to spare")


# --- running gates --------------------------------------------------------------------------


def _run_command(target: Target, key: RegionKey, command: Command) -> str | Observation:
    """The command's stdout, or the failed observation saying why there is none."""
    try:
        result = target.run(key, command)
    except TargetError as error:
        return Observation(False, excerpt(str(error)))
    if not result.ok:
        return Observation(False, f"{command.label} exited {result.exit_code}: {_last_line(result.stderr)}")
    return result.stdout


def _check_gate(gate: Gate) -> None:
    """Refuse a malformed gate before any I/O (a websocket gate's protocol is checked by its probe)."""
    if gate.kind not in ("http", "websocket", "memory"):
        raise ValueError(f"unknown gate kind {gate.kind!r}")
    if gate.kind != "memory" and not gate.path:
        raise ValueError(f"{gate.kind} gate without a path")
    if gate.kind == "memory" and gate.budget_mb is None:
        raise ValueError("memory gate without a budget")


def _missing_secret(gate: Gate, signing_secret_env: str | None, secrets: Mapping[str, str]) -> tuple[bytes | None, str]:
    """The signing secret an actioncable probe needs, or None and why it is missing."""
    if not (gate.kind == "websocket" and gate.expect_open and gate.protocol == "actioncable"):
        return None, ""
    if not signing_secret_env:
        return None, "no environment variable named for the actioncable probe's signing secret"
    value = secrets.get(signing_secret_env)
    if not value:
        return None, f"environment variable {signing_secret_env} (the actioncable probe's signing secret) is not set"
    return value.encode(), ""


def secrets_missing(steps: Sequence[Step], target: Target, signing_secret_env: str | None) -> list[str]:
    """What the gates of `steps` would need from this environment and not find: checked before a rollout starts,
    since waiting cannot fix it. A target probed on the machine uses the machine's own environment."""
    if isinstance(target, ProbedOnMachine):
        return []
    gates = [gate for step in steps for deployment in (step.deployment, step.fallback) if deployment
             for gate in deployment.gates]
    found = {why for gate in gates if (why := _missing_secret(gate, signing_secret_env, os.environ)[1])}
    return [f"{why}: the actioncable gates sign their probe here (export {signing_secret_env or 'it'}=...)"
            for why in sorted(found)]


def observe_on_machine(target: ProbedOnMachine, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Observation:
    """One observation of `gate` made on `machine` itself; its evidence is what the machine printed."""
    output = _run_command(target, key, target.probe_command(key, machine, gate, timeout))  # type: ignore[arg-type]
    if isinstance(output, Observation):
        return output
    lines = [line for line in output.splitlines() if line.strip()]
    try:
        verdict = json.loads(lines[-1]) if lines else None
    except (ValueError, RecursionError):
        verdict = None
    if not (isinstance(verdict, dict) and isinstance(verdict.get("ok"), bool) and isinstance(verdict.get("evidence"), str)):
        return Observation(False, f"machine {machine}: the probe printed no verdict: {excerpt(output) or 'nothing'}")
    return Observation(verdict["ok"], verdict["evidence"][:MAX_EVIDENCE_CHARS])


def observe_once(gate: Gate, target: Target, key: RegionKey, machine: str, signing_secret_env: str | None) -> Observation:
    """One observation of `gate`, the actioncable probe signed with the secret in this environment (a target probed
    on the machine uses the machine's); a missing secret is a failed observation that says so."""
    secret, missing = (None, "") if isinstance(target, ProbedOnMachine) else _missing_secret(
        gate, signing_secret_env, os.environ)
    return Observation(False, missing) if missing else observe(gate, target, key, machine, secret)


def observe(gate: Gate, target: Target, key: RegionKey, machine: str, secret: bytes | None = None) -> Observation:
    """One observation of `gate` on `machine`: from here through the target's URLs, or on the machine itself.
    `secret` signs the actioncable probe made from here."""
    timing = gate.timing

    def publish(stream: str, data_json: str) -> Observation:
        assert isinstance(target, ProbedFromHere)
        command = target.publish_command(key, stream, data_json)
        # Bounded like the rest of the observation, whatever the target's default.
        command = replace(command, timeout_seconds=min(command.timeout_seconds, timing.timeout_seconds))
        output = _run_command(target, key, command)
        return output if isinstance(output, Observation) else Observation(True, f"{command.label}: ok")

    if gate.kind == "memory":
        assert gate.budget_mb is not None
        output = _run_command(target, key, target.memory_command(key, machine))
        return output if isinstance(output, Observation) else probe_memory(output, gate.budget_mb)
    if isinstance(target, ProbedOnMachine):
        return observe_on_machine(target, key, machine, gate, timing.timeout_seconds)
    assert isinstance(target, ProbedFromHere) and gate.path is not None
    if gate.kind == "http":
        return probe_http(target.http_url(key, gate.path), timing.timeout_seconds, target.request_headers(key))
    return probe_websocket(
        target.cable_url(key, gate.path), gate, publish, timing.timeout_seconds, secret, target.request_headers(key)
    )


def run_gate(
    gate: Gate,
    target: Target,
    key: RegionKey,
    *,
    machine: str = "",
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_observation: Callable[[Gate, Observation], None] | None = None,
    secrets: Mapping[str, str] | None = None,
    signing_secret_env: str | None = None,
) -> GateResult:
    """Observe `gate` on `machine` of `key` until it passes or fails.

    Targets probed from here are reached through their URLs; a target probed on
    the machine runs each observation there. `signing_secret_env` names the
    environment variable (looked up in `secrets`, default os.environ) holding the
    secret that signs the actioncable probe's stream here; when it is missing the
    gate fails at once: waiting cannot fix it. On the machine, the machine's own
    environment provides it.
    """
    _check_gate(gate)
    on_machine = isinstance(target, ProbedOnMachine)
    secret, missing = (None, "") if on_machine else _missing_secret(
        gate, signing_secret_env, os.environ if secrets is None else secrets)
    if missing:
        observation = Observation(False, missing)
        if on_observation is not None:
            on_observation(gate, observation)
        return GateResult(gate, Verdict.FAIL, (observation,), "signing secret missing", machine)
    timing = gate.timing
    watch = Watch(timing, monotonic())
    observations: list[Observation] = []
    while True:
        began = monotonic()
        observation = observe(gate, target, key, machine, secret)
        observations.append(observation)
        if on_observation is not None:
            on_observation(gate, observation)
        verdict = watch.observe(observation.ok, monotonic())
        if verdict is not Verdict.WAIT:
            return GateResult(gate, verdict, tuple(observations), watch.reason, machine)
        delay = watch.next_at(began) - monotonic()
        if delay > 0:
            sleep(delay)


def run_gates(gates: Sequence[Gate], target: Target, key: RegionKey, **same: Any) -> tuple[GateResult, ...]:
    """Run `gates` in order, stopping at the first FAIL (later gates are not run)."""
    results: list[GateResult] = []
    for gate in gates:
        result = run_gate(gate, target, key, **same)
        results.append(result)
        if result.verdict is Verdict.FAIL:
            break
    return tuple(results)
