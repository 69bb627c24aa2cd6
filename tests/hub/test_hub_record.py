"""Record, the hub's frozen dataclass without dataclasses; and what the hub's sans-I/O modules keep out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import BrokerSettings, HubConfig, Limits
from hub.record import Record

REPO = Path(__file__).resolve().parents[2]


class Point(Record, secret=("label",)):
    x: int
    y: int = 0
    label: str = "origin"


def test_fields_are_given_by_position_or_keyword_and_default_when_left_out() -> None:
    assert (Point(1).x, Point(1).y, Point(1).label) == (1, 0, "origin")
    assert Point(1, 2, "p") == Point(x=1, y=2, label="p") == Point(1, label="p", y=2)
    assert Point.__slots__ == ("x", "y", "label")


@pytest.mark.parametrize(
    ("args", "kwargs", "why"),
    [((), {}, r"missing arguments \['x'\]"), ((1, 2, "p", 4), {}, "at most 3"),
     ((1,), {"x": 2}, r"repeated arguments \['x'\]"), ((1,), {"z": 2}, r"unknown or repeated arguments \['z'\]")],
)  # fmt: skip
def test_wrong_arguments_are_refused(args: tuple, kwargs: dict, why: str) -> None:
    with pytest.raises(TypeError, match=why):
        Point(*args, **kwargs)


def test_equality_and_hash_are_by_value_and_class() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(1, 3) and Point(1, 2) != Point(1, 2, "p")
    assert len({Point(1), Point(1), Point(2)}) == 2

    class Other(Record):
        x: int
        y: int = 0
        label: str = "origin"

    assert Point(1) != Other(1) and Point(1) != (1, 0, "origin")


def test_a_record_cannot_be_changed_only_copied_with_changes() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError):
        point.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.x  # type: ignore[misc]
    with pytest.raises(AttributeError):
        point.z = 5  # type: ignore[attr-defined]
    assert point.replace(y=7, label="p") == Point(1, 7, "p") and point == Point(1, 2)
    with pytest.raises(TypeError):
        point.replace(z=1)


def test_the_repr_leaves_secrets_out() -> None:
    assert repr(Point(1, 2, "hidden")) == "Point(x=1, y=2)"
    settings = BrokerSettings("nats", "nats://127.0.0.1", user="hub", password="pw-secret", token="tok-secret")
    assert "pw-secret" not in repr(settings) and "tok-secret" not in repr(settings) and "user='hub'" in repr(settings)
    config = HubConfig(None, None, "127.0.0.1", 0, signing_secret=b"sig-secret", broadcast_key=b"key-secret")
    assert "sig-secret" not in repr(config) and "key-secret" not in repr(config) and "port=0" in repr(config)


def test_configuration_defaults_are_immutable_and_compare_with_plain_values() -> None:
    config = HubConfig(None, None, "127.0.0.1", 0)
    assert config.channels == {} and config.limits == Limits()
    with pytest.raises(TypeError):
        config.channels["A"] = None  # type: ignore[index]
    assert config.replace(port=9) == HubConfig(None, None, "127.0.0.1", 9)


PROBE = """
import json, sys
sys.modules["_hashlib"] = None  # as hub/__main__.py keeps it out
import hub.config, hub.cable, hub.streams, hub.frames, hub.signing, hub.errors
print(json.dumps(sorted(set(sys.modules) & {"typing", "dataclasses", "inspect", "ast", "dis", "hashlib", "hmac"})))
"""


def test_the_sans_io_modules_import_neither_typing_nor_dataclasses_nor_hashlib() -> None:
    """Each costs resident memory for the hub's lifetime (typing ~0.7 MB, dataclasses ~1.3 MB, hashlib ~0.5 MB)."""
    # -S: without site, which may import anything (a .pth file, sitecustomize).
    command = [sys.executable, "-S", "-c", PROBE]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []
