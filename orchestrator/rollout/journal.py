"""The durable record of a staged rollout: runs, steps, their transitions, what each region runs, gates, audit, lock.

One SQLite database, `journal.sqlite3`, in a state directory. Every public
method is one short transaction, committed before it returns; with WAL and
`synchronous=FULL` a committed change survives `kill -9` of the process (and a
power cut) at any moment. Two processes may share the file: writers take the
write lock up front (`BEGIN IMMEDIATE`) and wait up to `BUSY_TIMEOUT_SECONDS`
for each other instead of failing with "database is locked".

The journal stores only what it is given: never environment variable values.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from orchestrator.rollout.model import RegionKey, RegionState, StepState, content_hash
from orchestrator.terminal import printable

JOURNAL_FILE = "journal.sqlite3"
# "RJNL": marks the database as a rollout journal (PRAGMA application_id).
APPLICATION_ID = 0x524A4E4C
SCHEMA_VERSION = 3
BUSY_TIMEOUT_SECONDS = 30.0
# How often acquire_lock looks again while it waits for the lock.
LOCK_POLL_SECONDS = 0.1

_DEPLOYED_MACHINES = """
CREATE TABLE deployed_machines (
    deployed_id INTEGER NOT NULL REFERENCES deployed(id),
    machine TEXT NOT NULL,
    image TEXT NOT NULL,
    PRIMARY KEY (deployed_id, machine)
) WITHOUT ROWID;
"""

# 3: what the watcher samples during a bake, what it found, and its own lock (one watcher per journal).
_WATCH_TABLES = """
CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    region TEXT NOT NULL,
    machine TEXT NOT NULL,
    at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX samples_by_region ON samples(environment, region, id);
CREATE TABLE watched (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    region TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_at TEXT NOT NULL
);
CREATE INDEX watched_by_region ON watched(environment, region, id);
CREATE TABLE findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    region TEXT NOT NULL,
    machine TEXT NOT NULL,
    at TEXT NOT NULL,
    rule TEXT NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX findings_by_region ON findings(environment, region, id);
CREATE TABLE watcher (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL CHECK (pid > 0),
    acquired_at TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    options TEXT NOT NULL,
    actor_user TEXT NOT NULL,
    actor_host TEXT NOT NULL,
    actor_pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT
);
CREATE TABLE steps (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step_id TEXT NOT NULL,
    stage TEXT,
    environment TEXT NOT NULL,
    region TEXT NOT NULL,
    action TEXT NOT NULL,
    mode TEXT NOT NULL,
    websocket_enabled INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX steps_by_run ON steps(run_id, row);
CREATE INDEX steps_by_region ON steps(environment, region, row);
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_row INTEGER NOT NULL REFERENCES steps(row),
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX transitions_by_step ON transitions(step_row, id);
CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    text TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE deployed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    region TEXT NOT NULL,
    step_row INTEGER REFERENCES steps(row),
    at TEXT NOT NULL,
    mode TEXT NOT NULL,
    websocket_enabled INTEGER NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE INDEX deployed_by_region ON deployed(environment, region, id);
CREATE TABLE deployed_files (
    deployed_id INTEGER NOT NULL REFERENCES deployed(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES blobs(hash),
    PRIMARY KEY (deployed_id, name)
) WITHOUT ROWID;
""" + _DEPLOYED_MACHINES + """
CREATE TABLE gates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_row INTEGER NOT NULL REFERENCES steps(row),
    gate TEXT NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    machine TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gates_by_step ON gates(step_row, id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_user TEXT NOT NULL,
    actor_host TEXT NOT NULL,
    actor_pid INTEGER NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL CHECK (pid > 0),
    acquired_at TEXT NOT NULL,
    message TEXT NOT NULL
);
""" + _WATCH_TABLES

# What takes a journal of schema N to N + 1; run in one transaction when such a journal is opened.
_MIGRATIONS = {
    # 2: the image each machine runs, with every deployment; the machine of every gate result.
    1: _DEPLOYED_MACHINES + "ALTER TABLE gates ADD COLUMN machine TEXT NOT NULL DEFAULT ''",
    2: _WATCH_TABLES,
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """`moment` in UTC to the second, as people read it: 2026-11-28T21:04:05Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _loaded(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Actor:
    """Who does something: a user on a host, as one process."""

    user: str
    host: str
    pid: int

    def __post_init__(self) -> None:
        if self.pid <= 0:
            raise ValueError(f"an actor's pid must be positive, not {self.pid}")

    @classmethod
    def current(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return cls(user=user, host=socket.gethostname(), pid=os.getpid())

    def __str__(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}"


@dataclass(frozen=True)
class LockInfo:
    """Who holds the rollout lock. `stale`: the holder ran on this machine and its process is gone.

    A row edited by hand is read as it is: a pid that is not a process number is
    its text (never stale), a time that is not one the text stored.
    """

    user: str
    host: str
    pid: int | str
    acquired_at: datetime | str
    message: str
    stale: bool

    def describe(self) -> str:
        """One line, safe on a terminal whatever the row holds."""
        if isinstance(self.acquired_at, datetime):
            since = iso_z(self.acquired_at)
        else:
            since = f"an unknown time (the lock row holds {self.acquired_at!r}, not a time)"
        text = f"{self.user}@{self.host} (pid {self.pid}) since {since}: {self.message}"
        if self.stale:
            text += f" (stale: process {self.pid} is gone)"
        return printable(text)


class JournalError(Exception):
    """The journal cannot be used as asked; the message names the file."""


LockName = Literal["rollout", "watch"]
_LOCK_TABLES: dict[str, str] = {"rollout": "lock", "watch": "watcher"}
_LOCK_ACTIONS: dict[str, str] = {"rollout": "lock", "watch": "watch lock"}


class LockHeld(JournalError):
    """Someone else holds the lock."""

    def __init__(self, lock: LockInfo, name: LockName = "rollout") -> None:
        what = "rollout lock" if name == "rollout" else "watcher's lock (one watcher per journal)"
        super().__init__(f"the {what} is held by {lock.describe()}")
        self.lock = lock


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    options: dict[str, Any]
    actor: Actor
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None


@dataclass(frozen=True)
class StepRecord:
    row: int
    run_id: int
    step_id: str
    stage: str | None
    key: RegionKey
    action: str
    mode: str
    websocket_enabled: bool
    state: StepState
    started_at: datetime
    updated_at: datetime
    detail: str


@dataclass(frozen=True)
class DeployedRecord:
    key: RegionKey
    step_row: int | None
    at: datetime
    state: RegionState
    hashes: dict[str, str]


@dataclass(frozen=True)
class SampleRecord:
    key: RegionKey
    machine: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class FindingRecord:
    key: RegionKey
    machine: str
    at: datetime
    rule: str
    message: str
    evidence: dict[str, Any]
    action: str


@dataclass(frozen=True)
class GateRecord:
    step_row: int
    gate: str
    at: datetime
    ok: bool
    evidence: str
    machine: str = ""


@dataclass(frozen=True)
class AuditRecord:
    at: datetime
    actor: Actor
    action: str
    message: str
    reason: str | None

    def line(self) -> str:
        """[2026-11-28T21:04:05Z] [user@host pid 123] action: message (reason: ...)"""
        text = f"[{iso_z(self.at)}] [{printable(str(self.actor))}] {printable(self.action)}"
        if self.message:
            text += f": {printable(self.message)}"
        if self.reason:
            text += f" (reason: {printable(self.reason)})"
        return text


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


# A row as sqlite3 gives it: a tuple of the columns selected.
Row = tuple[Any, ...]

_RUN_COLUMNS = "id, command, options, actor_user, actor_host, actor_pid, started_at, finished_at, outcome"
_STEP_COLUMNS = (
    "row, run_id, step_id, stage, environment, region, action, mode, websocket_enabled, state, started_at, updated_at, detail"
)
_DEPLOYED_COLUMNS = "id, environment, region, step_row, at, mode, websocket_enabled"


def _run_record(row: Row) -> RunRecord:
    run_id, command, options, user, host, pid, started_at, finished_at, outcome = row
    return RunRecord(
        id=run_id,
        command=command,
        options=json.loads(options),
        actor=Actor(user, host, pid),
        started_at=_loaded(started_at),
        finished_at=None if finished_at is None else _loaded(finished_at),
        outcome=outcome,
    )


def _step_record(row: Row) -> StepRecord:
    step_row, run_id, step_id, stage, environment, region, action, mode, enabled, state, started, updated, detail = row
    return StepRecord(
        row=step_row,
        run_id=run_id,
        step_id=step_id,
        stage=stage,
        key=RegionKey(environment, region),
        action=action,
        mode=mode,
        websocket_enabled=bool(enabled),
        state=StepState(state),
        started_at=_loaded(started),
        updated_at=_loaded(updated),
        detail=detail,
    )


class Journal:
    """The rollout journal in `state_dir/journal.sqlite3`; see the module's docstring."""

    path: Path

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        read_only: bool = False,
    ) -> None:
        self.path = Path(state_dir) / JOURNAL_FILE
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._connection: sqlite3.Connection | None = None
        self._guard = threading.RLock()
        if read_only:
            self._connection = self._open_read_only()
            return
        _make_state_dir(Path(state_dir))
        if not self.path.exists():
            # The WAL and shared-memory files SQLite makes beside it take this file's mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        try:
            # Shared by threads (the engine's workers): self._guard lets one transaction run at a time.
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise JournalError(f"{self.path}: {error}") from error
        try:
            # Openers take turns: switching a new journal to WAL fails at once, without waiting,
            # while another connection reads it.
            with _exclusive(Path(state_dir)):
                self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> Journal:
        return cls(state_dir, clock=clock, sleep=sleep, monotonic=monotonic)

    @classmethod
    def open_read_only(cls, state_dir: Path) -> Journal:
        """The journal as it is, for reading only: nothing is created, migrated or written (a write raises)."""
        return cls(state_dir, read_only=True)

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise JournalError(f"no journal at {self.path}")
        try:
            connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise JournalError(f"{self.path}: {error}") from error
        try:
            with _transaction_on(connection, "BEGIN"):
                version = self._identity(connection)
            if version is None:
                raise JournalError(f"{self.path} is empty: nothing has been recorded in it yet")
            if version != SCHEMA_VERSION:
                raise JournalError(f"{self.path} is at journal schema {version}, and reading it needs "
                                   f"{SCHEMA_VERSION}: any command that writes to it (status, rollout) brings it up to date")
        except sqlite3.DatabaseError as error:
            connection.close()
            raise JournalError(f"{self.path} is not a rollout journal: {error}") from error
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        with self._guard:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------

    def _prepare(self, connection: sqlite3.Connection) -> None:
        try:
            with _transaction_on(connection, "BEGIN"):  # the three values of _identity from one snapshot
                identity = self._identity(connection)
            if identity is None:
                with _transaction_on(connection, "BEGIN IMMEDIATE"):
                    _execute_script(connection, _SCHEMA)
                    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif identity < SCHEMA_VERSION:
                with _transaction_on(connection, "BEGIN IMMEDIATE"):
                    for version in range(identity, SCHEMA_VERSION):
                        _execute_script(connection, _MIGRATIONS[version])
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{self.path}: cannot use write-ahead logging (journal mode stays {mode!r})")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.OperationalError as error:
            raise JournalError(f"{self.path}: {error}") from error
        except sqlite3.DatabaseError as error:  # "file is not a database"
            raise JournalError(f"{self.path} is not a rollout journal: {error}") from error

    def _identity(self, connection: sqlite3.Connection) -> int | None:
        """The schema version of our database (an older one is migrated); None for an empty one;
        JournalError for anything else."""
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        objects = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and version == 0 and objects == 0:
            return None
        if application_id != APPLICATION_ID:
            raise JournalError(f"{self.path} is not a rollout journal (it is another SQLite database)")
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by a newer version of this program "
                f"(journal schema {version}; this one reads schema {SCHEMA_VERSION})"
            )
        if version != SCHEMA_VERSION and version not in _MIGRATIONS:
            raise JournalError(f"{self.path} has an unknown journal schema version {version}")
        return int(version)

    # -- transactions ----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise JournalError(f"the journal {self.path} is closed")
        return self._connection

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard:  # one transaction at a time on this connection, whichever thread asks
            connection = self._conn()
            try:
                with _transaction_on(connection, begin):
                    yield connection
            except sqlite3.Error as error:
                raise JournalError(f"{self.path}: {error}") from error

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: takes the write lock at once, so it never fails half-way for want of it."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        return self._transaction("BEGIN")

    def _one(self, sql: str, parameters: tuple[Any, ...] = ()) -> Row | None:
        with self._read() as db:
            row: Row | None = db.execute(sql, parameters).fetchone()
            return row

    def _all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Row]:
        with self._read() as db:
            return db.execute(sql, parameters).fetchall()

    def _now(self) -> datetime:
        moment = self._clock()
        if moment.utcoffset() is None:
            raise JournalError(f"{self.path}: the clock gave a time without a time zone ({moment.isoformat()})")
        return moment

    # -- runs ------------------------------------------------------------------

    def start_run(self, command: str, options: Mapping[str, Any], actor: Actor) -> int:
        try:
            options_json = json.dumps(dict(options), sort_keys=True, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise JournalError(f"{self.path}: the options of {command!r} are not JSON: {error}") from error
        now = _stored(self._now())
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (command, options, actor_user, actor_host, actor_pid, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (command, options_json, actor.user, actor.host, actor.pid, now),
            )
            return _rowid(cursor)

    def finish_run(self, run_id: int, outcome: str) -> None:
        now = _stored(self._now())
        with self._write() as db:
            run = db.execute("SELECT finished_at, outcome FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                raise JournalError(f"{self.path}: there is no run {run_id}")
            finished_at, previous_outcome = run
            if finished_at is not None:
                raise JournalError(f"{self.path}: run {run_id} has already finished ({previous_outcome})")
            db.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?", (now, outcome, run_id))

    def run(self, run_id: int) -> RunRecord:
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise JournalError(f"{self.path}: there is no run {run_id}")
        return _run_record(row)

    def unfinished_run(self, command: str | None = None) -> RunRecord | None:
        """The newest run that has not finished (of `command`, if given)."""
        if command is None:
            row = self._one(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished_at IS NULL ORDER BY id DESC LIMIT 1"
            )
        else:
            row = self._one(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished_at IS NULL AND command = ? ORDER BY id DESC LIMIT 1",
                (command,),
            )
        return None if row is None else _run_record(row)

    def runs(self) -> list[RunRecord]:
        return [_run_record(row) for row in self._all(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id")]

    # -- steps -----------------------------------------------------------------

    def add_step(
        self,
        run_id: int,
        step_id: str,
        stage: str | None,
        key: RegionKey,
        action: str,
        mode: str,
        websocket_enabled: bool,
    ) -> int:
        """A step of run `run_id`, PENDING; its first transition is recorded too."""
        now = _stored(self._now())
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise JournalError(f"{self.path}: there is no run {run_id}")
            cursor = db.execute(
                "INSERT INTO steps (run_id, step_id, stage, environment, region, action, mode, websocket_enabled,"
                " state, started_at, updated_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
                (
                    run_id,
                    step_id,
                    stage,
                    key.environment,
                    key.region,
                    action,
                    mode,
                    int(bool(websocket_enabled)),
                    StepState.PENDING.value,
                    now,
                    now,
                ),
            )
            row = _rowid(cursor)
            db.execute(
                "INSERT INTO transitions (step_row, at, state, detail) VALUES (?, ?, ?, '')",
                (row, now, StepState.PENDING.value),
            )
            return row

    def transition(self, step_row: int, state: StepState, detail: str = "") -> None:
        """Move the step to `state`: the step's row and the transitions table change together."""
        state = StepState(state)
        now = _stored(self._now())
        with self._write() as db:
            cursor = db.execute(
                "UPDATE steps SET state = ?, updated_at = ?, detail = ? WHERE row = ?",
                (state.value, now, detail, step_row),
            )
            if cursor.rowcount != 1:
                raise JournalError(f"{self.path}: there is no step row {step_row}")
            db.execute(
                "INSERT INTO transitions (step_row, at, state, detail) VALUES (?, ?, ?, ?)",
                (step_row, now, state.value, detail),
            )

    def step(self, step_row: int) -> StepRecord:
        row = self._one(f"SELECT {_STEP_COLUMNS} FROM steps WHERE row = ?", (step_row,))
        if row is None:
            raise JournalError(f"{self.path}: there is no step row {step_row}")
        return _step_record(row)

    def steps(self, run_id: int) -> list[StepRecord]:
        rows = self._all(f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY row", (run_id,))
        return [_step_record(row) for row in rows]

    def transitions(self, step_row: int) -> list[tuple[datetime, StepState, str]]:
        rows = self._all(
            "SELECT at, state, detail FROM transitions WHERE step_row = ? ORDER BY id", (step_row,)
        )
        return [(_loaded(at), StepState(state), detail) for at, state, detail in rows]

    def last_step(self, key: RegionKey) -> StepRecord | None:
        """The newest step, of any run, for the region."""
        row = self._one(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE environment = ? AND region = ? ORDER BY row DESC LIMIT 1",
            (key.environment, key.region),
        )
        return None if row is None else _step_record(row)

    # -- deployed files --------------------------------------------------------

    def record_deployed(self, key: RegionKey, step_row: int | None, state: RegionState) -> None:
        """The region now runs `state`; each file's text is stored once, by its content hash, and the
        image of each machine beside it."""
        hashes = state.hashes
        fingerprint = _fingerprint(hashes, state.images)
        now = _stored(self._now())
        with self._write() as db:
            if step_row is not None and db.execute("SELECT 1 FROM steps WHERE row = ?", (step_row,)).fetchone() is None:
                raise JournalError(f"{self.path}: there is no step row {step_row}")
            cursor = db.execute(
                "INSERT INTO deployed (environment, region, step_row, at, mode, websocket_enabled, fingerprint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.environment, key.region, step_row, now, state.mode, int(bool(state.websocket_enabled)), fingerprint),
            )
            deployed_id = _rowid(cursor)
            for name, digest in hashes.items():
                db.execute("INSERT OR IGNORE INTO blobs (hash, text) VALUES (?, ?)", (digest, state.files[name]))
                db.execute(
                    "INSERT INTO deployed_files (deployed_id, name, hash) VALUES (?, ?, ?)", (deployed_id, name, digest)
                )
            for machine, image in sorted(state.images.items()):
                db.execute(
                    "INSERT INTO deployed_machines (deployed_id, machine, image) VALUES (?, ?, ?)", (deployed_id, machine, image)
                )

    def deployed(self, key: RegionKey) -> DeployedRecord | None:
        """What the region runs now: the newest record for it."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_DEPLOYED_COLUMNS} FROM deployed WHERE environment = ? AND region = ? ORDER BY id DESC LIMIT 1",
                (key.environment, key.region),
            ).fetchone()
            return None if row is None else _deployed_record(db, row)

    def previous_deployed(self, key: RegionKey) -> DeployedRecord | None:
        """The newest record for the region whose files (or machines' images) differ from what it runs now."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_DEPLOYED_COLUMNS} FROM deployed WHERE environment = ? AND region = ? AND fingerprint != ("
                "SELECT fingerprint FROM deployed WHERE environment = ? AND region = ? ORDER BY id DESC LIMIT 1"
                ") ORDER BY id DESC LIMIT 1",
                (key.environment, key.region, key.environment, key.region),
            ).fetchone()
            return None if row is None else _deployed_record(db, row)

    def deployments(self, key: RegionKey | None = None) -> list[DeployedRecord]:
        """Every record, oldest first (of one region, if given)."""
        with self._read() as db:
            if key is None:
                rows = db.execute(f"SELECT {_DEPLOYED_COLUMNS} FROM deployed ORDER BY id").fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_DEPLOYED_COLUMNS} FROM deployed WHERE environment = ? AND region = ? ORDER BY id",
                    (key.environment, key.region),
                ).fetchall()
            return [_deployed_record(db, row) for row in rows]

    # -- gates -----------------------------------------------------------------

    def record_gate(self, step_row: int, gate: str, ok: bool, evidence: str, machine: str = "") -> None:
        now = _stored(self._now())
        with self._write() as db:
            if db.execute("SELECT 1 FROM steps WHERE row = ?", (step_row,)).fetchone() is None:
                raise JournalError(f"{self.path}: there is no step row {step_row}")
            db.execute(
                "INSERT INTO gates (step_row, gate, at, ok, evidence, machine) VALUES (?, ?, ?, ?, ?, ?)",
                (step_row, gate, now, int(bool(ok)), evidence, machine),
            )

    def gate_results(self, step_row: int) -> list[GateRecord]:
        rows = self._all(
            "SELECT step_row, gate, at, ok, evidence, machine FROM gates WHERE step_row = ? ORDER BY id", (step_row,)
        )
        return [
            GateRecord(step_row=row, gate=gate, at=_loaded(at), ok=bool(ok), evidence=evidence, machine=machine)
            for row, gate, at, ok, evidence, machine in rows
        ]

    # -- audit -----------------------------------------------------------------

    def audit(self, actor: Actor, action: str, message: str, reason: str | None = None) -> None:
        now = self._now()
        with self._write() as db:
            _insert_audit(db, now, actor, action, message, reason)

    def audit_records(self, newest: int | None = None) -> list[AuditRecord]:
        """The audit trail, oldest first; with `newest`, only its last that many records (a live view's tail)."""
        rows = self._all(
            "SELECT at, actor_user, actor_host, actor_pid, action, message, reason FROM"
            " (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id", (_limit(newest),)
        )
        return [
            AuditRecord(at=_loaded(at), actor=Actor(user, host, pid), action=action, message=message, reason=reason)
            for at, user, host, pid, action, message, reason in rows
        ]

    def audit_count(self) -> int:
        row = self._one("SELECT count(*) FROM audit")
        return int(row[0]) if row else 0

    # -- the locks: the rollout's, and the watcher's ------------------------------

    def acquire_lock(self, actor: Actor, message: str, wait_seconds: float = 0.0, *, lock: LockName = "rollout") -> None:
        """Take the lock, or raise LockHeld naming its holder.

        With `wait_seconds`, look again every LOCK_POLL_SECONDS until the lock
        is free or the time is up. A stale lock (its process is gone) never
        frees itself, so it is reported at once: release it by force. The lock
        is not re-entrant: the holder asking again gets LockHeld too.
        """
        deadline = self._monotonic() + wait_seconds
        while True:
            holder = self._try_lock(actor, message, lock)
            if holder is None:
                return
            remaining = deadline - self._monotonic()
            if holder.stale or remaining <= 0:
                raise LockHeld(holder, lock)
            self._sleep(min(LOCK_POLL_SECONDS, remaining))

    def _try_lock(self, actor: Actor, message: str, lock: LockName) -> LockInfo | None:
        """Take the lock and return None, or return who holds it."""
        now = self._now()
        table = _LOCK_TABLES[lock]
        with self._write() as db:
            row = db.execute(f"SELECT user, host, pid, acquired_at, message FROM {table} WHERE id = 1").fetchone()
            if row is None:
                db.execute(
                    f"INSERT INTO {table} (id, user, host, pid, acquired_at, message) VALUES (1, ?, ?, ?, ?, ?)",
                    (actor.user, actor.host, actor.pid, _stored(now), message),
                )
                _insert_audit(db, now, actor, _LOCK_ACTIONS[lock] + " acquired", message, None)
                return None
        return _lock_info(row)

    def release_lock(self, actor: Actor, *, lock: LockName = "rollout") -> None:
        """Release the lock if `actor` holds it (same user, host and pid); otherwise do nothing."""
        now = self._now()
        table = _LOCK_TABLES[lock]
        with self._write() as db:
            row = db.execute(
                f"SELECT message FROM {table} WHERE id = 1 AND user = ? AND host = ? AND pid = ?",
                (actor.user, actor.host, actor.pid),
            ).fetchone()
            if row is not None:
                db.execute(f"DELETE FROM {table} WHERE id = 1")
                (message,) = row
                _insert_audit(db, now, actor, _LOCK_ACTIONS[lock] + " released", message, None)

    def lock_status(self, *, lock: LockName = "rollout") -> LockInfo | None:
        row = self._one(f"SELECT user, host, pid, acquired_at, message FROM {_LOCK_TABLES[lock]} WHERE id = 1")
        return None if row is None else _lock_info(row)

    def force_release_lock(self, actor: Actor, reason: str, *, lock: LockName = "rollout") -> LockInfo | None:
        """Remove the lock, whoever holds it, and audit it; returns the lock removed (None: there was none)."""
        now = self._now()
        table = _LOCK_TABLES[lock]
        with self._write() as db:
            row = db.execute(f"SELECT user, host, pid, acquired_at, message FROM {table} WHERE id = 1").fetchone()
            if row is None:
                return None
            previous = _lock_info(row)
            db.execute(f"DELETE FROM {table} WHERE id = 1")
            _insert_audit(db, now, actor, _LOCK_ACTIONS[lock] + " released by force",
                          f"previous holder {previous.describe()}", reason)
            return previous

    # -- what the watcher saw ----------------------------------------------------

    def record_samples(self, samples: Sequence[tuple[RegionKey, str, datetime, Mapping[str, Any]]], keep: int,
                       max_gap: float) -> None:
        """Samples of machines (a watcher's round), in one transaction: all of them or, if one cannot be stored,
        none. A region keeps at most `keep` samples, the older half thinned to every other one; when it was
        watched is kept apart, as spans, so thinning never opens a gap in watching: a sample within `max_gap`
        seconds of the span's last one extends it, a later one starts a new span."""
        texts = [_json(data, "a sample") for _, _, _, data in samples]
        with self._write() as db:
            for (key, machine, at, _), text in zip(samples, texts):
                _insert_sample(db, key, machine, at, text, keep, max_gap)

    def watched_spans(self, key: RegionKey) -> list[tuple[datetime, datetime]]:
        """When the region was watched: (first sample, last sample) of each run of samples without a gap."""
        rows = self._all("SELECT started_at, last_at FROM watched WHERE environment = ? AND region = ? ORDER BY id",
                         (key.environment, key.region))
        return [(_loaded(started), _loaded(last)) for started, last in rows]

    def samples(self, key: RegionKey, since: datetime | None = None) -> list[SampleRecord]:
        rows = self._all(
            "SELECT machine, at, data FROM samples WHERE environment = ? AND region = ? AND at >= ? ORDER BY id",
            (key.environment, key.region, _stored(since) if since else ""),
        )
        return [SampleRecord(key, machine, _loaded(at), json.loads(data)) for machine, at, data in rows]

    def latest_sample(self, key: RegionKey) -> SampleRecord | None:
        row = self._one("SELECT machine, at, data FROM samples WHERE environment = ? AND region = ? ORDER BY id DESC "
                        "LIMIT 1", (key.environment, key.region))
        return SampleRecord(key, row[0], _loaded(row[1]), json.loads(row[2])) if row else None

    def record_finding(self, key: RegionKey, machine: str, rule: str, message: str, evidence: Mapping[str, Any],
                       action: str) -> None:
        now = _stored(self._now())
        with self._write() as db:
            db.execute("INSERT INTO findings (environment, region, machine, at, rule, message, evidence, action)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (key.environment, key.region, machine, now, rule, message, _json(evidence, "evidence"), action))

    def findings(self, key: RegionKey | None = None, newest: int | None = None) -> list[FindingRecord]:
        """The findings (of one region, with `key`), oldest first; with `newest`, only the last that many."""
        where, parameters = _region_filter(key)
        rows = self._all("SELECT environment, region, machine, at, rule, message, evidence, action FROM"
                         f" (SELECT * FROM findings {where} ORDER BY id DESC LIMIT ?) ORDER BY id",
                         (*parameters, _limit(newest)))
        return [FindingRecord(RegionKey(environment, region), machine, _loaded(at), rule, message, json.loads(evidence),
                              action) for environment, region, machine, at, rule, message, evidence, action in rows]

    def findings_count(self, key: RegionKey | None = None) -> int:
        where, parameters = _region_filter(key)
        row = self._one(f"SELECT count(*) FROM findings {where}", parameters)
        return int(row[0]) if row else 0


def _region_filter(key: RegionKey | None) -> tuple[str, tuple[str, ...]]:
    return ("WHERE environment = ? AND region = ?", (key.environment, key.region)) if key else ("", ())


def _limit(newest: int | None) -> int:
    """SQLite's LIMIT for `newest`: a negative LIMIT is none. Asking for no record or fewer is asking for none."""
    if newest is None:
        return -1
    return max(newest, 0)


@contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on the state directory (released by the kernel if the process dies)."""
    descriptor = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextmanager
def _transaction_on(connection: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Connection]:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises."""
    connection.execute(begin)
    try:
        yield connection
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _make_state_dir(state_dir: Path) -> None:
    if state_dir.is_dir():
        return
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        state_dir.mkdir(mode=0o700)
    except FileExistsError:
        if not state_dir.is_dir():
            raise JournalError(f"{state_dir / JOURNAL_FILE}: {state_dir} is not a directory") from None
        return
    os.chmod(state_dir, 0o700)  # whatever the umask


def _json(value: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise JournalError(f"{what} is not JSON: {error}") from error


def _execute_script(connection: sqlite3.Connection, script: str) -> None:
    """Each statement of `script` inside the caller's transaction (executescript would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            connection.execute(statement)


def _rowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    assert rowid is not None
    return rowid


def _fingerprint(hashes: Mapping[str, str], images: Mapping[str, str]) -> str:
    """What tells deployments apart: the files and, where the target has images, each machine's image
    (without images, the same value as before images were recorded)."""
    if not images:
        return content_hash(json.dumps(sorted(hashes.items())))
    return content_hash(json.dumps([sorted(hashes.items()), sorted(images.items())]))


def _insert_sample(db: sqlite3.Connection, key: RegionKey, machine: str, at: datetime, text: str, keep: int,
                   max_gap: float) -> None:
    region = (key.environment, key.region)
    db.execute("INSERT INTO samples (environment, region, machine, at, data) VALUES (?, ?, ?, ?, ?)",
               (*region, machine, _stored(at), text))
    (count,) = db.execute("SELECT count(*) FROM samples WHERE environment = ? AND region = ?", region).fetchone()
    if count > keep:
        ids = [row for (row,) in db.execute(
            "SELECT id FROM samples WHERE environment = ? AND region = ? ORDER BY id LIMIT ?", (*region, count // 2))]
        db.executemany("DELETE FROM samples WHERE id = ?", [(row,) for row in ids[1::2]])
    span = db.execute("SELECT id, last_at FROM watched WHERE environment = ? AND region = ? ORDER BY id DESC LIMIT 1",
                      region).fetchone()
    if span is not None and 0 <= (at - _loaded(span[1])).total_seconds() <= max_gap:
        db.execute("UPDATE watched SET last_at = ? WHERE id = ?", (_stored(at), span[0]))
    elif span is None or at > _loaded(span[1]):
        db.execute("INSERT INTO watched (environment, region, started_at, last_at) VALUES (?, ?, ?, ?)",
                   (*region, _stored(at), _stored(at)))


def _insert_audit(
    db: sqlite3.Connection, at: datetime, actor: Actor, action: str, message: str, reason: str | None
) -> None:
    db.execute(
        "INSERT INTO audit (at, actor_user, actor_host, actor_pid, action, message, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_stored(at), actor.user, actor.host, actor.pid, action, message, reason),
    )


def _lock_info(row: Row) -> LockInfo:
    """The lock row, whatever a hand edit left in it (SQLite keeps a value of any type in any column)."""
    user, host, pid, acquired_at, message = row
    try:
        acquired: datetime | str = _loaded(acquired_at)
    except (TypeError, ValueError):
        acquired = str(acquired_at)
    process = isinstance(pid, int) and 0 < pid < 2**31  # what os.kill can be asked about
    return LockInfo(
        user=str(user),
        host=str(host),
        pid=pid if isinstance(pid, int) else str(pid),
        acquired_at=acquired,
        message=str(message),
        stale=process and host == socket.gethostname() and _process_gone(pid),
    )


def _deployed_record(db: sqlite3.Connection, row: Row) -> DeployedRecord:
    deployed_id, environment, region, step_row, at, mode, enabled = row
    files: list[tuple[str, str, str]] = db.execute(
        "SELECT deployed_files.name, deployed_files.hash, blobs.text"
        " FROM deployed_files JOIN blobs ON blobs.hash = deployed_files.hash"
        " WHERE deployed_files.deployed_id = ? ORDER BY deployed_files.name",
        (deployed_id,),
    ).fetchall()
    images: list[tuple[str, str]] = db.execute(
        "SELECT machine, image FROM deployed_machines WHERE deployed_id = ? ORDER BY machine", (deployed_id,)
    ).fetchall()
    return DeployedRecord(
        key=RegionKey(environment, region),
        step_row=step_row,
        at=_loaded(at),
        state=RegionState(mode=mode, websocket_enabled=bool(enabled), files={name: text for name, _, text in files},
                          images=dict(images)),
        hashes={name: digest for name, digest, _ in files},
    )
