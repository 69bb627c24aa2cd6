"""The app's source tree as the audit reads it: which files, read with a bound, named relative to the app.

The tree may be anyone's checkout, so it is read as untrusted: every name is
opened from the app's directory one component at a time, never through a
symbolic link (nothing outside the tree is read) and without blocking (a FIFO
is not waited on), and only regular files are read. A walk holds one open
directory per level and goes no deeper than MAX_DEPTH. What is not read is
remembered with the reason, for the report.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from hub.errors import InputError
from orchestrator.terminal import printable

# A file larger than this is not read (and the report says so): generated bundles, dumps.
MAX_FILE_BYTES = 1_000_000
# Directories nested deeper than this below the app are not walked (and the report says so).
MAX_DEPTH = 64
# Never walked: dependencies, build output, logs, run-time files (tmp/ is only looked at for the tokens file).
SKIPPED_NAMES = frozenset(("node_modules", "vendor", "tmp", "log", ".git", "storage", "coverage"))
SKIPPED_PATHS = frozenset(("public/assets", "public/packs", "public/packs-test", "app/assets/builds"))
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _NotRead(Exception):
    """A name in the tree the audit does not open, and why."""


class AppTree:
    """A Rails app's checkout, held by its directory. Opening it checks that it is one; every read is bounded.
    Close it (or use it in a `with` block) when the audit is done."""

    def __init__(self, root: Path, descriptor: int) -> None:
        self.root = root
        self.descriptor = descriptor
        self.skipped: dict[str, str] = {}  # path relative to the app -> why it was not read

    @classmethod
    def open(cls, path: Path) -> AppTree:
        shown = printable(str(path))
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InputError([f"{shown}: no such directory"]) from None
        except NotADirectoryError:
            raise InputError([f"{shown}: not a directory"]) from None
        except OSError as error:
            raise InputError([f"{shown}: cannot read: {error.strerror}"]) from None
        tree = cls(path, descriptor)
        if not tree.exists("config/application.rb") and not tree.exists("config/environment.rb"):
            tree.close()
            raise InputError([f"{shown}: not a Rails app (no config/application.rb)"])
        return tree

    def close(self) -> None:
        os.close(self.descriptor)

    def __enter__(self) -> AppTree:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def files(self, top: str, suffixes: tuple[str, ...]) -> Iterator[str]:
        """The files under `top` whose names end with one of `suffixes`, as sorted paths relative to the app:
        a directory's own files, then each subdirectory's in turn (what os.walk gives, without its recursion)."""
        opened = self._open(top, _DIRECTORY)
        path = top
        # The directories being walked, one per level: descriptor, path, subdirectories still to walk (last first).
        levels: list[tuple[int, str, list[str]]] = []
        try:
            while True:
                if opened is not None:
                    pending: list[str] = []
                    levels.append((opened, path, pending))
                    names, subdirectories = _listing(opened, path)
                    pending.extend(reversed(subdirectories))
                    yield from (f"{path}/{name}" for name in names if name.endswith(suffixes))
                if not levels:
                    return
                parent, directory, pending = levels[-1]
                if not pending:
                    os.close(levels.pop()[0])
                    opened = None
                    continue
                path = f"{directory}/{pending.pop()}"
                opened = None
                if path.count("/") >= MAX_DEPTH:
                    self.skipped[path] = f"nested deeper than {MAX_DEPTH} directories"
                    continue
                try:
                    opened = self._open_in(parent, path, _DIRECTORY)
                except _NotRead as why:  # changed since it was listed
                    self.skipped[path] = str(why)
        finally:
            for level in levels:
                os.close(level[0])

    def exists(self, relative: str) -> bool:
        """Whether `relative` is a regular file of the tree (a link is not: it is not the app's own file)."""
        descriptor = self._open(relative, _FILE, remember=False)
        if descriptor is None:
            return False
        os.close(descriptor)
        return True

    def read(self, relative: str) -> str | None:
        """The file's text (undecodable bytes replaced), or None when it is missing, over the bound, or not a
        regular file of the tree (the last two remembered in `skipped`)."""
        descriptor = self._open(relative, _FILE)
        if descriptor is None:
            return None
        if os.fstat(descriptor).st_size > MAX_FILE_BYTES:
            os.close(descriptor)
            self.skipped[relative] = f"larger than {MAX_FILE_BYTES} bytes"
            return None
        with open(descriptor, encoding="utf-8", errors="replace") as handle:
            return handle.read(MAX_FILE_BYTES + 1)

    def _open(self, relative: str, flags: int, remember: bool = True) -> int | None:
        """`relative` opened one component at a time from the app's directory; None when it is not there or may not
        be read (with `remember`, why goes into `skipped`)."""
        parts = relative.split("/")
        opened: list[int] = []
        try:
            current = self.descriptor
            for depth in range(1, len(parts)):
                directory = self._open_in(current, "/".join(parts[:depth]), _DIRECTORY)
                if directory is None:
                    return None
                opened.append(directory)
                current = directory
            return self._open_in(current, relative, flags)
        except _NotRead as why:
            if remember:
                self.skipped[relative] = str(why)
            return None
        finally:
            for descriptor in opened:
                os.close(descriptor)

    def _open_in(self, directory: int, relative: str, flags: int) -> int | None:
        """The last component of `relative` in `directory`, opened with `flags`: None when it is missing or not a
        directory where one is wanted; _NotRead when it is a link, or not a regular file where one is wanted;
        InputError when it cannot be read. Looked at before it is opened, so a device or a socket is never
        opened; O_NOFOLLOW, O_NONBLOCK and a second look keep a swap in between harmless."""
        name = relative.rsplit("/", 1)[-1]
        directory_wanted = bool(flags & os.O_DIRECTORY)
        expected = stat.S_ISDIR if directory_wanted else stat.S_ISREG
        try:
            try:
                mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISLNK(mode):
                raise _NotRead(f"{relative} is a symbolic link, not followed: the audit reads only the app's own files")
            if not expected(mode):
                if directory_wanted:
                    return None
                raise _NotRead(f"{relative} is not a regular file")
            descriptor = os.open(name, flags, dir_fd=directory)
        except OSError as error:
            raise InputError([f"{printable(str(self.root / relative))}: cannot read: {error.strerror}"]) from None
        if not expected(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise _NotRead(f"{relative} was replaced while the audit read it")
        return descriptor


def _listing(descriptor: int, directory: str) -> tuple[list[str], list[str]]:
    """A directory's entries other than directories, and the subdirectories to walk (not links), each sorted."""
    names: list[str] = []
    subdirectories: list[str] = []
    with os.scandir(descriptor) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                names.append(entry.name)
            elif entry.name not in SKIPPED_NAMES and f"{directory}/{entry.name}" not in SKIPPED_PATHS:
                subdirectories.append(entry.name)
    return sorted(names), sorted(subdirectories)
