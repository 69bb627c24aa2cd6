"""The engine, per machine, against a target that records everything it is asked to do."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.rollout import engine as engine_module
from orchestrator.rollout.engine import Engine
from orchestrator.rollout.journal import Actor, Journal, StepRecord
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


# --- what each phase records and shows (mutants: bench/results/mutation.md) -----------------------------------

PROBE_502 = "GET http://127.0.0.1:9999/up: 502 in 3 ms"
MEMORY_GATE = Gate("memory", None, TIMING, budget_mb=10)


class OrdOnly:
    """One region, ORD: every call about another region fails the test. Writes and commands are recorded; the
    memory command reports 50 MiB on the machines in `unhealthy` (1 MiB elsewhere) until a command labelled
    "switch off" runs on them. Gates are observed from here (this class has no probe_command)."""

    name = "ord-only"

    def __init__(self, machines: Sequence[str] = ("m1",), unhealthy: Sequence[str] = (),
                 results: Mapping[str, CommandResult] | None = None, write_error: str | None = None) -> None:
        self.listed = tuple(Machine(machine) for machine in machines)
        self.unhealthy = set(unhealthy)
        self.results = dict(results or {})  # command label -> its result (else exit 0)
        self.write_error = write_error
        self.events: list[tuple[str, ...]] = []

    def operations(self, key, current, desired) -> tuple[Operation, ...]:
        raise AssertionError("the engine never plans")

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        assert key == ORD, key
        if self.write_error is not None:
            raise TargetError(self.write_error)
        self.events.append(("write", operation.path, operation.text))

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        assert key == ORD, key
        if command.label.startswith("probe") or command.label == "memory":
            return self.observe(command)
        self.events.append(("run", command.machine, command.label))
        if command.label == "switch off":
            self.unhealthy.discard(command.machine)
        return self.results.get(command.label, CommandResult(0, "", ""))

    def observe(self, command: Command) -> CommandResult:
        size = 50 * 1024 * 1024 if command.machine in self.unhealthy else 1024 * 1024
        return CommandResult(0, json.dumps({"front": size}), "")

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        assert key == ORD, key
        return self.listed

    @contextmanager
    def awake(self, key: RegionKey, machine: Machine) -> Iterator[None]:
        assert key == ORD, key
        yield

    def readiness(self, steps) -> tuple[str, ...]:
        return ()

    def live_files(self, key, names, machine) -> Mapping[str, str | None]:
        return {}

    def memory_command(self, key: RegionKey, machine: str) -> Command:
        assert key == ORD, key
        return Command(("memory",), "memory", machine=machine)

    def close(self) -> None:
        pass


class OrdOnMachine(OrdOnly):
    """The same, its gates observed on each machine: the http probe fails on the machines in `unhealthy`."""

    def probe_command(self, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Command:
        assert key == ORD, key
        return Command(("probe", gate.kind), f"probe {gate.kind}", machine=machine)

    def observe(self, command: Command) -> CommandResult:
        bad = command.label == "probe http" and command.machine in self.unhealthy
        return CommandResult(0, json.dumps({"ok": not bad, "evidence": PROBE_502 if bad else f"{command.label} ok"}), "")


def ord_step(operations: Sequence[Operation], fallback: Sequence[Operation] | None = None,
             gates: tuple[Gate, ...] = GATES, current: RegionState | None = OFF, stage: str = "canary") -> Step:
    """A step that switches ORD's WebSocket on; by default ORD ran with it off before."""
    fall = Deployment(OFF, tuple(fallback), gates[:1]) if fallback is not None else None
    return Step(f"{stage}:production/ord", stage, ORD, "deploy", current, Deployment(ON, tuple(operations), gates), fall)


def ord_engine(journal: Journal, target: OrdOnly, secret_env: str | None = None,
               shown: list[tuple[RegionKey, str, str]] | None = None) -> Engine:
    seen: list[tuple[RegionKey, str, str]] = [] if shown is None else shown
    return Engine(target, journal, ACTOR, lambda key, phase, text: seen.append((key, phase, text)), secret_env)


def run_ord(journal: Journal, target: OrdOnly, *steps: Step, recorded=None, secret_env: str | None = None,
            shown: list[tuple[RegionKey, str, str]] | None = None):
    engine = ord_engine(journal, target, secret_env, shown)
    run_id = journal.start_run("rollout", {}, ACTOR)
    outcomes = engine.execute(run_id, steps, parallel=1, max_failures=len(steps), recorded=recorded)
    assert engine.interrupted is None
    return outcomes


def recorded_transitions(journal: Journal) -> list[tuple[str, str]]:
    row = journal.last_step(ORD).row  # type: ignore[union-attr]
    return [(str(state), detail) for _, state, detail in journal.transitions(row)]


def test_a_region_that_fails_its_gates_is_switched_off_shown_healthy_and_recorded_as_rolled_back(journal: Journal) -> None:
    target = OrdOnMachine(unhealthy=["m1"])
    shown: list[tuple[RegionKey, str, str]] = []
    step = ord_step([WriteFile("/srv/ord/navigator.yml", "on\n"), on("m1", "switch on")], fallback=[on("m1", "switch off")])
    (outcome,) = run_ord(journal, target, step, shown=shown)
    reason = f"http gate: m1: {PROBE_502}"
    assert outcome == engine_module.StepOutcome(step, StepState.ROLLED_BACK, "http gate", f"m1: {PROBE_502}")
    assert target.events == [("write", "/srv/ord/navigator.yml", "on\n"), ("run", "m1", "switch on"), ("run", "m1", "switch off")]
    assert recorded_transitions(journal) == [
        ("pending", ""), ("deploying", "integrated, websocket on"), ("gating", "http, websocket"),
        ("rolling_back", reason), ("gating", "http"), ("rolled_back", reason)]
    assert shown == [
        (ORD, "deploying", "integrated, websocket on"), (ORD, "deploying", "machine m1 (started)"),
        (ORD, "deploying", "switch on"), (ORD, "gating", f"m1: http not yet: {PROBE_502}"),
        (ORD, "rolling_back", reason), (ORD, "rolling_back", "machine m1 (started)"), (ORD, "rolling_back", "switch off"),
        (ORD, "gating", "m1: http ok: probe http ok"), (ORD, "rolled_back", reason)]
    last = journal.last_step(ORD)
    assert last is not None and (last.stage, last.action, last.mode, last.websocket_enabled) == ("canary", "deploy", "integrated", True)
    deployed = journal.deployed(ORD)
    assert deployed is not None and (deployed.state.websocket_enabled, deployed.step_row) == (False, last.row)
    assert [(record.actor, record.action, record.message) for record in journal.audit_records()] == [
        (ACTOR, "automatic rollback", f"production/ord: websocket switched off after {reason}")]


def test_a_rollback_that_cannot_make_the_region_healthy_fails_it_and_says_so_in_the_audit(journal: Journal) -> None:
    target = OrdOnMachine(unhealthy=["m1"])
    shown: list[tuple[RegionKey, str, str]] = []
    step = ord_step([on("m1", "switch on")], fallback=[on("m1", "leave it on")])
    (outcome,) = run_ord(journal, target, step, shown=shown)
    assert outcome == engine_module.StepOutcome(step, StepState.FAILED, "http gate", f"m1: {PROBE_502}")
    detail = f"http gate: m1: {PROBE_502}; the rollback failed too: http gate: m1: {PROBE_502}"
    assert recorded_transitions(journal)[-1] == ("failed", detail)
    assert shown[-1] == (ORD, "failed", detail)
    assert [(record.action, record.message) for record in journal.audit_records()] == [("region failed", f"production/ord: {detail}")]


def test_a_passing_step_records_each_phase_and_what_the_region_runs(journal: Journal) -> None:
    shown: list[tuple[RegionKey, str, str]] = []
    step = ord_step([WriteFile("/srv/ord/navigator.yml", "on\n"), Command(("reload",), "reload")])
    (outcome,) = run_ord(journal, OrdOnMachine(), step, shown=shown)
    assert outcome == engine_module.StepOutcome(step, StepState.PASSED)
    assert recorded_transitions(journal) == [("pending", ""), ("deploying", "integrated, websocket on"),
                                             ("gating", "http, websocket"), ("passed", "integrated, websocket on: every gate passed")]
    assert shown[-1] == (ORD, "passed", "integrated, websocket on: every gate passed")
    assert (ORD, "deploying", "reload") in shown


def test_a_write_that_fails_fails_the_step_with_the_target_s_reason(journal: Journal) -> None:
    step = ord_step([WriteFile("/srv/ord/navigator.yml", "on\n"), on("m1", "switch on")])
    (outcome,) = run_ord(journal, OrdOnMachine(write_error="sftp: No space left on device"), step)
    assert (outcome.step, outcome.state, outcome.gate, outcome.evidence) == (
        step, StepState.FAILED, "write /srv/ord/navigator.yml", "sftp: No space left on device")
    assert recorded_transitions(journal)[-1] == ("failed", "write /srv/ord/navigator.yml: sftp: No space left on device")


@pytest.mark.parametrize(("result", "evidence"), [
    (CommandResult(3, "starting\n", "one\ntwo\n\nthree\nfour\n  \nfive\nsix\nseven\n"), "exit 3: two | three | four | five | six | seven"),
    (CommandResult(4, "only on stdout\n", ""), "exit 4: only on stdout"),
    (CommandResult(5, "", " \n"), "exit 5: no output"),
], ids=["the last six lines of stderr", "stdout when stderr is empty", "nothing"])
def test_a_command_that_fails_fails_the_step_with_the_end_of_its_output(journal: Journal, result: CommandResult, evidence: str) -> None:
    shown: list[tuple[RegionKey, str, str]] = []
    (outcome,) = run_ord(journal, OrdOnMachine(results={"reload": result}), ord_step([Command(("reload",), "reload")]), shown=shown)
    assert (outcome.state, outcome.gate, outcome.evidence) == (StepState.FAILED, "reload", evidence)
    assert recorded_transitions(journal)[-1] == ("failed", f"reload: {evidence}")
    assert shown[-1] == (ORD, "failed", f"reload: {evidence}")


def test_a_region_listed_without_machines_fails_before_anything_runs(journal: Journal) -> None:
    target = OrdOnMachine(machines=())
    (outcome,) = run_ord(journal, target, ord_step([on("m1", "switch on")]))
    assert (outcome.state, outcome.gate, outcome.evidence) == (StepState.FAILED, "list the machines", "production/ord has no machine")
    assert target.events == []
    other = OrdOnMachine(machines=("m9",))
    (outcome,) = run_ord(journal, other, ord_step([on("m1", "switch on")]))
    assert (outcome.gate, other.events) == ("list the machines", [])


def test_gate_evidence_names_the_machine_where_a_region_has_several_or_is_probed_on_them(journal: Journal) -> None:
    gates = (MEMORY_GATE,)
    (alone,) = run_ord(journal, OrdOnly(unhealthy=["m1"]), ord_step([], gates=gates))
    assert alone.gate == "memory gate" and alone.evidence.startswith("rss 50.0 MB (front 50.0) > budget 10 MB")
    (several,) = run_ord(journal, OrdOnly(machines=("m1", "m2"), unhealthy=["m2"]), ord_step([], gates=gates))
    assert several.gate == "memory gate" and several.evidence.startswith("m2: rss 50.0 MB (front 50.0) > budget 10 MB")
    (on_machine,) = run_ord(journal, OrdOnMachine(unhealthy=["m1"]), ord_step([]))
    assert on_machine.evidence == f"m1: {PROBE_502}"


def test_the_engine_gives_the_gates_the_name_of_the_signing_secret(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_TEST_SIGNING_SECRET", raising=False)
    signed = (Gate("websocket", "/cable", TIMING, "actioncable", True, mode="action_cable"),)
    (outcome,) = run_ord(journal, OrdOnly(), ord_step([], gates=signed), secret_env="ENGINE_TEST_SIGNING_SECRET")
    assert (outcome.gate, outcome.evidence) == (
        "websocket gate", "environment variable ENGINE_TEST_SIGNING_SECRET (the actioncable probe's signing secret) is not set")


def test_a_gate_that_did_not_run_fails_the_step(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_module.run_gates

    def all_but_the_last(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real(*args, **kwargs)[:-1]

    monkeypatch.setattr(engine_module, "run_gates", all_but_the_last)
    (outcome,) = run_ord(journal, OrdOnMachine(), ord_step([]))
    assert (outcome.state, outcome.gate, outcome.evidence) == (StepState.FAILED, "gates", "m1: not every gate ran")


def recorded_at(journal: Journal, step: Step, state: StepState, detail: str) -> dict[str, StepRecord]:
    """The step as an interrupted run left it in the journal, for --resume."""
    run_id = journal.start_run("rollout", {}, ACTOR)
    row = journal.add_step(run_id, step.id, step.stage, step.key, step.action, step.desired.mode, step.desired.websocket_enabled)
    journal.transition(row, state, detail)
    return {step.id: journal.step(row)}


def test_resuming_leaves_a_finished_step_alone(journal: Journal) -> None:
    step = ord_step([on("m1", "switch on")])
    recorded = recorded_at(journal, step, StepState.PASSED, "integrated, websocket on: every gate passed")
    target = OrdOnMachine()
    shown: list[tuple[RegionKey, str, str]] = []
    (outcome,) = run_ord(journal, target, step, recorded=recorded, shown=shown)
    assert outcome == engine_module.StepOutcome(step, StepState.PASSED, None, "integrated, websocket on: every gate passed")
    assert target.events == []
    assert shown == [(ORD, "passed", "already passed (integrated, websocket on: every gate passed)")]


def test_resuming_runs_an_unfinished_step_again_on_its_own_row(journal: Journal) -> None:
    step = ord_step([on("m1", "switch on")], fallback=[on("m1", "switch off")])
    recorded = recorded_at(journal, step, StepState.DEPLOYING, "integrated, websocket on")
    target = OrdOnMachine()
    (outcome,) = run_ord(journal, target, step, recorded=recorded)
    assert outcome.state == StepState.PASSED and target.events == [("run", "m1", "switch on")]
    assert [str(state) for _, state, _ in journal.transitions(recorded[step.id].row)] == [
        "pending", "deploying", "deploying", "gating", "passed"]
    assert len(journal.steps(recorded[step.id].run_id)) == 1  # no second row for the same step
    assert journal.steps(journal.runs()[-1].id) == []


def test_resuming_a_step_stopped_while_rolling_back_finishes_the_rollback(journal: Journal) -> None:
    step = ord_step([on("m1", "switch on")], fallback=[on("m1", "switch off")])
    why = f"http gate: m1: {PROBE_502}"
    recorded = recorded_at(journal, step, StepState.ROLLING_BACK, why)
    target = OrdOnMachine()
    (outcome,) = run_ord(journal, target, step, recorded=recorded)
    assert outcome == engine_module.StepOutcome(step, StepState.ROLLED_BACK, why, why)
    assert target.events == [("run", "m1", "switch off")]  # never switched on again
    assert [str(state) for _, state, _ in journal.transitions(recorded[step.id].row)][-2:] == ["gating", "rolled_back"]


def test_steps_not_started_after_the_failure_limit_keep_their_step(journal: Journal) -> None:
    target = RegionsTarget(failing={"ams"})
    outcomes = run_regions(journal, target, ["ams", "dfw"], parallel=1, max_failures=1)
    assert [(outcome.step.key.region, outcome.state) for outcome in outcomes] == [("ams", StepState.FAILED), ("dfw", None)]


class SlowFirstRegion(RegionsTarget):
    """ams's deployment finishes only once ord's has started (or a step broke: then at once, failing)."""

    def __init__(self) -> None:
        super().__init__(failing=set())
        self.ord_started = threading.Event()
        self.released = threading.Event()

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if command.argv == ("deploy", "ord"):
            self.ord_started.set()
            self.released.set()
        if command.argv == ("deploy", "ams") and not (self.released.wait(30) and self.ord_started.is_set()):
            return CommandResult(1, "", "ord did not start while ams was deploying")
        return super().run(key, command)


def test_a_region_starts_as_soon_as_any_running_one_finishes(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """ord must start as soon as dfw is done, while ams still deploys."""
    target = SlowFirstRegion()

    def wait(running, return_when=futures.ALL_COMPLETED):  # type: ignore[no-untyped-def]
        for future in running:
            future.add_done_callback(lambda done: done.exception() is not None and target.released.set())
        return futures.wait(running, return_when=return_when)

    monkeypatch.setattr(engine_module, "wait", wait)
    outcomes = run_regions(journal, target, ["ams", "dfw", "ord"], parallel=2, max_failures=1)
    assert [(outcome.step.key.region, outcome.state, outcome.evidence) for outcome in outcomes] == [
        ("ams", StepState.PASSED, ""), ("dfw", StepState.PASSED, ""), ("ord", StepState.PASSED, "")]


class MachinesUnlisted(OrdOnMachine):
    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        raise TargetError("fly machine list: no access token available")


def failing_command() -> OrdOnMachine:
    return OrdOnMachine(results={"reload": CommandResult(3, "", "boom")})


def failing_write() -> OrdOnMachine:
    return OrdOnMachine(write_error="sftp: Permission denied")


BROKEN = [
    (failing_command, "reload", "exit 3: boom"),
    (failing_write, "write /srv/ord/navigator.yml", "sftp: Permission denied"),
    (MachinesUnlisted, "list the machines", "fly machine list: no access token available"),
]


@pytest.mark.parametrize(("broken", "what", "evidence"), BROKEN, ids=["a command", "a write", "listing the machines"])
def test_a_first_deployment_whose_operations_failed_is_not_switched_back(
    journal: Journal, broken: Callable[[], OrdOnMachine], what: str, evidence: str
) -> None:
    """The region never ran: there is nothing to switch off, and running the fallback could only fail again."""
    target = broken()
    shown: list[tuple[RegionKey, str, str]] = []
    step = ord_step([WriteFile("/srv/ord/navigator.yml", "on\n"), Command(("reload",), "reload")],
                    fallback=[Command(("reload",), "switch off")], current=None)
    (outcome,) = run_ord(journal, target, step, shown=shown)
    assert outcome == engine_module.StepOutcome(step, StepState.FAILED, what, evidence)
    detail = f"{what}: {evidence}; not switched back: the region never ran"
    assert recorded_transitions(journal)[-1] == ("failed", detail)
    assert shown[-1] == (ORD, "failed", detail)
    assert [(record.actor, record.action, record.message) for record in journal.audit_records()] == [
        (ACTOR, "region failed", f"production/ord: {detail}")]
    assert ("run", "", "switch off") not in target.events


@pytest.mark.parametrize("broken", [failing_command, failing_write], ids=["a command", "a write"])
def test_a_region_that_ran_before_is_switched_back_when_an_operation_fails(
    journal: Journal, broken: Callable[[], OrdOnMachine]
) -> None:
    target = broken()
    step = ord_step([WriteFile("/srv/ord/navigator.yml", "on\n"), Command(("reload",), "reload")],
                    fallback=[Command(("switch off",), "switch off")])
    (outcome,) = run_ord(journal, target, step)
    assert outcome.state == StepState.ROLLED_BACK and target.events[-1] == ("run", "", "switch off")


class Interrupting(OrdOnMachine):
    """A rollout interrupted while ORD is at a known point: `reached` is set there, and what runs there waits
    until the engine has been told to stop (as the SIGINT that stops orchestrate also ends its commands)."""

    def __init__(self, gates_seen: bool = False) -> None:
        super().__init__()
        self.gates_seen = gates_seen
        self.reached = threading.Event()
        self.engine: Engine | None = None

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        if self.gates_seen and command.label.startswith("probe"):
            self.reached.set()
        if not self.gates_seen and command.label == "switch on":
            self.events.append(("run", command.machine, command.label))
            self.reached.set()
            assert self.engine is not None and self.engine._stop.wait(30)
            return CommandResult(130, "", "interrupted")
        return super().run(key, command)


def interrupt_when_reached(target: Interrupting, monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt (SIGINT, or SIGTERM as orchestrate maps it) in the main thread's wait, once `reached` (or once
    a step ended before it got there: then the test fails on that step's outcome at once)."""

    def wait(running, return_when=futures.ALL_COMPLETED):  # type: ignore[no-untyped-def]
        for future in running:
            future.add_done_callback(lambda done: target.reached.set())
        assert target.reached.wait(30)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module, "wait", wait)


def test_an_interrupted_rollout_leaves_the_running_step_at_its_phase_and_starts_no_other(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Interrupting()
    shown: list[tuple[RegionKey, str, str]] = []
    engine = target.engine = ord_engine(journal, target, shown=shown)
    interrupt_when_reached(target, monkeypatch)
    first = ord_step([on("m1", "switch on"), on("m1", "restart")], fallback=[on("m1", "switch off")])
    second = ord_step([on("m1", "switch on")], stage="wave")
    run_id = journal.start_run("rollout", {}, ACTOR)
    outcomes = engine.execute(run_id, [first, second], parallel=1, max_failures=2)
    assert outcomes == [engine_module.StepOutcome(first, None, None, engine_module.INTERRUPTED),
                        engine_module.StepOutcome(second, None, None, engine_module.INTERRUPTED)]
    assert isinstance(engine.interrupted, KeyboardInterrupt)
    assert target.events == [("run", "m1", "switch on")]  # neither the next command nor the switch-off
    assert [step.step_id for step in journal.steps(run_id)] == ["canary:production/ord"]
    assert recorded_transitions(journal)[-1][0] == "deploying"  # for --resume, not failed
    assert shown[-1] == (ORD, "interrupted", "stopped where it was; --resume runs this step again")


@pytest.mark.timeout(60)
def test_an_interrupt_cuts_a_gate_s_wait_short_and_records_no_verdict(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate waits an hour between observations: only the engine's own wait, which the interrupt ends, can stop it."""
    target = Interrupting(gates_seen=True)
    engine = target.engine = ord_engine(journal, target)
    interrupt_when_reached(target, monkeypatch)
    hourly = (Gate("http", "/up", GateTiming(interval_seconds=3600, timeout_seconds=1, deadline_seconds=7200, count=2,
                                             failure_limit=0)),)
    step = ord_step([on("m1", "switch on")], fallback=[on("m1", "switch off")], gates=hourly)
    (outcome,) = engine.execute(journal.start_run("rollout", {}, ACTOR), [step], parallel=1, max_failures=1)
    assert outcome == engine_module.StepOutcome(step, None, None, engine_module.INTERRUPTED)
    assert recorded_transitions(journal)[-1][0] == "gating"
    assert journal.gate_results(journal.last_step(ORD).row) == []  # type: ignore[union-attr]


@pytest.mark.timeout(60)
def test_a_gate_that_needs_several_observations_waits_between_them_and_passes(journal: Journal) -> None:
    twice = (Gate("http", "/up", GateTiming(interval_seconds=0.2, timeout_seconds=1, deadline_seconds=30, count=2,
                                            failure_limit=0)),)
    (outcome,) = run_ord(journal, OrdOnMachine(), ord_step([on("m1", "switch on")], gates=twice))
    assert outcome.state == StepState.PASSED
    row = journal.last_step(ORD).row  # type: ignore[union-attr]
    assert [(gate.gate, gate.ok, gate.evidence) for gate in journal.gate_results(row)] == [("http", True, "probe http ok")]
