"""Progress of a rollout as it happens: one line per event, with the region, its phase and the time spent.

On a terminal the phases are coloured and the time is relative to the start;
otherwise (a log, CI) each line carries a UTC timestamp and no escape codes.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TextIO

from orchestrator.rollout.model import RegionKey

_COLOURS = {
    "passed": "32", "rolled_back": "33", "failed": "31", "rolling_back": "33",
    "gating": "36", "deploying": "34",
}  # fmt: skip


class Progress:
    def __init__(self, stream: TextIO, terminal: bool) -> None:
        self.stream = stream
        self.terminal = terminal
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, key: RegionKey, phase: str, detail: str) -> None:
        elapsed = time.monotonic() - self.started
        if self.terminal:
            colour = _COLOURS.get(phase)
            shown = f"\033[{colour}m{phase:<12}\033[0m" if colour else f"{phase:<12}"
            line = f"{elapsed:7.1f}s  {str(key):<18} {shown} {detail}"
        else:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            line = f"{stamp} +{elapsed:.1f}s {key} {phase}: {detail}"
        with self._lock:
            print(line, file=self.stream, flush=True)
