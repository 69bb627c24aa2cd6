"""The preflight a rollout runs before it starts the first stage that has not passed.

Later stages need no audit of their own: the first one proved the app against
its mode, and promotion waits for it. The app comes from `rollout --app PATH`,
else the inventory's `app.checkout` (relative to the inventory); with neither,
the rollout says that no preflight ran and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.model import Inventory, Mode
from orchestrator.preflight.findings import Severity
from orchestrator.preflight.report import audit, count
from orchestrator.rollout.model import RegionKey
from orchestrator.rollout.plan import RegionHistory, Selection, schedule, stage_keys
from orchestrator.terminal import plural, printable

_PASSED = ("done", "baking")  # a stage's status on the schedule once all its regions passed
_LISTED = 3  # blocking findings named in a refusal; the rest are counted


@dataclass(frozen=True)
class StageCheck:
    note: str  # what happened, for the operator: the verdict, or why no preflight ran
    blocked: tuple[str, ...]  # per mode with blocking findings, why the stage may not start


def checkout(inventory: Inventory, inventory_path: Path) -> Path | None:
    """The inventory's app.checkout, relative to the inventory."""
    return inventory_path.parent / inventory.app.checkout if inventory.app.checkout else None


def check_first_stage(
    inventory: Inventory,
    inventory_path: Path,
    app: str | None,
    selection: Selection,
    histories: Mapping[RegionKey, RegionHistory],
    now: datetime,
) -> StageCheck | None:
    """The preflight of the app for the modes the selection's regions of the first open stage will run; None
    when the selection starts no such stage (or switches the WebSocket off)."""
    planned = schedule(inventory, histories, now, now)
    first = next((stage for stage in planned if stage.status not in _PASSED), None)
    if first is None:
        return None
    stage = next(stage for stage in inventory.rollout.stages if stage.name == first.name)
    settings = [
        inventory.settings(key.environment, key.region, selection.mode, selection.websocket_enabled)
        for key in selection.keys if key in stage_keys(stage)
    ]
    modes: list[Mode] = sorted({each.mode for each in settings if each.websocket_enabled})
    if not modes:
        return None
    path = Path(app) if app else checkout(inventory, inventory_path)
    if path is None:
        if any(done.status in _PASSED for done in planned):
            return None  # said before the first stage; saying it before every stage tells nothing new
        return StageCheck(f"preflight: not run before stage {stage.name}: no --app PATH, and {inventory_path} has no "
                          f"app.checkout", ())
    report = audit(path, inventory, None)
    blocked = []
    verdicts = []
    for mode in modes:
        blocking = report.blocking(mode)
        warnings = count(report.by_mode[mode], Severity.WARNING)
        if not blocking:
            verdicts.append(f"{mode} ready ({plural(warnings, 'warning')})")
            continue
        verdicts.append(f"{mode} not ready ({len(blocking)} blocking)")
        listed = ", ".join(f"{printable(str(finding.where))} {finding.code.value}" for finding in blocking[:_LISTED])
        more = f" and {len(blocking) - _LISTED} more" if len(blocking) > _LISTED else ""
        blocked.append(f"preflight of {path} for the {mode} mode found {plural(len(blocking), 'blocking finding')} "
                       f"({listed}{more}): see `orchestrate preflight --app {path} --mode {mode}`")
    return StageCheck(f"preflight of {path} before stage {stage.name}: {'; '.join(verdicts)}", tuple(blocked))
