"""publish_directories: each unit is wholly old or wholly new after any failure or kill, and nothing else changes."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import locale
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from publish_harness import UNITS, renameat2_for, tree, units

from orchestrator import atomic
from orchestrator.atomic import OutputFile, check_output_dir, publish_directories
from orchestrator.errors import InputError

HARNESS = Path(__file__).with_name("publish_harness.py")
OLD = units("old")
NEW = units("new")
# Files in OUT that no publish of OLD or NEW may touch: an operator's note and an environment not published.
OUTSIDE = {"notes.txt": b"operator notes\n", "qa/Dockerfile": b"FROM app:qa\n"}
FALLBACKS = ["ENOSYS", "EINVAL", "missing"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root`: path relative to `root` -> bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def state(new_count: int, missing: str | None = None) -> dict[str, bytes]:
    """OUT once the first `new_count` units are new, without unit `missing` (a crash mid-fallback)."""
    versions = [NEW if index < new_count else OLD for index in range(len(UNITS))]
    picked = {unit: version[unit] for unit, version in zip(UNITS, versions, strict=True) if str(unit) != missing}
    return {**OUTSIDE, **tree(picked)}


def beside(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.iterdir())


def lock_is_held(out: Path) -> bool:
    with open(out.parent / f".{out.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def fail_on_calls(monkeypatch: pytest.MonkeyPatch, failing: set[int], *functions: str) -> None:
    """Make the given calls (counted over all `functions` of orchestrator.atomic together) raise OSError."""
    calls = 0

    def patch(name: str) -> None:
        real = getattr(atomic, name)

        def wrapper(*arguments: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls in failing:
                raise OSError(errno.EIO, f"injected into call {calls}")
            return real(*arguments)

        monkeypatch.setattr(atomic, name, wrapper)

    for name in functions:
        patch(name)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """OUT holding the OLD units and files of the operator's."""
    out = tmp_path / "out"
    publish_directories(out, OLD)
    for name, data in OUTSIDE.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    assert snapshot(out) == state(0)
    return out


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is private to its owner)."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def test_publish_creates_out_and_writes_exact_trees_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "out"
    publish_directories(out, NEW)
    assert snapshot(out) == tree(NEW)
    for unit, files in NEW.items():
        for name, file in files.items():
            assert stat.S_IMODE((out / unit / name).stat().st_mode) == (0o755 if file.executable else 0o644), name
    assert beside(out) == [".out.lock", "out"]


@pytest.mark.parametrize("mode", ["exchange", *FALLBACKS])
def test_replacing_leaves_exactly_the_new_units(out: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(atomic, "_renameat2", renameat2_for(mode))
    publish_directories(out, NEW)
    assert snapshot(out) == state(2)
    assert stat.S_IMODE((out / "staging" / "bin" / "start").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "staging" / "Dockerfile").stat().st_mode) == 0o644
    assert beside(out) == [".out.lock", "out"]


def test_publishing_a_new_unit_keeps_the_others(out: Path) -> None:
    publish_directories(out, {PurePosixPath("preview"): {"Dockerfile": OutputFile("FROM app:preview\n")}})
    assert snapshot(out) == {**state(0), "preview/Dockerfile": b"FROM app:preview\n"}


def test_renameat2_swaps_two_paths_and_reports_errno(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    renameat2 = atomic._load_renameat2()
    assert renameat2 is not None
    (tmp_path / "file").write_text("was a file\n")
    (tmp_path / "directory").mkdir()
    file, directory, missing = (os.fsencode(tmp_path / name) for name in ("file", "directory", "missing"))
    assert renameat2(atomic.AT_FDCWD, file, atomic.AT_FDCWD, directory, atomic.RENAME_EXCHANGE) == 0
    assert (tmp_path / "file").is_dir()
    assert (tmp_path / "directory").read_text() == "was a file\n"
    assert renameat2(atomic.AT_FDCWD, missing, atomic.AT_FDCWD, directory, atomic.RENAME_EXCHANGE) == -1
    assert ctypes.get_errno() == errno.ENOENT


def test_files_are_utf8_whatever_the_locale(tmp_path: Path) -> None:
    text = "# Zürich — café\r\n"
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # open() without an encoding would now write ASCII
    try:
        publish_directories(tmp_path / "out", {PurePosixPath("production"): {"Dockerfile": OutputFile(text)}})
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert snapshot(tmp_path / "out") == {"production/Dockerfile": text.encode("utf-8")}


@pytest.mark.parametrize(
    ("mode", "after_each_call"),
    [
        ("exchange", [state(1), state(2)]),
        # renameat2 refused, then current -> retired and new -> current, for each unit
        ("EINVAL", [state(0), state(0, "production"), state(1), state(1), state(1, "staging"), state(2)]),
    ],
)
def test_each_unit_changes_in_one_step(
    out: Path, monkeypatch: pytest.MonkeyPatch, mode: str, after_each_call: list[dict[str, bytes]]
) -> None:
    monkeypatch.setattr(atomic, "_renameat2", renameat2_for(mode))
    seen = []

    def observe(name: str) -> None:
        real = getattr(atomic, name)

        def observing(*arguments: Any) -> Any:
            result = real(*arguments)
            seen.append(snapshot(out))
            assert lock_is_held(out)
            return result

        monkeypatch.setattr(atomic, name, observing)

    observe("_exchange")
    observe("_rename")
    publish_directories(out, NEW)
    assert seen == after_each_call


def test_staging_is_beside_out_under_the_lock_and_leaves_out_alone(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = atomic._write_file
    staged = []

    def observing(entry: atomic._Entry, file: OutputFile) -> None:
        real(entry, file)
        staged.append(entry.path.relative_to(out.parent).parts[0])
        if len(staged) % 20 == 1:  # a sample: a snapshot per file would make this test slow
            assert snapshot(out) == state(0)
            assert lock_is_held(out)

    monkeypatch.setattr(atomic, "_write_file", observing)
    publish_directories(out, NEW)
    assert len(staged) == len(tree(NEW))
    assert len(set(staged)) == 1 and staged[0].startswith(".out.staging.")
    assert not lock_is_held(out)


def test_failure_while_staging_changes_nothing(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_on_calls(monkeypatch, {len(tree(NEW)) - 1}, "_write_file")
    with pytest.raises(OSError, match="injected"):
        publish_directories(out, NEW)
    assert snapshot(out) == state(0)
    assert beside(out) == [".out.lock", "out"]


@pytest.mark.parametrize(
    ("mode", "failing_call", "new_count"),
    [
        ("exchange", 1, 0),
        ("exchange", 2, 1),
        # calls per unit: renameat2 (refused), current -> retired, new -> current
        *[("EINVAL", call, 0) for call in (1, 2, 3)],
        *[("EINVAL", call, 1) for call in (4, 5, 6)],
    ],
)
def test_failure_injected_into_a_swap(
    out: Path, monkeypatch: pytest.MonkeyPatch, mode: str, failing_call: int, new_count: int
) -> None:
    monkeypatch.setattr(atomic, "_renameat2", renameat2_for(mode))
    fail_on_calls(monkeypatch, {failing_call}, "_exchange", "_rename")
    with pytest.raises(OSError, match=f"injected into call {failing_call}"):
        publish_directories(out, NEW)
    assert snapshot(out) == state(new_count)
    assert beside(out) == [".out.lock", "out"]
    publish_directories(out, NEW)
    assert snapshot(out) == state(2)
    assert beside(out) == [".out.lock", "out"]


def test_a_retired_unit_that_cannot_be_put_back_is_kept_for_the_next_run(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_renameat2", renameat2_for("EINVAL"))
    # call 2 retires production, call 3 (new -> production) fails, and so does putting it back (call 4)
    fail_on_calls(monkeypatch, {3, 4}, "_exchange", "_rename")
    with pytest.raises(OSError, match="injected into call 4"):
        publish_directories(out, NEW)
    assert snapshot(out) == state(0, "production")
    assert any(name.startswith(".out.staging.") for name in beside(out))
    publish_directories(out, {})
    assert snapshot(out) == state(0)
    assert beside(out) == [".out.lock", "out"]


def test_an_exchange_error_other_than_unsupported_is_raised(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_renameat2", renameat2_for("EXDEV"))
    with pytest.raises(OSError) as raised:
        publish_directories(out, NEW)
    assert (raised.value.errno, raised.value.strerror) == (errno.EXDEV, os.strerror(errno.EXDEV))
    staged = Path(raised.value.filename)
    assert (staged.name, staged.parent.parent.name[:13]) == ("production", ".out.staging.")
    assert raised.value.filename2 == str(out / "production")
    assert snapshot(out) == state(0)
    assert beside(out) == [".out.lock", "out"]


@pytest.mark.parametrize(
    ("mode", "function", "when", "n", "new_count", "missing"),
    [
        ("exchange", "_write_file", "before", 1, 0, None),
        ("exchange", "_write_file", "after", len(tree(NEW)) - 1, 0, None),
        ("exchange", "_put_in_place", "before", 1, 0, None),
        ("exchange", "_put_in_place", "after", 1, 1, None),
        ("exchange", "_put_in_place", "before", 2, 1, None),
        ("exchange", "_put_in_place", "after", 2, 2, None),
        ("EINVAL", "_put_in_place", "after", 1, 1, None),
        # renames per unit: current -> retired, new -> current
        ("EINVAL", "_rename", "after", 1, 0, "production"),
        ("EINVAL", "_rename", "after", 2, 1, None),
        ("EINVAL", "_rename", "after", 3, 1, "staging"),
        ("EINVAL", "_rename", "after", 4, 2, None),
    ],
)
def test_kill_during_publish(
    out: Path, mode: str, function: str, when: str, n: int, new_count: int, missing: str | None
) -> None:
    command = [sys.executable, str(HARNESS), str(out), mode, function, when, str(n)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert snapshot(out) == state(new_count, missing)
    assert any(name.startswith(".out.staging.") for name in beside(out))
    publish_directories(out, {})  # the next run repairs and cleans up before anything else
    assert snapshot(out) == state(new_count)
    assert beside(out) == [".out.lock", "out"]
    publish_directories(out, NEW)
    assert snapshot(out) == state(2)
    assert beside(out) == [".out.lock", "out"]


def test_the_next_run_deletes_only_this_outs_leftover_staging(out: Path) -> None:
    for leftover in (".out.staging.crashed/new/production", ".other.staging.running", "out.staging.kept"):
        (out.parent / leftover).mkdir(parents=True)
        (out.parent / leftover / "Dockerfile").write_text("FROM app:half-written\n")
    publish_directories(out, NEW)
    assert snapshot(out) == state(2)
    assert beside(out) == [".other.staging.running", ".out.lock", "out", "out.staging.kept"]


def test_dot_publishes_into_the_current_directory(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(out)
    publish_directories(".", NEW)
    assert snapshot(out) == state(2)
    assert beside(out) == [".out.lock", "out"]


def test_a_symlinked_out_publishes_into_its_target(out: Path) -> None:
    link = out.parent / "link"
    link.symlink_to(out)
    publish_directories(link, NEW)
    assert link.is_symlink()
    assert snapshot(out) == state(2)
    assert beside(out) == [".out.lock", "link", "out"]


def _empty(tmp_path: Path) -> tuple[str, str]:
    return "", "--out '': an empty path"


def _a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "out").write_text("not a directory\n")
    return f"{tmp_path}/out", f"--out {tmp_path}/out: exists and is not a directory"


def _under_a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "blocker").write_text("not a directory\n")
    out = f"{tmp_path}/blocker/deeper/out"
    return out, f"--out {out}: {tmp_path}/blocker is not a directory"


def _a_symlink_to_a_file(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "target.txt").write_text("not a directory\n")
    (tmp_path / "out").symlink_to(tmp_path / "target.txt")
    return f"{tmp_path}/out", f"--out {tmp_path}/out: a symlink to {tmp_path}/target.txt, which is not a directory"


@pytest.mark.parametrize("case", [_empty, _a_file, _under_a_file, _a_symlink_to_a_file])
@pytest.mark.parametrize("call", [check_output_dir, lambda out: publish_directories(out, NEW)])
def test_bad_out_is_an_input_error_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Any, call: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # where a "" taken for "." would publish
    out, message = case(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError) as raised:
        call(out)
    assert raised.value.problems == [message]
    assert sorted(tmp_path.rglob("*")) == before


def check_unprivileged(out: Path) -> str:
    """check_output_dir's message for `out`, checked by a forked child as user nobody if we are root."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            check_output_dir(out)
        except InputError as error:
            os.write(write, str(error).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


@pytest.mark.parametrize(
    ("parent_mode", "out_mode", "denied"),
    [
        (0o555, None, "parent"),  # out, the lock and staging cannot be created
        (0o666, None, "parent"),  # nothing in it can even be looked up
        (0o555, 0o777, "parent"),  # out exists, but the lock and staging go beside it
        (0o777, 0o555, "parent/out"),  # units cannot be renamed in or out
    ],
)
def test_out_without_permission_is_an_input_error(
    shared_dir: Path, parent_mode: int, out_mode: int | None, denied: str
) -> None:
    parent = shared_dir / "parent"
    parent.mkdir()
    if out_mode is not None:
        (parent / "out").mkdir()
        (parent / "out").chmod(out_mode)
    parent.chmod(parent_mode)
    message = check_unprivileged(parent / "out")
    for directory in (parent, *parent.iterdir()):
        directory.chmod(0o755)
    reason = f"cannot create or rename entries in {shared_dir}/{denied} (no write or search permission)"
    assert message == f"--out {parent}/out: {reason}"
    assert sorted(parent.iterdir()) == ([parent / "out"] if out_mode else [])
    check_output_dir(parent / "out")  # allowed once permission is given back


def test_a_lock_file_that_cannot_be_opened_is_an_input_error(out: Path) -> None:
    """os.access cannot see every refusal (root passes it); the error from the write itself is reported alike."""
    lock = out.parent / ".out.lock"
    lock.chmod(0o444)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("needs chattr to make a file that root cannot open for writing")
        subprocess.run(["chattr", "+i", str(lock)], check=True)
    try:
        with pytest.raises(InputError) as raised:
            publish_directories(out, NEW)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(lock)], check=True)
    reason = os.strerror(errno.EPERM if os.geteuid() == 0 else errno.EACCES)
    assert raised.value.problems == [f"--out {out}: cannot write there ({reason}: {lock})"]
    assert snapshot(out) == state(0)
    assert beside(out) == [".out.lock", "out"]


@pytest.mark.parametrize(
    ("unit", "name", "problem"),
    [
        *[
            (unit, "Dockerfile", f"a unit is one directory name in the output directory, not {unit}")
            for unit in (".", "..", "/", "/srv", "production/iad")
        ],
        ("production", "", "production: not a relative path inside the unit: ."),
        ("production", "/etc/passwd", "production: not a relative path inside the unit: /etc/passwd"),
        ("production", "bin/../../escape", "production: not a relative path inside the unit: bin/../../escape"),
    ],
)
def test_units_and_their_files_must_stay_inside_out(tmp_path: Path, unit: str, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        publish_directories(tmp_path / "out", {PurePosixPath(unit): {name: OutputFile("")}})
    assert list(tmp_path.iterdir()) == []


def test_without_syncfs_every_file_is_fsynced_and_the_tree_is_the_same(tmp_path, monkeypatch):
    """Where libc has no syncfs, each file and directory is fsynced instead; the result must not differ."""
    synced: list[str] = []
    real_fsync = atomic._fsync_at
    monkeypatch.setattr(atomic, "_syncfs", None)
    monkeypatch.setattr(atomic, "_fsync_at", lambda entry: (synced.append(entry.name), real_fsync(entry)))
    units = {PurePosixPath("production"): {"a.txt": OutputFile("a"), "bin/run": OutputFile("#!/bin/sh\n", executable=True)}}
    atomic.publish_directories(tmp_path / "out", units)
    assert {"a.txt", "run", "bin"} <= set(synced)
    assert (tmp_path / "out" / "production" / "a.txt").read_text() == "a"
    assert (tmp_path / "out" / "production" / "bin" / "run").stat().st_mode & 0o777 == 0o755


def test_write_file_atomic_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config" / "navigator.yml"
    atomic.write_file_atomic(target, "first\n")
    atomic.write_file_atomic(target, "second: é\n")
    assert target.read_bytes() == "second: é\n".encode()
    assert sorted(path.name for path in target.parent.iterdir()) == ["navigator.yml"]


def test_write_file_atomic_that_fails_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "navigator.yml"
    target.write_text("running\n")

    def refuse(source: str, destination: str) -> None:
        raise OSError(errno.EIO, "injected", destination)

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="injected"):
        atomic.write_file_atomic(target, "new\n")
    assert target.read_text() == "running\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["navigator.yml"]


def test_write_file_atomic_creates_missing_parents_and_stages_beside_the_target(tmp_path, monkeypatch):
    """The temporary file must be in the target's own directory: a rename across file systems is not atomic."""
    target = tmp_path / "a" / "b" / "navigator.yml"
    renamed: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda source, destination: (renamed.append((source, destination)), real_replace(source, destination)))
    atomic.write_file_atomic(target, "x\n")
    ((source, destination),) = renamed
    assert Path(source).parent == target.parent and Path(source).name.startswith(".navigator.yml.")
    assert Path(destination) == target and target.read_text() == "x\n"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640)], ids=lambda mode: f"{mode:04o}")
def test_write_file_atomic_makes_a_new_file_as_any_new_file_under_the_umask(tmp_path, mask, expected):
    """A file the operator asked for (plan --html) is not left readable by its owner only, as tempfile.mkstemp makes it."""
    target = tmp_path / "plan.html"
    with umask(mask):
        atomic.write_file_atomic(target, "<html></html>\n")
    assert stat.S_IMODE(target.stat().st_mode) == expected


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o444], ids=lambda mode: f"{mode:04o}")
def test_write_file_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path, mode):
    target = tmp_path / "navigator.yml"
    target.write_text("old\n")
    target.chmod(mode)
    with umask(0o022):
        atomic.write_file_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(path.name for path in tmp_path.iterdir()) == ["navigator.yml"]


def test_the_loaded_syncfs_really_syncs_a_file_system(tmp_path):
    """_syncfs is loaded at import; load it again here so a broken loader is seen."""
    sync = atomic._load_syncfs()
    assert sync is not None
    assert sync(os.open(tmp_path, os.O_RDONLY)) == 0
