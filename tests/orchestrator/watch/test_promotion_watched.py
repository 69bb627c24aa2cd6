"""Promotion needs a watched bake: the bake windows, the gaps in watching, and the refusal that names them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory, WatchSettings
from orchestrator.rollout.model import RegionKey, StepState
from orchestrator.rollout.plan import RegionHistory, bake_windows, promotion_problem, unwatched_gaps

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]
ORD = RegionKey("production", "ord")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def showcase() -> Inventory:
    return load_inventory(REPO / "inventories" / "showcase.yml")


def passed(stage: str, finished: float, watched: tuple[tuple[float, float], ...] = ()) -> RegionHistory:
    return RegionHistory(last_stage=stage, last_action="deploy", last_state=StepState.PASSED, last_started=at(finished - 5),
                         last_finished=at(finished), watched=tuple((at(first), at(last)) for first, last in watched))


# --- the gaps -----------------------------------------------------------------------------------


def test_a_window_watched_throughout_has_no_gap() -> None:
    assert unwatched_gaps((at(0), at(1000)), [(at(10), at(500)), (at(600), at(1000))], 100) == []


def test_gaps_before_between_and_after_the_spans_are_found() -> None:
    spans = [(at(200), at(300)), (at(500), at(600))]
    assert unwatched_gaps((at(0), at(1000)), spans, 150) == [(at(0), at(200)), (at(300), at(500)), (at(600), at(1000))]
    assert unwatched_gaps((at(0), at(1000)), spans, 200) == [(at(600), at(1000))]  # exactly the gap allowed: fine


def test_spans_outside_the_window_do_not_count_and_overlaps_merge() -> None:
    spans = [(at(-500), at(-10)), (at(0), at(400)), (at(100), at(450)), (at(2000), at(3000))]
    assert unwatched_gaps((at(0), at(1000)), spans, 100) == [(at(450), at(1000))]
    assert unwatched_gaps((at(0), at(1000)), [(at(-500), at(2000))], 0) == []
    assert unwatched_gaps((at(0), at(0)), [], 0) == []  # a bake of 0s needs no watching


def test_a_window_never_watched_is_one_gap() -> None:
    assert unwatched_gaps((at(0), at(1000)), [], 100) == [(at(0), at(1000))]


# --- the windows ----------------------------------------------------------------------------------


def test_each_region_bakes_from_its_own_pass_to_the_stage_s_end(showcase: Inventory) -> None:
    wave = next(stage for stage in showcase.rollout.stages if stage.name == "wave-1")
    histories = {RegionKey("production", "ewr"): passed("wave-1", 0), RegionKey("production", "sjc"): passed("wave-1", 60),
                 RegionKey("production", "ams"): RegionHistory(last_stage="wave-1", last_action="deploy",
                                                               last_state=StepState.ROLLED_BACK, last_finished=at(30))}
    windows = bake_windows(wave, histories)
    ends = at(60 + 24 * 3600)
    assert windows == {RegionKey("production", "ewr"): (at(0), ends), RegionKey("production", "sjc"): (at(60), ends)}
    assert bake_windows(wave, {}) == {}


# --- promotion ---------------------------------------------------------------------------------------


def test_promotion_refuses_an_unwatched_bake_naming_the_longest_gap(showcase: Inventory) -> None:
    watch = showcase.rollout.watch
    assert watch is not None and watch.max_gap_seconds == 300
    day = 24 * 3600
    histories = {ORD: passed("canary", 0, ((5, 3600), (3800, 5000), (9000, day)))}  # 200 s, then 4000 s unwatched
    problem = promotion_problem(showcase, "wave-1", histories, at(day + 1))
    assert problem == ("stage canary's bake was unwatched: production/ord had no sample from 2026-12-07 13:23:20 to "
                       "2026-12-07 14:30:00 UTC (1h 6m, more than rollout.watch.max_gap_seconds 300; `orchestrate watch` "
                       "watches a bake)")
    histories = {ORD: passed("canary", 0, ((5, 3600), (3800, day)))}
    assert promotion_problem(showcase, "wave-1", histories, at(day + 1)) is None


def test_without_rollout_watch_promotion_goes_on_time_alone(showcase: Inventory) -> None:
    unwatched = replace(showcase, rollout=replace(showcase.rollout, watch=None))
    histories = {ORD: passed("canary", 0)}
    assert promotion_problem(unwatched, "wave-1", histories, at(24 * 3600)) is None
    assert "bakes until" in str(promotion_problem(unwatched, "wave-1", histories, at(24 * 3600 - 1)))
    strict = replace(showcase, rollout=replace(showcase.rollout, watch=WatchSettings(15, 300, 2000, ())))
    assert "unwatched" in str(promotion_problem(strict, "wave-1", histories, at(24 * 3600)))


def test_the_bake_is_checked_before_the_watching(showcase: Inventory) -> None:
    problem = promotion_problem(showcase, "wave-1", {ORD: passed("canary", 0)}, at(3600))
    assert problem is not None and problem.startswith("stage canary bakes until")


def test_of_several_gaps_the_refusal_names_the_longest_wherever_it_falls(showcase: Inventory) -> None:
    day = 24 * 3600
    # Unwatched: 1000 s, then 5000 s, then 500 s; all over the 300 s allowed.
    histories = {ORD: passed("canary", 0, ((0, 1000), (2000, 3000), (8000, 8500), (9000, day)))}
    problem = promotion_problem(showcase, "wave-1", histories, at(day + 1))
    assert problem is not None
    assert "no sample from 2026-12-07 12:50:00 to 2026-12-07 14:13:20 UTC (1h 23m," in problem
