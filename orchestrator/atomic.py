"""Writes that survive a crash: a file or a directory appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath


def write_file_atomic(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def publish_directories(out_dir: Path, units: Mapping[PurePosixPath, Mapping[str, str]]) -> None:
    """Put each unit (a directory of files under `out_dir`) in place, replacing what was there.

    Everything is first written and synced in a staging directory beside
    `out_dir`; only then is each unit renamed into place, so a failure while
    writing leaves `out_dir` untouched.
    """
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging.", dir=out_dir.parent))
    try:
        for unit, files in units.items():
            _write_tree(staging / unit, files.items())
        if not out_dir.exists():
            os.replace(staging, out_dir)
            _fsync_directory(out_dir.parent)
            return
        for unit in units:
            _swap_in(staging / unit, out_dir / unit)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_tree(root: Path, files: Iterable[tuple[str, str]]) -> None:
    for relative, text in files:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    for directory in sorted({p for p in root.rglob("*") if p.is_dir()} | {root}, reverse=True):
        _fsync_directory(directory)


def _swap_in(new: Path, current: Path) -> None:
    current.parent.mkdir(parents=True, exist_ok=True)
    if current.exists():
        retired = current.with_name(f".{current.name}.retired")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(current, retired)
        os.replace(new, current)
        shutil.rmtree(retired)
    else:
        os.replace(new, current)
    _fsync_directory(current.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
