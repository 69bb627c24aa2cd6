"""The engine, per machine, against a target that records everything it is asked to do."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.rollout import engine as engine_module
from orchestrator.rollout.engine import Engine
from orchestrator.rollout.journal import Actor, Journal
from orchestrator.rollout.model import (
    Command,
    Deployment,
    Gate,
    GateTiming,
    Machine,
    Operation,
    RegionKey,
    RegionState,
    Step,
    StepState,
    WriteFile,
)
from orchestrator.targets.base import CommandResult, TargetError

ORD = RegionKey("production", "ord")
ACTOR = Actor("alice", "web1.example", 4242)
TIMING = GateTiming(interval_seconds=0, timeout_seconds=1, deadline_seconds=5, count=1, failure_limit=0)
GATES = (Gate("http", "/up", TIMING), Gate("websocket", "/cable", TIMING, "navigator", True, mode="integrated"))
ON = RegionState("integrated", True, {"navigator.yml": "cable: {enabled: true}\n"})
OFF = RegionState("integrated", False, {"navigator.yml": "cable: {enabled: false}\n"})


class MachinesTarget:
    """Machines in given states; commands and probes recorded with the machine they ran on."""

    name = "machines"

    def __init__(self, machines: Sequence[Machine], unhealthy: Mapping[str, str] | None = None) -> None:
        self.listed = list(machines)
        self.unhealthy = dict(unhealthy or {})  # machine id -> evidence of a failing http probe
        self.events: list[tuple[str, ...]] = []
        self.awake_now: str | None = None

    def operations(self, key, current, desired) -> tuple[Operation, ...]:
        raise AssertionError("the engine never plans")

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        self.events.append(("write", operation.path))

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if command.machine:
            assert command.machine == self.awake_now, f"{command.label} ran while {self.awake_now} was the awake machine"
        self.events.append(("run", command.machine, command.label))
        if command.label.startswith("probe"):
            bad = self.unhealthy.get(command.machine) if command.label == "probe http" else None
            return CommandResult(0, json.dumps({"ok": bad is None, "evidence": bad or f"{command.label} ok"}), "")
        return CommandResult(0, "", "")

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        self.events.append(("list",))
        return tuple(self.listed)

    @contextmanager
    def awake(self, key: RegionKey, machine: Machine) -> Iterator[None]:
        self.events.append(("wake", machine.id, machine.state))
        self.awake_now = machine.id
        try:
            yield
        finally:
            self.awake_now = None
            self.events.append(("put back", machine.id, machine.state))

    def readiness(self, steps) -> tuple[str, ...]:
        return ()

    def live_files(self, key, names, machine) -> Mapping[str, str | None]:
        return {}

    def memory_command(self, key: RegionKey, machine: str) -> Command:
        return Command(("memory",), "memory", machine=machine)

    def probe_command(self, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Command:
        return Command(("probe", gate.kind), f"probe {gate.kind}", machine=machine)

    def close(self) -> None:
        pass


class BrokenMachines(MachinesTarget):
    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        raise TargetError("`fly machine list --app smooth --json` failed: no access token available")


def on(machine: str, label: str) -> Command:
    return Command(("act", machine), label, machine=machine)


def step(operations: Sequence[Operation], fallback: Sequence[Operation] | None = None) -> Step:
    fall = Deployment(OFF, tuple(fallback), GATES[:1]) if fallback is not None else None
    return Step("canary:production/ord", "canary", ORD, "deploy", None, Deployment(ON, tuple(operations), GATES), fall)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "state") as opened:
        yield opened


def execute(journal: Journal, target: MachinesTarget, *steps: Step):
    engine = Engine(target, journal, ACTOR, lambda key, phase, text: None, None)
    run_id = journal.start_run("rollout", {}, ACTOR)
    return engine.execute(run_id, steps, parallel=1, max_failures=1)


def test_each_machine_s_commands_run_together_while_it_is_awake_then_the_region_s(journal: Journal) -> None:
    target = MachinesTarget([Machine("m1", "started", "img@sha256:1"), Machine("m2", "suspended", "img@sha256:1")])
    (outcome,) = execute(journal, target, step([on("m1", "switch"), on("m1", "restart"), on("m2", "switch"),
                                                 Command(("fly", "deploy"), "deploy")]))
    assert outcome.state == StepState.PASSED
    deploying = target.events[: target.events.index(("list",), 1) + 1]
    assert deploying == [
        ("list",),
        ("wake", "m1", "started"), ("run", "m1", "switch"), ("run", "m1", "restart"), ("put back", "m1", "started"),
        ("wake", "m2", "suspended"), ("run", "m2", "switch"), ("put back", "m2", "suspended"),
        ("run", "", "deploy"),
        ("list",),  # again, for the images the machines run now
    ]


def test_every_gate_is_observed_on_every_machine_and_recorded_with_it(journal: Journal) -> None:
    target = MachinesTarget([Machine("m1", "started", "img@sha256:1"), Machine("m2", "stopped", "img@sha256:2")])
    (outcome,) = execute(journal, target, step([on("m1", "switch"), on("m2", "switch")]))
    assert outcome.state == StepState.PASSED
    lists = [index for index, event in enumerate(target.events) if event == ("list",)]
    assert len(lists) == 3  # before the operations, after them (images), before the gates
    gating = target.events[lists[-1] + 1:]
    assert gating == [
        ("wake", "m1", "started"), ("run", "m1", "probe http"), ("run", "m1", "probe websocket"), ("put back", "m1", "started"),
        ("wake", "m2", "stopped"), ("run", "m2", "probe http"), ("run", "m2", "probe websocket"), ("put back", "m2", "stopped"),
    ]
    row = journal.last_step(ORD).row  # type: ignore[union-attr]
    assert [(gate.machine, gate.gate, gate.ok) for gate in journal.gate_results(row)] == [
        ("m1", "http", True), ("m1", "websocket", True), ("m2", "http", True), ("m2", "websocket", True)]
    assert journal.deployed(ORD).state.images == {"m1": "img@sha256:1", "m2": "img@sha256:2"}  # type: ignore[union-attr]


def test_one_unhealthy_machine_rolls_the_whole_region_back_and_is_named(journal: Journal) -> None:
    target = MachinesTarget([Machine("m1"), Machine("m2", "suspended")], unhealthy={"m2": "GET http://127.0.0.1:9999/up: 502 in 3 ms"})
    (outcome,) = execute(journal, target, step([on("m1", "switch on"), on("m2", "switch on")],
                                               fallback=[on("m1", "switch off"), on("m2", "switch off")]))
    assert outcome.state == StepState.FAILED  # m2 stays unhealthy with the switch off too
    assert (outcome.gate, outcome.evidence) == ("http gate", "m2: GET http://127.0.0.1:9999/up: 502 in 3 ms")
    switched_off = [event for event in target.events if event[0] == "run" and event[2] == "switch off"]
    assert switched_off == [("run", "m1", "switch off"), ("run", "m2", "switch off")]


def test_machines_other_than_the_planned_ones_stop_the_step_before_anything_runs(journal: Journal) -> None:
    target = MachinesTarget([Machine("m1"), Machine("m3")])
    (outcome,) = execute(journal, target, step([on("m1", "switch"), on("m2", "switch")], fallback=[on("m1", "off"), on("m2", "off")]))
    assert outcome.state == StepState.FAILED
    assert outcome.evidence == "production/ord has the machines m1, m3 now, but this step was planned for m1, m2: plan again"
    assert [event for event in target.events if event[0] in ("run", "wake", "write")] == []


def test_a_region_whose_machines_cannot_be_listed_fails_with_the_reason(journal: Journal) -> None:
    target = BrokenMachines([])
    (outcome,) = execute(journal, target, step([on("m1", "switch")]))
    assert outcome.state == StepState.FAILED
    assert (outcome.gate, outcome.evidence) == ("list the machines", "`fly machine list --app smooth --json` failed: no access token available")
    assert target.events == []


# --- several regions: the failure limit and true parallelism ----------------------------------------


class RegionsTarget(MachinesTarget):
    """One machine per region; a region's deployment fails where it is told to; every run recorded with its region."""

    def __init__(self, failing: set[str], barrier: threading.Barrier | None = None) -> None:
        super().__init__([Machine("only")])
        self.failing = failing
        self.barrier = barrier
        self.runs: list[tuple[str, tuple[str, ...]]] = []
        self.lock = threading.Lock()

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if command.label.startswith("probe"):
            return CommandResult(0, json.dumps({"ok": True, "evidence": "ok"}), "")
        with self.lock:
            self.runs.append((key.region, command.argv))
        if self.barrier is not None and command.argv[0] == "deploy":
            self.barrier.wait(timeout=30)  # every region's deployment is in flight at once
        failed = command.argv[0] == "deploy" and key.region in self.failing
        return CommandResult(1 if failed else 0, "", f"{key.region} broke" if failed else "")

    @contextmanager
    def awake(self, key: RegionKey, machine: Machine) -> Iterator[None]:
        yield


def region_step(region: str) -> Step:
    key = RegionKey("production", region)
    deployment = Deployment(ON, (Command(("deploy", region), f"deploy {region}"),), GATES)
    return Step(f"wave:{key}", "wave", key, "deploy", None, deployment, None)


def run_regions(journal: Journal, target: RegionsTarget, regions: Sequence[str], parallel: int, max_failures: int):
    engine = Engine(target, journal, ACTOR, lambda key, phase, text: None, None)
    run_id = journal.start_run("rollout", {}, ACTOR)
    return engine.execute(run_id, [region_step(region) for region in regions], parallel, max_failures)


@pytest.mark.parametrize(("max_failures", "started"), [(1, ["ams"]), (2, ["ams", "dfw"]), (3, ["ams", "dfw", "ord"])])
def test_no_region_starts_once_max_failures_regions_failed(journal: Journal, max_failures: int, started: list[str]) -> None:
    target = RegionsTarget(failing={"ams", "dfw", "ord", "sjc"})
    outcomes = run_regions(journal, target, ["ams", "dfw", "ord", "sjc"], parallel=1, max_failures=max_failures)
    assert [region for region, _ in target.runs] == started
    assert [outcome.state for outcome in outcomes] == [StepState.FAILED] * max_failures + [None] * (4 - max_failures)
    failed = "1 region" if max_failures == 1 else f"{max_failures} regions"
    assert all(outcome.evidence == f"not started: {failed} failed" for outcome in outcomes[max_failures:])


class LateExecutor(ThreadPoolExecutor):
    """Starts nothing until the engine first waits: work that read its region late would all see the last one."""

    opened = threading.Event()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        def when_opened():  # type: ignore[no-untyped-def]
            assert LateExecutor.opened.wait(30)
            return fn(*args, **kwargs)

        return super().submit(when_opened)


def test_regions_run_truly_in_parallel_each_its_own_operations_exactly_once(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wait_opening(*args, **kwargs):  # type: ignore[no-untyped-def]
        LateExecutor.opened.set()
        return futures.wait(*args, **kwargs)

    LateExecutor.opened = threading.Event()
    monkeypatch.setattr(engine_module, "ThreadPoolExecutor", LateExecutor)
    monkeypatch.setattr(engine_module, "wait", wait_opening)
    regions = ["ams", "dfw", "ord"]
    target = RegionsTarget(failing=set(), barrier=threading.Barrier(len(regions)))
    outcomes = run_regions(journal, target, regions, parallel=len(regions), max_failures=1)
    assert [outcome.state for outcome in outcomes] == [StepState.PASSED] * 3
    assert sorted(target.runs) == [(region, ("deploy", region)) for region in regions]


def test_a_rollout_whose_engine_raises_releases_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import main as orchestrate
    from tests.orchestrator.rollout.fleet import make_fleet

    fleet = make_fleet(tmp_path)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(Engine, "execute", broken)
    monkeypatch.setenv("CABLE_SIGNING_SECRET", "not-a-real-secret")
    with pytest.raises(RuntimeError, match="the engine broke"):
        orchestrate(["rollout", str(fleet.inventory), "--state", str(fleet.state), "--stage", "staging", "--yes"])
    with Journal.open(fleet.state) as journal:
        assert journal.lock_status() is None
        assert [record.action for record in journal.audit_records()][-1] == "lock released"
