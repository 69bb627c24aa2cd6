"""The hub's log lines: JSON exactly as json.dumps writes the record, text quoted where a reader
could misparse it, and the time stamp to the millisecond."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.log import Logger

pytestmark = pytest.mark.timeout(60)

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Unusual:
    """A value json cannot encode itself: written as str() gives it, as default=str does."""

    def __str__(self) -> str:
        return 'odd "value"'


def line_of(format: str, event: str, level: str = "info", **fields: Any) -> str:
    out = io.StringIO()
    Logger(format, out)(event, level, **fields)
    [line] = out.getvalue().splitlines()
    return line


values = st.one_of(
    st.text(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(Unusual()),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), values, max_size=5))
def test_a_json_line_is_what_json_dumps_writes_for_the_record(fields: dict[str, Any]) -> None:
    fields = {key: value for key, value in fields.items() if key not in ("time", "level", "event")}
    line = line_of("json", "connected", "warn", **fields)
    record = json.loads(line)
    assert STAMP.fullmatch(record["time"])
    expected = {"time": record["time"], "level": "warn", "event": "connected", **fields}
    assert line == json.dumps(expected, default=str)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_a_text_value_is_bare_only_when_it_reads_back_as_one_word(value: str) -> None:
    line = line_of("text", "ignored", why=value)
    written = line.split(" event=ignored why=", 1)[1]
    plain = value != "" and value.isprintable() and not any(c in value for c in ' "=')
    if plain:
        assert written == value
    else:
        assert json.loads(written) == value and written.isascii()


def test_text_lines_write_integers_and_other_values_as_str_gives_them() -> None:
    line = line_of("text", "broadcast", "info", delivered=10000, ok=True, missing=None, odd=Unusual())
    stamp, rest = line.split(" ", 1)
    assert STAMP.fullmatch(stamp)
    assert rest == 'level=info event=broadcast delivered=10000 ok=True missing=None odd="odd \\"value\\""'


def test_the_stamp_is_the_current_utc_time_to_the_millisecond() -> None:
    before = time.time()
    stamp = json.loads(line_of("json", "listening"))["time"]
    after = time.time()
    written = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    # Truncated to the millisecond, never rounded up past the moment it was taken.
    assert int(before * 1000) / 1000 - 0.0005 <= written <= after + 0.0005


def test_lines_of_a_new_millisecond_and_second_get_a_new_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_700_000_000.0015]
    monkeypatch.setattr(time, "time", lambda: now[0])
    stamps = []
    for moment in (1_700_000_000.0015, 1_700_000_000.0019, 1_700_000_000.9991, 1_700_000_001.0):
        now[0] = moment
        stamps.append(json.loads(line_of("json", "tick"))["time"])
    assert stamps == [
        "2023-11-14T22:13:20.001Z",
        "2023-11-14T22:13:20.001Z",
        "2023-11-14T22:13:20.999Z",
        "2023-11-14T22:13:21.000Z",
    ]
