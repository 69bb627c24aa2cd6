"""The rollout lock as a hand-edited journal row may leave it: read without a traceback, shown without obeying it."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.rollout.journal import JOURNAL_FILE, Actor, Journal, LockHeld
from tests.orchestrator.rollout.fleet import Fleet, make_fleet

HOLDER = Actor("bob", "web2.example", 77)  # another machine's process: never stale here
ESCAPES = "deploying \x1b[2J\x1b]0;owned\x07\r\nforged line \u202e"
SHOWN = "deploying \\x1b[2J\\x1b]0;owned\\x07\\r\\nforged line \\u202e"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path)
    yield made
    made.stop_all()


def hold(fleet: Fleet, message: str, **edits: object) -> None:
    """Take the lock as HOLDER, then change its row's columns by hand, as with the sqlite3 shell."""
    journal = Journal(fleet.state)
    try:
        journal.acquire_lock(HOLDER, message)
    finally:
        journal.close()
    with closing(sqlite3.connect(fleet.state / JOURNAL_FILE)) as db, db:
        for column, value in edits.items():
            db.execute(f"UPDATE lock SET {column} = ?", (value,))


@pytest.mark.parametrize(
    ("acquired_at", "since"),
    [
        ("not a time", "an unknown time (the lock row holds 'not a time', not a time)"),
        ("\x1b[31m", "an unknown time (the lock row holds '\\x1b[31m', not a time)"),
        (b"\x00\x01", "an unknown time (the lock row holds \"b'\\\\x00\\\\x01'\", not a time)"),
    ],
)
def test_lock_status_with_a_time_that_is_not_one_says_so(fleet: Fleet, acquired_at: object, since: str) -> None:
    hold(fleet, "rolling out production", acquired_at=acquired_at)
    status = fleet.orchestrate("lock", "status", timeout=60)
    assert (status.code, status.err) == (0, "")
    assert status.out == f"held by bob@web2.example (pid 77) since {since}: rolling out production\n"


def test_a_rollout_refused_by_such_a_lock_names_it_without_a_traceback(fleet: Fleet) -> None:
    hold(fleet, "rolling out production", acquired_at="not a time")
    refused = fleet.orchestrate("rollout", "--stage", "staging", "--yes", timeout=60)
    assert refused.code != 0
    assert "Traceback" not in refused.text
    assert ("the rollout lock is held by bob@web2.example (pid 77) since an unknown time "
            "(the lock row holds 'not a time', not a time): rolling out production") in refused.err


def test_a_pid_that_is_not_a_number_is_shown_and_never_called_stale(fleet: Fleet) -> None:
    hold(fleet, "stuck", pid="77\x1b[0m", host=socket.gethostname())
    status = fleet.orchestrate("lock", "status", timeout=60)
    assert (status.code, status.err) == (0, "")
    assert "(pid 77\\x1b[0m) since " in status.out and "stale" not in status.out


def test_a_lock_message_with_terminal_escapes_is_shown_escaped(fleet: Fleet) -> None:
    hold(fleet, ESCAPES)
    status = fleet.orchestrate("lock", "status", timeout=60)
    assert status.code == 0
    assert status.out.endswith(f": {SHOWN}\n")
    assert "\x1b" not in status.out and "\x07" not in status.out and status.out.count("\n") == 1
    released = fleet.orchestrate("lock", "release", "--force", "--reason", "test", timeout=60)
    assert released.code == 0 and released.out.endswith(f": {SHOWN}\n") and "\x1b" not in released.out


def test_lock_held_from_the_api_is_one_safe_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state")
    try:
        journal.acquire_lock(HOLDER, ESCAPES)
        with pytest.raises(LockHeld) as raised:
            journal.acquire_lock(Actor("alice", "web1.example", 4242), "mine")
    finally:
        journal.close()
    assert str(raised.value).endswith(f": {SHOWN}")
    assert str(raised.value).isprintable()


def test_the_audit_lines_of_history_cannot_drive_the_terminal(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "state") as journal:
        journal.audit(Actor("eve\x1b[2J", "web1", 7), "lock released by force", "took it\x1b]0;owned\x07", "because\nreasons")
        (line,) = [record.line() for record in journal.audit_records()]
    assert "\x1b" not in line and "\x07" not in line and "\n" not in line
    assert line.endswith("[eve\\x1b[2J@web1 pid 7] lock released by force: took it\\x1b]0;owned\\x07 (reason: because\\nreasons)")
