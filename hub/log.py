"""One line per event on stdout, as `key=value` text or as JSON."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_JSON = json.JSONEncoder(default=str)  # json.dumps(record, default=str) without building an encoder per line


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _text_value(value: Any) -> str:
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text)


class Logger:
    __slots__ = ("format", "stream")

    def __init__(self, format: str = "text", stream: TextIO | None = None) -> None:
        self.format = format
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        if self.format == "json":
            record = {"time": _timestamp(), "level": level, "event": event, **fields}
            line = _JSON.encode(record)
        else:
            parts = [_timestamp(), "level=" + level, "event=" + event]
            parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
            line = " ".join(parts)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not take the hub down
            pass
