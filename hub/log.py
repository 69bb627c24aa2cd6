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

_JSON = json.JSONEncoder(default=str)  # json.dumps(value, default=str) without building an encoder per value
_json_string = json.encoder.encode_basestring_ascii  # what that encoder writes for a str, without its Python layers


def _json_value(value: Any) -> str:
    """`value` as json.dumps(value, default=str) writes it: strings and integers, nearly every field,
    directly (json's encode() builds a C encoder at every call, most of a line's cost)."""
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is int:  # not bool, a subclass of int that json writes as true/false
        return int.__repr__(value)
    return _JSON.encode(value)


_second = [-1, ""]  # the last whole second formatted, and its text: strftime once per second, not per line
_millisecond = [-1, ""]  # the last millisecond stamped, and its stamp: lines of one loop turn share it


def _timestamp() -> str:
    millisecond = int(time.time() * 1000)
    if millisecond != _millisecond[0]:
        second, fraction = divmod(millisecond, 1000)
        if second != _second[0]:
            _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _millisecond[0], _millisecond[1] = millisecond, f"{_second[1]}.{fraction:03d}Z"
    return _millisecond[1]


def _text_value(value: Any) -> str:
    if type(value) is int:
        return int.__repr__(value)
    text = str(value)
    if text.isprintable() and text and " " not in text and '"' not in text and "=" not in text:
        return text
    return _json_string(text)


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
            # As json.dumps({"time": ..., "level": level, "event": event, **fields}, default=str) writes it;
            # the event's and the fields' names are the hub's own identifiers, never a peer's text.
            line = f'{{"time": "{_timestamp()}", "level": "{level}", "event": "{event}"'
            for key, value in fields.items():
                line += f', "{key}": {_json_value(value)}'
            line += "}"
        else:
            line = f"{_timestamp()} level={level} event={event}"
            for key, value in fields.items():
                line += f" {key}={_text_value(value)}"
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
