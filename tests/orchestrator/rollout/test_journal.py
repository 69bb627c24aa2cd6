"""The rollout journal: real SQLite files, real child processes for locks, crashes and concurrency."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from orchestrator.rollout import journal as journal_module
from orchestrator.rollout.journal import (
    APPLICATION_ID,
    BUSY_TIMEOUT_SECONDS,
    JOURNAL_FILE,
    LOCK_POLL_SECONDS,
    SCHEMA_VERSION,
    Actor,
    AuditRecord,
    DeployedRecord,
    FindingRecord,
    GateRecord,
    Journal,
    JournalError,
    LockHeld,
    LockInfo,
    RunRecord,
    StepRecord,
)
from orchestrator.rollout.model import RegionKey, RegionState, StepState, content_hash

SOURCE_ROOT = Path(journal_module.__file__).resolve().parents[2]
HOST = socket.gethostname()
T0 = datetime(2026, 11, 28, 21, 4, 5, tzinfo=UTC)
IAD = RegionKey("production", "iad")
AMS = RegionKey("production", "ams")
STAGING_IAD = RegionKey("staging", "iad")
ALICE = Actor("alice", "web1.example", 4242)
BOB = Actor("bob", "web2.example", 77)

TABLES = {"audit", "blobs", "deployed", "deployed_files", "deployed_machines", "findings", "gates", "lock", "runs",
          "samples", "steps", "transitions", "watched", "watcher"}


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def journal(state_dir: Path, clock: FakeClock) -> Iterator[Journal]:
    with Journal.open(state_dir, clock=clock) as opened:
        yield opened


def raw(journal_or_path: Journal | Path) -> sqlite3.Connection:
    """A connection of our own to the journal's file, to look at what is stored."""
    path = journal_or_path.path if isinstance(journal_or_path, Journal) else journal_or_path
    return sqlite3.connect(path)


def files_state(mode: str = "anycable", enabled: bool = True, /, **files: str) -> RegionState:
    return RegionState(mode=mode, websocket_enabled=enabled, files=files)  # type: ignore[arg-type]


# -- child processes --------------------------------------------------------

CHILD = r"""
import os
import signal
import sys
from pathlib import Path

from orchestrator.rollout.journal import Actor, Journal
from orchestrator.rollout.model import RegionKey, StepState

signal.signal(signal.SIGHUP, signal.SIG_DFL)  # a stray signal kills us, whatever the test runner ignores
state_dir, mode = Path(sys.argv[1]), sys.argv[2]
journal = Journal.open(state_dir)
actor = Actor.current()


def say(text):
    print(text, flush=True)


def expect(text):
    line = sys.stdin.readline().strip()
    if line != text:
        raise SystemExit(f"expected {text!r}, got {line!r}")


if mode == "hold-lock":
    journal.acquire_lock(actor, "held by a child")
    say(f"locked {actor.pid}")
    while (line := sys.stdin.readline().strip()) == "ping":
        say("pong")
    if line != "release":
        raise SystemExit(f"expected 'release', got {line!r}")
    journal.release_lock(actor)
    say("released")
elif mode == "lock-status-as":
    before = journal.lock_status()  # as root, with the journal's files open
    nobody = int(sys.argv[3])
    os.setgroups([])
    os.setgid(nobody)
    os.setuid(nobody)
    after = journal.lock_status()  # as another user than the holder's
    say(f"{before.stale} {after.stale} {os.geteuid()}")
elif mode == "transition":
    run = journal.start_run("rollout", {"stage": "canary"}, actor)
    row = journal.add_step(run, "production/iad", "canary", RegionKey("production", "iad"), "deploy", "anycable", True)
    journal.transition(row, StepState.DEPLOYING, "writing files")
    say(f"done {row}")
elif mode == "write":
    count = int(sys.argv[3])
    run = journal.start_run("rollout", {"writer": actor.pid}, actor)
    say("ready")
    expect("go")
    for number in range(count):
        row = journal.add_step(run, f"step-{number}", None, RegionKey("production", "iad"), "deploy", "anycable", True)
        journal.transition(row, StepState.GATING, f"{number}")
        journal.record_gate(row, "http", True, f"{actor.pid}:{number}")
        journal.audit(actor, "write", f"{number}")
    say("finished")
sys.stdin.read()  # until the test closes the pipe or kills us
"""


class Child:
    """A Python process using the journal in `state_dir`, driven line by line through its stdin and stdout."""

    def __init__(self, state_dir: Path, mode: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(state_dir), mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=SOURCE_ROOT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the child exited with {self.process.wait()} before it answered"
        return line.strip()

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- opening ----------------------------------------------------------------


def test_open_creates_the_private_directory_the_schema_and_the_pragmas(tmp_path: Path, clock: FakeClock) -> None:
    state_dir = tmp_path / "var" / "lib" / "state"
    with Journal.open(state_dir, clock=clock) as journal:
        assert journal.path == state_dir / JOURNAL_FILE
        assert JOURNAL_FILE == "journal.sqlite3"
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
        connection = journal._conn()
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert BUSY_TIMEOUT_SECONDS == 30.0
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with raw(state_dir / JOURNAL_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID == 0x524A4E4C
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables - {"sqlite_sequence"} == TABLES


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user; without root, pid 1 is one")
def test_a_process_of_another_user_is_alive(state_dir: Path, children: list[Child]) -> None:
    with Journal.open(state_dir) as journal:
        journal.acquire_lock(Actor("root", HOST, os.getpid()), "held by root")
        assert journal.lock_status().stale is False  # type: ignore[union-attr]
        child = Child(state_dir, "lock-status-as", "65534")
        children.append(child)
        assert child.read() == "False False 65534"


def test_an_existing_directory_is_used_as_it_is(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o750)
    os.chmod(state_dir, 0o750)
    with Journal.open(state_dir) as journal:
        assert journal.runs() == []
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o750


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.write_text("not a directory\n")
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{state_dir / JOURNAL_FILE}: {state_dir} is not a directory"


def test_reopening_keeps_everything(state_dir: Path, clock: FakeClock) -> None:
    with Journal.open(state_dir, clock=clock) as journal:
        run_id = journal.start_run("rollout", {"inventory": "showcase.yml"}, ALICE)
        row = journal.add_step(run_id, "production/iad", "canary", IAD, "deploy", "anycable", True)
        journal.transition(row, StepState.DEPLOYING)
        journal.audit(ALICE, "rollout started", "showcase")
    with Journal.open(state_dir, clock=clock) as journal:
        assert journal.run(run_id) == RunRecord(run_id, "rollout", {"inventory": "showcase.yml"}, ALICE, T0, None, None)
        assert [step.state for step in journal.steps(run_id)] == [StepState.DEPLOYING]
        assert [record.line() for record in journal.audit_records()] == [
            "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] rollout started: showcase"
        ]
        assert journal.transitions(row) == [(T0, StepState.PENDING, ""), (T0, StepState.DEPLOYING, "")]


def test_a_foreign_sqlite_database_is_refused_and_left_alone(state_dir: Path) -> None:
    state_dir.mkdir()
    path = state_dir / JOURNAL_FILE
    with raw(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{path} is not a rollout journal (it is another SQLite database)"
    with raw(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_a_database_with_another_application_id_is_refused(state_dir: Path) -> None:
    state_dir.mkdir()
    path = state_dir / JOURNAL_FILE
    with raw(path) as db:
        db.execute("PRAGMA application_id = 7")
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{path} is not a rollout journal (it is another SQLite database)"


@pytest.mark.parametrize(("version", "problem"), [
    (4, "was written by a newer version of this program (journal schema 4; this one reads schema 3)"),
    (0, "has an unknown journal schema version 0"),
])
def test_a_journal_of_another_schema_version_is_refused(state_dir: Path, version: int, problem: str) -> None:
    Journal.open(state_dir).close()
    path = state_dir / JOURNAL_FILE
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {version}")
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{path} {problem}"


def test_a_journal_file_that_cannot_be_opened_is_refused(state_dir: Path) -> None:
    (state_dir / JOURNAL_FILE).mkdir(parents=True)
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{state_dir / JOURNAL_FILE}: unable to open database file"


def test_a_journal_whose_write_ahead_log_cannot_be_opened_is_refused(state_dir: Path) -> None:
    (state_dir / f"{JOURNAL_FILE}-wal").mkdir(parents=True)
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{state_dir / JOURNAL_FILE}: disk I/O error"


def test_a_file_that_is_not_sqlite_is_refused(state_dir: Path) -> None:
    state_dir.mkdir()
    path = state_dir / JOURNAL_FILE
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    with pytest.raises(JournalError) as raised:
        Journal.open(state_dir)
    assert str(raised.value) == f"{path} is not a rollout journal: file is not a database"


def test_an_empty_file_becomes_a_journal(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / JOURNAL_FILE).touch()
    with Journal.open(state_dir) as journal:
        assert journal.runs() == []
    with raw(state_dir / JOURNAL_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("attempt", range(8))
def test_many_openers_of_a_new_journal_at_once_all_succeed(state_dir: Path, attempt: int) -> None:
    """The first openers race to make the schema and switch to WAL; none may fail ("database is locked")."""
    openers = 6
    barrier = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_and_write(number: int) -> None:
        try:
            barrier.wait()
            with Journal.open(state_dir) as journal:
                journal.audit(Actor("opener", HOST, number + 1), "opened", str(number))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=open_and_write, args=(number,)) for number in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Journal.open(state_dir) as journal:
        assert sorted(record.message for record in journal.audit_records()) == [str(n) for n in range(openers)]
    with raw(state_dir / JOURNAL_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_closed_journal_says_so(state_dir: Path) -> None:
    journal = Journal.open(state_dir)
    journal.close()
    journal.close()  # twice is fine
    with pytest.raises(JournalError) as raised:
        journal.runs()
    assert str(raised.value) == f"the journal {state_dir / JOURNAL_FILE} is closed"


def test_the_context_manager_closes(state_dir: Path) -> None:
    with Journal.open(state_dir) as journal:
        assert isinstance(journal, Journal)
    with pytest.raises(JournalError):
        journal.audit_records()


# -- time -------------------------------------------------------------------


@pytest.fixture
def local_time_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This machine's local time 5h30 ahead of UTC, so that UTC has to be asked for, not assumed."""
    monkeypatch.setenv("TZ", "XST-5:30")
    time.tzset()
    assert datetime(2026, 1, 1, tzinfo=UTC).astimezone().utcoffset() == timedelta(hours=5, minutes=30)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
def test_times_are_stored_as_iso_8601_utc_text(journal: Journal, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 28, 23, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2)))
    run_id = journal.start_run("rollout", {}, ALICE)
    started = journal.run(run_id).started_at
    assert started == datetime(2026, 11, 28, 21, 4, 5, 120000, tzinfo=UTC)
    assert started.utcoffset() == timedelta(0)
    with raw(journal) as db:
        assert db.execute("SELECT started_at FROM runs").fetchone()[0] == "2026-11-28T21:04:05.120000+00:00"
    journal.audit(ALICE, "note", "m")
    assert journal.audit_records()[0].line() == "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] note: m"
    journal.acquire_lock(ALICE, "mine")
    with pytest.raises(LockHeld) as raised:
        journal.acquire_lock(BOB, "theirs")
    assert str(raised.value) == (
        "the rollout lock is held by alice@web1.example (pid 4242) since 2026-11-28T21:04:05Z: mine"
    )


def test_a_clock_without_a_time_zone_is_refused(state_dir: Path) -> None:
    naive = datetime(2026, 11, 28, 21, 4, 5)
    with Journal.open(state_dir, clock=lambda: naive) as journal:
        with pytest.raises(JournalError) as raised:
            journal.start_run("rollout", {}, ALICE)
        assert str(raised.value) == (
            f"{journal.path}: the clock gave a time without a time zone (2026-11-28T21:04:05)"
        )
        assert journal.runs() == []


def test_the_default_clock_is_now_in_utc(state_dir: Path) -> None:
    before = datetime.now(UTC)
    with Journal.open(state_dir) as journal:
        run_id = journal.start_run("rollout", {}, ALICE)
        started = journal.run(run_id).started_at
    after = datetime.now(UTC)
    assert before <= started <= after
    assert started.utcoffset() == timedelta(0)


# -- actors -----------------------------------------------------------------


def test_the_current_actor() -> None:
    assert Actor.current() == Actor(getpass.getuser(), HOST, os.getpid())


def test_the_current_actor_without_a_user_name_is_the_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert Actor.current() == Actor(str(os.getuid()), HOST, os.getpid())


def test_an_actor_needs_a_positive_pid() -> None:
    with pytest.raises(ValueError) as raised:
        Actor("alice", "web1", 0)
    assert str(raised.value) == "an actor's pid must be positive, not 0"
    assert Actor("alice", "web1", 1).pid == 1
    assert str(ALICE) == "alice@web1.example pid 4242"


# -- runs -------------------------------------------------------------------


def test_a_run_starts_and_finishes(journal: Journal, clock: FakeClock) -> None:
    run_id = journal.start_run("rollout", {"stages": ["canary", "rest"], "dry_run": False, "note": "é"}, ALICE)
    assert run_id == 1
    started = RunRecord(
        id=1,
        command="rollout",
        options={"stages": ["canary", "rest"], "dry_run": False, "note": "é"},
        actor=ALICE,
        started_at=T0,
        finished_at=None,
        outcome=None,
    )
    assert journal.run(run_id) == started
    assert journal.unfinished_run() == started
    assert journal.unfinished_run("rollout") == started
    finished_at = clock.advance(90)
    journal.finish_run(run_id, "passed")
    finished = RunRecord(1, "rollout", started.options, ALICE, T0, finished_at, "passed")
    assert journal.run(run_id) == finished
    assert journal.unfinished_run() is None
    assert journal.unfinished_run("rollout") is None
    assert journal.runs() == [finished]
    with raw(journal) as db:
        assert db.execute("SELECT options FROM runs").fetchone()[0] == (
            '{"dry_run": false, "note": "é", "stages": ["canary", "rest"]}'
        )


def test_finishing_twice_or_an_unknown_run_is_an_error(journal: Journal, clock: FakeClock) -> None:
    run_id = journal.start_run("rollout", {}, ALICE)
    journal.finish_run(run_id, "passed")
    clock.advance(5)
    with pytest.raises(JournalError) as raised:
        journal.finish_run(run_id, "failed")
    assert str(raised.value) == f"{journal.path}: run 1 has already finished (passed)"
    assert journal.run(run_id).outcome == "passed"
    assert journal.run(run_id).finished_at == T0
    with pytest.raises(JournalError) as raised:
        journal.finish_run(99, "passed")
    assert str(raised.value) == f"{journal.path}: there is no run 99"
    with pytest.raises(JournalError) as raised:
        journal.run(99)
    assert str(raised.value) == f"{journal.path}: there is no run 99"


def test_unfinished_run_is_the_newest_unfinished_one(journal: Journal, clock: FakeClock) -> None:
    first = journal.start_run("rollout", {"n": 1}, ALICE)
    clock.advance(1)
    second = journal.start_run("rollback", {"n": 2}, BOB)
    clock.advance(1)
    third = journal.start_run("rollout", {"n": 3}, ALICE)
    journal.finish_run(third, "passed")
    assert (first, second, third) == (1, 2, 3)
    assert journal.unfinished_run() == journal.run(second)
    assert journal.unfinished_run("rollout") == journal.run(first)
    assert journal.unfinished_run("rollback") == journal.run(second)
    assert journal.unfinished_run("restore") is None
    assert [run.id for run in journal.runs()] == [1, 2, 3]
    assert journal.runs()[1] == RunRecord(2, "rollback", {"n": 2}, BOB, T0 + timedelta(seconds=1), None, None)
    journal.finish_run(second, "rolled_back")
    assert journal.unfinished_run() == journal.run(first)


def test_unfinished_run_orders_by_when_recorded_not_by_the_clock(journal: Journal, clock: FakeClock) -> None:
    older = journal.start_run("rollout", {}, ALICE)
    clock.advance(-3600)  # the clock went back
    newer = journal.start_run("rollout", {}, BOB)
    assert journal.unfinished_run() == journal.run(newer)
    assert newer == older + 1


def test_options_that_are_not_json_are_refused(journal: Journal) -> None:
    with pytest.raises(JournalError) as raised:
        journal.start_run("rollout", {"inventory": Path("showcase.yml")}, ALICE)
    assert str(raised.value) == (
        f"{journal.path}: the options of 'rollout' are not JSON: Object of type PosixPath is not JSON serializable"
    )
    with pytest.raises(JournalError):
        journal.start_run("rollout", {"ratio": float("nan")}, ALICE)
    assert journal.runs() == []


# -- steps and transitions --------------------------------------------------


def test_a_step_starts_pending_with_its_first_transition(journal: Journal) -> None:
    run_id = journal.start_run("rollout", {}, ALICE)
    row = journal.add_step(run_id, "production/iad", "canary", IAD, "deploy", "anycable", True)
    assert row == 1
    pending = StepRecord(
        row=1,
        run_id=run_id,
        step_id="production/iad",
        stage="canary",
        key=IAD,
        action="deploy",
        mode="anycable",
        websocket_enabled=True,
        state=StepState.PENDING,
        started_at=T0,
        updated_at=T0,
        detail="",
    )
    assert journal.steps(run_id) == [pending]
    assert journal.step(row) == pending
    assert journal.transitions(row) == [(T0, StepState.PENDING, "")]
    assert journal.last_step(IAD) == pending


def test_transitions_are_recorded_in_order_and_update_the_step(journal: Journal, clock: FakeClock) -> None:
    run_id = journal.start_run("rollout", {}, ALICE)
    row = journal.add_step(run_id, "production/iad", None, IAD, "rollback", "action_cable", False)
    other = journal.add_step(run_id, "production/ams", None, AMS, "deploy", "integrated", True)
    t1 = clock.advance(10)
    journal.transition(row, StepState.DEPLOYING, "writing 3 files")
    t2 = clock.advance(10)
    journal.transition(row, StepState.GATING)
    t3 = clock.advance(10)
    journal.transition(row, StepState.ROLLING_BACK, "websocket gate failed")
    t4 = clock.advance(10)
    journal.transition(row, StepState.ROLLED_BACK, "switch off, healthy")
    assert journal.transitions(row) == [
        (T0, StepState.PENDING, ""),
        (t1, StepState.DEPLOYING, "writing 3 files"),
        (t2, StepState.GATING, ""),
        (t3, StepState.ROLLING_BACK, "websocket gate failed"),
        (t4, StepState.ROLLED_BACK, "switch off, healthy"),
    ]
    assert journal.transitions(other) == [(T0, StepState.PENDING, "")]
    assert journal.steps(run_id) == [
        StepRecord(row, run_id, "production/iad", None, IAD, "rollback", "action_cable", False,
                   StepState.ROLLED_BACK, T0, t4, "switch off, healthy"),
        StepRecord(other, run_id, "production/ams", None, AMS, "deploy", "integrated", True,
                   StepState.PENDING, T0, T0, ""),
    ]  # fmt: skip
    with raw(journal) as db:
        assert db.execute("SELECT state, websocket_enabled FROM steps WHERE row = ?", (row,)).fetchone() == (
            "rolled_back",
            0,
        )


def test_a_transition_of_an_unknown_step_changes_nothing(journal: Journal) -> None:
    run_id = journal.start_run("rollout", {}, ALICE)
    row = journal.add_step(run_id, "s", None, IAD, "deploy", "anycable", True)
    with pytest.raises(JournalError) as raised:
        journal.transition(row + 1, StepState.PASSED)
    assert str(raised.value) == f"{journal.path}: there is no step row 2"
    with raw(journal) as db:
        assert db.execute("SELECT count(*) FROM transitions").fetchone()[0] == 1
    with pytest.raises(JournalError) as raised:
        journal.step(row + 1)
    assert str(raised.value) == f"{journal.path}: there is no step row 2"


def test_a_step_of_an_unknown_run_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError) as raised:
        journal.add_step(5, "s", None, IAD, "deploy", "anycable", True)
    assert str(raised.value) == f"{journal.path}: there is no run 5"
    with raw(journal) as db:
        assert db.execute("SELECT count(*) FROM steps").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM transitions").fetchone()[0] == 0


def test_steps_belong_to_their_run_and_last_step_spans_runs(journal: Journal, clock: FakeClock) -> None:
    first = journal.start_run("rollout", {}, ALICE)
    a = journal.add_step(first, "a", "canary", IAD, "deploy", "anycable", True)
    b = journal.add_step(first, "b", "canary", STAGING_IAD, "deploy", "anycable", True)
    journal.finish_run(first, "passed")
    clock.advance(60)
    second = journal.start_run("rollback", {}, BOB)
    c = journal.add_step(second, "c", None, IAD, "rollback", "action_cable", False)
    assert [step.row for step in journal.steps(first)] == [a, b]
    assert [step.row for step in journal.steps(second)] == [c]
    assert journal.steps(99) == []
    assert journal.last_step(IAD) == journal.steps(second)[0]
    assert journal.last_step(STAGING_IAD) == journal.steps(first)[1]
    assert journal.last_step(AMS) is None
    assert journal.last_step(RegionKey("production", "staging")) is None
    assert journal.transitions(99) == []


# -- deployed files ---------------------------------------------------------


def test_deployed_files_are_stored_once_by_hash(journal: Journal) -> None:
    shared = "listen: 9999\n"
    journal.record_deployed(IAD, None, files_state(**{"navigator.yml": shared, "cable.yml": "iad\n"}))
    journal.record_deployed(AMS, None, files_state(**{"navigator.yml": shared, "cable.yml": "ams\n"}))
    journal.record_deployed(AMS, None, files_state(**{"navigator.yml": shared, "cable.yml": "ams\n"}))
    with raw(journal) as db:
        assert dict(db.execute("SELECT hash, text FROM blobs")) == {
            content_hash(shared): shared,
            content_hash("iad\n"): "iad\n",
            content_hash("ams\n"): "ams\n",
        }
        assert db.execute("SELECT count(*) FROM deployed_files").fetchone()[0] == 6


def test_deployed_is_the_newest_record_with_its_files(journal: Journal, clock: FakeClock) -> None:
    assert journal.deployed(IAD) is None
    assert journal.previous_deployed(IAD) is None
    run_id = journal.start_run("rollout", {}, ALICE)
    row = journal.add_step(run_id, "s", None, IAD, "deploy", "anycable", True)
    state = files_state(**{"navigator.yml": "a\n", "anycable.yml": "b\n"})
    journal.record_deployed(IAD, row, state)
    record = DeployedRecord(
        key=IAD,
        step_row=row,
        at=T0,
        state=state,
        hashes={"anycable.yml": content_hash("b\n"), "navigator.yml": content_hash("a\n")},
    )
    assert journal.deployed(IAD) == record
    assert list(journal.deployed(IAD).hashes) == ["anycable.yml", "navigator.yml"]  # type: ignore[union-attr]
    assert journal.previous_deployed(IAD) is None
    assert journal.deployed(AMS) is None
    assert journal.deployments(IAD) == [record]


def test_the_same_files_on_another_image_are_another_deployment(journal: Journal, clock: FakeClock) -> None:
    """On Fly the image is part of what runs: going back must find the machines' earlier image."""
    files = {"navigator.yml": "a\n"}
    old = RegionState("integrated", True, files, {"m1": "registry.fly.io/smooth:one@sha256:01"})
    new = RegionState("integrated", True, files, {"m1": "registry.fly.io/smooth:two@sha256:02"})
    journal.record_deployed(IAD, None, old)
    clock.advance(60)
    journal.record_deployed(IAD, None, new)
    clock.advance(60)
    journal.record_deployed(IAD, None, new)  # the same again
    previous = journal.previous_deployed(IAD)
    assert previous is not None and previous.state.images == {"m1": "registry.fly.io/smooth:one@sha256:01"}
    plain = RegionState("integrated", True, files)
    journal.record_deployed(AMS, None, plain)
    clock.advance(60)
    journal.record_deployed(AMS, None, plain)
    assert journal.previous_deployed(AMS) is None  # without images, files alone tell deployments apart, as before


def test_previous_deployed_is_the_last_different_one(journal: Journal, clock: FakeClock) -> None:
    a = files_state("action_cable", False, **{"navigator.yml": "a\n"})
    b = files_state("anycable", True, **{"navigator.yml": "b\n"})
    ta = T0
    journal.record_deployed(IAD, None, a)
    tb = clock.advance(60)
    journal.record_deployed(IAD, None, b)
    assert journal.deployed(IAD) == DeployedRecord(IAD, None, tb, b, {"navigator.yml": content_hash("b\n")})
    assert journal.previous_deployed(IAD) == DeployedRecord(IAD, None, ta, a, {"navigator.yml": content_hash("a\n")})

    tb2 = clock.advance(60)
    journal.record_deployed(IAD, None, b)  # the same files again
    assert journal.deployed(IAD) == DeployedRecord(IAD, None, tb2, b, {"navigator.yml": content_hash("b\n")})
    assert journal.previous_deployed(IAD) == DeployedRecord(IAD, None, ta, a, {"navigator.yml": content_hash("a\n")})

    ta2 = clock.advance(60)
    journal.record_deployed(IAD, None, a)  # back to a: the previous is the newest b
    assert journal.deployed(IAD) == DeployedRecord(IAD, None, ta2, a, {"navigator.yml": content_hash("a\n")})
    assert journal.previous_deployed(IAD) == DeployedRecord(IAD, None, tb2, b, {"navigator.yml": content_hash("b\n")})

    # another region's records change nothing here
    clock.advance(60)
    journal.record_deployed(AMS, None, files_state(**{"navigator.yml": "c\n"}))
    assert journal.deployed(IAD).at == ta2  # type: ignore[union-attr]
    assert journal.previous_deployed(IAD).at == tb2  # type: ignore[union-attr]
    assert journal.previous_deployed(AMS) is None
    assert [record.at for record in journal.deployments(IAD)] == [ta, tb, tb2, ta2]
    assert [(str(record.key), record.state.files["navigator.yml"]) for record in journal.deployments()] == [
        ("production/iad", "a\n"),
        ("production/iad", "b\n"),
        ("production/iad", "b\n"),
        ("production/iad", "a\n"),
        ("production/ams", "c\n"),
    ]


def test_previous_deployed_compares_files_only(journal: Journal, clock: FakeClock) -> None:
    files = {"navigator.yml": "same\n"}
    journal.record_deployed(IAD, None, files_state("anycable", True, **files))
    clock.advance(1)
    journal.record_deployed(IAD, None, files_state("integrated", False, **files))
    assert journal.deployed(IAD).state == files_state("integrated", False, **files)  # type: ignore[union-attr]
    assert journal.previous_deployed(IAD) is None


def test_a_file_added_or_renamed_makes_a_different_deployment(journal: Journal, clock: FakeClock) -> None:
    journal.record_deployed(IAD, None, files_state(**{"a.yml": "x\n"}))
    clock.advance(1)
    journal.record_deployed(IAD, None, files_state(**{"b.yml": "x\n"}))
    assert journal.previous_deployed(IAD).state.files == {"a.yml": "x\n"}  # type: ignore[union-attr]
    clock.advance(1)
    journal.record_deployed(IAD, None, files_state(**{"b.yml": "x\n", "c.yml": "y\n"}))
    assert journal.previous_deployed(IAD).state.files == {"b.yml": "x\n"}  # type: ignore[union-attr]
    clock.advance(1)
    journal.record_deployed(IAD, None, files_state())
    assert journal.deployed(IAD).state.files == {}  # type: ignore[union-attr]
    assert journal.deployed(IAD).hashes == {}  # type: ignore[union-attr]
    assert journal.previous_deployed(IAD).state.files == {"b.yml": "x\n", "c.yml": "y\n"}  # type: ignore[union-attr]


def test_a_deployment_of_an_unknown_step_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError) as raised:
        journal.record_deployed(IAD, 3, files_state(**{"navigator.yml": "a\n"}))
    assert str(raised.value) == f"{journal.path}: there is no step row 3"
    assert journal.deployments() == []
    with raw(journal) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0


# -- gates ------------------------------------------------------------------


def test_a_schema_1_journal_is_migrated_in_place_and_keeps_everything(state_dir: Path, clock: FakeClock) -> None:
    """Schema 2 adds the images of a deployment's machines and the machine of each gate result."""
    state_dir.mkdir()
    path = state_dir / JOURNAL_FILE
    schema_1 = journal_module._SCHEMA.replace(journal_module._DEPLOYED_MACHINES, "").replace(journal_module._WATCH_TABLES, "")
    schema_1 = schema_1.replace(",\n    machine TEXT NOT NULL DEFAULT ''", "")
    assert "deployed_machines" not in schema_1 and "machine TEXT" not in schema_1 and "samples" not in schema_1
    with raw(path) as db:
        db.executescript(schema_1)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO runs (command, options, actor_user, actor_host, actor_pid, started_at)"
                   " VALUES ('rollout', '{}', 'alice', 'web1', 4242, '2026-11-28T21:04:05+00:00')")
        db.execute("INSERT INTO steps (run_id, step_id, stage, environment, region, action, mode, websocket_enabled,"
                   " state, started_at, updated_at, detail) VALUES (1, 'canary:production/iad', 'canary', 'production',"
                   " 'iad', 'deploy', 'integrated', 1, 'passed', '2026-11-28T21:04:05+00:00',"
                   " '2026-11-28T21:04:05+00:00', '')")
        db.execute("INSERT INTO gates (step_row, gate, at, ok, evidence) VALUES (1, 'http', '2026-11-28T21:04:05+00:00', 1, 'ok')")
        db.execute("INSERT INTO deployed (environment, region, step_row, at, mode, websocket_enabled, fingerprint)"
                   " VALUES ('production', 'iad', 1, '2026-11-28T21:04:05+00:00', 'integrated', 1, 'f')")
    with Journal.open(state_dir, clock=clock) as journal:
        assert journal.gate_results(1) == [GateRecord(1, "http", T0, True, "ok", "")]
        deployed = journal.deployed(IAD)
        assert deployed is not None and deployed.state.images == {} and deployed.state.mode == "integrated"
        journal.record_gate(1, "memory", True, "12 MB", "148e4d55f36278")
        assert journal.gate_results(1)[-1].machine == "148e4d55f36278"
        images = {"148e4d55f36278": "registry.fly.io/a:b@sha256:c"}
        journal.record_deployed(IAD, 1, RegionState("integrated", True, {"navigator.yml": "x\n"}, images))
        assert journal.deployed(IAD).state.images == {"148e4d55f36278": "registry.fly.io/a:b@sha256:c"}  # type: ignore[union-attr]
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables - {"sqlite_sequence"} == TABLES


def test_samples_are_kept_per_region_and_the_oldest_thinned_past_the_bound(journal: Journal, clock: FakeClock) -> None:
    for number in range(10):
        journal.record_samples([(IAD, "m1", clock.advance(15), {"n": number})], keep=8, max_gap=60)
        journal.record_samples([(AMS, "m1", clock.now, {"n": number})], keep=100, max_gap=60)
    kept = [record.data["n"] for record in journal.samples(IAD)]
    # The ninth sample thinned the oldest half (0-3) to every other one; the tenth fitted again.
    assert kept == [0, 2, 4, 5, 6, 7, 8, 9]  # the newest whole, the oldest every other one
    assert kept == sorted(kept) and len(journal.samples(AMS)) == 10
    assert [record.data["n"] for record in journal.samples(IAD, since=clock.now)] == [9]
    latest = journal.latest_sample(IAD)
    assert latest is not None and (latest.key, latest.data, latest.at, latest.machine) == (IAD, {"n": 9}, clock.now, "m1")
    assert {(record.key, record.machine) for record in journal.samples(AMS)} == {(AMS, "m1")}
    assert journal.latest_sample(RegionKey("production", "nrt")) is None
    # Thinning leaves 30 s between old samples, yet the watching itself had no gap: one span.
    assert journal.watched_spans(IAD) == [(T0 + timedelta(seconds=15), clock.now)]


def test_a_round_of_samples_is_stored_whole_or_not_at_all(journal: Journal, clock: FakeClock) -> None:
    """A watcher's round is one transaction: many regions and machines, thinned per region as one by one."""
    journal.record_samples([(IAD, f"m{number % 2}", clock.advance(15), {"n": number}) for number in range(10)]
                           + [(AMS, "m1", clock.now, {"n": 0})], keep=8, max_gap=60)
    kept = [record.data["n"] for record in journal.samples(IAD)]
    assert kept == [0, 2, 4, 5, 6, 7, 8, 9] and len(journal.samples(AMS)) == 1
    assert journal.watched_spans(IAD) == [(T0 + timedelta(seconds=15), clock.now)]
    with pytest.raises(JournalError, match="a sample is not JSON"):
        journal.record_samples([(AMS, "m1", clock.advance(15), {"n": 1}), (IAD, "m1", clock.now, {"n": float("nan")})],
                               keep=8, max_gap=60)
    assert [record.data["n"] for record in journal.samples(AMS)] == [0]
    assert [record.data["n"] for record in journal.samples(IAD)] == kept


def test_a_gap_longer_than_allowed_starts_a_new_span_of_watching(journal: Journal, clock: FakeClock) -> None:
    first = clock.advance(15)
    journal.record_samples([(IAD, "m1", first, {})], keep=100, max_gap=60)
    journal.record_samples([(IAD, "m2", first, {})], keep=100, max_gap=60)  # a second machine, same moment
    extended = clock.advance(60)  # exactly the gap allowed: still watched
    journal.record_samples([(IAD, "m1", extended, {})], keep=100, max_gap=60)
    journal.record_samples([(IAD, "m1", first, {})], keep=100, max_gap=60)  # late and out of order: already covered
    resumed = clock.advance(61)
    journal.record_samples([(IAD, "m1", resumed, {})], keep=100, max_gap=60)
    assert journal.watched_spans(IAD) == [(first, extended), (resumed, resumed)]
    assert journal.watched_spans(AMS) == []


def test_findings_and_the_watcher_s_own_lock(journal: Journal, clock: FakeClock) -> None:
    journal.record_finding(IAD, "m1", "memory_trend", "grows 12 MB/h", {"slope_mb_per_hour": 12.0}, "switched off")
    (finding,) = journal.findings(IAD)
    assert (finding.rule, finding.evidence, finding.action) == ("memory_trend", {"slope_mb_per_hour": 12.0}, "switched off")
    assert journal.findings(AMS) == []
    journal.acquire_lock(ALICE, "watch", lock="watch")
    journal.acquire_lock(BOB, "rollout stage canary")  # the two locks are independent
    with pytest.raises(LockHeld, match="the watcher's lock \\(one watcher per journal\\) is held by alice@"):
        journal.acquire_lock(BOB, "watch", lock="watch")
    journal.release_lock(ALICE, lock="watch")
    assert journal.lock_status(lock="watch") is None and journal.lock_status().user == "bob"  # type: ignore[union-attr]
    actions = [record.action for record in journal.audit_records()]
    assert actions == ["watch lock acquired", "lock acquired", "watch lock released"]


def test_gate_results_are_kept_per_step_in_order(journal: Journal, clock: FakeClock) -> None:
    run_id = journal.start_run("rollout", {}, ALICE)
    row = journal.add_step(run_id, "a", None, IAD, "deploy", "anycable", True)
    other = journal.add_step(run_id, "b", None, AMS, "deploy", "anycable", True)
    journal.record_gate(row, "http", True, "GET /up -> 200")
    t1 = clock.advance(5)
    journal.record_gate(row, "websocket", False, "no probe after 10s")
    journal.record_gate(other, "memory", True, "412 MB")
    assert journal.gate_results(row) == [
        GateRecord(row, "http", T0, True, "GET /up -> 200"),
        GateRecord(row, "websocket", t1, False, "no probe after 10s"),
    ]
    assert journal.gate_results(other) == [GateRecord(other, "memory", t1, True, "412 MB")]
    assert journal.gate_results(99) == []
    with pytest.raises(JournalError) as raised:
        journal.record_gate(99, "http", True, "")
    assert str(raised.value) == f"{journal.path}: there is no step row 99"


# -- audit ------------------------------------------------------------------


def test_audit_records_are_appended_in_order(journal: Journal, clock: FakeClock) -> None:
    journal.audit(ALICE, "rollout started", "production canary", "scheduled window")
    t1 = clock.advance(61)
    journal.audit(BOB, "rollback", "production/iad")
    assert journal.audit_records() == [
        AuditRecord(T0, ALICE, "rollout started", "production canary", "scheduled window"),
        AuditRecord(t1, BOB, "rollback", "production/iad", None),
    ]
    assert [record.line() for record in journal.audit_records()] == [
        "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] rollout started: production canary"
        " (reason: scheduled window)",
        "[2026-11-28T21:05:06Z] [bob@web2.example pid 77] rollback: production/iad",
    ]


@pytest.mark.parametrize(("pid", "stale"), [
    ("77\x1b[0m", False),  # not a number: shown as it is, never called stale
    (2**31, False),  # beyond what os.kill takes: not asked (it would raise OverflowError)
    (2**31 - 1, True),  # a number no process has on this host (pid_max is far lower): gone
])
def test_a_hand_edited_lock_row_is_read_whatever_it_holds(journal: Journal, pid: object, stale: bool) -> None:
    with raw(journal) as db:
        db.execute("INSERT INTO lock (id, user, host, pid, acquired_at, message) VALUES (1, 'eve', ?, ?, 'yesterday', 'x')",
                   (socket.gethostname(), pid))
    info = journal.lock_status()
    assert info is not None and (info.pid, info.acquired_at, info.stale) == (pid, "yesterday", stale)
    assert "since an unknown time (the lock row holds 'yesterday', not a time)" in info.describe()


def test_the_newest_audit_records_and_findings_are_read_without_the_rest(journal: Journal, clock: FakeClock) -> None:
    """A live view reads only its tail each time: the newest N, oldest first, and the totals."""
    for number in range(5):
        journal.audit(ALICE, "note", str(number))
        journal.record_finding(IAD if number % 2 else AMS, "m1", "memory_trend", str(number), {}, "logged")
    assert [record.message for record in journal.audit_records(newest=2)] == ["3", "4"]
    assert [record.message for record in journal.audit_records(newest=9)] == ["0", "1", "2", "3", "4"]
    assert journal.audit_records(newest=0) == [] and journal.audit_records(newest=-1) == []
    assert journal.audit_records(newest=5) == journal.audit_records()
    assert journal.audit_count() == 5
    assert [finding.message for finding in journal.findings(AMS, newest=2)] == ["2", "4"]
    assert journal.findings(IAD, newest=1) == [FindingRecord(IAD, "m1", T0, "memory_trend", "3", {}, "logged")]
    assert [finding.message for finding in journal.findings(newest=3)] == ["2", "3", "4"]
    assert [finding.message for finding in journal.findings(AMS)] == ["0", "2", "4"]
    assert (journal.findings_count(AMS), journal.findings_count(IAD), journal.findings_count()) == (3, 2, 5)
    assert journal.findings(IAD, newest=0) == [] and journal.findings_count(RegionKey("staging", "iad")) == 0


@pytest.mark.usefixtures("local_time_not_utc")
def test_audit_lines() -> None:
    at = datetime(2026, 11, 28, 22, 4, 5, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert AuditRecord(at, ALICE, "lock released", "", None).line() == (
        "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] lock released"
    )
    assert AuditRecord(at, ALICE, "note", "a\nb\rc", "why\nnot").line() == (
        "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] note: a\\nb\\rc (reason: why\\nnot)"
    )
    assert AuditRecord(at, ALICE, "note", "m", "").line() == "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] note: m"


# -- the lock ---------------------------------------------------------------


def test_the_lock_is_taken_by_one_actor_at_a_time(journal: Journal, clock: FakeClock) -> None:
    me = Actor("alice", HOST, os.getpid())
    other = Actor("bob", HOST, os.getpid())  # same process, another user: still another actor
    assert journal.lock_status() is None
    journal.acquire_lock(me, "rolling out production")
    held = LockInfo("alice", HOST, os.getpid(), T0, "rolling out production", False)
    assert journal.lock_status() == held
    clock.advance(30)
    with pytest.raises(LockHeld) as raised:
        journal.acquire_lock(other, "rolling back")
    assert raised.value.lock == held
    assert str(raised.value) == (
        f"the rollout lock is held by alice@{HOST} (pid {os.getpid()}) since 2026-11-28T21:04:05Z: rolling out production"
    )
    assert isinstance(raised.value, JournalError)
    with pytest.raises(LockHeld):
        journal.acquire_lock(me, "again")  # not re-entrant
    assert journal.lock_status() == held
    assert [record.line() for record in journal.audit_records()] == [
        f"[2026-11-28T21:04:05Z] [alice@{HOST} pid {os.getpid()}] lock acquired: rolling out production"
    ]


def test_only_the_holder_releases_the_lock(journal: Journal, clock: FakeClock) -> None:
    journal.acquire_lock(ALICE, "deploying")
    held = journal.lock_status()
    for stranger in (
        BOB,
        Actor("alice", "web1.example", 4243),
        Actor("alice", "web9.example", 4242),
        Actor("mallory", "web1.example", 4242),
    ):
        journal.release_lock(stranger)
        assert journal.lock_status() == held
    assert len(journal.audit_records()) == 1
    t1 = clock.advance(120)
    journal.release_lock(ALICE)
    assert journal.lock_status() is None
    journal.release_lock(ALICE)  # not held: nothing happens
    assert journal.audit_records() == [
        AuditRecord(T0, ALICE, "lock acquired", "deploying", None),
        AuditRecord(t1, ALICE, "lock released", "deploying", None),
    ]
    journal.acquire_lock(BOB, "next")
    assert journal.lock_status() == LockInfo("bob", "web2.example", 77, t1, "next", False)


def test_a_lock_of_a_process_that_is_gone_is_stale_and_can_be_released_by_force(
    journal: Journal, clock: FakeClock
) -> None:
    gone = dead_pid()
    crashed = Actor("carol", HOST, gone)
    journal.acquire_lock(crashed, "rolling out staging")
    stale = LockInfo("carol", HOST, gone, T0, "rolling out staging", True)
    assert journal.lock_status() == stale
    with pytest.raises(LockHeld) as raised:
        journal.acquire_lock(ALICE, "rolling out production")
    assert raised.value.lock == stale
    assert str(raised.value) == (
        f"the rollout lock is held by carol@{HOST} (pid {gone}) since 2026-11-28T21:04:05Z: rolling out staging"
        f" (stale: process {gone} is gone)"
    )
    t1 = clock.advance(300)
    assert journal.force_release_lock(ALICE, "carol's run was killed") == stale
    assert journal.lock_status() is None
    assert journal.audit_records()[-1] == AuditRecord(
        t1,
        ALICE,
        "lock released by force",
        f"previous holder carol@{HOST} (pid {gone}) since 2026-11-28T21:04:05Z: rolling out staging"
        f" (stale: process {gone} is gone)",
        "carol's run was killed",
    )
    assert journal.force_release_lock(ALICE, "again") is None
    assert len(journal.audit_records()) == 2
    journal.acquire_lock(ALICE, "rolling out production")
    assert journal.lock_status() == LockInfo("alice", "web1.example", 4242, t1, "rolling out production", False)


def test_a_live_lock_can_be_released_by_force_too(journal: Journal) -> None:
    journal.acquire_lock(BOB, "stuck")
    assert journal.force_release_lock(ALICE, "bob is on holiday") == LockInfo("bob", "web2.example", 77, T0, "stuck", False)
    assert journal.audit_records()[-1].line() == (
        "[2026-11-28T21:04:05Z] [alice@web1.example pid 4242] lock released by force:"
        " previous holder bob@web2.example (pid 77) since 2026-11-28T21:04:05Z: stuck (reason: bob is on holiday)"
    )


@pytest.mark.parametrize(
    ("host", "process"),
    [
        pytest.param(HOST, "this", id="this-process"),
        pytest.param(HOST, "init", id="pid-1"),  # another user's, unless we are root
        pytest.param("elsewhere.example", "gone", id="gone-but-on-another-host"),
    ],
)
def test_a_lock_is_stale_only_when_its_process_on_this_host_is_gone(journal: Journal, host: str, process: str) -> None:
    # Pids are found here, not when the tests are collected: the collecting process may not be the one testing.
    pid = {"this": os.getpid, "init": lambda: 1, "gone": dead_pid}[process]()
    journal.acquire_lock(Actor("dave", host, pid), "holding")
    status = journal.lock_status()
    assert status is not None
    assert status.stale is False
    assert status.host == host


def test_waiting_for_a_stale_lock_gives_up_at_once(state_dir: Path) -> None:
    naps: list[float] = []
    with Journal.open(state_dir, sleep=naps.append) as journal:
        journal.acquire_lock(Actor("carol", HOST, dead_pid()), "crashed")
        with pytest.raises(LockHeld) as raised:
            journal.acquire_lock(ALICE, "mine", wait_seconds=600)
        assert raised.value.lock.stale is True
    assert naps == []


def test_without_a_wait_a_held_lock_fails_at_once(state_dir: Path) -> None:
    naps: list[float] = []
    with Journal.open(state_dir, sleep=naps.append) as journal:
        journal.acquire_lock(BOB, "holding")
        with pytest.raises(LockHeld):
            journal.acquire_lock(ALICE, "mine")
    assert naps == []


def test_waiting_for_a_lock_that_stays_held_ends_in_lock_held(state_dir: Path) -> None:
    naps: list[float] = []
    now = [1000.0]

    def nap(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    holder = Actor("bob", HOST, os.getpid())
    with Journal.open(state_dir, sleep=nap, monotonic=lambda: now[0]) as journal:
        journal.acquire_lock(holder, "holding")
        with pytest.raises(LockHeld) as raised:
            journal.acquire_lock(ALICE, "mine", wait_seconds=0.25)
        assert raised.value.lock.user == "bob"
        assert journal.lock_status().user == "bob"  # type: ignore[union-attr]
    assert naps == [0.1, 0.1, pytest.approx(0.05)]  # polled until the 0.25 s were up, the last nap only what was left
    assert LOCK_POLL_SECONDS == 0.1


def test_a_lock_released_by_another_process_while_we_wait_is_ours(
    state_dir: Path, clock: FakeClock, children: list[Child]
) -> None:
    Journal.open(state_dir).close()
    child = Child(state_dir, "hold-lock")
    children.append(child)
    assert child.read() == f"locked {child.pid}"
    naps: list[float] = []

    def nap(seconds: float) -> None:
        """Instead of sleeping: the holder lets go, and says so before we look again."""
        naps.append(seconds)
        child.send("release")
        assert child.read() == "released"

    me = Actor("alice", HOST, os.getpid())
    with Journal.open(state_dir, clock=clock, sleep=nap) as journal:
        status = journal.lock_status()
        assert (status.user, status.host, status.pid, status.message, status.stale) == (  # type: ignore[union-attr]
            getpass.getuser(),
            HOST,
            child.pid,
            "held by a child",
            False,
        )
        journal.acquire_lock(me, "after the child", wait_seconds=600)
        assert naps == [LOCK_POLL_SECONDS]
        assert journal.lock_status() == LockInfo("alice", HOST, os.getpid(), T0, "after the child", False)
        assert [(record.actor.pid, record.action, record.message) for record in journal.audit_records()] == [
            (child.pid, "lock acquired", "held by a child"),
            (child.pid, "lock released", "held by a child"),
            (os.getpid(), "lock acquired", "after the child"),
        ]
    assert child.finish() == 0


def test_a_lock_held_by_a_live_child_process_is_not_stale(state_dir: Path, children: list[Child]) -> None:
    child = Child(state_dir, "hold-lock")
    children.append(child)
    assert child.read() == f"locked {child.pid}"
    with Journal.open(state_dir) as journal:
        status = journal.lock_status()
        assert status is not None
        assert (status.pid, status.stale) == (child.pid, False)
        child.send("ping")  # looking did not hurt it
        assert child.read() == "pong"
        child.kill()  # SIGKILL: it never releases
        status = journal.lock_status()
        assert status is not None
        assert (status.pid, status.stale) == (child.pid, True)


# -- durability and concurrency ---------------------------------------------


def test_a_transition_survives_kill_9_right_after_it_returns(state_dir: Path, children: list[Child]) -> None:
    child = Child(state_dir, "transition")
    children.append(child)
    answer = child.read()
    assert answer.startswith("done ")
    row = int(answer.removeprefix("done "))
    os.kill(child.pid, signal.SIGKILL)
    assert child.process.wait() == -signal.SIGKILL
    with Journal.open(state_dir) as journal:
        assert [state for _, state, _ in journal.transitions(row)] == [StepState.PENDING, StepState.DEPLOYING]
        assert journal.transitions(row)[-1][2] == "writing files"
        step = journal.step(row)
        assert (step.state, step.detail, step.key, step.stage) == (StepState.DEPLOYING, "writing files", IAD, "canary")
        unfinished = journal.unfinished_run()
        assert unfinished is not None
        assert (unfinished.id, unfinished.options, unfinished.actor.pid) == (step.run_id, {"stage": "canary"}, child.pid)


def test_two_processes_write_at_once_without_database_is_locked(state_dir: Path, children: list[Child]) -> None:
    Journal.open(state_dir).close()
    count = 40
    writers = [Child(state_dir, "write", str(count)) for _ in range(2)]
    children.extend(writers)
    for writer in writers:
        assert writer.read() == "ready"
    for writer in writers:
        writer.send("go")
    for writer in writers:
        assert writer.read() == "finished"
        assert writer.finish() == 0
    with Journal.open(state_dir) as journal:
        for writer in writers:
            messages = [record.message for record in journal.audit_records() if record.actor.pid == writer.pid]
            assert messages == [str(number) for number in range(count)]
            (run,) = [run for run in journal.runs() if run.actor.pid == writer.pid]
            steps = journal.steps(run.id)
            assert [step.step_id for step in steps] == [f"step-{number}" for number in range(count)]
            assert [step.state for step in steps] == [StepState.GATING] * count
            assert [journal.gate_results(step.row)[0].evidence for step in steps] == [
                f"{writer.pid}:{number}" for number in range(count)
            ]


def test_two_threads_write_at_once_without_database_is_locked(state_dir: Path) -> None:
    Journal.open(state_dir).close()
    count = 40
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(user: str) -> None:
        actor = Actor(user, HOST, os.getpid())
        try:
            with Journal.open(state_dir) as journal:
                run_id = journal.start_run("rollout", {"user": user}, actor)
                barrier.wait()
                for number in range(count):
                    row = journal.add_step(run_id, f"{user}-{number}", None, IAD, "deploy", "anycable", True)
                    journal.transition(row, StepState.PASSED)
                    journal.record_deployed(IAD, row, files_state(**{"navigator.yml": f"{user}\n"}))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(user,)) for user in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Journal.open(state_dir) as journal:
        assert len(journal.deployments(IAD)) == 2 * count
        for run in journal.runs():
            assert [step.state for step in journal.steps(run.id)] == [StepState.PASSED] * count
    with raw(state_dir / JOURNAL_FILE) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone()[0] == 2


def test_one_journal_is_shared_by_threads(journal: Journal) -> None:
    """The engine's region workers write through the journal the command opened."""
    run_id = journal.start_run("rollout", {}, ALICE)
    count = 25
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def write(key: RegionKey) -> None:
        try:
            barrier.wait()
            for number in range(count):
                row = journal.add_step(run_id, f"{key}-{number}", None, key, "deploy", "anycable", True)
                journal.transition(row, StepState.GATING, str(number))
                journal.record_gate(row, "http", True, str(number))
                assert journal.step(row).state == StepState.GATING
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(key,)) for key in (IAD, AMS, STAGING_IAD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key in (IAD, AMS, STAGING_IAD):
        steps = [step for step in journal.steps(run_id) if step.key == key]
        assert [step.step_id for step in steps] == [f"{key}-{number}" for number in range(count)]
        assert [journal.transitions(step.row)[-1][2] for step in steps] == [str(number) for number in range(count)]


# -- read only -----------------------------------------------------------------


def test_a_read_only_journal_reads_and_never_writes_creates_or_migrates(tmp_path: Path, clock: FakeClock) -> None:
    state_dir = tmp_path / "state"
    with pytest.raises(JournalError, match="no journal at"):
        Journal.open_read_only(state_dir)
    assert not state_dir.exists()  # nothing created
    with Journal.open(state_dir, clock=clock) as writer:
        writer.audit(ALICE, "rollout started", "canary")
    before = (state_dir / JOURNAL_FILE).read_bytes()
    with Journal.open_read_only(state_dir) as reader:
        assert [record.action for record in reader.audit_records()] == ["rollout started"]
        with pytest.raises(JournalError, match="attempt to write a readonly database"):
            reader.audit(BOB, "note", "a reader cannot write")
    assert (state_dir / JOURNAL_FILE).read_bytes() == before  # (SQLite may leave its -shm beside it)
    with raw(state_dir / JOURNAL_FILE) as db:
        db.execute("PRAGMA user_version = 2")
    with pytest.raises(JournalError, match="is at journal schema 2, and reading it needs 3"):
        Journal.open_read_only(state_dir)
    with raw(state_dir / JOURNAL_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # not migrated by the reader
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / JOURNAL_FILE).write_bytes(b"not a database at all, just some bytes" * 10)
    with pytest.raises(JournalError, match="is not a rollout journal"):
        Journal.open_read_only(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / JOURNAL_FILE).write_bytes(b"")  # SQLite takes an empty file for an empty database
    with pytest.raises(JournalError) as raised:
        Journal.open_read_only(tmp_path / "empty")
    assert str(raised.value) == f"{tmp_path / 'empty' / JOURNAL_FILE} is empty: nothing has been recorded in it yet"
