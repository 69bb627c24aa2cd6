"""What the live page shows (`orchestrate status --serve`), as one JSON-able dict read from the journal.

`live_state` is a pure function of a Journal, the inventory and the moment: per
region, its memory over time per machine against its budget, the newest sample of
each machine (its gates, memory and counters), its findings; the stages on the
calendar; the end of the audit. What it returns is bounded, whatever the journal
holds: at most `points` samples per machine (thinned evenly, the first and the
newest kept), the newest `findings` per region, the last `audit` lines. What it
reads is not, quite: the samples are bounded by the journal itself
(rollout.watch.samples_per_region), but the audit and a region's findings are read
whole, as the journal has no query for their newest alone.

`read_live_state` opens the journal for one reading and closes it: only when the
file exists (it never creates one), reading only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.model import Inventory
from orchestrator.rollout.commands import finding_json, region_history
from orchestrator.rollout.journal import JOURNAL_FILE, Journal, JournalError, SampleRecord, iso_z
from orchestrator.rollout.model import RegionKey, ScheduledStage
from orchestrator.rollout.plan import RegionHistory, schedule, stage_keys
from orchestrator.watch.rules import thinned
from orchestrator.watch.sampling import region_budget_mb

MAX_POINTS = 240
MAX_FINDINGS = 20
MAX_AUDIT_LINES = 100
# What the page shows of a machine's newest sample (see orchestrator.watch.sampling).
LATEST_KEYS = ("state", "http", "websocket", "memory", "memory_mb", "memory_error", "counters", "counters_error", "error")


def read_live_state(state_dir: Path, inventory: Inventory, keys: Sequence[RegionKey], now: datetime) -> dict[str, Any]:
    """The live state from the journal in `state_dir`; without one (or with one that cannot be read), the page's
    regions and stages as nothing deployed, and `problem` says why."""
    path = state_dir / JOURNAL_FILE
    if not path.exists():
        return _without_journal(inventory, keys, now, f"no journal at {path}: nothing has been rolled out with this "
                                                      "state directory yet")
    try:
        with Journal.open_read_only(state_dir) as journal:
            return live_state(journal, inventory, keys, now)
    except JournalError as error:
        return _without_journal(inventory, keys, now, f"journal: {error}")


def live_state(journal: Journal, inventory: Inventory, keys: Sequence[RegionKey], now: datetime, *,
               points: int = MAX_POINTS, findings: int = MAX_FINDINGS, audit: int = MAX_AUDIT_LINES) -> dict[str, Any]:
    histories = {key: region_history(journal, key) for key in _schedule_keys(inventory, keys)}
    records = journal.audit_records(newest=audit)  # the page's tail only: the trail only grows
    return {
        "inventory": inventory.name,
        "journal": str(journal.path),
        "problem": None,
        "at": iso_z(now),
        "stages": _stages(inventory, histories, now),
        "regions": [_region(journal, inventory, key, histories[key], points, findings) for key in keys],
        "audit": [record.line() for record in records],
        "audit_total": journal.audit_count(),
    }


def _schedule_keys(inventory: Inventory, keys: Sequence[RegionKey]) -> list[RegionKey]:
    """The shown regions and every region of a stage: the timeline is the whole inventory's."""
    return list(dict.fromkeys([*keys, *(key for stage in inventory.rollout.stages for key in stage_keys(stage))]))


def _without_journal(inventory: Inventory, keys: Sequence[RegionKey], now: datetime, problem: str) -> dict[str, Any]:
    return {
        "inventory": inventory.name,
        "journal": None,
        "problem": problem,
        "at": iso_z(now),
        "stages": _stages(inventory, {}, now),
        "regions": [_region_without_samples(key, RegionHistory()) for key in keys],
        "audit": [],
        "audit_total": 0,
    }


def _stages(inventory: Inventory, histories: dict[RegionKey, RegionHistory], now: datetime) -> list[dict[str, Any]]:
    return [_stage_json(stage) for stage in schedule(inventory, histories, now, now)]


def _stage_json(stage: ScheduledStage) -> dict[str, Any]:
    return {"name": stage.name, "environment": stage.environment, "regions": list(stage.regions), "bake": stage.bake,
            "starts": iso_z(stage.starts), "bake_ends": iso_z(stage.bake_ends), "status": stage.status}


def _region_without_samples(key: RegionKey, history: RegionHistory) -> dict[str, Any]:
    last = None
    if history.last_state is not None:
        last = {"action": history.last_action, "state": str(history.last_state),
                "at": iso_z(history.last_finished or history.last_started) if history.last_started else None}
    deployed = history.deployed
    return {"region": str(key), "deployed": None if deployed is None else deployed.describe(), "last_step": last,
            "budget_mb": None, "machines": [], "findings": [], "findings_total": 0}


def _region(journal: Journal, inventory: Inventory, key: RegionKey, history: RegionHistory, points: int,
            findings: int) -> dict[str, Any]:
    region = _region_without_samples(key, history)
    by_machine: dict[str, list[SampleRecord]] = {}
    for record in journal.samples(key):
        by_machine.setdefault(record.machine, []).append(record)
    region["machines"] = [_machine(machine, records, points) for machine, records in sorted(by_machine.items())]
    region["budget_mb"] = _budget(inventory, key, history, by_machine)
    region["findings"] = [finding_json(finding) for finding in journal.findings(key, newest=findings)]
    region["findings_total"] = journal.findings_count(key)
    return region


def _budget(inventory: Inventory, key: RegionKey, history: RegionHistory,
            by_machine: dict[str, list[SampleRecord]]) -> float | None:
    """What the samples were judged against: the newest sample's budget; without one, the deployed state's."""
    newest = max((records[-1] for records in by_machine.values()), key=lambda record: record.at, default=None)
    recorded = _megabytes(newest.data.get("budget_mb")) if newest is not None else None
    if recorded is not None:
        return recorded
    return region_budget_mb(inventory, key, history.deployed) if history.deployed is not None else None


def _machine(machine: str, records: list[SampleRecord], points: int) -> dict[str, Any]:
    series = [(record.at, mb) for record in records if (mb := _megabytes(record.data.get("memory_mb"))) is not None]
    newest = records[-1]
    return {
        "machine": machine,
        "samples": len(records),
        "memory": [[iso_z(at), mb] for at, mb in thinned(series, points)],
        "latest": {"at": iso_z(newest.at), **{name: newest.data[name] for name in LATEST_KEYS if name in newest.data}},
    }


def _megabytes(value: Any) -> float | None:
    """A number of MB as the journal holds it; None for anything else (a hand edit, an older sample)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
