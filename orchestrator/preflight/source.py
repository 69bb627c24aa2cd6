"""The app's source tree as the audit reads it: which files, read with a bound, named relative to the app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from hub.errors import InputError

# A file larger than this is not read (and the report says so): generated bundles, dumps.
MAX_FILE_BYTES = 1_000_000
# Never walked: dependencies, build output, logs, run-time files (tmp/ is only looked at for the tokens file).
SKIPPED_NAMES = frozenset(("node_modules", "vendor", "tmp", "log", ".git", "storage", "coverage"))
SKIPPED_PATHS = frozenset(("public/assets", "public/packs", "public/packs-test", "app/assets/builds"))


class AppTree:
    """A Rails app's checkout. Opening it checks that it is one; every read is bounded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.too_large: list[str] = []

    @classmethod
    def open(cls, path: Path) -> AppTree:
        if not path.exists():
            raise InputError([f"{path}: no such directory"])
        if not path.is_dir():
            raise InputError([f"{path}: not a directory"])
        if not (path / "config" / "application.rb").is_file() and not (path / "config" / "environment.rb").is_file():
            raise InputError([f"{path}: not a Rails app (no config/application.rb)"])
        return cls(path)

    def files(self, top: str, suffixes: tuple[str, ...]) -> Iterator[str]:
        """The files under `top` whose names end with one of `suffixes`, as sorted paths relative to the app."""
        base = self.root / top
        if not base.is_dir():
            return
        for directory, subdirectories, names in os.walk(base):
            relative_directory = Path(directory).relative_to(self.root).as_posix()
            subdirectories[:] = sorted(
                name for name in subdirectories
                if name not in SKIPPED_NAMES and f"{relative_directory}/{name}" not in SKIPPED_PATHS
            )
            for name in sorted(names):
                if name.endswith(suffixes):
                    yield f"{relative_directory}/{name}"

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def read(self, relative: str) -> str | None:
        """The file's text (undecodable bytes replaced), or None when it is missing or over the bound."""
        path = self.root / relative
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                self.too_large.append(relative)
                return None
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read(MAX_FILE_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as error:
            raise InputError([f"{path}: cannot read: {error}"]) from None
