"""The pure plan: steps as data, the quick rollback each deploy carries, promotion and the schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory
from orchestrator.rollout.model import RegionKey, StepState
from orchestrator.rollout.plan import (
    RegionHistory,
    Selection,
    bake_seconds,
    promotion_problem,
    region_state,
    resolve_regions,
    rollback_steps,
    rollout_steps,
    schedule,
)
from orchestrator.targets.local import LocalTarget, needs_restart
from tests.orchestrator.rollout.fleet import make_fleet

ORD = RegionKey("production", "ord")
IAD = RegionKey("staging", "iad")
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory(make_fleet(tmp_path).inventory)


@pytest.fixture
def target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(tmp_path / "state", ("CABLE_SIGNING_SECRET",))


def passed(stage: str, finished: datetime) -> RegionHistory:
    return RegionHistory(last_stage=stage, last_action="deploy", last_state=StepState.PASSED,
                         last_started=finished - timedelta(minutes=1), last_finished=finished)


def labels(operations: tuple) -> list[str]:
    return [operation.label for operation in operations]


def test_a_first_deploy_writes_the_files_then_restarts_and_carries_the_switch_off(inventory: Inventory, target: LocalTarget) -> None:
    (step,) = rollout_steps(inventory, target, Selection((ORD,), "canary"), {})
    assert (step.id, step.stage, step.action, step.current) == ("canary:production/ord", "canary", "deploy", None)
    assert (step.desired.mode, step.desired.websocket_enabled) == ("integrated", True)
    assert labels(step.deployment.operations) == [
        f"write {target.home(ORD)}/config/hub.yml",
        f"write {target.home(ORD)}/config/navigator.yml",
        f"write {target.home(ORD)}/config/render.json",
        "restart production/ord",
    ]
    restart = step.deployment.operations[-1]
    assert restart.env_names == ("CABLE_SIGNING_SECRET",)
    assert [(gate.kind, gate.expect_open, gate.protocol) for gate in step.deployment.gates] == [
        ("http", True, None), ("websocket", True, "navigator"), ("memory", True, None)]
    assert step.deployment.gates[2].budget_mb == 35.0

    fallback = step.fallback
    assert fallback is not None
    assert (fallback.state.mode, fallback.state.websocket_enabled) == ("integrated", False)
    assert "enabled: false" in fallback.state.files["navigator.yml"]
    # From the deployed state to the switch off: the same processes, so a reload.
    assert labels(fallback.operations)[-1] == "reload production/ord"
    assert [(gate.kind, gate.expect_open) for gate in fallback.gates] == [("http", True), ("websocket", False)]


def test_changing_the_side_processes_restarts_and_keeping_them_reloads(inventory: Inventory, target: LocalTarget) -> None:
    baseline = region_state(inventory, ORD, "action_cable", True)
    history = RegionHistory(deployed=baseline)
    (step,) = rollout_steps(inventory, target, Selection((ORD,), "canary"), {ORD: history})
    assert step.current == baseline
    assert labels(step.deployment.operations)[-1] == "restart production/ord"
    # hub.yml is only in the integrated mode: going back removes it.
    (back,) = rollout_steps(inventory, target, Selection((ORD,), None, "action_cable"),
                            {ORD: RegionHistory(deployed=step.desired)})
    assert labels(back.deployment.operations)[-2:] == ["remove files of the old mode", "restart production/ord"]
    assert back.deployment.operations[-2].argv == ("rm", "-f", f"{target.home(ORD)}/config/hub.yml")
    # action_cable on -> off drops the Action Cable process: the set changes, so a restart.
    assert needs_restart(baseline, region_state(inventory, ORD, "action_cable", False))
    assert not needs_restart(step.desired, region_state(inventory, ORD, "integrated", False))


def test_the_baseline_gates_use_the_action_cable_protocol_and_its_budget(inventory: Inventory, target: LocalTarget) -> None:
    (step,) = rollout_steps(inventory, target, Selection((ORD,), None, "action_cable"), {})
    assert step.stage is None and step.id == "deploy:production/ord"
    assert [(gate.kind, gate.protocol, gate.budget_mb) for gate in step.deployment.gates] == [
        ("http", None, None), ("websocket", "actioncable", None), ("memory", None, 168.9)]


def test_a_deploy_with_the_switch_off_has_no_fallback(inventory: Inventory, target: LocalTarget) -> None:
    (step,) = rollout_steps(inventory, target, Selection((ORD,), None, None, False), {})
    assert step.fallback is None and step.desired.websocket_enabled is False


def test_the_quick_rollback_keeps_the_deployed_mode_and_switches_off(inventory: Inventory, target: LocalTarget) -> None:
    deployed = region_state(inventory, ORD, "action_cable", True)
    (step,) = rollback_steps(inventory, target, [ORD], {ORD: RegionHistory(deployed=deployed)}, to_previous=False)
    assert (step.action, step.desired.mode, step.desired.websocket_enabled, step.fallback) == ("rollback", "action_cable", False, None)
    assert [gate.kind for gate in step.deployment.gates] == ["http", "websocket"]
    assert step.deployment.gates[1].expect_open is False


def test_rollback_to_previous_needs_an_earlier_deployment(inventory: Inventory, target: LocalTarget) -> None:
    earlier = region_state(inventory, ORD, "action_cable", True)
    now = region_state(inventory, ORD)
    (step,) = rollback_steps(inventory, target, [ORD], {ORD: RegionHistory(deployed=now, previous=earlier)}, to_previous=True)
    assert (step.action, step.desired) == ("restore", earlier)
    with pytest.raises(InputError) as refused:
        rollback_steps(inventory, target, [ORD], {ORD: RegionHistory(deployed=now)}, to_previous=True)
    assert refused.value.problems == ["production/ord: no earlier deployment in the journal to go back to"]


def test_promotion_needs_the_previous_stage_passed_and_baked(inventory: Inventory) -> None:
    assert promotion_problem(inventory, "staging", {}, NOON) is None
    assert promotion_problem(inventory, "canary", {}, NOON) == "stage staging has not passed: staging/iad is never rolled out"
    failed = RegionHistory(last_stage="staging", last_action="deploy", last_state=StepState.ROLLED_BACK)
    assert promotion_problem(inventory, "canary", {IAD: failed}, NOON) == "stage staging has not passed: staging/iad is rolled_back"
    assert promotion_problem(inventory, "canary", {IAD: passed("staging", NOON)}, NOON) is None  # bake: 0s
    # canary bakes 1h after ord passed.
    ord_passed = {ORD: passed("canary", NOON)}
    assert promotion_problem(inventory, "wave", ord_passed, NOON + timedelta(minutes=59, seconds=30)) == (
        "stage canary bakes until 2026-12-01 13:00:00 UTC (30s left)")
    assert promotion_problem(inventory, "wave", ord_passed, NOON + timedelta(hours=1)) is None
    # A rollback after the stage passed: the stage is no longer green.
    rolled_back = RegionHistory(last_stage=None, last_action="rollback", last_state=StepState.PASSED)
    assert promotion_problem(inventory, "wave", {ORD: rolled_back}, NOON + timedelta(hours=2)) == (
        "stage canary has not passed: production/ord is rollback passed")


def test_the_schedule_places_each_stage_after_the_previous_bake(inventory: Inventory) -> None:
    planned = schedule(inventory, {IAD: passed("staging", NOON)}, NOON, NOON + timedelta(minutes=5))
    assert [(stage.name, stage.status) for stage in planned] == [("staging", "done"), ("canary", "next"), ("wave", "later")]
    assert planned[1].starts == NOON + timedelta(minutes=5)
    assert planned[1].bake_ends == NOON + timedelta(hours=1, minutes=5)
    assert planned[2].starts == planned[1].bake_ends
    baking = schedule(inventory, {ORD: passed("canary", NOON)}, NOON, NOON + timedelta(minutes=5))
    assert [stage.status for stage in baking] == ["next", "baking", "later"]
    assert baking[1].bake_ends == NOON + timedelta(hours=1)


def test_regions_are_named_with_their_environment_when_ambiguous(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("    regions: [ams, dfw, ord, sjc]", "    regions: [ams, dfw, iad, ord, sjc]"))
    inventory = load_inventory(fleet.inventory)
    assert resolve_regions(inventory, ["ord", "staging/iad", "ord"]) == (ORD, IAD)
    with pytest.raises(InputError) as refused:
        resolve_regions(inventory, ["iad", "xyz"])
    assert refused.value.problems[0] == "--region iad: in more than one environment, say production/iad or staging/iad"
    assert refused.value.problems[1].startswith("--region xyz: not a region of fleet.yml (known: production/ams")


def test_bake_durations() -> None:
    assert [bake_seconds(text) for text in ("0s", "45s", "30m", "24h", "7d")] == [0, 45, 1800, 86400, 604800]
