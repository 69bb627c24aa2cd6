"""The watched bake's rules, as pure functions of a machine's samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.model import WatchRule
from orchestrator.rollout.journal import SampleRecord
from orchestrator.rollout.model import RegionKey
from orchestrator.watch.rules import Horizon, evaluate, least_squares, lookback_seconds, thinned

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TREND = WatchRule("memory_trend", window_seconds=600)
HTTP_3 = WatchRule("consecutive_failures", gate="http", count=3)
SLOW = WatchRule("counter_rate", counter="hub_slow_client_disconnects_total", max_per_minute=2, window_seconds=300)
ORD = RegionKey("production", "ord")


def point(at: datetime, data: dict[str, Any]) -> SampleRecord:
    """One sample of m1, as the journal gives it back to the watcher."""
    return SampleRecord(ORD, "m1", at, data)


def series(values: list[float], key: str = "memory_mb", every: float = 15) -> list[SampleRecord]:
    return [point(T0 + timedelta(seconds=index * every), {key: value}) for index, value in enumerate(values)]


def gate_points(*oks: bool, gate: str = "http") -> list[SampleRecord]:
    return [point(T0 + timedelta(seconds=15 * index), {gate: {"ok": ok, "evidence": f"observation {index}"}})
            for index, ok in enumerate(oks)]


def counters(values: list[float], every: float = 15) -> list[SampleRecord]:
    return [point(T0 + timedelta(seconds=index * every), {"counters": {SLOW.counter: value}})
            for index, value in enumerate(values)]


def judge(rule: WatchRule, points: list[SampleRecord], budget: float = 100, bake_left: timedelta = HOUR) -> list[Any]:
    now = points[-1].at if points else T0
    return evaluate([rule], "m1", points, now, Horizon(budget, now + bake_left))


# --- consecutive failures -------------------------------------------------------------------


def test_the_newest_count_failures_in_a_row_breach_and_carry_their_evidence() -> None:
    (breach,) = judge(HTTP_3, gate_points(True, False, False, False))
    assert breach.machine == "m1" and breach.rule == HTTP_3
    assert [failure["evidence"] for failure in breach.evidence["failures"]] == [
        "observation 1", "observation 2", "observation 3"]
    assert "failed 3 times in a row, last: observation 3" in breach.message


@pytest.mark.parametrize("oks", [
    (False, False),                 # not yet count observations
    (False, False, True, False),    # a pass in between
    (False, False, False, True),    # recovered: the newest one passed
])
def test_fewer_or_interrupted_failures_do_not_breach(oks: tuple[bool, ...]) -> None:
    assert judge(HTTP_3, gate_points(*oks)) == []


def test_samples_without_the_gate_neither_count_nor_interrupt() -> None:
    asleep = point(T0 + timedelta(seconds=1), {"state": "suspended"})
    points = [*gate_points(False, False)[:1], asleep, *gate_points(False, False)[1:]]
    points += [point(T0 + timedelta(seconds=99), {"http": {"ok": False, "evidence": "x"}})]
    assert len(judge(HTTP_3, points)) == 1
    assert judge(WatchRule("consecutive_failures", gate="websocket", count=1), points) == []


# --- memory trend ---------------------------------------------------------------------------


def test_a_leak_is_caught_on_its_trend_long_before_the_budget() -> None:
    leaking = series([40 + 0.5 * index for index in range(41)])  # +2 MB a minute for 10 minutes: 60 MB now
    (breach,) = judge(TREND, leaking, budget=100, bake_left=HOUR)
    assert breach.evidence["slope_mb_per_hour"] == pytest.approx(120.0)
    assert breach.evidence["fitted_mb"] == pytest.approx(60.0)
    # 40 MB to go at 2 MB a minute: 20 minutes from now, inside the hour of bake left.
    assert breach.evidence["crosses_at"] == "2026-12-07T12:30:00Z"
    assert "before the bake ends" in breach.message and len(breach.evidence["samples"]) <= 40


def test_a_leak_that_would_cross_only_after_the_bake_ends_is_not_a_breach() -> None:
    leaking = series([40 + 0.5 * index for index in range(41)])
    assert judge(TREND, leaking, budget=100, bake_left=timedelta(minutes=19)) == []
    assert judge(TREND, leaking, budget=100, bake_left=timedelta(minutes=21)) != []


@pytest.mark.parametrize("values", [
    [50.0] * 41,                                          # flat
    [60 - 0.25 * index for index in range(41)],           # shrinking
    [50 + (3 if index % 2 else -3) for index in range(41)],  # noisy around a level
])
def test_flat_shrinking_or_noisy_memory_is_no_trend(values: list[float]) -> None:
    assert judge(TREND, series(values), budget=100) == []


def test_memory_over_its_budget_breaches_whatever_the_slope() -> None:
    (breach,) = judge(TREND, series([120.0] * 41), budget=100)
    assert "over its budget" in breach.message and "crosses_at" not in breach.evidence


def test_a_trend_waits_for_half_a_window_and_five_samples() -> None:
    steep = [40 + 5 * index for index in range(20)]
    assert judge(TREND, series(steep[:19], every=15)) == []  # 270 s: less than half of 600
    assert judge(TREND, series(steep[:4], every=150)) == []  # 450 s but four samples
    assert judge(TREND, series(steep[:5], every=75)) != []   # 300 s and five samples


def test_the_trend_reads_only_its_window() -> None:
    old_leak = series([40 + 5 * index for index in range(40)])  # steep, but long ago
    flat = [point(old.at + timedelta(seconds=1200), {"memory_mb": 50.0}) for old in series([0.0] * 41)]
    assert judge(TREND, old_leak + flat) == []


def test_least_squares_fits_a_line_and_refuses_a_single_moment() -> None:
    line = least_squares([(T0, 10.0), (T0 + timedelta(seconds=10), 20.0), (T0 + timedelta(seconds=20), 30.0)])
    assert line is not None and line.slope == pytest.approx(1.0) and line.at(T0 + timedelta(seconds=30)) == pytest.approx(40.0)
    assert least_squares([(T0, 1.0), (T0, 2.0)]) is None


# --- counter rate ---------------------------------------------------------------------------


def test_a_counter_growing_faster_than_allowed_breaches() -> None:
    (breach,) = judge(SLOW, counters([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))  # 12 in 3 minutes: 4 a minute
    assert breach.evidence["per_minute"] == pytest.approx(4.0) and breach.evidence["increase"] == 12
    assert "grew 4.0 a minute" in breach.message


def test_a_slow_counter_does_not_breach_and_a_restart_is_growth_from_zero() -> None:
    assert judge(SLOW, counters([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6])) == []  # 2 a minute: not more than 2
    # 100 -> restart -> 9: the reset counts 9, not -91; 100 before it is not growth inside the window.
    (breach,) = judge(SLOW, counters([100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 9]))
    assert breach.evidence["increase"] == 9


def test_a_rate_waits_for_half_a_window() -> None:
    assert judge(SLOW, counters([0, 50], every=100)) == []
    assert judge(SLOW, counters([0, 50], every=150)) != []


# --- lookback -----------------------------------------------------------------------------------


def test_the_lookback_covers_the_longest_window_or_run_of_failures() -> None:
    assert lookback_seconds([TREND, HTTP_3], 15) == 600
    assert lookback_seconds([HTTP_3], 15) == 120  # (3 + 1) samples, twice over for the ones a slow round spreads
    assert lookback_seconds([], 15) == 15


# --- what a breach records, and the edges of each rule -------------------------------------------
# A breach's rule, machine, message and evidence are what the watcher records as a finding and
# prints; the boundaries below are where a rule switches a region back or leaves it alone.


def test_a_failure_run_records_each_failure_with_its_moment_and_the_rule() -> None:
    points = gate_points(False, False, False)
    points[1] = point(points[1].at, {"http": {"ok": False}})  # an observation without evidence
    (breach,) = judge(HTTP_3, points)
    assert (breach.rule, breach.machine) == (HTTP_3, "m1")
    assert breach.evidence == {"gate": "http", "count": 3, "failures": [
        {"at": "2026-12-07T12:00:00Z", "evidence": "observation 0"},
        {"at": "2026-12-07T12:00:15Z", "evidence": ""},
        {"at": "2026-12-07T12:00:30Z", "evidence": "observation 2"}]}
    assert breach.message == "the http gate failed 3 times in a row, last: observation 2"


def test_a_trend_breach_records_the_line_the_budget_and_the_samples_it_was_fitted_to() -> None:
    points = [point(T0 + timedelta(minutes=index), {"memory_mb": 40 + index / 1.8}) for index in range(11)]
    (breach,) = judge(TREND, points, budget=100, bake_left=3 * HOUR)
    assert (breach.rule, breach.machine) == (TREND, "m1")
    samples = [[f"2026-12-07T12:{index:02d}:00Z", round(40 + index / 1.8, 1)] for index in range(11)]
    assert breach.evidence == {
        "slope_mb_per_hour": 33.33, "fitted_mb": 45.6, "budget_mb": 100, "window_seconds": 600,
        "bake_ends": "2026-12-07T15:10:00Z", "samples": samples, "crosses_at": "2026-12-07T13:48:00Z"}


def test_a_trend_breach_says_how_fast_memory_grows_and_when_it_crosses() -> None:
    steep = [point(T0 + timedelta(seconds=10 * index), {"memory_mb": 40.0 + index}) for index in range(61)]  # 0.1 MB/s
    (breach,) = judge(TREND, steep, budget=200, bake_left=HOUR)
    assert breach.message == ("memory grows +360.0 MB/h: 100.0 MB now, it would cross its budget of 200 MB at "
                              "2026-12-07 12:26:40 UTC, before the bake ends (2026-12-07 13:10:00 UTC)")
    (over,) = judge(TREND, steep, budget=80, bake_left=HOUR)
    assert (over.rule, over.machine) == (TREND, "m1")
    assert over.message == "memory is over its budget: 100.0 MB fitted now, budget 80 MB, +360.0 MB/h"


def test_memory_fitted_exactly_at_its_budget_has_reached_it() -> None:
    (breach,) = judge(TREND, series([100.0] * 41), budget=100)
    assert "over its budget" in breach.message


def test_a_leak_that_crosses_exactly_when_the_bake_ends_is_a_breach() -> None:
    # +0.5 MB every 16 s (exact in binary): 58.5 MB now, the budget of 100 MB reached in exactly 1328 s.
    leaking = [point(T0 + timedelta(seconds=16 * index), {"memory_mb": 40 + 0.5 * index}) for index in range(38)]
    assert judge(TREND, leaking, budget=100, bake_left=timedelta(seconds=1328)) != []  # crosses as the bake ends
    assert judge(TREND, leaking, budget=100, bake_left=timedelta(seconds=1327)) == []


def test_a_sample_exactly_one_window_old_still_counts_for_a_trend() -> None:
    # Five samples 150 s apart: the oldest is exactly 600 s old; without it there are four, too few.
    assert judge(TREND, series([40, 60, 80, 100, 120], every=150), budget=200) != []


def test_growth_before_the_window_and_rounds_without_memory_are_no_trend() -> None:
    warming = series([10.0, 20.0, 30.0, 40.0], every=300)  # a restart's warm-up, long before the window
    flat = [point(warming[-1].at + timedelta(seconds=600 + 15 * index), {"memory_mb": 50.0}) for index in range(41)]
    unread = point(flat[20].at + timedelta(seconds=1), {"memory_mb": None, "state": "unknown"})
    points = sorted([*warming, *flat, unread], key=lambda point: point.at)
    assert judge(TREND, points, budget=100) == []


def test_a_rate_breach_records_the_rate_the_increase_and_the_stretch_it_covers() -> None:
    (breach,) = judge(SLOW, counters([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]))  # 10 in 180 s
    assert (breach.rule, breach.machine) == (SLOW, "m1")
    assert breach.evidence == {"counter": SLOW.counter, "per_minute": 3.33, "max_per_minute": 2, "increase": 10,
                               "from": "2026-12-07T12:00:00Z", "to": "2026-12-07T12:03:00Z"}
    assert breach.message == "hub_slow_client_disconnects_total grew 3.3 a minute over the last 180 s, more than 2"


def test_a_counter_sample_exactly_one_window_old_still_counts() -> None:
    # 0 -> 12 in the window's first half, then no growth: 12 in 5 minutes is 2.4 a minute, over 2.
    assert judge(SLOW, counters([0, 12, 12], every=150)) != []


def test_growth_before_the_window_and_rounds_without_counters_are_no_rate() -> None:
    points = counters([0, 100, 200, 300], every=100)  # fast, but it ends long before the window
    points += [point(points[-1].at + timedelta(seconds=400 + 15 * index), {"counters": {SLOW.counter: 300}})
               for index in range(21)]
    points.insert(-5, point(points[-5].at - timedelta(seconds=1), {"state": "unknown"}))  # the hub unreachable once
    assert judge(SLOW, points) == []


def test_least_squares_of_a_single_sample_is_no_line() -> None:
    assert least_squares([(T0, 5.0)]) is None


def test_thinned_keeps_the_first_and_the_last_and_spreads_the_rest_evenly() -> None:
    assert thinned(list(range(10)), 4) == [0, 3, 6, 9]
    assert thinned(list(range(10)), 10) == list(range(10))
    assert thinned(list(range(10)), 2) == [0, 9]
    assert thinned(list(range(10)), 1) == [9]
    assert thinned(list(range(10)), 0) == []
    kept = thinned(list(range(1000)), 40)
    assert len(kept) == 40 and kept[0] == 0 and kept[-1] == 999
