"""rollout, rollback and lock in this process: the lock they take, wait for, take over and release, and what refuses a
run before it starts (promotion, the app's preflight, a target that is not ready, no confirmation). Nothing is
deployed: the engine is replaced by one that records what it was asked to run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main as orchestrate
from orchestrator.inventory import load_inventory
from orchestrator.rollout.engine import Engine, StepOutcome
from orchestrator.rollout.journal import Actor, Journal, StepRecord
from orchestrator.rollout.model import RegionKey, Step, StepState
from orchestrator.rollout.plan import region_state
from orchestrator.targets.local import LocalTarget
from tests.orchestrator.preflight.apps import TURBO_CABLE_APP, write_files
from tests.orchestrator.rollout.fleet import BROADCAST_KEY, SIGNING_SECRET, Fleet, make_fleet

HOLDER = Actor("bob", "web2.example", 77)  # another machine's process: never stale here
IAD = RegionKey("staging", "iad")
ORD = RegionKey("production", "ord")
NO_STAGE = (("    regions: [ams, dfw, ord, sjc]", "    regions: [ams, dfw, nrt, ord, sjc]"),
            ("  - code: ord\n", "  - code: nrt\n  - code: ord\n"))
PERFORMING_CHANNEL = 'class ChatChannel < ApplicationCable::Channel\n  def subscribed\n    stream_from "chat"\n  end\n\n  def speak(data); end\nend\n'


def chosen(stage: str | None = "staging", **changes: Any) -> dict[str, Any]:
    """A rollout's choices as the journal keeps them for --resume."""
    return {"stage": stage, "regions": [], "mode": None, "websocket": None, "force": False, "reason": None, **changes}


@dataclass
class Executed:
    steps: list[str]
    max_failures: int
    recorded: list[str]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("CABLE_BROADCAST_KEY", BROADCAST_KEY)
    monkeypatch.delenv("ORCHESTRATE_INVENTORY", raising=False)
    return make_fleet(tmp_path, *NO_STAGE)


@pytest.fixture
def executed(monkeypatch: pytest.MonkeyPatch) -> list[Executed]:
    """What the engine was asked to run, each time; it deploys nothing and reports nothing."""
    runs: list[Executed] = []

    def execute(self: Engine, run_id: int, steps: Sequence[Step], parallel: int, max_failures: int,
                recorded: Mapping[str, StepRecord] | None = None) -> list[StepOutcome]:
        runs.append(Executed([step.id for step in steps], max_failures, sorted(recorded or {})))
        return []

    monkeypatch.setattr(Engine, "execute", execute)
    return runs


def run(fleet: Fleet, capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = orchestrate([*arguments, "--inventory", str(fleet.inventory), "--state", str(fleet.state)])
    out, err = capsys.readouterr()
    return code, out, err


def hold(fleet: Fleet, actor: Actor, message: str = "rollout stage canary: production/ord") -> None:
    with Journal.open(fleet.state) as journal:
        journal.acquire_lock(actor, message)


def audit(fleet: Fleet) -> list[tuple[str, str, str | None]]:
    with Journal.open(fleet.state) as journal:
        return [(record.action, record.message, record.reason) for record in journal.audit_records()]


def lock_held(fleet: Fleet) -> str | None:
    with Journal.open(fleet.state) as journal:
        held = journal.lock_status()
        return None if held is None else held.describe()


def recorded_run(fleet: Fleet, command: str, options: dict[str, Any], steps: Sequence[tuple[str, str | None, RegionKey]] = (),
                 state: StepState = StepState.PASSED, finished: bool = True, actor: Actor = HOLDER) -> int:
    """A run in the journal as orchestrate leaves it, its steps (id, stage, region) at `state`."""
    with Journal.open(fleet.state) as journal:
        run_id = journal.start_run(command, options, actor)
        for step_id, stage, key in steps:
            row = journal.add_step(run_id, step_id, stage, key, "deploy", "integrated", True)
            journal.transition(row, state, "every gate passed")
        if finished:
            journal.finish_run(run_id, "passed")
        return run_id


def gone() -> Actor:
    """An actor of this machine whose process has exited: its lock is stale."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait(timeout=60)
    return Actor(Actor.current().user, Actor.current().host, process.pid)


# --- the lock --------------------------------------------------------------------------------------------------


def test_resume_takes_over_the_lock_of_the_rollout_that_died_and_only_resume(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    dead = gone()
    run_id = recorded_run(fleet, "rollout", chosen(), finished=False, actor=dead)
    hold(fleet, dead, "the rollout that was killed")
    code, _, err = run(fleet, capsys, "rollout", "--stage", "staging", "--yes")
    assert code == 3 and f"(stale: process {dead.pid} is gone)" in err and executed == []
    rollback = run(fleet, capsys, "rollback", "--region", "staging/iad", "--yes")
    assert rollback[0] == 3 and f"(stale: process {dead.pid} is gone)" in rollback[2] and executed == []

    code, _, err = run(fleet, capsys, "rollout", "--resume")
    assert code == 0, err
    assert "preflight" not in err  # judged when the run started
    assert [run.steps for run in executed] == [["staging:staging/iad"]]
    assert lock_held(fleet) is None
    actions = audit(fleet)
    forced = [entry for entry in actions if entry[0] == "lock released by force"]
    assert len(forced) == 1 and forced[0][2] == "resuming a rollout whose process is gone"
    assert f"pid {dead.pid}" in forced[0][1]
    taken = actions.index(("lock acquired", "rollout stage staging: staging/iad", None))
    assert actions.index(forced[0]) < taken < actions.index(("lock released", "rollout stage staging: staging/iad", None))
    assert ("rollout resumed", f"run {run_id}: stage staging: staging/iad", None) in actions


def test_resume_never_takes_a_lock_whose_holder_may_still_run(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    recorded_run(fleet, "rollout", chosen(), finished=False)
    hold(fleet, HOLDER)
    code, _, err = run(fleet, capsys, "rollout", "--resume")
    assert code == 3 and "the rollout lock is held by bob@web2.example (pid 77)" in err
    assert executed == [] and lock_held(fleet) is not None and "stale" not in str(lock_held(fleet))
    assert [action for action, _, _ in audit(fleet)] == ["lock acquired"]


def released_on_first_wait(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Journals opened from now on wait for the lock by releasing HOLDER's at their first wait: no clock involved."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        with Journal.open(fleet.state) as other:
            other.release_lock(HOLDER)

    real = Journal.open.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Journal, "open", classmethod(lambda cls, state_dir, **kw: real(cls, state_dir, sleep=sleep)))
    return waits


@pytest.mark.parametrize("command", [("rollout", "--stage", "staging"), ("rollback", "--region", "staging/iad")])
def test_lock_wait_waits_for_the_lock_and_without_it_the_command_fails_at_once(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed], monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    hold(fleet, HOLDER)
    code, _, err = run(fleet, capsys, *command, "--yes")
    assert code == 3 and "held by bob@web2.example (pid 77)" in err and executed == []
    waits = released_on_first_wait(fleet, monkeypatch)
    code, _, err = run(fleet, capsys, *command, "--yes", "--lock-wait", "30")
    assert code == 0, err
    assert len(waits) == 1 and 0 < waits[0] <= 30 and len(executed) == 1
    assert lock_held(fleet) is None
    message = "rollout stage staging: staging/iad" if command[0] == "rollout" else "rollback with the WebSocket switch off"
    assert [(action, text) for action, text, _ in audit(fleet) if action.startswith("lock")] == [
        ("lock acquired", "rollout stage canary: production/ord"), ("lock released", "rollout stage canary: production/ord"),
        ("lock acquired", message), ("lock released", message)]


def test_lock_status_and_release(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(fleet, capsys, "lock", "status")
    assert (code, out.startswith("no lock")) == (0, True)
    assert not (fleet.state / "journal.sqlite3").exists()  # status creates nothing
    hold(fleet, HOLDER)
    code, out, _ = run(fleet, capsys, "lock", "status")
    assert code == 0 and out.startswith("held by bob@web2.example (pid 77) since ") and out.endswith(
        ": rollout stage canary: production/ord\n")
    code, _, err = run(fleet, capsys, "lock", "release")
    assert (code, err) == (2, "lock release needs --force: it removes a lock another rollout may still hold\n")
    assert lock_held(fleet) is not None
    code, out, _ = run(fleet, capsys, "lock", "release", "--force")
    assert code == 0 and out.startswith("released: held by bob@web2.example (pid 77) since ")
    assert lock_held(fleet) is None
    assert run(fleet, capsys, "lock", "status")[:2] == (0, "no lock\n")
    code, out, _ = run(fleet, capsys, "lock", "release", "--force", "--reason", "its host is gone")
    assert (code, out) == (0, "no lock to release\n")
    hold(fleet, HOLDER)
    assert run(fleet, capsys, "lock", "release", "--force", "--reason", "its host is gone")[0] == 0
    assert [reason for action, _, reason in audit(fleet) if action == "lock released by force"] == [
        "released by hand", "its host is gone"]


# --- what refuses a run before it starts -----------------------------------------------------------------------


def test_a_rollout_says_what_it_needs(fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]) -> None:
    assert run(fleet, capsys, "rollout", "--stage", "canary", "--yes", "--force") == (
        2, "", "--force needs --reason TEXT: the reason is recorded in the audit\n")
    needs = "rollout needs --stage NAME or --region R (or --resume alone, to finish an interrupted one)\n"
    assert run(fleet, capsys, "rollout", "--yes") == (2, "", needs)
    assert run(fleet, capsys, "rollout", "--resume", "--stage", "staging") == (2, "", needs)
    recorded_run(fleet, "rollback", {"regions": ["staging/iad"], "to_previous": False}, finished=False)
    assert run(fleet, capsys, "rollout", "--resume") == (
        3, "", "rollout not started: there is no unfinished rollout in the journal to resume\n")
    code, out, err = run(fleet, capsys, "rollout", "--stage", "staging")
    assert (code, err.splitlines()) == (3, [
        f"preflight: not run before stage staging: no --app PATH, and {fleet.inventory} has no app.checkout",
        "rollout not started: not confirmed (add --yes to run without the question)"])
    assert "preflight" not in out
    assert run(fleet, capsys, "rollback", "--region", "staging/iad") == (
        3, "", "rollback not started: not confirmed (add --yes to run without the question)\n")
    assert executed == []


def test_a_target_that_is_not_ready_refuses_before_the_lock_listing_everything_missing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalTarget, "readiness", lambda self, steps: ("redis-server is not installed", "X is not set"))
    listed = "the local target is not ready, nothing was touched:\n  - redis-server is not installed\n  - X is not set\n"
    for command in (("rollout", "--stage", "staging"), ("rollback", "--region", "staging/iad")):
        code, _, err = run(fleet, capsys, *command, "--yes")
        assert code == 3 and f"{command[0]} not started: {listed}" in err
    code, out, err = run(fleet, capsys, "rollout", "--stage", "staging", "--dry-run")
    assert code == 3 and f"a real run would not start: {listed}" in err and "staging/iad" in out
    assert executed == [] and lock_held(fleet) is None


def test_promotion_is_judged_by_dry_runs_once_per_stage_and_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(fleet, capsys, "rollout", "--region", "ams", "--region", "dfw", "--dry-run")
    assert code == 3
    assert err.count("stage canary has not passed: production/ord was never rolled out") == 1
    code, _, err = run(fleet, capsys, "rollout", "--region", "nrt", "--region", "ord", "--dry-run")
    assert (code, err.splitlines()[-1]) == (3, "a real run would not start: production/nrt is in no stage of fleet.yml; "
                                               "stage staging has not passed: staging/iad was never rolled out "
                                               "(use --force --reason TEXT to go ahead anyway)")
    for override in (("--mode", "integrated"), ("--websocket", "on")):
        code, _, err = run(fleet, capsys, "rollout", "--region", "ord", *override, "--dry-run")
        assert (code, "would not start" in err) == (0, False)  # outside the stages: no promotion
    assert not (fleet.state / "journal.sqlite3").exists()  # a dry run before any rollout creates no journal


def test_promotion_follows_what_the_journal_says_passed_and_how_long_ago(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    recorded_run(fleet, "rollout", chosen(), [("staging:staging/iad", "staging", IAD)])
    code, out, err = run(fleet, capsys, "rollout", "--stage", "canary", "--dry-run")
    assert (code, "would not start" in err) == (0, False), err
    recorded_run(fleet, "rollout", chosen("canary"), [("canary:production/ord", "canary", ORD)])
    code, _, err = run(fleet, capsys, "rollout", "--stage", "wave", "--dry-run")
    assert code == 3 and "a real run would not start: stage canary bakes until " in err


def test_promotion_refuses_a_real_run_unless_forced_and_forcing_is_audited_with_its_reason(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    problem = "stage staging has not passed: staging/iad was never rolled out"
    assert run(fleet, capsys, "rollout", "--stage", "canary", "--yes") == (
        3, "", f"rollout not started: {problem} (use --force --reason TEXT to go ahead anyway)\n")
    assert executed == []
    code, _, err = run(fleet, capsys, "rollout", "--stage", "canary", "--yes", "--force", "--reason", "incident 42")
    assert code == 0, err
    max_failures = load_inventory(fleet.inventory).rollout.max_failures
    assert executed == [Executed(["canary:production/ord"], max_failures, [])]
    with Journal.open(fleet.state) as journal:
        (record,) = journal.runs()
        forced = [(entry.actor, entry.action, entry.message, entry.reason) for entry in journal.audit_records()]
    assert (record.command, record.options, record.finished_at is not None) == (
        "rollout", chosen("canary", force=True, reason="incident 42"), True)
    me = Actor.current()
    assert forced == [
        (me, "lock acquired", "rollout stage canary: production/ord", None),
        (me, "rollout started", f"run {record.id}: stage canary: production/ord", "incident 42"),
        (me, "promotion forced", problem, "incident 42"),
        (me, "rollout finished", f"run {record.id}: ", None),
        (me, "lock released", "rollout stage canary: production/ord", None),
    ]


def test_the_app_s_preflight_refuses_the_first_stage_unless_forced_and_forcing_is_audited(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed], tmp_path: Path
) -> None:
    app = write_files(tmp_path / "app", {**TURBO_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})
    code, _, err = run(fleet, capsys, "rollout", "--stage", "staging", "--yes", "--app", str(app))
    assert code == 3 and f"rollout not started: preflight of {app} for the integrated mode found 1 blocking finding" in err
    assert executed == []
    code, out, err = run(fleet, capsys, "rollout", "--stage", "staging", "--yes", "--app", str(app), "--force", "--reason", "unused")
    assert code == 0, err
    blocked = [(message, reason) for action, message, reason in audit(fleet) if action == "preflight forced"]
    assert len(blocked) == 1 and "app/channels/chat_channel.rb:6 channel-action" in blocked[0][0] and blocked[0][1] == "unused"
    assert [action for action, _, _ in audit(fleet) if action == "promotion forced"] == []


def test_the_checkout_the_inventory_names_is_found_beside_it_and_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], executed: list[Executed], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("CABLE_BROADCAST_KEY", BROADCAST_KEY)
    fleet = make_fleet(tmp_path, ("  primary_region: iad\n", "  primary_region: iad\n  checkout: rails\n"))
    app = write_files(tmp_path / "rails", {**TURBO_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})
    monkeypatch.chdir(tmp_path.parent)  # not where the inventory is
    code, _, err = run(fleet, capsys, "rollout", "--stage", "staging", "--yes")
    assert code == 3 and f"rollout not started: preflight of {app} for the integrated mode found 1 blocking finding" in err
    assert executed == []


class Terminal:
    """Standard input on a terminal whose operator answers `answer`; the questions asked are kept."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def isatty(self) -> bool:
        return True

    def input(self, question: str) -> str:
        self.asked.append(question)
        return self.answer


@pytest.mark.parametrize("answer", ["n", "yes"])
def test_on_a_terminal_the_operator_is_asked_what_will_run(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed], monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    terminal = Terminal(answer)
    monkeypatch.setattr(sys, "stdin", terminal)
    monkeypatch.setattr("builtins.input", terminal.input)
    rollout = run(fleet, capsys, "rollout", "--stage", "staging")
    rollback = run(fleet, capsys, "rollback", "--region", "staging/iad", "--region", "production/ord")
    assert terminal.asked == ["roll out stage staging: staging/iad (1 region)? [y/N] ",
                              "roll back 2 regions with the WebSocket switch off? [y/N] "]
    assert (rollout[0], rollback[0], len(executed)) == ((3, 3, 0) if answer == "n" else (0, 0, 2))


# --- resuming ---------------------------------------------------------------------------------------------------


def test_resume_runs_the_interrupted_rollout_s_own_choices_with_what_it_recorded(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    """The canary run's promotion and preflight were judged when it started: resuming it is not judged again, whatever
    the journal says of staging now."""
    recorded_run(fleet, "rollout", chosen("canary"), [("canary:production/ord", "canary", ORD)], finished=False)
    code, _, err = run(fleet, capsys, "rollout", "--resume")
    assert (code, err) == (0, "")
    assert executed == [Executed(["canary:production/ord"], 1, ["canary:production/ord"])]
    # A new rollout while another is unfinished runs its own choices, not the unfinished ones.
    recorded_run(fleet, "rollout", chosen("canary"), finished=False)
    code, _, err = run(fleet, capsys, "rollout", "--region", "ord", "--mode", "integrated", "--yes")
    assert code == 0, err
    assert executed[-1] == Executed(["deploy:production/ord"], 1, [])


# --- rollback: which regions --------------------------------------------------------------------------------------


def deployed(fleet: Fleet, *keys: RegionKey, mode: str = "integrated") -> None:
    inventory = load_inventory(fleet.inventory)
    with Journal.open(fleet.state) as journal:
        for key in keys:
            journal.record_deployed(key, None, region_state(inventory, key, mode))  # type: ignore[arg-type]


def test_rollback_all_takes_the_deployed_regions_and_without_regions_the_last_rollout_s(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    assert run(fleet, capsys, "rollback", "--all", "--yes") == (
        3, "", "rollback not started: no region to roll back: nothing is recorded as deployed\n")
    deployed(fleet, IAD, ORD)
    code, _, err = run(fleet, capsys, "rollback", "--all", "--yes", "--reason", "the hub leaks")
    assert code == 0, err
    assert executed == [Executed(["rollback:production/ord", "rollback:staging/iad"], 2, [])]
    with Journal.open(fleet.state) as journal:
        record = journal.runs()[-1]
    assert (record.command, record.options) == ("rollback", {"regions": ["production/ord", "staging/iad"], "to_previous": False})
    assert ("rollback started", f"run {record.id}: production/ord staging/iad with the WebSocket switch off", "the hub leaks") in audit(fleet)
    assert ("rollback finished", f"run {record.id}: ", None) in audit(fleet)

    recorded_run(fleet, "rollout", chosen(None, regions=["iad", "ord"]), [("deploy:staging/iad", None, IAD), ("deploy:production/ord", None, ORD)])
    code, out, err = run(fleet, capsys, "rollback", "--yes")
    assert (code, out.splitlines()[0]) == (0, "the most recent rollout step changed: staging/iad production/ord"), err
    assert executed[-1] == Executed(["rollback:staging/iad", "rollback:production/ord"], 2, [])


def test_rollback_to_previous_needs_an_earlier_deployment_and_says_what_it_does(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], executed: list[Executed]
) -> None:
    deployed(fleet, IAD)
    assert run(fleet, capsys, "rollback", "--region", "staging/iad", "--to-previous", "--yes") == (
        2, "", "staging/iad: no earlier deployment in the journal to go back to\n")
    deployed(fleet, IAD, mode="action_cable")
    code, _, err = run(fleet, capsys, "rollback", "--region", "staging/iad", "--to-previous", "--yes")
    assert code == 0, err
    assert executed == [Executed(["restore:staging/iad"], 1, [])]
    assert ("lock acquired", "rollback to the previous deployment", None) in audit(fleet)


def test_the_quick_rollback_switches_off_the_mode_the_region_runs_not_the_inventory_s(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Step] = []

    def execute(self: Engine, run_id: int, steps: Sequence[Step], parallel: int, max_failures: int,
                recorded: Mapping[str, StepRecord] | None = None) -> list[StepOutcome]:
        asked.extend(steps)
        return []

    monkeypatch.setattr(Engine, "execute", execute)
    deployed(fleet, ORD, mode="action_cable")  # the inventory says integrated; the region runs action_cable
    code, _, err = run(fleet, capsys, "rollback", "--region", "ord", "--yes")
    assert code == 0, err
    (step,) = asked
    inventory = load_inventory(fleet.inventory)
    assert (step.id, step.current) == ("rollback:production/ord", region_state(inventory, ORD, "action_cable"))
    assert (step.desired.mode, step.desired.websocket_enabled) == ("action_cable", False)


# --- promotion after a watched bake ---------------------------------------------------------------------------

WATCHED = ("  parallel: 3\n", "  parallel: 3\n  watch: {interval_seconds: 15, max_gap_seconds: 300}\n")


def canary_passed(fleet: Fleet, started: datetime, finished: datetime, watched_for: timedelta) -> None:
    """The canary's step as a rollout records it (started, then passed), and a watcher's samples of it every minute
    from its pass for `watched_for`."""
    now = [started]
    with Journal.open(fleet.state, clock=lambda: now[0]) as journal:
        run_id = journal.start_run("rollout", chosen("canary"), HOLDER)
        row = journal.add_step(run_id, "canary:production/ord", "canary", ORD, "deploy", "integrated", True)
        now[0] = finished
        journal.transition(row, StepState.PASSED, "every gate passed")
        journal.finish_run(run_id, "passed")
        at = finished
        while at <= finished + watched_for:
            journal.record_samples([(ORD, "m1", at, {"state": "started"})], 2000, 300)
            at += timedelta(minutes=1)


@pytest.mark.parametrize("watched_for, refused", [(timedelta(hours=1), False), (timedelta(minutes=30), True)])
def test_promotion_reads_the_watching_and_the_start_of_a_stage_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], watched_for: timedelta, refused: bool
) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("CABLE_BROADCAST_KEY", BROADCAST_KEY)
    monkeypatch.delenv("ORCHESTRATE_INVENTORY", raising=False)
    fleet = make_fleet(tmp_path, *NO_STAGE, WATCHED)
    started = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    canary_passed(fleet, started, started + timedelta(minutes=7), watched_for)  # bakes 1h from its pass
    code, out, err = run(fleet, capsys, "rollout", "--stage", "wave", "--dry-run")
    if refused:
        assert code == 3 and "a real run would not start: stage canary's bake was unwatched: production/ord had no sample " in err
    else:
        assert (code, "would not start" in err) == (0, False), err
    (canary,) = [line for line in out.splitlines() if line.split()[:1] == ["canary"]]
    assert f"{started:%Y-%m-%d %H:%M} UTC" in canary and "done" in canary  # the schedule starts it when it started
