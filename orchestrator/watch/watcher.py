"""The watcher's rounds: which regions bake, one sample of each machine, the rules, and the switch back.

A round picks the regions whose stage is baking (with `everything`, every
region with a deployment), samples their machines in parallel through the
target (`rollout.parallel` at a time), records every sample in the journal,
applies the region's rules to the samples of its current deployment, and
switches back, alone, a region that breaks one: the quick rollback (its mode,
the WebSocket off) run by the rollout engine under the rollout lock, exactly as
`orchestrate rollback --region` would. The breach, its evidence and what was
done are recorded as a finding and audited. A region's last step is then a
rollback, so its stage has not passed and promotion refuses it.

Everything the watcher knows lives in the journal: a watcher started again
picks up where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.model import WatchSettings
from orchestrator.rollout.commands import Context, make_engine, missing_before_start, not_ready, region_history
from orchestrator.rollout.journal import Journal, LockHeld, SampleRecord, iso_z, utc_now
from orchestrator.rollout.model import RegionKey, RegionState
from orchestrator.rollout.plan import all_keys, bake_windows, rollback_steps
from orchestrator.targets.base import TargetError
from orchestrator.targets.onhost import excerpt
from orchestrator.watch.rules import Breach, Horizon, evaluate, lookback_seconds
from orchestrator.watch.sampling import region_budget_mb, take_sample

# A switch back waits this long for a rollout that holds the rollout lock, then tries again the next round.
LOCK_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class WatchedRegion:
    key: RegionKey
    state: RegionState  # as deployed
    since: datetime  # when this deployment's gates passed: older samples belong to another
    bake_ends: datetime | None  # None: not baking (watched with --all)


@dataclass(frozen=True)
class Finding:
    key: RegionKey
    breach: Breach
    action: str
    at: datetime

    def line(self) -> str:
        machine = f" on {self.breach.machine}" if self.breach.machine else ""
        return (f"{iso_z(self.at)} {self.key}{machine}: {self.breach.rule.describe()}: {self.breach.message}; "
                f"{self.action}")


class Watcher:
    def __init__(self, context: Context, settings: WatchSettings, everything: bool, say: Callable[[str], None],
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.context = context
        self.settings = settings
        self.everything = everything
        self.say = say
        self.clock = clock
        self._shown: tuple[RegionKey, ...] | None = None

    def round(self, journal: Journal) -> list[Finding]:
        """One look at every watched region; the findings it made (and acted on)."""
        regions = self.watched(journal, self.clock())
        self._announce(regions)
        with ThreadPoolExecutor(max_workers=max(1, self.context.inventory.rollout.parallel),
                                thread_name_prefix="watch") as pool:
            taken = list(pool.map(self._sample, regions))
        # One SQLite connection, every write from this thread, and the round's samples in one transaction.
        journal.record_samples([(region.key, machine, at, data) for region, samples in zip(regions, taken)
                                for machine, at, data in samples],
                               self.settings.samples_per_region, self.settings.max_gap_seconds)
        findings = []
        for region in regions:
            finding = self._judge(journal, region)
            if finding is not None:
                journal.record_finding(region.key, finding.breach.machine, finding.breach.rule.kind,
                                       finding.breach.message, finding.breach.evidence, finding.action)
                self.say(finding.line())
                findings.append(finding)
        return findings

    def watched(self, journal: Journal, now: datetime) -> list[WatchedRegion]:
        """The regions baking now (and with `everything`, every other one with a deployment)."""
        inventory = self.context.inventory
        histories = {key: region_history(journal, key) for key in all_keys(inventory)}
        found: dict[RegionKey, WatchedRegion] = {}
        for stage in inventory.rollout.stages:
            for key, (starts, ends) in bake_windows(stage, histories).items():
                deployed = histories[key].deployed
                if starts <= now < ends and deployed is not None:
                    found[key] = WatchedRegion(key, deployed, starts, ends)
        if self.everything:
            for key in all_keys(inventory):
                if key in found or histories[key].deployed is None:
                    continue  # baking already, or nothing deployed: no second look at the journal
                record = journal.deployed(key)
                if record is not None:
                    found[key] = WatchedRegion(key, record.state, record.at, None)
        return [found[key] for key in all_keys(inventory) if key in found]

    def _announce(self, regions: Sequence[WatchedRegion]) -> None:
        keys = tuple(region.key for region in regions)
        if keys == self._shown:
            return
        self._shown = keys
        if not keys:
            self.say(f"{iso_z(self.clock())} nothing to watch: no stage is baking"
                     + ("" if self.everything else " (--all watches every deployed region)"))
            return
        described = ", ".join(f"{region.key} (bake ends {iso_z(region.bake_ends)})" if region.bake_ends
                              else str(region.key) for region in regions)
        self.say(f"{iso_z(self.clock())} watching {described}")

    def _sample(self, region: WatchedRegion) -> list[tuple[str, datetime, dict[str, Any]]]:
        target = self.context.target
        try:
            machines = target.machines(region.key)
        except TargetError as error:
            evidence = excerpt(str(error))
            return [("", self.clock(), {"state": "unknown", "http": {"ok": False, "evidence": evidence}, "error": evidence})]
        return [(machine.id, self.clock(), take_sample(self.context.inventory, target, region.key, machine, region.state))
                for machine in machines]

    def _judge(self, journal: Journal, region: WatchedRegion) -> Finding | None:
        inventory = self.context.inventory
        rules = inventory.watch_rules(region.key.region)
        now = self.clock()
        lookback = lookback_seconds(rules, self.settings.interval_seconds)
        since = max(region.since, now - timedelta(seconds=lookback))
        by_machine: dict[str, list[SampleRecord]] = {}
        for record in journal.samples(region.key, since):
            by_machine.setdefault(record.machine, []).append(record)
        horizon = Horizon(region_budget_mb(inventory, region.key, region.state),
                          region.bake_ends or now + timedelta(seconds=lookback))
        for machine, points in by_machine.items():
            breaches = evaluate(rules, machine, points, now, horizon)
            if breaches:
                return Finding(region.key, breaches[0], switch_back(self.context, journal, region, breaches[0]), now)
        return None


def switch_back(context: Context, journal: Journal, region: WatchedRegion, breach: Breach) -> str:
    """The quick rollback of `region`, run as `orchestrate rollback --region` runs it; what was done, in words."""
    if not region.state.websocket_enabled:
        return "nothing to switch back: the WebSocket is already off"
    key = region.key
    steps = rollback_steps(context.inventory, context.target, [key], {key: region_history(journal, key)}, False)
    missing = missing_before_start(context, steps)
    if missing:
        return f"NOT switched back: {not_ready(context.target, missing)}"
    try:
        journal.acquire_lock(context.actor, f"watch: switch {key} back", wait_seconds=LOCK_WAIT_SECONDS)
    except LockHeld as held:
        return f"NOT switched back yet ({held}); tried again next round"
    try:
        run_id = journal.start_run("rollback", {"regions": [str(key)], "to_previous": False,
                                                "by": "watch", "rule": breach.rule.kind}, context.actor)
        journal.audit(context.actor, "watch switched back", f"run {run_id}: {key}: {breach.rule.describe()}: "
                                                            f"{breach.message}")
        (outcome,) = make_engine(context, journal).execute(run_id, steps, 1, 1)
        journal.finish_run(run_id, "passed" if outcome.passed else "failed")
    finally:
        journal.release_lock(context.actor)
    if outcome.passed:
        return f"switched back (WebSocket off), rollback run {run_id}"
    return f"switch back FAILED (rollback run {run_id}): {outcome.gate} {outcome.evidence}"
