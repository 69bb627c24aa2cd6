"""`orchestrate watch` through the CLI on the local fleet: real fronts and hubs on loopback, one test per rule,
the watcher killed and restarted, two watchers, and promotion refused after an unwatched bake."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub.signing import sign
from hub.frames import OP_TEXT
from tests.hub.hub_testkit import RawClient
from tests.orchestrator.rollout.fleet import ORCHESTRATE, REPO, SIGNING_SECRET, BROADCAST_KEY, Fleet, make_fleet
from tests.polling import wait_for

# ord, the canary, runs the hub mode with roomy budgets (the local front is a hub standing in for Navigator);
# the canary bakes for an hour, so it is baking for the whole test.
HUB_CANARY = ("  - code: ord\n", "  - {code: ord, websocket: {mode: hub}, "
                                 "memory_budgets_mb: {hub: {navigator: 300, cable_server: 100}}}\n")
BROADCASTS_KEYED = ("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                    "  signing_secret_env: CABLE_SIGNING_SECRET\n  broadcast_key_env: CABLE_BROADCAST_KEY\n")


def watched_fleet(tmp_path: Path, rules: str, *more: tuple[str, str], interval: float = 0.3,
                  max_gap: float = 30) -> Fleet:
    watch = (f"  watch:\n    interval_seconds: {interval}\n    max_gap_seconds: {max_gap}\n"
             f"    rules:\n{rules}")
    return make_fleet(tmp_path, HUB_CANARY, BROADCASTS_KEYED, ("  parallel: 3\n", f"  parallel: 3\n{watch}"), *more)


@pytest.fixture
def canary_baking(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    fleet = watched_fleet(tmp_path, request.param)
    try:
        for stage in ("staging", "canary"):
            result = fleet.orchestrate("rollout", "--stage", stage, "--yes")
            assert result.code == 0, result.text
        yield fleet
    finally:
        fleet.stop_all()


@contextmanager
def watcher(fleet: Fleet, *arguments: str, name: str = "watch") -> Iterator[subprocess.Popen[str]]:
    """`orchestrate watch` running, its output in a file; stopped with SIGTERM (then SIGKILL) at the end."""
    log = (fleet.directory / f"{name}.log").open("w")
    process = subprocess.Popen(fleet.command("watch", *arguments), stdout=log, stderr=subprocess.STDOUT, text=True,
                               env=fleet.env, cwd=REPO)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def output(fleet: Fleet, name: str = "watch") -> str:
    return (fleet.directory / f"{name}.log").read_text()


def findings(fleet: Fleet) -> list[tuple[object, ...]]:
    return fleet.query("SELECT region, rule, message, evidence, action FROM findings ORDER BY id")


def samples(fleet: Fleet, region: str = "ord") -> list[dict[str, object]]:
    return [json.loads(str(data)) for (data,) in fleet.query("SELECT data FROM samples WHERE region = ? ORDER BY id", region)]


def ord_status(fleet: Fleet) -> dict[str, object]:
    status = json.loads(fleet.orchestrate("status", "--json", "--region", "ord").out)
    return status["regions"][0]


def assert_switched_back_alone(fleet: Fleet, rule: str) -> None:
    """ord runs with the WebSocket off after a rollback the watcher ran; staging/iad was not touched."""
    row = ord_status(fleet)
    assert row["deployed"]["websocket"] == "off" and row["last_step"]["by"] == "watch"  # type: ignore[index]
    assert row["problem"] == "switched back by the watcher" and row["findings"][-1]["rule"] == rule  # type: ignore[index]
    status = fleet.orchestrate("status")
    assert status.code == 1 and "rollback passed (watch)" in status.out and "switched back by the watcher" in status.out
    assert fleet.query("SELECT action FROM steps WHERE region = 'iad'") == [("deploy",)]
    refused = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert refused.code == 3 and "stage canary has not passed: production/ord's last step is rollback" in refused.err


# --- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("canary_baking", ["      - {kind: memory_trend, window_seconds: 6}\n"], indirect=True)
def test_a_leak_is_switched_back_on_its_trend_before_it_reaches_the_budget(canary_baking: Fleet) -> None:
    fleet = canary_baking
    with watcher(fleet):
        wait_for(lambda: len(samples(fleet)) >= 3, timeout=60, what="the watcher sampling ord")
        leak = fleet.orchestrate("fleet", "leak", "--region", "ord", "--mb-per-minute", "240")
        assert leak.code == 0, leak.text
        wait_for(lambda: findings(fleet), timeout=90, what="a finding")
        wait_for(lambda: "switched back" in output(fleet), timeout=60, what="the finding's line")
    ((region, rule, message, evidence_text, action),) = findings(fleet)
    evidence = json.loads(str(evidence_text))
    assert (region, rule) == ("ord", "memory_trend")
    assert "before the bake ends" in str(message) and str(action).startswith("switched back (WebSocket off)")
    # Caught on the trend: the fitted memory and every sample stayed under the budget (400 MB).
    assert evidence["budget_mb"] == 400 and evidence["slope_mb_per_hour"] > 1000 and "crosses_at" in evidence
    assert max(sample["memory_mb"] for sample in samples(fleet) if "memory_mb" in sample) < 400  # type: ignore[operator]
    assert_switched_back_alone(fleet, "memory_trend")
    # The switch back restarted ord without its hub: the leak went with it.
    assert not (fleet.home("production/ord") / "run" / "leak.pid").exists()
    line = next(line for line in output(fleet).splitlines() if "memory_trend" in line or "memory trend" in line)
    assert "production/ord on localhost: memory trend over 6 s: memory grows" in line
    audit = fleet.query("SELECT message FROM audit WHERE action = 'watch switched back'")
    assert len(audit) == 1 and "production/ord" in str(audit[0][0])


@pytest.mark.parametrize("canary_baking", ["      - {kind: consecutive_failures, gate: http, count: 3}\n"], indirect=True)
def test_a_killed_front_is_caught_by_consecutive_failures(canary_baking: Fleet) -> None:
    fleet = canary_baking
    with watcher(fleet):
        wait_for(lambda: len(samples(fleet)) >= 2, timeout=60, what="the watcher sampling ord")
        front = int((fleet.home("production/ord") / "run" / "front.pid").read_text().split()[0])
        os.kill(front, signal.SIGKILL)
        wait_for(lambda: findings(fleet), timeout=60, what="a finding")
    ((region, rule, message, evidence_text, action),) = findings(fleet)
    evidence = json.loads(str(evidence_text))
    assert (region, rule) == ("ord", "consecutive_failures")
    assert "the http gate failed 3 times in a row" in str(message)
    assert len(evidence["failures"]) == 3 and all("cannot connect" in failure["evidence"] or "refused" in failure["evidence"]
                                                   for failure in evidence["failures"])
    # The hub mode's switch back restarts the region: the front comes back, with the WebSocket off.
    assert str(action).startswith("switched back (WebSocket off)")
    assert_switched_back_alone(fleet, "consecutive_failures")
    assert ord_status(fleet)["health"]["ok"] is True  # type: ignore[index]


SLOW_RULE = "      - {kind: counter_rate, counter: hub_slow_client_disconnects_total, max_per_minute: 1, window_seconds: 4}\n"


@pytest.mark.parametrize("canary_baking", [SLOW_RULE], indirect=True)
def test_a_hub_dropping_slow_clients_is_caught_by_the_counter_rate(canary_baking: Fleet) -> None:
    fleet = canary_baking
    ports = json.loads((fleet.home("production/ord") / "run" / "ports.json").read_text())
    stream = "watch-test-slow"
    identifier = json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": sign(stream, SIGNING_SECRET.encode())})
    slow_clients: list[RawClient] = []
    try:
        with watcher(fleet):
            wait_for(lambda: len(samples(fleet)) >= 2 and "counters" in samples(fleet)[-1], timeout=60,
                     what="the watcher reading the hub's counters")
            for _ in range(3):  # clients that never read
                client = RawClient(ports["cable"], "/demo/regions/ord/cable", "actioncable-v1-json", rcvbuf=4096)
                client.send(OP_TEXT, json.dumps({"command": "subscribe", "identifier": identifier}).encode())
                slow_clients.append(client)

            def flood() -> object:
                found = findings(fleet)
                if not found:
                    try:
                        publish_big(ports["cable"], stream)
                    except (OSError, http.client.HTTPException):
                        pass  # the switch back is taking the hub away; its finding is being recorded
                return found

            wait_for(flood, timeout=90, interval=0, what="slow clients dropped, and the rate found")
    finally:
        for client in slow_clients:
            client.sock.close()
    ((region, rule, message, evidence_text, action),) = findings(fleet)
    evidence = json.loads(str(evidence_text))
    assert (region, rule) == ("ord", "counter_rate")
    assert evidence["counter"] == "hub_slow_client_disconnects_total" and evidence["per_minute"] > 1
    assert "hub_slow_client_disconnects_total grew" in str(message) and str(action).startswith("switched back")
    assert_switched_back_alone(fleet, "counter_rate")


def publish_big(port: int, stream: str) -> None:
    """One 200 KB broadcast straight to the region's hub, keyed as the Rails adapter posts it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"stream": stream, "data": "y" * 200_000})
        connection.request("POST", "/_broadcast", body, {"Authorization": f"Bearer {BROADCAST_KEY}",
                                                         "Content-Type": "application/json"})
        assert connection.getresponse().status == 201
    finally:
        connection.close()


# --- the watcher itself -----------------------------------------------------------------------


@pytest.mark.parametrize("canary_baking", ["      - {kind: memory_trend, window_seconds: 3600}\n"], indirect=True)
def test_a_second_watcher_is_refused_and_names_the_first(canary_baking: Fleet) -> None:
    fleet = canary_baking
    with watcher(fleet) as first:
        wait_for(lambda: "watching production/ord" in output(fleet), timeout=60, what="the first watcher")
        wait_for(lambda: ord_status(fleet)["last_sample"], timeout=60, what="status showing the watcher's sample")
        second = fleet.orchestrate("watch", "--once")
        assert second.code == 3
        assert "watch not started: the watcher's lock (one watcher per journal) is held by" in second.err
        assert f"pid {first.pid}" in second.err
    assert first.returncode == 0 and "watch stopped by SIGTERM" in output(fleet)
    assert fleet.query("SELECT count(*) FROM watcher") == [(0,)]  # released on the way out


@pytest.mark.parametrize("canary_baking", ["      - {kind: memory_trend, window_seconds: 6}\n"], indirect=True)
def test_a_killed_watcher_restarted_takes_over_and_watches_on_without_a_gap(canary_baking: Fleet) -> None:
    fleet = canary_baking
    with watcher(fleet, name="first") as first:
        wait_for(lambda: len(samples(fleet)) >= 3, timeout=60, what="the first watcher sampling")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert fleet.query("SELECT pid FROM watcher") == [(first.pid,)]  # its lock, left behind
    assert fleet.orchestrate("fleet", "leak", "--region", "ord", "--mb-per-minute", "240").code == 0
    with watcher(fleet, name="second"):
        wait_for(lambda: findings(fleet), timeout=90, what="the restarted watcher's finding")
    assert findings(fleet)[0][1] == "memory_trend"
    takeover = fleet.query("SELECT message, reason FROM audit WHERE action = 'watch lock released by force'")
    assert len(takeover) == 1 and f"pid {first.pid}" in str(takeover[0][0])
    assert "the previous watcher's process is gone" in str(takeover[0][1])
    # Restarted within max_gap_seconds: one span of watching, no gap in the bake.
    assert fleet.query("SELECT count(*) FROM watched WHERE region = 'ord'") == [(1,)]


def test_once_with_nothing_baking_says_so_and_exits_0(tmp_path: Path) -> None:
    fleet = watched_fleet(tmp_path, "      - {kind: memory_trend}\n")
    try:
        result = fleet.orchestrate("watch", "--once")
        assert result.code == 0, result.text
        assert "nothing to watch: no stage is baking (--all watches every deployed region)" in result.out
    finally:
        fleet.stop_all()


# --- promotion needs a watched bake -----------------------------------------------------------------


def test_promotion_refuses_an_unwatched_bake_and_accepts_a_watched_one(tmp_path: Path) -> None:
    # Bakes of 12 s, and at most 5 s unwatched: slack for a loaded machine's slow rounds.
    fleet = watched_fleet(tmp_path, "      - {kind: consecutive_failures, gate: http}\n",
                          ("regions: [ord], bake: 1h}", "regions: [ord], bake: 12s}"),
                          ("regions: [iad], bake: 0s}", "regions: [iad], bake: 12s}"), max_gap=5)
    try:
        assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
        # Nobody watched staging's bake.
        refused = wait_for(lambda: (run := fleet.orchestrate("rollout", "--stage", "canary", "--yes")).code == 3
                           and "unwatched" in run.err and run, timeout=60, what="the bake to end unwatched")
        assert "stage staging's bake was unwatched: staging/iad had no sample from" in refused.err
        assert "more than rollout.watch.max_gap_seconds 5" in refused.err
        assert not fleet.home("production/ord").exists()
        # The canary's bake, watched from before it starts until after it ends, may be promoted.
        with watcher(fleet):
            forced = fleet.orchestrate("rollout", "--stage", "canary", "--yes", "--force", "--reason", "staging was watched by hand")
            assert forced.code == 0, forced.text
            promoted = wait_for(lambda: (run := fleet.orchestrate("rollout", "--stage", "wave", "--yes", "--dry-run")).code == 0
                                and run, timeout=60, what="the canary's watched bake to end")
        assert "unwatched" not in promoted.err
        audit = fleet.query("SELECT message FROM audit WHERE action = 'promotion forced'")
        assert len(audit) == 1 and "unwatched" in str(audit[0][0])
    finally:
        fleet.stop_all()


def test_the_inventory_s_watch_rules_are_validated_with_their_path(tmp_path: Path) -> None:
    fleet = watched_fleet(tmp_path, "      - {kind: counter_rate, counter: hub_slow_client_disconnect, max_per_minute: 1}\n"
                                    "      - {kind: consecutive_failures}\n")
    result = subprocess.run([*ORCHESTRATE, "validate", str(fleet.inventory)], capture_output=True, text=True,
                            env=fleet.env, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "rollout.watch.rules[0].counter: expected one of 'hub_slow_client_disconnects_total'" in result.stderr
    assert "rollout.watch.rules[1].gate: missing required key" in result.stderr

