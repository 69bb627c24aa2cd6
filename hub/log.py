"""One line per event on stdout, as `key=value` text or as JSON.

A running hub writes the lines of one turn of its event loop together: `schedule` (the loop's
call_soon) runs `flush` once the turn's events are handled, one write instead of one per line.
"""

from __future__ import annotations

import json
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

_JSON = json.JSONEncoder(default=str)  # json.dumps(record, default=str) without building an encoder per line


_second = [-1, ""]  # the last whole second formatted, and its text: strftime once per second, not per line


def _timestamp() -> str:
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int(now % 1 * 1000):03d}Z"


def _text_value(value: Any) -> str:
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text)


class Logger:
    __slots__ = ("format", "stream", "schedule", "pending")

    def __init__(self, format: str = "text", stream: TextIO | None = None) -> None:
        self.format = format
        self.stream = stream if stream is not None else sys.stdout
        # None: each line is written at once; else called with `flush` when a first line waits.
        self.schedule: Callable[[Callable[[], None]], object] | None = None
        self.pending: list[str] = []

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        if self.format == "json":
            record = {"time": _timestamp(), "level": level, "event": event, **fields}
            line = _JSON.encode(record)
        else:
            parts = [_timestamp(), "level=" + level, "event=" + event]
            parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
            line = " ".join(parts)
        pending = self.pending
        pending.append(line + "\n")
        if self.schedule is None:
            self.flush()
        elif len(pending) == 1:
            self.schedule(self.flush)

    def flush(self) -> None:
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not take the hub down
            pass
