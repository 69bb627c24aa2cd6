"""The pure plan: steps as data, the quick rollback each deploy carries, promotion and the schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory
from orchestrator.rollout.model import GateTiming, RegionKey, StepState
from orchestrator.rollout.plan import (
    RegionHistory,
    Selection,
    bake_seconds,
    expected_memory,
    human_duration,
    make_plan,
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
    assert promotion_problem(inventory, "canary", {}, NOON) == "stage staging has not passed: staging/iad was never rolled out"
    failed = RegionHistory(last_stage="staging", last_action="deploy", last_state=StepState.ROLLED_BACK)
    assert promotion_problem(inventory, "canary", {IAD: failed}, NOON) == (
        "stage staging has not passed: staging/iad's last step is deploy staging, rolled_back")
    # A manual deployment that passed (outside the stages) does not make the stage green.
    manual = RegionHistory(last_stage=None, last_action="deploy", last_state=StepState.PASSED, last_finished=NOON)
    assert promotion_problem(inventory, "canary", {IAD: manual}, NOON) == (
        "stage staging has not passed: staging/iad's last step is deploy outside the stages, passed")
    assert promotion_problem(inventory, "canary", {IAD: passed("staging", NOON)}, NOON) is None  # bake: 0s
    # canary bakes 1h after ord passed.
    ord_passed = {ORD: passed("canary", NOON)}
    assert promotion_problem(inventory, "wave", ord_passed, NOON + timedelta(minutes=59, seconds=30)) == (
        "stage canary bakes until 2026-12-01 13:00:00 UTC (30s left)")
    assert promotion_problem(inventory, "wave", ord_passed, NOON + timedelta(hours=1)) is None
    # A rollback after the stage passed: the stage is no longer green.
    rolled_back = RegionHistory(last_stage=None, last_action="rollback", last_state=StepState.PASSED)
    assert promotion_problem(inventory, "wave", {ORD: rolled_back}, NOON + timedelta(hours=2)) == (
        "stage canary has not passed: production/ord's last step is rollback outside the stages, passed")
    # The bake counts from the last region of the stage to pass.
    two_days = {ORD: passed("canary", NOON)}
    assert promotion_problem(inventory, "wave", two_days, NOON + timedelta(seconds=1)) == (
        "stage canary bakes until 2026-12-01 13:00:00 UTC (59m 59s left)")


WAVE = [RegionKey("production", code) for code in ("ams", "dfw")]
# wave, now of two regions, followed by a stage of its own
TWO_STAGES = ("    - {name: wave, environment: production, regions: [ams, dfw, sjc], bake: 0s}\n",
              "    - {name: wave, environment: production, regions: [ams, dfw], bake: 1h}\n"
              "    - {name: last, environment: production, regions: [sjc], bake: 0s}\n")


def test_a_stage_of_several_regions_bakes_from_the_last_to_pass(tmp_path: Path) -> None:
    """wave is followed by a stage: its bake counts from the region that passed last, on the schedule too."""
    inventory = load_inventory(make_fleet(tmp_path, TWO_STAGES).inventory)
    histories = {key: passed("wave", NOON + timedelta(minutes=minutes)) for key, minutes in zip(WAVE, (40, 20))}
    assert promotion_problem(inventory, "last", histories, NOON + timedelta(hours=1, minutes=10)) == (
        "stage wave bakes until 2026-12-01 13:40:00 UTC (30m left)")
    assert promotion_problem(inventory, "last", histories, NOON + timedelta(hours=1, minutes=40)) is None
    planned = {stage.name: stage for stage in schedule(inventory, histories, NOON, NOON + timedelta(hours=1))}
    assert (planned["wave"].status, planned["wave"].starts) == ("baking", NOON + timedelta(minutes=19))
    assert planned["wave"].bake_ends == NOON + timedelta(hours=1, minutes=40)


def test_a_stage_with_one_region_rolled_back_has_not_passed(tmp_path: Path) -> None:
    inventory = load_inventory(make_fleet(tmp_path, TWO_STAGES).inventory)
    histories = {key: passed("wave", NOON) for key in WAVE}
    histories[WAVE[1]] = RegionHistory(last_stage="wave", last_action="deploy", last_state=StepState.ROLLED_BACK,
                                       last_started=NOON, last_finished=NOON)
    assert promotion_problem(inventory, "last", histories, NOON + timedelta(days=1)) == (
        "stage wave has not passed: production/dfw's last step is deploy wave, rolled_back")
    assert {stage.name: stage.status for stage in schedule(inventory, histories, NOON, NOON)}["wave"] == "failed"


def test_a_deploy_with_the_switch_off_is_judged_without_the_cable_server_s_budget(inventory: Inventory, target: LocalTarget) -> None:
    for mode in ("action_cable", "hub", "integrated"):
        (step,) = rollout_steps(inventory, target, Selection((ORD,), None, mode, False), {})  # type: ignore[arg-type]
        budget = inventory.memory_budget("ord", mode)  # type: ignore[arg-type]
        memory = next(gate for gate in step.deployment.gates if gate.kind == "memory")
        assert memory.budget_mb == round(budget.navigator + budget.redis, 1), mode
        if budget.cable_server:
            assert memory.budget_mb < round(budget.navigator + budget.redis + budget.cable_server, 1)


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


def test_gates_carry_the_inventory_timing_and_paths(inventory: Inventory, target: LocalTarget) -> None:
    (step,) = rollout_steps(inventory, target, Selection((ORD,)), {})
    assert (step.stage, step.key, step.id) == ("canary", ORD, "canary:production/ord")
    timing = GateTiming(interval_seconds=0.2, timeout_seconds=5, deadline_seconds=20, count=1, failure_limit=1)
    assert [(gate.kind, gate.path, gate.timing) for gate in step.deployment.gates] == [
        ("http", "/up", timing), ("websocket", "/demo/regions/ord/cable", timing), ("memory", None, timing)]
    assert step.fallback is not None
    assert [(gate.path, gate.timing) for gate in step.fallback.gates] == [("/up", timing), ("/demo/regions/ord/cable", timing)]


def test_the_fallback_keeps_an_overridden_mode(inventory: Inventory, target: LocalTarget) -> None:
    (step,) = rollout_steps(inventory, target, Selection((ORD,), None, "action_cable"), {})
    assert step.fallback is not None
    assert (step.fallback.state.mode, step.fallback.state.websocket_enabled) == ("action_cable", False)
    assert "action-cable" not in step.fallback.state.files["navigator.yml"]
    assert "redis" in step.fallback.state.files["navigator.yml"]


def test_a_region_budget_sets_its_memory_gate_and_projection(tmp_path: Path, target: LocalTarget) -> None:
    fleet = make_fleet(tmp_path, ("  - code: ord\n", "  - {code: ord, memory_budgets_mb: {integrated: {navigator: 12.34}}}\n"))
    inventory = load_inventory(fleet.inventory)
    steps = rollout_steps(inventory, target, Selection((ORD, RegionKey("production", "ams"))), {})
    assert [step.deployment.gates[2].budget_mb for step in steps] == [12.3, 35.0]
    plan = make_plan(inventory, target, steps, {}, NOON, NOON)
    assert [(row.key, row.before_mode, row.after_mode, row.before_total, row.after_total) for row in plan.memory] == [
        (ORD, None, "integrated", 168.9, 12.34), (RegionKey("production", "ams"), None, "integrated", 168.9, 35.0)]
    switched_off = RegionHistory(deployed=region_state(inventory, ORD, "action_cable", False))
    (from_off,) = rollout_steps(inventory, target, Selection((ORD,)), {ORD: switched_off})
    (row,) = make_plan(inventory, target, (from_off,), {}, NOON, NOON).memory
    assert (row.before_mode, dict(row.before)) == ("action_cable", {"navigator": 17.6, "cable_server": 0.0, "redis": 13.5})


def test_a_mode_the_inventory_cannot_render_is_an_input_error(inventory: Inventory) -> None:
    with pytest.raises(InputError) as refused:
        region_state(inventory, ORD, "anycable")
    assert refused.value.problems[0].startswith("production/ord: ")
    assert "anycable" in refused.value.problems[0]


def test_rollback_covers_every_region_asked_for(inventory: Inventory, target: LocalTarget) -> None:
    ams = RegionKey("production", "ams")
    steps = rollback_steps(inventory, target, [ORD, ams], {}, to_previous=False)
    assert [(step.key, step.desired.mode, step.desired.websocket_enabled) for step in steps] == [
        (ORD, "integrated", False), (ams, "integrated", False)]
    earlier = region_state(inventory, ORD, "action_cable", True)
    history = RegionHistory(deployed=region_state(inventory, ORD), previous=earlier)
    restored = rollback_steps(inventory, target, [ORD, ams], {ORD: history, ams: history}, to_previous=True)
    assert [step.key for step in restored] == [ORD, ams]
    with pytest.raises(InputError) as refused:
        rollback_steps(inventory, target, [ORD, ams], {}, to_previous=True)
    assert len(refused.value.problems) == 2


def test_a_stage_with_a_region_rolled_back_is_failed_on_the_schedule(inventory: Inventory) -> None:
    rolled_back = RegionHistory(last_stage="canary", last_action="deploy", last_state=StepState.ROLLED_BACK,
                                last_started=NOON - timedelta(hours=2), last_finished=NOON - timedelta(hours=1))
    planned = schedule(inventory, {ORD: rolled_back}, NOON, NOON)
    assert [(stage.name, stage.environment, stage.status) for stage in planned] == [
        ("staging", "staging", "next"), ("canary", "production", "failed"), ("wave", "production", "later")]
    assert planned[1].starts == NOON - timedelta(hours=2)
    # A stage whose bake ends exactly now is done.
    exactly = schedule(inventory, {ORD: passed("canary", NOON - timedelta(hours=1))}, NOON, NOON)
    assert exactly[1].status == "done" and exactly[1].starts == NOON - timedelta(hours=1, minutes=1)


def test_durations_are_shown_in_their_two_largest_units() -> None:
    shown = [human_duration(timedelta(seconds=seconds)) for seconds in (0, 1, 59, 60, 61, 3599, 3600, 3661, 86400, 90061, -5)]
    assert shown == ["0s", "1s", "59s", "1m", "1m 1s", "59m 59s", "1h", "1h 1m", "1d", "1d 1h", "0s"]


def test_a_plan_names_its_inventory_target_and_time_and_schedules_from_a_later_start(
    inventory: Inventory, target: LocalTarget
) -> None:
    later = NOON + timedelta(days=3)
    plan = make_plan(inventory, target, (), {}, later, NOON)
    assert (plan.inventory, plan.target, plan.created, plan.steps) == ("fleet.yml", "local", NOON, ())
    assert [(stage.regions, stage.bake, stage.bake_seconds, stage.starts) for stage in plan.schedule] == [
        (("iad",), "0s", 0, later), (("ord",), "1h", 3600, later), (("ams", "dfw", "sjc"), "0s", 0, later + timedelta(hours=1))]


def test_a_region_in_no_stage_is_deployed_outside_the_stages(tmp_path: Path, target: LocalTarget) -> None:
    fleet = make_fleet(tmp_path, ("    regions: [ams, dfw, ord, sjc]", "    regions: [ams, dfw, nrt, ord, sjc]"),
                       ("  - code: ord\n", "  - code: nrt\n  - code: ord\n"))
    inventory = load_inventory(fleet.inventory)
    nrt = RegionKey("production", "nrt")
    (step,) = rollout_steps(inventory, target, Selection((nrt,)), {})
    assert (step.stage, step.id) == (None, "deploy:production/nrt")
    with pytest.raises(InputError) as refused:
        resolve_regions(inventory, ["xyz"])
    assert refused.value.problems == [
        "--region xyz: not a region of fleet.yml (known: production/ams, production/dfw, production/nrt, "
        "production/ord, production/sjc, staging/iad)"]


# --- killed mutants (bench/results/mutation.md) ------------------------------------------------------

BROKERS = (("  - code: ord\n", "  - {code: ord, broker: {kind: nats, local: {port: 4222}}}\n"),
           ("  - code: dfw\n", "  - {code: dfw, broker: {kind: nats, url: 'nats://10.0.0.5:4222'}}\n"),
           ("rollout:\n", "modes:\n  anycable:\n    broker: {kind: nats, local: {port: 4223}}\n"
                          "memory_budgets_mb:\n  hub: {navigator: 20, cable_server: 30, redis: 0, broker: 15}\n"
                          "  anycable: {navigator: 21, cable_server: 31, redis: 0, broker: 16}\nrollout:\n"))


def test_a_region_s_own_nats_server_is_budgeted_only_where_it_runs(tmp_path: Path) -> None:
    """ord runs its own nats-server (hub and anycable mode, switch on); dfw's broker is elsewhere; ams has the
    anycable mode's local broker only."""
    inventory = load_inventory(make_fleet(tmp_path, *BROKERS).inventory)
    dfw, ams = RegionKey("production", "dfw"), RegionKey("production", "ams")
    assert expected_memory(inventory, ORD, "hub", True) == {"navigator": 20, "cable_server": 30, "redis": 0, "broker": 15}
    assert expected_memory(inventory, ORD, "anycable", True) == {"navigator": 21, "cable_server": 31, "redis": 0, "broker": 16}
    assert expected_memory(inventory, ams, "anycable", True) == {"navigator": 21, "cable_server": 31, "redis": 0, "broker": 16}
    assert expected_memory(inventory, ams, "hub", True) == {"navigator": 20, "cable_server": 30, "redis": 0}
    assert expected_memory(inventory, dfw, "hub", True) == {"navigator": 20, "cable_server": 30, "redis": 0}
    # With the switch off the cable server and its broker are gone; the other modes have no broker.
    assert expected_memory(inventory, ORD, "hub", False) == {"navigator": 20, "cable_server": 0.0, "redis": 0}
    assert expected_memory(inventory, ORD, "integrated", True) == {"navigator": 35.0, "cable_server": 0.0, "redis": 0.0}
    assert "broker" not in expected_memory(inventory, ORD, "action_cable", True)


def test_the_memory_projection_keeps_the_cable_server_of_a_switch_left_on(inventory: Inventory, target: LocalTarget) -> None:
    on = RegionHistory(deployed=region_state(inventory, ORD, "action_cable", True))
    (step,) = rollout_steps(inventory, target, Selection((ORD,), None, "action_cable", True), {ORD: on})
    (row,) = make_plan(inventory, target, (step,), {}, NOON, NOON).memory
    assert dict(row.before) == dict(row.after) == {"navigator": 17.6, "cable_server": 137.8, "redis": 13.5}


def test_the_websocket_gate_names_the_mode_it_judges(inventory: Inventory, target: LocalTarget) -> None:
    """A probe made on the machine publishes where that mode's processes publish: the gate carries the mode."""
    for mode in ("action_cable", "integrated"):
        (step,) = rollout_steps(inventory, target, Selection((ORD,), None, mode), {})  # type: ignore[arg-type]
        assert step.fallback is not None
        assert [gate.mode for gate in (*step.deployment.gates, *step.fallback.gates) if gate.kind == "websocket"] == [mode, mode]
