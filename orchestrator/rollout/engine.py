"""The only loop with effects: run each step's operations on the target, gate it, record every phase.

A region's phase is written to the journal before and after each thing that
changes it, so a crash leaves a step at a known phase and `--resume` runs it
again from the start (steps are idempotent). A region is recorded as deployed
only once its files are in place and its processes took them, with the image
each of its machines runs where the target has images.

A region is the machines its target lists. A command naming a machine runs
while the target keeps that machine awake (a suspended or stopped one is
started for it and put back after), the machines must be the ones the step was
planned for, and every gate is observed on every machine, its result recorded
with the machine's id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import groupby
from typing import TypeVar

from orchestrator.rollout.gates import GateResult, Observation, Verdict, run_gates
from orchestrator.rollout.journal import Actor, Journal, StepRecord
from orchestrator.rollout.model import (
    FINAL_STATES,
    Command,
    Deployment,
    Gate,
    Machine,
    Operation,
    RegionKey,
    Step,
    StepState,
    WriteFile,
)
from orchestrator.targets.base import ProbedOnMachine, Target, TargetError
from orchestrator.terminal import plural

ProgressEvent = Callable[[RegionKey, str, str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    state: StepState | None  # None: not started (the stage stopped at its failure limit)
    gate: str | None = None  # the gate (or operation) that failed
    evidence: str = ""

    @property
    def passed(self) -> bool:
        return self.state == StepState.PASSED


class _Failed(Exception):
    def __init__(self, what: str, evidence: str, operation: bool = False) -> None:
        super().__init__(f"{what}: {evidence}")
        self.what = what
        self.evidence = evidence
        self.operation = operation  # an operation failed, not a gate


class _Stopped(Exception):
    """The rollout was interrupted: the step stops where it is, recorded at its phase, for --resume."""


INTERRUPTED = "interrupted: --resume finishes it"


class Engine:
    def __init__(
        self,
        target: Target,
        journal: Journal,
        actor: Actor,
        progress: ProgressEvent,
        signing_secret_env: str | None,
    ) -> None:
        self.target = target
        self.journal = journal
        self.actor = actor
        self.progress = progress
        self.signing_secret_env = signing_secret_env
        # One SQLite connection, many region threads: the journal is written one call at a time.
        self._journal_lock = threading.Lock()
        self._stop = threading.Event()
        self.interrupted: BaseException | None = None  # the SIGINT or SIGTERM that stopped execute()

    def execute(
        self,
        run_id: int,
        steps: Sequence[Step],
        parallel: int,
        max_failures: int,
        recorded: Mapping[str, StepRecord] | None = None,
    ) -> list[StepOutcome]:
        """Run `steps` up to `parallel` at a time; start no new one once `max_failures` regions failed.

        Interrupted (KeyboardInterrupt, which SIGTERM raises too): no step starts, the running ones stop at
        their next operation or observation and stay at their phase for --resume, `interrupted` says why."""
        recorded = recorded or {}
        outcomes: dict[str, StepOutcome] = {}
        pending = list(steps)
        failures = 0
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="region") as pool:
            running: dict[Future[StepOutcome], Step] = {}
            try:
                while pending or running:
                    while pending and len(running) < parallel and failures < max_failures:
                        step = pending.pop(0)
                        running[pool.submit(self._step, run_id, step, recorded.get(step.id))] = step
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        step = running.pop(future)
                        outcome = future.result()
                        outcomes[step.id] = outcome
                        if not outcome.passed:
                            failures += 1
            except KeyboardInterrupt as interrupt:
                self.interrupted = interrupt
                self._stop.set()
                for future, step in running.items():
                    outcomes[step.id] = future.result()
        why = INTERRUPTED if self.interrupted else f"not started: {plural(failures, 'region')} failed"
        for step in pending:
            outcomes[step.id] = StepOutcome(step, None, None, why)
        return [outcomes[step.id] for step in steps]

    def _step(self, run_id: int, step: Step, record: StepRecord | None) -> StepOutcome:
        if record is not None and record.state in FINAL_STATES:
            self.progress(step.key, str(record.state), f"already {record.state} ({record.detail})")
            return StepOutcome(step, record.state, None, record.detail)
        if record is None:
            row = self._journal(
                self.journal.add_step, run_id, step.id, step.stage, step.key, step.action,
                step.desired.mode, step.desired.websocket_enabled,
            )
        else:
            row = record.row
        try:
            if record is not None and record.state == StepState.ROLLING_BACK and step.fallback is not None:
                return self._roll_back(row, step, record.detail, record.detail)
            try:
                self._deploy(row, step, step.deployment, StepState.DEPLOYING)
                self._gate(row, step.key, step.deployment.gates)
            except _Failed as failure:
                if step.fallback is None:
                    self._transition(row, StepState.FAILED, str(failure), step.key)
                    return StepOutcome(step, StepState.FAILED, failure.what, failure.evidence)
                if failure.operation and step.current is None:
                    # A first deployment whose operations failed: the region never ran, there is nothing to switch back.
                    detail = f"{failure}; not switched back: the region never ran"
                    self._transition(row, StepState.FAILED, detail, step.key)
                    self._journal(self.journal.audit, self.actor, "region failed", f"{step.key}: {detail}")
                    return StepOutcome(step, StepState.FAILED, failure.what, failure.evidence)
                return self._roll_back(row, step, failure.what, failure.evidence)
        except _Stopped:
            self.progress(step.key, "interrupted", "stopped where it was; --resume runs this step again")
            return StepOutcome(step, None, None, INTERRUPTED)
        self._transition(row, StepState.PASSED, f"{step.desired.describe()}: every gate passed", step.key)
        return StepOutcome(step, StepState.PASSED)

    def _roll_back(self, row: int, step: Step, what: str, evidence: str) -> StepOutcome:
        """The quick rollback: the same mode with the WebSocket switch off, shown healthy before the region counts as safe."""
        assert step.fallback is not None
        reason = f"{what}: {evidence}"
        self._stop_if_asked()
        try:
            self._deploy(row, step, step.fallback, StepState.ROLLING_BACK, detail=reason)
            self._gate(row, step.key, step.fallback.gates)
        except _Failed as failure:
            detail = f"{reason}; the rollback failed too: {failure}"
            self._transition(row, StepState.FAILED, detail, step.key)
            self._journal(self.journal.audit, self.actor, "region failed", f"{step.key}: {detail}")
            return StepOutcome(step, StepState.FAILED, what, evidence)
        self._transition(row, StepState.ROLLED_BACK, reason, step.key)
        self._journal(
            self.journal.audit, self.actor, "automatic rollback",
            f"{step.key}: websocket switched off after {reason}",
        )
        return StepOutcome(step, StepState.ROLLED_BACK, what, evidence)

    def _deploy(self, row: int, step: Step, deployment: Deployment, phase: StepState, detail: str = "") -> None:
        """Every operation in order; a machine's commands run while the target keeps that machine awake."""
        key = step.key
        self._transition(row, phase, detail or deployment.state.describe(), key)
        machines = {machine.id: machine for machine in self._machines(key, deployment.operations)}
        for machine_id, batch in groupby(deployment.operations, key=_machine_of):
            operations = list(batch)
            if machine_id:
                machine = machines[machine_id]
                self.progress(key, str(phase), f"machine {machine.describe()}")
                with self._awake(key, machine):
                    for command in operations:
                        assert isinstance(command, Command)
                        self._stop_if_asked()
                        self.progress(key, str(phase), command.label)
                        self._run(key, command)
                continue
            for operation in operations:
                self._stop_if_asked()
                if isinstance(operation, WriteFile):
                    try:
                        self.target.write(key, operation)
                    except TargetError as error:
                        raise _Failed(operation.label, str(error), operation=True) from None
                else:
                    self.progress(key, str(phase), operation.label)
                    self._run(key, operation)
        images = {machine.id: machine.image for machine in self._machines(key, ()) if machine.image}
        self._journal(self.journal.record_deployed, key, row, replace(deployment.state, images=images))

    def _machines(self, key: RegionKey, operations: Sequence[Operation]) -> tuple[Machine, ...]:
        """The region's machines now, which must be the ones the operations were planned for."""
        try:
            machines = self.target.machines(key)
        except TargetError as error:
            raise _Failed("list the machines", str(error), operation=True) from None
        if not machines:
            raise _Failed("list the machines", f"{key} has no machine")
        planned = {machine for operation in operations if (machine := _machine_of(operation))}
        listed = {machine.id for machine in machines}
        if planned and planned != listed:
            raise _Failed("list the machines", f"{key} has the machines {', '.join(sorted(listed))} now, but this step "
                                               f"was planned for {', '.join(sorted(planned))}: plan again")
        return machines

    @contextmanager
    def _awake(self, key: RegionKey, machine: Machine) -> Iterator[None]:
        try:
            with self.target.awake(key, machine):
                yield
        except TargetError as error:
            self._stop_if_asked()
            raise _Failed(f"keep machine {machine.id} awake", str(error), operation=True) from None

    def _run(self, key: RegionKey, command: Command) -> None:
        result = self.target.run(key, command)
        if not result.ok:
            self._stop_if_asked()  # an interrupt also ends the commands running under it: not a failure of theirs
            lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
            raise _Failed(command.label, f"exit {result.exit_code}: " + (" | ".join(lines[-6:]) or "no output"),
                          operation=True)

    def _stop_if_asked(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _sleep(self, seconds: float) -> None:
        """A gate's wait between observations, cut short by an interrupt."""
        if self._stop.wait(seconds):
            raise _Stopped

    def _gate(self, row: int, key: RegionKey, gates: tuple[Gate, ...]) -> None:
        """Every gate on every machine of the region, each machine kept awake while it is observed."""
        self._journal(self.journal.transition, row, StepState.GATING, ", ".join(gate.kind for gate in gates))
        machines = self._machines(key, ())
        named = len(machines) > 1 or isinstance(self.target, ProbedOnMachine)
        for machine in machines:
            where = f"{machine.id}: " if named else ""

            def observed(gate: Gate, observation: Observation, where: str = where) -> None:
                self.progress(key, "gating", f"{where}{gate.kind} {'ok' if observation.ok else 'not yet'}: {observation.evidence}")

            with self._awake(key, machine):
                results: tuple[GateResult, ...] = run_gates(
                    gates, self.target, key, machine=machine.id, on_observation=observed, sleep=self._sleep,
                    signing_secret_env=self.signing_secret_env,
                )
            self._stop_if_asked()  # what was observed while stopping says nothing about the region
            for result in results:
                self._journal(self.journal.record_gate, row, result.gate.kind, result.verdict == Verdict.PASS,
                              result.evidence, machine.id)
            failed = next((result for result in results if result.verdict != Verdict.PASS), None)
            if failed is not None:
                raise _Failed(f"{failed.gate.kind} gate", f"{where}{failed.evidence}")
            if len(results) < len(gates):
                raise _Failed("gates", f"{where}not every gate ran")

    def _transition(self, row: int, state: StepState, detail: str, key: RegionKey) -> None:
        self._journal(self.journal.transition, row, state, detail)
        self.progress(key, str(state), detail)

    def _journal(self, method: Callable[..., T], *arguments: object) -> T:
        with self._journal_lock:
            return method(*arguments)


def _machine_of(operation: Operation) -> str:
    return operation.machine if isinstance(operation, Command) else ""
