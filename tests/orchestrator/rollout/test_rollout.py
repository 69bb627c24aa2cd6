"""The rollout end to end on the local fleet: real hubs (and Puma + redis-server) on loopback, the CLI as a process.

A test that takes `front` (or `fleet`) runs on both fronts: the hub standing in for Navigator, and the real
Navigator, skipped with the reason where there is none (tests/orchestrator/rollout/fleet.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.rollout.fleet import BROADCAST_KEY, SIGNING_SECRET, Fleet, Front, front, make_fleet  # noqa: F401
from tests.polling import wait_for


@pytest.fixture
def fleet(tmp_path: Path, front: Front) -> Iterator[Fleet]:
    made = make_fleet(tmp_path, front=front)
    yield made
    made.stop_all()


def running(fleet: Fleet, key: str) -> set[str]:
    """The region's processes that run now, as localctl sees them (Navigator's managed ones have no pid file)."""
    done = subprocess.run([sys.executable, "-m", "orchestrator.targets.localctl", "status", "--home", str(fleet.home(key))],
                          capture_output=True, text=True, env=fleet.env, timeout=60)
    assert done.returncode == 0, done.stderr
    return {name for name, process in json.loads(done.stdout)["processes"].items() if process["running"]}


def states(fleet: Fleet) -> dict[str, str]:
    rows = fleet.query("SELECT environment || '/' || region, state FROM steps ORDER BY row")
    return {str(key): str(state) for key, state in rows}


def live_matches_journal(fleet: Fleet, key: str) -> bool:
    shown = fleet.orchestrate("status", "--json")
    assert shown.out, shown.err
    status = json.loads(shown.out)
    row = next(row for row in status["regions"] if row["region"] == key)
    return row["deployed"] is not None and row["drift"] == []


def test_a_stage_deploys_gates_and_records_every_phase(fleet: Fleet, front: Front) -> None:
    result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
    assert result.code == 0, result.text
    assert "1 passed" in result.out
    transitions = [state for (state,) in fleet.query(
        "SELECT t.state FROM transitions t JOIN steps s ON s.row = t.step_row "
        "WHERE s.environment = 'staging' AND s.region = 'iad' ORDER BY t.id")]
    assert transitions == ["pending", "deploying", "gating", "passed"]
    gates = {gate: ok for gate, ok in fleet.query("SELECT gate, ok FROM gates")}
    assert gates == {"http": 1, "websocket": 1, "memory": 1}
    (memory,) = fleet.query("SELECT evidence FROM gates WHERE gate = 'memory'")
    assert ("(navigator " if front.navigator else "(front ") in str(memory[0])  # the journal names the front
    assert live_matches_journal(fleet, "staging/iad")
    status = json.loads(fleet.orchestrate("status", "--json").out)
    iad = next(row for row in status["regions"] if row["region"] == "staging/iad")
    assert (iad["deployed"]["mode"], iad["deployed"]["websocket"], iad["health"]["ok"]) == ("integrated", "on", True)
    assert iad["memory_mb"] > 0
    assert fleet.orchestrate("lock", "status").out.strip() == "no lock"


def test_promotion_waits_for_the_bake_time_unless_forced_with_a_reason(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    assert fleet.orchestrate("rollout", "--stage", "canary", "--yes").code == 0

    refused = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert refused.code == 3
    assert "stage canary bakes until" in refused.err
    assert not fleet.home("production/ams").exists()

    no_reason = fleet.orchestrate("rollout", "--stage", "wave", "--yes", "--force")
    assert no_reason.code == 2 and "--force needs --reason" in no_reason.err

    forced = fleet.orchestrate("rollout", "--stage", "wave", "--yes", "--force", "--reason", "incident 42: hotfix")
    assert forced.code == 0, forced.text
    audit = fleet.query("SELECT action, message, reason FROM audit WHERE action = 'promotion forced'")
    assert len(audit) == 1
    assert "stage canary bakes until" in str(audit[0][1]) and audit[0][2] == "incident 42: hotfix"


def test_a_region_over_its_memory_budget_is_switched_off_and_nothing_else_is_touched(tmp_path: Path, front: Front) -> None:
    fleet = make_fleet(tmp_path, ("  - code: dfw\n", "  - {code: dfw, memory_budgets_mb: {integrated: {navigator: 1}}}\n"),
                       ("bake: 1h", "bake: 0s"), front=front)
    try:
        for stage in ("staging", "canary"):
            assert fleet.orchestrate("rollout", "--stage", stage, "--yes").code == 0
        result = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
        assert result.code == 1
        assert "production/dfw: rolled_back; memory gate failed: rss" in result.err
        assert "> budget 1 MB" in result.err
        wave = {key: state for key, state in states(fleet).items() if key in ("production/ams", "production/dfw", "production/sjc")}
        assert wave == {"production/ams": "passed", "production/dfw": "rolled_back", "production/sjc": "passed"}
        status = json.loads(fleet.orchestrate("status", "--json").out)
        by_region = {row["region"]: row for row in status["regions"]}
        assert by_region["production/dfw"]["deployed"]["websocket"] == "off"
        assert by_region["production/dfw"]["health"]["ok"] is True
        assert by_region["production/ams"]["deployed"]["websocket"] == "on"
        audit = fleet.query("SELECT message FROM audit WHERE action = 'automatic rollback'")
        assert [str(message).split(":")[0] for (message,) in audit] == ["production/dfw"]
    finally:
        fleet.stop_all()


def test_kill_9_in_the_middle_of_a_wave_then_resume_finishes_it_consistently(tmp_path: Path, front: Front) -> None:
    fleet = make_fleet(tmp_path, ("bake: 1h", "bake: 0s"), ("parallel: 3", "parallel: 1"), front=front)
    try:
        for stage in ("staging", "canary"):
            assert fleet.orchestrate("rollout", "--stage", stage, "--yes").code == 0
        process = fleet.start("rollout", "--stage", "wave", "--yes")
        # Stop it while a region of the wave is being gated: deployed, not yet judged.
        wait_for(lambda: "gating" in states(fleet).values() and len(states(fleet)) >= 3, timeout=60, what="a region gating")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        # One region at a time: killed while the first was gated, the wave's run cannot have finished.
        assert fleet.query("SELECT count(*) FROM runs WHERE command = 'rollout' AND finished_at IS NULL") == [(1,)]

        locked = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
        assert locked.code == 3 and "stale" in locked.err

        resumed = fleet.orchestrate("rollout", "--resume")
        assert resumed.code == 0, resumed.text
        final = states(fleet)
        assert {key: final[key] for key in ("production/ams", "production/dfw", "production/sjc")} == {
            "production/ams": "passed", "production/dfw": "passed", "production/sjc": "passed"}
        for key in ("production/ams", "production/dfw", "production/sjc"):
            assert live_matches_journal(fleet, key)
        assert fleet.query("SELECT count(*) FROM runs WHERE finished_at IS NULL") == [(0,)]
        assert fleet.orchestrate("lock", "status").out.strip() == "no lock"
    finally:
        fleet.stop_all()


HOLDER = """
import sys
from orchestrator.rollout.journal import Actor, Journal
journal = Journal.open(sys.argv[1])
journal.acquire_lock(Actor.current(), "rollout stage staging: staging/iad")
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_second_rollout_fails_at_once_naming_the_holder_and_a_dead_holder_is_stale(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    # Another process holds the lock for as long as this test wants: it waits on its standard input.
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(fleet.state)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=fleet.env)
    try:
        assert first.stdout is not None and first.stdout.readline() == "locked\n"
        second = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
        assert second.code == 3
        assert f"pid {first.pid}" in second.err and "rollout stage staging" in second.err
        assert "stale" not in second.err
        assert not fleet.home("staging/iad").exists()  # refused before anything was deployed
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        status = fleet.orchestrate("lock", "status")
        assert f"pid {first.pid}" in status.out and f"(stale: process {first.pid} is gone)" in status.out
        released = fleet.orchestrate("lock", "release", "--force", "--reason", "its rollout was killed")
        assert released.code == 0 and fleet.orchestrate("lock", "status").out.strip() == "no lock"
        audit = fleet.query("SELECT reason FROM audit WHERE action LIKE 'lock released by force%'")
        assert audit == [("its rollout was killed",)]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        fleet.stop_all()


def test_a_gate_that_never_passes_fails_at_its_deadline(tmp_path: Path, front: Front) -> None:
    fleet = make_fleet(tmp_path, ("  health_check:\n", "  health_check:\n    path: /not-the-health-path\n"),
                       ("failure_limit: 1", "failure_limit: 1000"), ("deadline_seconds: 20", "deadline_seconds: 1"),
                       front=front)
    try:
        result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
        assert result.code == 1
        assert "http gate failed" in result.err and "404" in result.err
        assert states(fleet)["staging/iad"] == "failed"  # the rollback's own health check cannot pass either
    finally:
        fleet.stop_all()


def test_a_region_whose_process_will_not_start_fails_clearly(fleet: Fleet) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        run = fleet.home("staging/iad") / "run"
        run.mkdir(parents=True)
        (run / "ports.json").write_text(json.dumps({"front": busy.getsockname()[1]}))
        result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
        assert result.code == 1
        assert "staging/iad" in result.err and "restart staging/iad" in result.err and "front" in result.err
        assert states(fleet)["staging/iad"] == "failed"
        assert fleet.query("SELECT count(*) FROM deployed") == [(0,)]
    finally:
        busy.close()


def test_a_render_error_halfway_through_a_wave_deploys_nothing_anywhere(tmp_path: Path) -> None:
    # dfw alone is set to a mode the inventory cannot render (anycable without a pinned image).
    fleet = make_fleet(tmp_path, ("  - code: dfw\n", "  - {code: dfw, websocket: {mode: anycable}}\n"))
    try:
        result = fleet.orchestrate("rollout", "--stage", "wave", "--yes", "--force", "--reason", "test")
        assert result.code == 2
        assert "production/dfw" in result.err and "anycable" in result.err
        assert not (fleet.state / "fleet").exists()
        if (fleet.state / "journal.sqlite3").exists():
            assert fleet.query("SELECT count(*) FROM deployed") == [(0,)]
            assert fleet.query("SELECT count(*) FROM steps") == [(0,)]
    finally:
        fleet.stop_all()


def test_rollback_to_previous_puts_back_the_files_deployed_before(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    integrated = (fleet.home("staging/iad") / "config" / "navigator.yml").read_text()
    manual = fleet.orchestrate("rollout", "--region", "staging/iad", "--mode", "action_cable", "--yes")
    assert manual.code == 0, manual.text
    assert (fleet.home("staging/iad") / "config" / "navigator.yml").read_text() != integrated

    back = fleet.orchestrate("rollback", "--region", "staging/iad", "--to-previous", "--yes")
    assert back.code == 0, back.text
    assert (fleet.home("staging/iad") / "config" / "navigator.yml").read_text() == integrated
    assert running(fleet, "staging/iad") == {"front"}  # Redis and Puma are gone: a restart, not a reload
    assert live_matches_journal(fleet, "staging/iad")


def test_rollback_without_regions_switches_off_the_last_rollouts_regions(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    result = fleet.orchestrate("rollback", "--yes")
    assert result.code == 0, result.text
    assert "the most recent rollout step changed: staging/iad" in result.out
    status = json.loads(fleet.orchestrate("status", "--json").out)
    iad = next(row for row in status["regions"] if row["region"] == "staging/iad")
    assert iad["deployed"]["websocket"] == "off" and iad["health"]["ok"] is True


def test_status_shows_drift_when_a_live_file_is_edited_by_hand(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    assert fleet.orchestrate("status").code == 0
    live = fleet.home("staging/iad") / "config" / "navigator.yml"
    live.write_text(live.read_text().replace("enabled: true", "enabled: false", 1))
    result = fleet.orchestrate("status")
    assert result.code == 1
    assert "DRIFT navigator.yml" in result.out
    assert "-  enabled: true" in result.out and "+  enabled: false" in result.out


def test_planted_secrets_never_appear_in_output_html_logs_or_journal(tmp_path: Path, front: Front) -> None:
    fleet = make_fleet(tmp_path, ("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                                  "  signing_secret_env: CABLE_SIGNING_SECRET\n  broadcast_key_env: CABLE_BROADCAST_KEY\n"),
                       front=front)
    try:
        outputs = [
            fleet.orchestrate("plan"),
            fleet.orchestrate("plan", "--json", "--html", str(tmp_path / "plan.html")),
            fleet.orchestrate("rollout", "--stage", "staging", "--yes", "--dry-run"),
            fleet.orchestrate("rollout", "--stage", "staging", "--yes"),
            fleet.orchestrate("status"),
            fleet.orchestrate("history", "--json"),
            fleet.orchestrate("rollback", "--all", "--yes"),
        ]
        assert outputs[3].code == 0, outputs[3].text
        searched = [run.text for run in outputs]
        searched.append((tmp_path / "plan.html").read_text())
        searched.extend(path.read_text(errors="replace") for path in fleet.state.rglob("*") if path.is_file()
                        and not path.name.startswith("journal.sqlite3"))
        journal_bytes = b"".join(path.read_bytes() for path in fleet.state.glob("journal.sqlite3*"))
        for secret in (SIGNING_SECRET, BROADCAST_KEY):
            assert not any(secret in text for text in searched), secret
            assert secret.encode() not in journal_bytes
        assert "CABLE_SIGNING_SECRET" in outputs[0].text  # the names are shown; the values never
    finally:
        fleet.stop_all()


def test_dry_run_prints_the_plans_steps_and_runs_none(fleet: Fleet, front: Front) -> None:
    result = fleet.orchestrate("rollout", "--stage", "staging", "--dry-run")
    assert result.code == 0, result.text
    assert "localctl restart --home" in result.out and "http: GET /up answers 200" in result.out
    assert f"--front {front.argument}" in result.out  # the plan says which front each region runs
    assert not (fleet.state / "fleet").exists()
    assert not (fleet.state / "journal.sqlite3").exists()
    # A stage that may not start yet: the steps are still shown, and the status says a real run would not start.
    early = fleet.orchestrate("rollout", "--stage", "canary", "--dry-run")
    assert early.code == 3
    assert "localctl restart --home" in early.out
    assert "a real run would not start: stage staging has not passed" in early.err


def test_the_inventory_s_navigator_comes_before_the_environment_s(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("  parallel: 3\n", "  parallel: 3\n  navigator: /opt/navigator/navigator\n"))
    result = fleet.orchestrate("plan")  # the fleet's environment names none: NAVIGATOR_BIN is empty
    assert result.code == 0, result.text
    assert "--front /opt/navigator/navigator" in result.out


def test_the_inventory_is_found_from_the_environment(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    command = [sys.executable, "-m", "orchestrator", "plan", "--json", "--state", str(fleet.state)]
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True, env={**fleet.env, "ORCHESTRATE_INVENTORY": str(fleet.inventory)},
                          cwd=fleet.directory)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inventory"] == "fleet.yml"
    missing = subprocess.run([sys.executable, "-m", "orchestrator", "plan"], capture_output=True, text=True,
                             env=fleet.env, cwd=fleet.directory)
    assert missing.returncode == 2 and "ORCHESTRATE_INVENTORY" in missing.stderr


def test_a_region_in_hub_mode_serves_action_cable_through_the_real_hub_and_switches_off(tmp_path: Path, front: Front) -> None:
    # The stand-in front is itself a hub (~21 MB where Navigator is ~14 MB): a roomier budget.
    fleet = make_fleet(tmp_path, ("  mode: integrated\n", "  mode: hub\n  broadcast_key_env: CABLE_BROADCAST_KEY\n"),
                       ("rollout:\n", "memory_budgets_mb:\n  hub: {navigator: 60, cable_server: 60}\nrollout:\n"), front=front)
    try:
        result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
        assert result.code == 0, result.text
        gates = {gate: (ok, evidence) for gate, ok, evidence in fleet.query("SELECT gate, ok, evidence FROM gates")}
        assert {gate: ok for gate, (ok, _) in gates.items()} == {"http": 1, "websocket": 1, "memory": 1}
        assert "cable-hub" in str(gates["memory"][1])  # the hub's own process was measured
        assert "cable-hub" in running(fleet, "staging/iad")
        status = json.loads(fleet.orchestrate("status", "--json").out)
        iad = next(row for row in status["regions"] if row["region"] == "staging/iad")
        assert (iad["deployed"]["mode"], iad["deployed"]["websocket"], iad["health"]["ok"]) == ("hub", "on", True)

        off = fleet.orchestrate("rollback", "--region", "staging/iad", "--yes")
        assert off.code == 0, off.text
        assert "cable-hub" not in running(fleet, "staging/iad")
        assert not (fleet.home("staging/iad") / "config" / "hub.yml").exists()
        back = fleet.orchestrate("rollout", "--region", "staging/iad", "--mode", "hub", "--yes")
        assert back.code == 0, back.text  # the hub process comes back: a restart, not a reload
        assert "cable-hub" in running(fleet, "staging/iad")
    finally:
        fleet.stop_all()


def test_a_hub_region_with_a_local_broker_runs_nats_server_and_shares_through_it(tmp_path: Path, front: Front) -> None:
    fleet = make_fleet(tmp_path, ("  mode: integrated\n", "  mode: hub\n  broadcast_key_env: CABLE_BROADCAST_KEY\n"),
                       ("  - code: iad\n", "  - {code: iad, broker: {kind: nats, local: {port: 4222}}}\n"),
                       ("rollout:\n", "memory_budgets_mb:\n  hub: {navigator: 60, cable_server: 60, broker: 40}\nrollout:\n"),
                       front=front)
    try:
        result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
        assert result.code == 0, result.text
        gates = {gate: evidence for gate, evidence in fleet.query("SELECT gate, evidence FROM gates")}
        assert "nats-server" in str(gates["memory"])  # measured with the region's processes
        # The gate's probe went through the broker: the hub published it and took it back from NATS.
        ports = json.loads((fleet.home("staging/iad") / "run" / "ports.json").read_text())
        with socket.create_connection(("127.0.0.1", ports["cable"]), timeout=10) as connection:
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            metrics = b"".join(iter(lambda: connection.recv(65536), b"")).decode()
        counters = dict(line.split() for line in metrics.splitlines() if line.startswith("hub_broker_"))
        assert counters["hub_broker_connected"] == "1"
        assert int(counters["hub_broker_published_total"]) >= 1
        assert int(counters["hub_broker_received_total"]) >= 1
    finally:
        fleet.stop_all()
