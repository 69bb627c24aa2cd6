"""Writes that survive a crash: a file or a directory appears whole or not at all."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path, PurePosixPath

from orchestrator.errors import InputError

AT_FDCWD = -100
RENAME_EXCHANGE = 2
# Errors that mean "you may not write there", reported like the checks of check_output_dir.
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.ENOTDIR, errno.EPERM})
_RETIRED = ".retired"
# A directory the publisher holds: opened once, never through a symbolic link.
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class OutputFile:
    text: str
    executable: bool = False


@dataclass(frozen=True, slots=True)
class _Entry:
    """A name in a directory held open: every call goes through the descriptor; `path` only names it in errors."""

    directory: int
    name: str
    path: Path


@dataclass(frozen=True, slots=True)
class _Directory:
    descriptor: int
    path: Path  # for errors only: nothing is resolved through it

    def entry(self, name: str) -> _Entry:
        return _Entry(self.descriptor, name, self.path / name)


def write_file_atomic(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, rename it over `path`.

    The file keeps the mode of the regular file it replaces; a new one gets 0666 less the umask, as
    any file a program creates (tempfile.mkstemp would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    kept = stat.S_IMODE(existing.st_mode) if existing is not None and stat.S_ISREG(existing.st_mode) else None
    # Created with the kept mode (less the umask), never more open than the file it replaces, even for a moment.
    descriptor, temp_name = _create_beside(path, 0o666 if kept is None else kept)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            if kept is not None:
                os.fchmod(handle.fileno(), kept)  # whatever the umask
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _create_beside(path: Path, mode: int) -> tuple[int, str]:
    """A new file beside `path`, opened for writing; open(2) applies the umask to `mode`."""
    while True:
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode), name
        except FileExistsError:
            continue


def check_output_dir(out_dir: Path | str) -> None:
    """Raise InputError naming `--out <dir>` and what is wrong with it; writes nothing."""
    problem = _output_dir_problem(out_dir)
    if problem is not None:
        raise InputError([f"--out {shlex.quote(str(out_dir))}: {problem}"])


def publish_directories(out_dir: Path | str, units: Mapping[PurePosixPath, Mapping[str, OutputFile]]) -> None:
    """Make each unit (a directory name) `out_dir/unit` with exactly its files, in the order given.

    Everything is written and synced in a staging directory beside `out_dir`
    first; then each unit replaces the current one in a single rename, so after
    a crash at any point every unit is wholly old or wholly new. Nothing else
    in `out_dir` is touched. `out_dir` (a symbolic link to it is resolved once,
    here), its parent and the lock beside it are opened without following a
    symbolic link and held: swapping one for a link later changes nothing.
    """
    check_output_dir(out_dir)
    _check_units(units)
    target = Path(os.path.realpath(out_dir))
    try:
        _publish(target, units)
    except OSError as error:
        where = error.filename or target
        if error.errno == errno.ELOOP:
            message = f"--out {shlex.quote(str(out_dir))}: {where} is a symbolic link, which a render never follows; remove it"
        elif error.errno in _NOT_WRITABLE:
            message = f"--out {shlex.quote(str(out_dir))}: cannot write there ({error.strerror}: {where})"
        else:
            raise
        raise InputError([message]) from error


def _output_dir_problem(out_dir: Path | str) -> str | None:
    if str(out_dir) == "":
        return "an empty path"
    target = Path(os.path.realpath(out_dir))
    if os.path.lexists(target) and not os.path.isdir(target):
        if os.path.islink(out_dir):
            return f"a symlink to {target}, which is not a directory"
        return "exists and is not a directory"
    existing = next(path for path in (target, *target.parents) if os.path.lexists(path))
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    # Staging and the lock go beside `target`; units are renamed inside it.
    writable = [target, target.parent] if existing == target else [existing]
    for directory in writable:
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"cannot create or rename entries in {directory} (no write or search permission)"
    return None


def _check_units(units: Mapping[PurePosixPath, Mapping[str, OutputFile]]) -> None:
    """Each unit is one directory name in `out_dir`, and its files stay inside it."""
    for unit, files in units.items():
        if unit.name == ".." or unit.name != unit.as_posix():
            raise ValueError(f"a unit is one directory name in the output directory, not {unit}")
        for path in map(PurePosixPath, files):
            if path.is_absolute() or not path.parts or ".." in path.parts:
                raise ValueError(f"{unit}: not a relative path inside the unit: {path}")


def _publish(target: Path, units: Mapping[PurePosixPath, Mapping[str, OutputFile]]) -> None:
    _ensure_directory(target.parent)
    with (
        _opened(_Entry(AT_FDCWD, str(target.parent), target.parent)) as parent,
        _exclusive_lock(parent.entry(f".{target.name}.lock")),
    ):
        out = parent.entry(target.name)
        if not _exists(out):
            with _naming(out.path):
                os.mkdir(out.name, dir_fd=out.directory)
            os.fsync(parent.descriptor)
        with _opened(out) as held:
            prefix = f".{target.name}.staging."
            # With the lock held, any staging directory left is from a run that crashed. A symbolic link named
            # like one is not: this program makes real directories.
            with os.scandir(parent.descriptor) as entries:
                leftovers = [entry.name for entry in entries
                             if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False)]
            for name in leftovers:
                _discard(parent.entry(name), held)
            staging = _make_staging(parent, prefix)
            try:
                with _opened(staging) as staged:
                    _stage_and_swap(staged, held, units)
            finally:
                _discard(staging, held)


def _make_staging(parent: _Directory, prefix: str) -> _Entry:
    """A new directory in `parent` that only this user can enter, as tempfile.mkdtemp makes one."""
    while True:
        staging = parent.entry(prefix + secrets.token_hex(4))
        try:
            with _naming(staging.path):
                os.mkdir(staging.name, 0o700, dir_fd=parent.descriptor)
        except FileExistsError:
            continue
        return staging


def _stage_and_swap(staging: _Directory, out: _Directory, units: Mapping[PurePosixPath, Mapping[str, OutputFile]]) -> None:
    for unit, files in units.items():
        _write_tree(staging, PurePosixPath("new") / unit, files)
    for unit in units:
        _put_in_place(staging.entry(f"new/{unit}"), out.entry(str(unit)), staging.entry(f"{unit}{_RETIRED}"))


def _write_tree(staging: _Directory, root: PurePosixPath, files: Mapping[str, OutputFile]) -> None:
    """`files` under `root` in the staging directory, every name made through a descriptor held on its
    directory (never a path: a directory replaced by a link meanwhile is not followed)."""
    created: list[_Entry] = []
    written: list[_Entry] = []
    with ExitStack() as held:
        opened: dict[PurePosixPath, _Directory] = {PurePosixPath("."): staging}

        def directory(path: PurePosixPath) -> _Directory:
            if path not in opened:
                parent = directory(path.parent)
                entry = parent.entry(path.name)
                if not _exists(entry):
                    with _naming(entry.path):
                        os.mkdir(entry.name, dir_fd=entry.directory)
                    created.append(entry)
                opened[path] = held.enter_context(_opened(entry))
            return opened[path]

        top = directory(root)
        for name, file in files.items():
            relative = PurePosixPath(name)
            entry = directory(root / relative.parent).entry(relative.name)
            _write_file(entry, file)
            written.append(entry)
        # One syncfs makes every file and directory just written durable; fsyncing
        # each of them was most of a render's time. Without syncfs, fsync them all.
        if _syncfs is not None and _syncfs(os.dup(top.descriptor)) == 0:
            return
        for entry in [*written, *reversed(created)]:
            _fsync_at(entry)


def _write_file(entry: _Entry, file: OutputFile) -> None:
    mode = 0o755 if file.executable else 0o644
    with _naming(entry.path):
        descriptor = os.open(entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                             dir_fd=entry.directory)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # whatever the umask
        handle.write(file.text.encode())


def _put_in_place(staged: _Entry, current: _Entry, retired: _Entry) -> None:
    if not _exists(current):
        _rename(staged, current)
    elif not _exchange(staged, current):
        # Not atomic: a crash between these two renames leaves `current` missing;
        # _discard (here or in the next run) puts the retired copy back.
        _rename(current, retired)
        _rename(staged, current)
    os.fsync(current.directory)


def _discard(staging: _Entry, out: _Directory) -> None:
    """Put back retired units a crash left missing, then delete `staging` and the old trees in it."""
    with _opened(staging) as held:
        for name in sorted(name for name in os.listdir(held.descriptor) if name.endswith(_RETIRED)):
            current = out.entry(name.removesuffix(_RETIRED))
            if not _exists(current):
                _rename(held.entry(name), current)
                os.fsync(out.descriptor)
    with _naming(staging.path):
        shutil.rmtree(staging.name, dir_fd=staging.directory)


def _rename(source: _Entry, destination: _Entry) -> None:
    """Every rename of a unit goes through here, so tests can make one fail, or kill the process there."""
    with _naming(source.path, destination.path):
        os.rename(source.name, destination.name, src_dir_fd=source.directory, dst_dir_fd=destination.directory)


def _exchange(first: _Entry, second: _Entry) -> bool:
    """Swap two entries in one step; False if this system or filesystem cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(first.directory, os.fsencode(first.name), second.directory, os.fsencode(second.name), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), str(first.path), None, str(second.path))


def _exists(entry: _Entry) -> bool:
    try:
        os.stat(entry.name, dir_fd=entry.directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@contextmanager
def _opened(entry: _Entry) -> Iterator[_Directory]:
    """`entry`, a directory, held open for the block; ELOOP if it is a symbolic link."""
    with _naming(entry.path):
        try:
            descriptor = os.open(entry.name, _DIRECTORY, dir_fd=entry.directory)
        except NotADirectoryError:
            # With O_DIRECTORY, O_NOFOLLOW reports a link as ENOTDIR too: tell the two apart.
            if stat.S_ISLNK(os.stat(entry.name, dir_fd=entry.directory, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
            raise
    try:
        yield _Directory(descriptor, entry.path)
    finally:
        os.close(descriptor)


@contextmanager
def _naming(path: Path, second: Path | None = None) -> Iterator[None]:
    """An OSError raised in the block names `path` (and `second`): a call through a descriptor names only the entry."""
    try:
        yield
    except OSError as error:
        error.filename = str(path)
        if second is not None:
            error.filename2 = str(second)
        raise


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def _load_syncfs() -> Callable[[int], int] | None:
    """syncfs(2), closing the descriptor it is given; None where libc has no syncfs."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def sync_and_close(descriptor: int) -> int:
        try:
            return int(function(descriptor))
        finally:
            os.close(descriptor)

    return sync_and_close


_syncfs = _load_syncfs()


@contextmanager
def _exclusive_lock(lock: _Entry) -> Iterator[None]:
    with _naming(lock.path):
        descriptor = os.open(lock.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=lock.directory)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _ensure_directory(directory: Path) -> None:
    """Create `directory` and its missing parents, each made durable in its own parent."""
    missing = list(takewhile(lambda path: not path.exists(), (directory, *directory.parents)))
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        _fsync(path.parent)


def _fsync_at(entry: _Entry) -> None:
    """fsync a file or directory named in a directory held open."""
    with _naming(entry.path):
        descriptor = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=entry.directory)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes the names in it durable)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
