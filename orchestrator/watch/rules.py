"""The analysis of a watched bake: pure functions from a machine's samples to a breach, or none.

A sample is what the watcher recorded for one machine at one moment, the journal's
SampleRecord (its `data` as `orchestrator.watch.sampling` takes it): the machine's state, one observation of each
gate, its memory by process and in total, and the hub's counters. The rules:

- `consecutive_failures`: the newest `count` observations of `gate` all failed.
- `memory_trend`: a least-squares line through the total memory of the last
  `window_seconds` would reach the budget before the bake ends (or is over it).
- `counter_rate`: a counter grew faster than `max_per_minute` over the last
  `window_seconds`, a restart's reset counted as growth from zero.

A trend or a rate is judged only once its samples span half the window, so that
a region's first minutes (connections coming back, caches filling) are not read
as a leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from orchestrator.model import WatchRule
from orchestrator.rollout.journal import SampleRecord, iso_z

T = TypeVar("T")

MIN_TREND_SAMPLES = 5
# Evidence keeps at most this many of the samples a trend was fitted to.
EVIDENCE_POINTS = 40


@dataclass(frozen=True)
class Breach:
    rule: WatchRule
    machine: str
    message: str
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Horizon:
    """What a machine's memory is judged against: the region's budget and when the bake ends."""

    budget_mb: float
    bake_ends: datetime


def lookback_seconds(rules: Iterable[WatchRule], interval_seconds: float) -> float:
    """How far back the rules read: the longest window, or enough samples for the longest run of failures."""
    spans = [rule.window_seconds if rule.kind != "consecutive_failures" else (rule.count + 1) * interval_seconds * 2
             for rule in rules]
    return max(spans, default=interval_seconds)


def evaluate(rules: Sequence[WatchRule], machine: str, points: Sequence[SampleRecord], now: datetime,
             horizon: Horizon) -> list[Breach]:
    """Every rule `points` (one machine's samples, oldest first) breaks."""
    found = []
    for rule in rules:
        if rule.kind == "consecutive_failures":
            breach = consecutive_failures(rule, machine, points)
        elif rule.kind == "memory_trend":
            breach = memory_trend(rule, machine, points, now, horizon)
        else:
            breach = counter_rate(rule, machine, points, now)
        if breach is not None:
            found.append(breach)
    return found


def consecutive_failures(rule: WatchRule, machine: str, points: Sequence[SampleRecord]) -> Breach | None:
    observed = [(point.at, point.data[rule.gate]) for point in points if isinstance(point.data.get(rule.gate), dict)]
    newest = observed[-rule.count:]
    if len(newest) < rule.count or any(observation.get("ok") is not False for _, observation in newest):
        return None
    failures = [{"at": iso_z(at), "evidence": str(observation.get("evidence", ""))} for at, observation in newest]
    return Breach(rule, machine, f"the {rule.gate} gate failed {rule.count} times in a row, "
                                 f"last: {failures[-1]['evidence']}",
                  {"gate": rule.gate, "count": rule.count, "failures": failures})


def memory_trend(rule: WatchRule, machine: str, points: Sequence[SampleRecord], now: datetime, horizon: Horizon) -> Breach | None:
    since = now - timedelta(seconds=rule.window_seconds)
    series = [(point.at, float(point.data["memory_mb"])) for point in points
              if point.at >= since and isinstance(point.data.get("memory_mb"), (int, float))]
    if len(series) < MIN_TREND_SAMPLES or _span(series) < rule.window_seconds / 2:
        return None
    line = least_squares(series)
    if line is None:
        return None
    slope, level = line.slope, line.at(now)
    budget = horizon.budget_mb
    evidence: dict[str, Any] = {
        "slope_mb_per_hour": round(slope * 3600, 2), "fitted_mb": round(level, 1), "budget_mb": budget,
        "window_seconds": rule.window_seconds, "bake_ends": iso_z(horizon.bake_ends),
        "samples": [[iso_z(at), round(mb, 1)] for at, mb in thinned(series, EVIDENCE_POINTS)],
    }
    if level >= budget:
        return Breach(rule, machine, f"memory is over its budget: {level:.1f} MB fitted now, budget {budget:g} MB, "
                                     f"{slope * 3600:+.1f} MB/h", evidence)
    if slope <= 0:
        return None
    seconds_to_budget = (budget - level) / slope  # compared before any date is made of it: it may be huge
    if seconds_to_budget > (horizon.bake_ends - now).total_seconds():
        return None
    crosses = now + timedelta(seconds=seconds_to_budget)
    evidence["crosses_at"] = iso_z(crosses)
    return Breach(rule, machine, f"memory grows {slope * 3600:+.1f} MB/h: {level:.1f} MB now, it would cross its budget "
                                 f"of {budget:g} MB at {crosses:%Y-%m-%d %H:%M:%S} UTC, before the bake ends "
                                 f"({horizon.bake_ends:%Y-%m-%d %H:%M:%S} UTC)", evidence)


def counter_rate(rule: WatchRule, machine: str, points: Sequence[SampleRecord], now: datetime) -> Breach | None:
    since = now - timedelta(seconds=rule.window_seconds)
    series = [(point.at, float(point.data["counters"][rule.counter])) for point in points
              if point.at >= since and isinstance(point.data.get("counters"), dict)
              and isinstance(point.data["counters"].get(rule.counter), (int, float))]
    if len(series) < 2 or _span(series) < rule.window_seconds / 2:
        return None
    increase = sum(value - before if value >= before else value for (_, before), (_, value) in zip(series, series[1:]))
    rate = increase / (_span(series) / 60)
    if rate <= rule.max_per_minute:
        return None
    return Breach(rule, machine, f"{rule.counter} grew {rate:.1f} a minute over the last {_span(series):.0f} s, more "
                                 f"than {rule.max_per_minute:g}",
                  {"counter": rule.counter, "per_minute": round(rate, 2), "max_per_minute": rule.max_per_minute,
                   "increase": increase, "from": iso_z(series[0][0]), "to": iso_z(series[-1][0])})


@dataclass(frozen=True)
class Line:
    """A straight line through a series: `slope` per second, through `level` at `moment`."""

    moment: datetime
    level: float
    slope: float

    def at(self, moment: datetime) -> float:
        return self.level + self.slope * (moment - self.moment).total_seconds()


def least_squares(series: Sequence[tuple[datetime, float]]) -> Line | None:
    """The least-squares line through `series`; None when its moments are all the same."""
    origin = series[0][0]
    xs = [(at - origin).total_seconds() for at, _ in series]
    ys = [value for _, value in series]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    return Line(origin + timedelta(seconds=mean_x), mean_y, slope)


def _span(series: Sequence[tuple[datetime, float]]) -> float:
    return (series[-1][0] - series[0][0]).total_seconds()


def thinned(items: Sequence[T], most: int) -> list[T]:
    """At most `most` of `items`, evenly spread, the first and the last kept."""
    if len(items) <= most:
        return list(items)
    if most < 2:
        return list(items[len(items) - most:])
    last = len(items) - 1
    return [items[round(index * last / (most - 1))] for index in range(most)]

