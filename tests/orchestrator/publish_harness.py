"""Test trees for publish_directories, and a process that publishes them and kills itself midway.

publish_harness.py OUT MODE FUNCTION WHEN N
    publish units("new") into OUT, with renameat2 as MODE (see renameat2_for),
    sending itself SIGKILL BEFORE or AFTER the Nth call of orchestrator.atomic.FUNCTION.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

# The checkout this file is in, not the installed one: mutmut runs the tests on a mutated copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestrator import atomic
from orchestrator.atomic import OutputFile

UNITS = (PurePosixPath("production"), PurePosixPath("staging"))
REGIONS = 20

Units = dict[PurePosixPath, dict[str, OutputFile]]


def units(version: str) -> Units:
    """Two environments of many files; every file differs by version, and each version has files the other lacks."""
    first = 0 if version == "old" else 1
    dropped = {"only-old.txt": OutputFile("dropped by the next publish\n")} if version == "old" else {}
    return {
        unit: {
            "Dockerfile": OutputFile(f"FROM app:{version}\n"),
            "bin/start": OutputFile(f"#!/bin/sh\necho {unit} {version}\n", executable=True),
            **{
                f"regions/r{region:02}/{name}": OutputFile(f"{unit} r{region} {name} {version}\n")
                for region in range(first, first + REGIONS)
                for name in ("navigator.yml", "hub.yml")
            },
            **dropped,
        }
        for unit in UNITS
    }


def tree(published: Units) -> dict[str, bytes]:
    """What `published` looks like on disk: path relative to the output directory -> bytes."""
    return {f"{unit}/{name}": file.text.encode() for unit, files in published.items() for name, file in files.items()}


def renameat2_for(mode: str) -> Callable[..., int] | None:
    """The real renameat2 ("exchange"), none ("missing"), or one that fails with errno `mode` (e.g. "EINVAL")."""
    if mode == "exchange":
        return atomic._renameat2
    if mode == "missing":
        return None
    code = getattr(errno, mode)

    def failing(*_arguments: Any) -> int:
        ctypes.set_errno(code)
        return -1

    return failing


def _kill_at(function: str, when: str, n: int) -> None:
    real = getattr(atomic, function)
    calls = 0

    def killing(*arguments: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*arguments)
        if calls == n and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(atomic, function, killing)


def main(arguments: list[str]) -> int:
    out, mode, function, when, n = arguments
    atomic._renameat2 = renameat2_for(mode)
    _kill_at(function, when, int(n))
    atomic.publish_directories(Path(out), units("new"))
    return 0  # only if the kill point was never reached: the test reports that


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
