"""The live page's data: a real journal in a temporary directory, read as `orchestrate status --serve` reads it."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory
from orchestrator.rollout.journal import JOURNAL_FILE, Actor, Journal
from orchestrator.rollout.model import RegionKey, RegionState, StepState
from orchestrator.rollout.plan import all_keys
from orchestrator.watch.live_page import PAGE, SCRIPT
from orchestrator.watch.live_state import MAX_POINTS, live_state, read_live_state, thinned
from orchestrator.watch.sampling import region_budget_mb
from tests.orchestrator.rollout.fleet import make_fleet
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
ORD = RegionKey("production", "ord")
IAD = RegionKey("staging", "iad")
ALICE = Actor("alice", "ops1.example", 4242)
HOSTILE = '<img src=x onerror="alert(1)"></script><b>&amp;'


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory(make_fleet(tmp_path).inventory)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def journal(state_dir: Path) -> Iterator[Journal]:
    with Journal.open(state_dir, clock=lambda: T0) as opened:
        yield opened


def sample(memory_mb: Any, **more: Any) -> dict[str, Any]:
    return {"state": "started", "budget_mb": 40.0, "http": {"ok": True, "evidence": "GET /up: 200 in 3 ms"},
            "memory": {"navigator": 12.0, "cable_server": memory_mb}, "memory_mb": memory_mb, **more}


def record(journal: Journal, key: RegionKey, machine: str, minute: float, data: dict[str, Any]) -> None:
    journal.record_samples([(key, machine, T0 + timedelta(minutes=minute), data)], keep=10_000, max_gap=600)


def test_samples_become_a_series_per_machine_with_the_newest_sample_the_budget_and_the_findings(
    journal: Journal, inventory: Inventory
) -> None:
    for minute in range(5):
        record(journal, ORD, "m1", minute, sample(30.0 + minute, counters={"connections": minute}))
        record(journal, ORD, "m2", minute, sample(20.0))
    record(journal, ORD, "m2", 5, {"state": "stopped", "budget_mb": 40.0})  # asleep: looked at, no memory
    journal.record_finding(ORD, "m1", "memory_trend", "memory grows +60.0 MB/h", {"slope_mb_per_hour": 60.0},
                           "switched back (WebSocket off), rollback run 2")
    journal.audit(ALICE, "watch started", "the baking regions, every 30 s")

    state = live_state(journal, inventory, [ORD, IAD], T0 + timedelta(minutes=6))

    assert state["problem"] is None and state["journal"] == str(journal.path) and state["at"] == "2026-12-07T19:06:00Z"
    ord_region, iad_region = state["regions"]
    assert [ord_region["region"], iad_region["region"]] == ["production/ord", "staging/iad"]
    assert ord_region["budget_mb"] == 40.0
    m1, m2 = ord_region["machines"]
    assert m1["machine"] == "m1" and m1["samples"] == 5
    assert m1["memory"] == [[f"2026-12-07T19:0{minute}:00Z", 30.0 + minute] for minute in range(5)]
    assert m1["latest"] == {"at": "2026-12-07T19:04:00Z", **{name: value for name, value in sample(34.0).items()
                                                              if name != "budget_mb"}, "counters": {"connections": 4}}
    assert m2["samples"] == 6 and len(m2["memory"]) == 5 and m2["latest"] == {"at": "2026-12-07T19:05:00Z", "state": "stopped"}
    (finding,) = ord_region["findings"]
    assert finding["rule"] == "memory_trend" and finding["machine"] == "m1" and finding["message"] == "memory grows +60.0 MB/h"
    assert finding["action"] == "switched back (WebSocket off), rollback run 2" and ord_region["findings_total"] == 1
    assert iad_region["machines"] == [] and iad_region["budget_mb"] is None and iad_region["findings"] == []
    assert state["audit"] == ["[2026-12-07T19:00:00Z] [alice@ops1.example pid 4242] watch started: "
                              "the baking regions, every 30 s"]
    json.dumps(state, allow_nan=False)  # what the server sends


def test_every_list_is_bounded_and_a_long_series_is_thinned_evenly_keeping_its_ends(
    journal: Journal, inventory: Inventory
) -> None:
    for minute in range(500):
        record(journal, ORD, "m1", minute, sample(float(minute)))
    for number in range(30):
        journal.record_finding(ORD, "m1", "consecutive_failures", f"finding {number}", {}, "switched back")
        journal.audit(ALICE, "watch switched back", f"audit {number}")

    state = live_state(journal, inventory, [ORD], T0, points=50, findings=20, audit=10)

    (region,) = state["regions"]
    series = region["machines"][0]["memory"]
    assert len(series) == 50 and region["machines"][0]["samples"] == 500
    assert series[0] == ["2026-12-07T19:00:00Z", 0.0] and series[-1][1] == 499.0
    steps = [later[1] - earlier[1] for earlier, later in zip(series, series[1:])]
    assert min(steps) >= 9 and max(steps) <= 11  # 499 / 49 apart, give or take the rounding
    assert [finding["message"] for finding in region["findings"]] == [f"finding {n}" for n in range(10, 30)]
    assert region["findings_total"] == 30
    assert len(state["audit"]) == 10 and state["audit"][-1].endswith("watch switched back: audit 29")
    assert state["audit_total"] == 30


def test_the_default_bound_applies_per_machine(journal: Journal, inventory: Inventory) -> None:
    for minute in range(MAX_POINTS + 60):
        record(journal, ORD, "m1", minute, sample(1.0))
        record(journal, ORD, "m2", minute, sample(2.0))
    (region,) = live_state(journal, inventory, [ORD], T0)["regions"]
    assert [len(machine["memory"]) for machine in region["machines"]] == [MAX_POINTS, MAX_POINTS]


def test_thinned_keeps_the_first_and_the_last_evenly_spread() -> None:
    assert thinned(list(range(10)), 20) == list(range(10))
    assert thinned(list(range(10)), 4) == [0, 3, 6, 9]
    assert thinned(list(range(101)), 11) == list(range(0, 101, 10))
    assert thinned(list(range(10)), 1) == [9]
    assert thinned(list(range(10)), 0) == []


def test_journal_text_is_kept_as_data_and_the_page_only_ever_inserts_text(journal: Journal, inventory: Inventory) -> None:
    record(journal, ORD, HOSTILE, 0, sample(30.0, http={"ok": False, "evidence": HOSTILE}, error=HOSTILE))
    journal.record_finding(ORD, HOSTILE, "memory_trend", HOSTILE, {"note": HOSTILE}, HOSTILE)
    journal.audit(ALICE, "watch switched back", HOSTILE)

    state = live_state(journal, inventory, [ORD], T0)

    (region,) = state["regions"]
    machine = region["machines"][0]
    assert machine["machine"] == HOSTILE and machine["latest"]["http"]["evidence"] == HOSTILE
    assert machine["latest"]["error"] == HOSTILE and region["findings"][0]["message"] == HOSTILE
    assert state["audit"][0].endswith(f"watch switched back: {HOSTILE}")
    # The page builds its DOM with createElement and text; nothing of the journal's is ever parsed as markup.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in SCRIPT
    # Nothing from elsewhere: the one address in the page is SVG's namespace, the one link an empty data: icon.
    assert re.findall(r"[a-z]+://[^\s\"'`]*", PAGE) == ["http://www.w3.org/2000/svg"]
    assert re.findall(r"(?:src|href)=\S*", PAGE) == ['href="data:,">']


def test_values_that_are_not_numbers_are_left_out_of_the_series(journal: Journal, inventory: Inventory) -> None:
    record(journal, ORD, "m1", 0, sample(30.0))
    record(journal, ORD, "m1", 1, sample("lots"))
    record(journal, ORD, "m1", 2, sample(True))
    record(journal, ORD, "m1", 3, {"state": "started", "budget_mb": "forty", "memory_error": "ps: not found"})
    (region,) = live_state(journal, inventory, [ORD], T0)["regions"]
    assert region["machines"][0]["memory"] == [["2026-12-07T19:00:00Z", 30.0]]
    assert region["machines"][0]["latest"]["memory_error"] == "ps: not found"
    assert region["budget_mb"] is None  # the newest sample's budget is no number, and nothing is deployed


def test_without_samples_the_budget_is_the_deployed_state_s(journal: Journal, inventory: Inventory) -> None:
    deployed = RegionState("integrated", True, {})
    journal.record_deployed(ORD, None, deployed)
    (region,) = live_state(journal, inventory, [ORD], T0)["regions"]
    assert region["budget_mb"] == region_budget_mb(inventory, ORD, deployed) > 0
    assert region["deployed"] == "integrated, websocket on" and region["machines"] == []


def test_the_stages_come_from_the_schedule_of_the_whole_inventory(journal: Journal, inventory: Inventory) -> None:
    run = journal.start_run("rollout", {"stage": "canary"}, ALICE)
    row = journal.add_step(run, "production/ord", "canary", ORD, "deploy", "integrated", True)
    journal.transition(row, StepState.PASSED)

    state = live_state(journal, inventory, [IAD], T0 + timedelta(minutes=10))  # ord is not shown, its stage is

    assert [(stage["name"], stage["status"]) for stage in state["stages"]] == [
        ("staging", "next"), ("canary", "baking"), ("wave", "later")]
    canary = state["stages"][1]
    assert canary == {"name": "canary", "environment": "production", "regions": ["ord"], "bake": "1h",
                      "starts": "2026-12-07T19:00:00Z", "bake_ends": "2026-12-07T20:00:00Z", "status": "baking"}
    assert [region["region"] for region in state["regions"]] == ["staging/iad"]


def test_without_a_journal_the_page_says_so_and_none_is_created(state_dir: Path, inventory: Inventory) -> None:
    keys = all_keys(inventory)
    state = read_live_state(state_dir, inventory, keys, T0)
    assert state["journal"] is None
    assert state["problem"] == f"no journal at {state_dir / JOURNAL_FILE}: nothing has been rolled out with this " \
                               "state directory yet"
    assert [region["region"] for region in state["regions"]] == [str(key) for key in keys]
    assert all(region["machines"] == [] and region["deployed"] is None for region in state["regions"])
    assert [stage["status"] for stage in state["stages"]] == ["next", "later", "later"]
    assert not state_dir.exists()


def test_a_file_that_is_not_a_journal_is_a_problem_shown_not_a_crash(state_dir: Path, inventory: Inventory) -> None:
    state_dir.mkdir()
    (state_dir / JOURNAL_FILE).write_text("not a database, " * 100)
    state = read_live_state(state_dir, inventory, [ORD], T0)
    assert state["journal"] is None and state["problem"].startswith("journal: ")
    assert "is not a rollout journal" in state["problem"]


def test_reading_needs_no_write_lock_and_writes_nothing(state_dir: Path, journal: Journal, inventory: Inventory) -> None:
    record(journal, ORD, "m1", 0, sample(30.0))
    writer = sqlite3.connect(state_dir / JOURNAL_FILE, isolation_level=None)
    finished: list[dict[str, Any]] = []
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock for as long as it likes
        reader = threading.Thread(target=lambda: finished.append(read_live_state(state_dir, inventory, [ORD], T0)),
                                  daemon=True)
        reader.start()
        wait_for(lambda: finished, 10, "the live state to be read while another connection holds the write lock")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert finished[0]["regions"][0]["machines"][0]["samples"] == 1
    assert journal.audit_records() == [] and len(journal.samples(ORD)) == 1
