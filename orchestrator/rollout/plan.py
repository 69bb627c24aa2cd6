"""The plan: which regions a command changes, to what, by which operations, judged by which gates.

Pure: it reads the inventory, what the journal knows (as `RegionHistory`
values) and the target's operation builders, and renders every file before
anything runs, so a render error stops a wave before any region is touched.
`orchestrate plan` and `rollout --dry-run` print exactly what `rollout` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.errors import InputError
from orchestrator.inventory import mode_problems
from orchestrator.model import Inventory, Mode, Stage
from orchestrator.render.files import region_files
from orchestrator.render.image import REGION_SETTINGS
from orchestrator.rollout.model import (
    Action,
    Deployment,
    Gate,
    GateTiming,
    Plan,
    Protocol,
    RegionKey,
    RegionMemory,
    RegionState,
    ScheduledStage,
    Step,
    StepState,
)
from orchestrator.targets.base import Target

# The files of a region's configuration that a deployment puts on its host (boot.yml stays in the image).
DEPLOYED_FILES = ("navigator.yml", REGION_SETTINGS, "hub.yml")
# With nothing recorded, a region is taken to run the app's baseline.
BASELINE_MODE: Mode = "action_cable"
PROCESS_BUDGETS = ("navigator", "cable_server", "redis")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RegionHistory:
    """What the journal knows about one region, as plain values for the pure functions here."""

    deployed: RegionState | None = None
    previous: RegionState | None = None
    last_stage: str | None = None  # the stage of the region's newest step (None for a rollback or a manual step)
    last_action: str | None = None
    last_state: StepState | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    watched: tuple[tuple[datetime, datetime], ...] = ()  # spans of watching (first sample, last sample)


@dataclass(frozen=True)
class Selection:
    """What a command changes: the regions, and overrides of the inventory's mode and switch."""

    keys: tuple[RegionKey, ...]
    stage: str | None = None
    mode: Mode | None = None
    websocket_enabled: bool | None = None

    @property
    def overrides(self) -> bool:
        """A deployment that overrides the inventory is outside the stages: it never counts as a stage passed."""
        return self.mode is not None or self.websocket_enabled is not None


def bake_seconds(bake: str) -> int:
    return int(bake[:-1]) * _DURATION_UNITS[bake[-1]]


def stage_keys(stage: Stage) -> tuple[RegionKey, ...]:
    return tuple(RegionKey(stage.environment, code) for code in stage.regions)


def stage_of(inventory: Inventory, key: RegionKey) -> Stage | None:
    return next((stage for stage in inventory.rollout.stages if key in stage_keys(stage)), None)


def all_keys(inventory: Inventory) -> tuple[RegionKey, ...]:
    return tuple(
        RegionKey(name, code)
        for name, environment in sorted(inventory.environments.items())
        for code in sorted(environment.regions)
    )


def resolve_regions(inventory: Inventory, names: Iterable[str]) -> tuple[RegionKey, ...]:
    """`ord` or `production/ord`; a bare code that two environments share must say which."""
    keys: list[RegionKey] = []
    problems: list[str] = []
    for name in names:
        environment, _, code = name.rpartition("/")
        matches = [key for key in all_keys(inventory) if key.region == code and environment in ("", key.environment)]
        if len(matches) == 1:
            keys.append(matches[0])
        elif not matches:
            known = ", ".join(str(key) for key in all_keys(inventory))
            problems.append(f"--region {name}: not a region of {inventory.name} (known: {known})")
        else:
            choices = " or ".join(str(key) for key in matches)
            problems.append(f"--region {name}: in more than one environment, say {choices}")
    if problems:
        raise InputError(problems)
    return tuple(dict.fromkeys(keys))


def region_state(inventory: Inventory, key: RegionKey, mode: Mode | None = None, websocket_enabled: bool | None = None) -> RegionState:
    """The configuration files `key` runs with these settings (inventory's where not given), rendered and checked."""
    settings = inventory.settings(key.environment, key.region, mode, websocket_enabled)
    problems = mode_problems(inventory, {settings.mode: [key.region]})
    if problems:
        raise InputError([f"{key}: {problem}" for problem in problems])
    files = region_files(inventory, settings)
    return RegionState(settings.mode, settings.websocket_enabled, {name: files[name] for name in DEPLOYED_FILES if name in files})


def expected_memory(inventory: Inventory, key: RegionKey, mode: Mode, websocket_enabled: bool) -> dict[str, float]:
    """Resident MB by process from the region's budgets; with the switch off the cable server is gone."""
    budget = inventory.memory_budget(key.region, mode)
    expected = {
        "navigator": budget.navigator,
        "cable_server": budget.cable_server if websocket_enabled else 0.0,
        "redis": budget.redis,
    }
    broker = inventory.broker_for(key.region, mode)
    if mode in ("hub", "anycable") and websocket_enabled and broker is not None and broker.local_port is not None:
        expected["broker"] = budget.broker  # the region's own nats-server
    return expected


def gates_for(inventory: Inventory, key: RegionKey, state: RegionState, memory: bool) -> tuple[Gate, ...]:
    """HTTP, the WebSocket round trip (or its refusal with the switch off), and unless told otherwise memory.

    A switch-off rollback is judged healthy by the first two alone: leaving a
    region over its budget with the WebSocket off is still better than failing it.
    """
    health = inventory.rollout.health_check
    timing = GateTiming(
        interval_seconds=health.interval_seconds,
        timeout_seconds=health.timeout_seconds,
        deadline_seconds=health.deadline_seconds,
        count=health.count,
        failure_limit=health.failure_limit,
    )
    cable_path = inventory.websocket.cable_path_for(key.region)
    protocol: Protocol = "navigator" if state.mode == "integrated" else "actioncable"
    budget = sum(expected_memory(inventory, key, state.mode, state.websocket_enabled).values())
    gates = (
        Gate("http", health.path, timing),
        Gate("websocket", cable_path, timing, protocol=protocol, expect_open=state.websocket_enabled, mode=state.mode),
    )
    return (*gates, Gate("memory", None, timing, budget_mb=round(budget, 1))) if memory else gates


def deployment(
    inventory: Inventory, target: Target, key: RegionKey, current: RegionState | None, desired: RegionState, memory: bool
) -> Deployment:
    return Deployment(desired, target.operations(key, current, desired), gates_for(inventory, key, desired, memory))


def build_step(
    inventory: Inventory,
    target: Target,
    key: RegionKey,
    history: RegionHistory,
    action: Action,
    desired: RegionState,
    stage: str | None,
) -> Step:
    """One region's step; a deploy that leaves the switch on carries the quick rollback (switch off) with it."""
    main = deployment(inventory, target, key, history.deployed, desired, memory=action != "rollback")
    fallback = None
    if action == "deploy" and desired.websocket_enabled:
        switched_off = region_state(inventory, key, desired.mode, False)
        fallback = deployment(inventory, target, key, desired, switched_off, memory=False)
    return Step(f"{stage or action}:{key}", stage, key, action, history.deployed, main, fallback)


def rollout_steps(
    inventory: Inventory, target: Target, selection: Selection, histories: Mapping[RegionKey, RegionHistory]
) -> tuple[Step, ...]:
    steps = []
    for key in selection.keys:
        desired = region_state(inventory, key, selection.mode, selection.websocket_enabled)
        if selection.overrides:
            stage = None
        else:
            stage = selection.stage or (found.name if (found := stage_of(inventory, key)) else None)
        steps.append(build_step(inventory, target, key, histories.get(key, RegionHistory()), "deploy", desired, stage))
    return tuple(steps)


def rollback_steps(
    inventory: Inventory,
    target: Target,
    keys: Iterable[RegionKey],
    histories: Mapping[RegionKey, RegionHistory],
    to_previous: bool,
) -> tuple[Step, ...]:
    """The quick rollback (the deployed mode with the switch off), or the previously deployed files."""
    steps = []
    problems = []
    for key in keys:
        history = histories.get(key, RegionHistory())
        if to_previous:
            if history.previous is None:
                problems.append(f"{key}: no earlier deployment in the journal to go back to")
                continue
            steps.append(build_step(inventory, target, key, history, "restore", history.previous, None))
            continue
        mode = history.deployed.mode if history.deployed else None
        steps.append(build_step(inventory, target, key, history, "rollback", region_state(inventory, key, mode, False), None))
    if problems:
        raise InputError(problems)
    return tuple(steps)


def passed_stage(history: RegionHistory, stage: Stage) -> bool:
    """The region's newest step is a deployment of `stage` that passed its gates."""
    return history.last_stage == stage.name and history.last_action == "deploy" and history.last_state == StepState.PASSED


def bake_windows(
    stage: Stage, histories: Mapping[RegionKey, RegionHistory]
) -> dict[RegionKey, tuple[datetime, datetime]]:
    """When each region of `stage` that passed it bakes: from its own gates passing to the stage's bake end,
    the stage's `bake` after its last region passed (promotion waits for that moment)."""
    passed = {key: histories[key] for key in stage_keys(stage) if key in histories and passed_stage(histories[key], stage)}
    finished = {key: history.last_finished for key, history in passed.items() if history.last_finished is not None}
    if not finished:
        return {}
    ends = max(finished.values()) + timedelta(seconds=bake_seconds(stage.bake))
    return {key: (started, ends) for key, started in finished.items()}


def unwatched_gaps(
    window: tuple[datetime, datetime], spans: Iterable[tuple[datetime, datetime]], max_gap_seconds: float
) -> list[tuple[datetime, datetime]]:
    """The stretches of `window` longer than `max_gap_seconds` with no sample: before the first span, between two,
    and after the last (up to the window's end)."""
    start, end = window
    gaps = []
    cursor = start
    for first, last in sorted(spans):
        if last < start or first > end:
            continue
        if first > cursor:
            gaps.append((cursor, first))
        cursor = max(cursor, last)
    if end > cursor:
        gaps.append((cursor, end))
    return [(begins, ends) for begins, ends in gaps if (ends - begins).total_seconds() > max_gap_seconds]


def promotion_problem(
    inventory: Inventory, stage_name: str, histories: Mapping[RegionKey, RegionHistory], now: datetime
) -> str | None:
    """Why `stage_name` may not start yet: the previous stage has not passed everywhere, or is still baking."""
    stages = inventory.rollout.stages
    index = next(position for position, stage in enumerate(stages) if stage.name == stage_name)
    if index == 0:
        return None
    previous = stages[index - 1]
    for key in stage_keys(previous):
        history = histories.get(key, RegionHistory())
        if history.last_action is None:
            return f"stage {previous.name} has not passed: {key} was never rolled out"
        if not passed_stage(history, previous):
            return (f"stage {previous.name} has not passed: {key}'s last step is "
                    f"{history.last_action} {history.last_stage or 'outside the stages'}, {history.last_state}")
    windows = bake_windows(previous, histories)
    bake_ends = max(end for _, end in windows.values())
    if now < bake_ends:
        left = bake_ends - now
        return f"stage {previous.name} bakes until {bake_ends:%Y-%m-%d %H:%M:%S} UTC ({human_duration(left)} left)"
    watch = inventory.rollout.watch
    if watch is None:
        return None
    for key, window in windows.items():
        gaps = unwatched_gaps(window, histories[key].watched, watch.max_gap_seconds)
        if gaps:
            begins, ends = max(gaps, key=lambda gap: gap[1] - gap[0])
            return (f"stage {previous.name}'s bake was unwatched: {key} had no sample from "
                    f"{begins:%Y-%m-%d %H:%M:%S} to {ends:%Y-%m-%d %H:%M:%S} UTC ({human_duration(ends - begins)}, "
                    f"more than rollout.watch.max_gap_seconds {watch.max_gap_seconds:g}; `orchestrate watch` watches a bake)")
    return None


def schedule(
    inventory: Inventory, histories: Mapping[RegionKey, RegionHistory], start: datetime, now: datetime
) -> tuple[ScheduledStage, ...]:
    """The stages on the calendar: finished ones as they happened, the rest one after the other from `start`."""
    scheduled = []
    cursor = start
    upcoming_seen = False
    for stage in inventory.rollout.stages:
        bake = timedelta(seconds=bake_seconds(stage.bake))
        records = [histories.get(key, RegionHistory()) for key in stage_keys(stage)]
        mine = [record for record in records if record.last_stage == stage.name]
        if mine and any(record.last_state in (StepState.ROLLED_BACK, StepState.FAILED) for record in mine):
            starts = min(record.last_started or now for record in mine)
            status, bake_ends = "failed", now
        elif len(mine) == len(records) and all(record.last_state == StepState.PASSED for record in mine):
            starts = min(record.last_started or now for record in mine)
            bake_ends = max(record.last_finished or now for record in mine) + bake
            status = "done" if now >= bake_ends else "baking"
        else:
            starts = max(cursor, now)
            bake_ends = starts + bake
            status = "later" if upcoming_seen else "next"
            upcoming_seen = True
        cursor = max(cursor, bake_ends)
        scheduled.append(ScheduledStage(stage.name, stage.environment, stage.regions, stage.bake,
                                        int(bake.total_seconds()), starts, bake_ends, status))
    return tuple(scheduled)


def memory_rows(inventory: Inventory, steps: Iterable[Step]) -> tuple[RegionMemory, ...]:
    rows = []
    for step in steps:
        current = step.current
        before = (
            expected_memory(inventory, step.key, current.mode, current.websocket_enabled)
            if current
            else expected_memory(inventory, step.key, BASELINE_MODE, True)
        )
        after = expected_memory(inventory, step.key, step.desired.mode, step.desired.websocket_enabled)
        rows.append(RegionMemory(step.key, current.mode if current else None, step.desired.mode, before, after))
    return tuple(rows)


def make_plan(
    inventory: Inventory,
    target: Target,
    steps: tuple[Step, ...],
    histories: Mapping[RegionKey, RegionHistory],
    start: datetime,
    now: datetime,
) -> Plan:
    return Plan(
        inventory=inventory.name,
        target=target.name,
        created=now,
        schedule=schedule(inventory, histories, start, now),
        steps=steps,
        memory=memory_rows(inventory, steps),
    )


def human_duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return " ".join(parts[:2]) or "0s"
