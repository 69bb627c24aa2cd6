"""Hostile subscriptions: template matching that cannot be made slow or escaped, bounded
stream names and identifiers, and unsigned channels that overlap signed ones."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import cable, signing
from hub.cable import ActionCableSession, Channel, Context, NavigatorSession, Policy
from hub.streams import StreamRegistry
from hub_testkit import FakeSubscriber, LogRecorder

SHOWCASE = {
    "CurrentHeatChannel": Channel("current-heat-{database}"),
    "ScoresChannel": Channel("live-scores-{database}"),
    "ConfigUpdateChannel": Channel("config_update_{database}_{user_id}", signed=True),
    "CommandOutputChannel": Channel("command_output_{database}_{user_id}_{job_id}", signed=True),
}
SIGNED = "stream of a signed channel"
MAX_STREAM_NAME_BYTES = 1024
MAX_IDENTIFIER_BYTES = 4096


def action_cable(policy: Policy, log: LogRecorder) -> tuple[ActionCableSession, StreamRegistry]:
    registry = StreamRegistry()
    return ActionCableSession(Context(policy, registry, log), FakeSubscriber()), registry


def navigator(policy: Policy, log: LogRecorder) -> tuple[NavigatorSession, StreamRegistry]:
    registry = StreamRegistry()
    return NavigatorSession(Context(policy, registry, log), FakeSubscriber()), registry


def subscribe_identifier(session: ActionCableSession, identifier: str) -> dict[str, Any]:
    (reply,) = session.receive(json.dumps({"command": "subscribe", "identifier": identifier}))
    return json.loads(reply)


def subscribe(session: ActionCableSession, **params: Any) -> dict[str, Any]:
    return subscribe_identifier(session, json.dumps(params))


def nav_subscribe(session: NavigatorSession, stream: str) -> list[str]:
    return session.receive(json.dumps({"type": "subscribe", "stream": stream}))


# --- 1. Template matching: linear time, no regex, newlines are ordinary characters ----------


def oracle(templates: list[str]) -> Callable[[str], bool]:
    """The intended meaning: each placeholder is one or more characters of any kind."""
    alternatives = ["".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(re.split(r"\{([a-z])\}", t))) for t in templates]
    pattern = re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)
    return lambda name: pattern.fullmatch(name) is not None


# Small alphabets make literal pieces recur and overlap in names, where a greedy search could go wrong.
LETTERS = "ab_\n"
literals = st.text(alphabet=LETTERS, max_size=3)
templates = st.builds(
    lambda first, rest: first + "".join("{" + p + "}" + lit for p, lit in rest),
    literals,
    st.lists(st.tuples(st.sampled_from("xyz"), literals), max_size=4),
)
names = st.text(alphabet=LETTERS, max_size=14)


@settings(max_examples=1500, deadline=None)
@given(signed=st.lists(templates, min_size=1, max_size=3), unsigned=st.lists(templates, max_size=2), name=names)
def test_template_matching_agrees_with_a_dotall_regex(signed: list[str], unsigned: list[str], name: str) -> None:
    channels = {f"S{i}": Channel(t, signed=True) for i, t in enumerate(signed)}
    channels |= {f"U{i}": Channel(t) for i, t in enumerate(unsigned)}
    closed = Policy(False, b"k", channels)
    if oracle(signed)(name):
        expected = SIGNED
    elif unsigned and oracle(unsigned)(name):
        expected = ""
    else:
        expected = "public streams are off"
    assert closed.navigator_allowed(name) == expected
    assert Policy(True, b"k", channels).navigator_allowed(name) == (SIGNED if expected == SIGNED else "")


@pytest.mark.parametrize(
    "template, name, matches",
    [
        ("{a}", "", False),
        ("{a}", "\n", True),
        ("{a}{b}", "x", False),
        ("{a}{b}", "xy", True),
        ("ab{x}ba", "aba", False),
        ("ab{x}ba", "abxba", True),
        ("a{x}a{y}a", "aaaa", False),
        ("a{x}a{y}a", "aaaaa", True),
        ("_{x}__{y}_", "___x__", False),
        ("_{x}__{y}_", "__x___y_", True),
        ("plain", "plain", True),
        ("plain", "plain\n", False),
    ],
)
def test_template_matching_edges(template: str, name: str, matches: bool) -> None:
    assert oracle([template])(name) is matches
    policy = Policy(False, None, {"C": Channel(template, signed=True)})
    assert (policy.navigator_allowed(name) == SIGNED) is matches


def test_a_newline_does_not_escape_the_signed_check(log: LogRecorder, secret: bytes) -> None:
    """`.+` without DOTALL did not match a newline, so this stream of a signed channel was public."""
    stream = "config_update_db\n_7"  # what the signed channel itself produces for database "db\n"
    policy = Policy(True, secret, SHOWCASE)
    assert policy.navigator_allowed(stream) == SIGNED
    session, registry = navigator(policy, log)
    assert nav_subscribe(session, stream) == []
    ac, ac_registry = action_cable(policy, log)
    assert subscribe(ac, channel="$pubsub", stream_name=stream)["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == SIGNED
    assert registry.subscriptions == ac_registry.subscriptions == 0


@contextmanager
def regex_calls() -> Iterator[list[str]]:
    """Records every use of the regex engine (compiled-pattern methods and the re module's functions)."""
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and isinstance(getattr(arg, "__self__", None), re.Pattern):
            calls.append(f"{arg.__self__.pattern!r}.{arg.__name__}")
        elif event == "call" and frame.f_globals.get("__name__") == "re":
            calls.append(f"re.{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(None)


def test_matching_a_hostile_stream_name_runs_no_regex(secret: bytes) -> None:
    """The freeze was catastrophic backtracking of `.+` per placeholder; a matcher that never
    enters the regex engine cannot backtrack. (Deterministic stand-in for a timing test.)"""
    policy = Policy(True, secret, {**SHOWCASE, "Tail": Channel("t_{a}_{b}_{c}_end", signed=True)})
    # Three placeholders and separators everywhere; the old regex failed these only after trying
    # every split (the newline stopped `.+`, the missing suffix stops every template).
    hostile = ["command_output_" + "_" * 60 + "\n", "t_" + "_" * 60 + "_en"]
    with regex_calls() as calls:
        assert policy.navigator_allowed(hostile[0]) == SIGNED
        assert policy.navigator_allowed(hostile[1]) == ""
        assert policy.resolve({"channel": "$pubsub", "stream_name": hostile[1]}, "") == (hostile[1], "")
        assert policy.navigator_allowed("t_a_b_c_end") == SIGNED
    assert calls == []


def test_matching_is_linear_in_the_name(secret: bytes) -> None:
    """Counts the substring searches the matcher makes: at most one per literal piece, whatever the name."""
    searches = 0

    class Counted(str):
        def find(self, *args: Any) -> int:  # type: ignore[override]
            nonlocal searches
            searches += 1
            return super().find(*args)

    policy = Policy(True, secret, SHOWCASE)
    for size in (10, 1000):
        searches = 0
        name = Counted("command_output_" + "_" * size + "\n")
        assert policy.navigator_allowed(name) == SIGNED
        # Only command_output_{database}_{user_id}_{job_id} gets past its prefix: two middle literals.
        assert searches == 2


# --- 2. Bounded stream names and identifiers ----------------------------------------------


def test_the_limits() -> None:
    assert cable.MAX_STREAM_NAME_BYTES == MAX_STREAM_NAME_BYTES
    assert cable.MAX_IDENTIFIER_BYTES == MAX_IDENTIFIER_BYTES


@pytest.mark.parametrize(
    "stream, accepted",
    [("s" * MAX_STREAM_NAME_BYTES, True), ("s" * (MAX_STREAM_NAME_BYTES + 1), False), ("é" * 512, True), ("é" * 513, False)],
)
def test_navigator_refuses_long_stream_names(log: LogRecorder, stream: str, accepted: bool) -> None:
    session, registry = navigator(Policy(True, None, SHOWCASE), log)
    replies = nav_subscribe(session, stream)
    assert (len(replies) == 1) is accepted
    assert registry.subscriptions == int(accepted)
    if not accepted:
        event, fields = log.events[-1]
        assert (event, fields) == ("subscription_rejected", {"why": "stream name too long"})


def test_long_stream_names_are_refused_before_any_matching(log: LogRecorder) -> None:
    policy = Policy(True, None, SHOWCASE)
    long = "command_output_" + "_" * 3000
    with regex_calls() as calls:
        assert policy.navigator_allowed(long) == "stream name too long"
    assert calls == []


def test_action_cable_refuses_long_public_stream_names(log: LogRecorder) -> None:
    session, registry = action_cable(Policy(True, None, SHOWCASE), log)
    assert subscribe(session, channel="$pubsub", stream_name="s" * MAX_STREAM_NAME_BYTES)["type"] == "confirm_subscription"
    assert subscribe(session, channel="$pubsub", stream_name="t" * (MAX_STREAM_NAME_BYTES + 1))["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == "stream name too long"
    assert registry.subscriptions == 1


def test_action_cable_refuses_long_streams_filled_from_params(log: LogRecorder) -> None:
    session, registry = action_cable(Policy(False, None, SHOWCASE), log)
    assert subscribe(session, channel="CurrentHeatChannel", database="d" * 1100)["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == "stream name too long"
    assert registry.subscriptions == 0


@pytest.mark.parametrize("channel", ["$pubsub", "Turbo::StreamsChannel"])
def test_signed_streams_are_bounded_too(log: LogRecorder, secret: bytes, channel: str) -> None:
    session, registry = action_cable(Policy(False, secret, SHOWCASE), log)
    fits = signing.sign("s" * MAX_STREAM_NAME_BYTES, secret)
    assert subscribe(session, channel=channel, signed_stream_name=fits)["type"] == "confirm_subscription"
    over = signing.sign("s" * (MAX_STREAM_NAME_BYTES + 1), secret)
    assert subscribe(session, channel=channel, signed_stream_name=over)["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == "stream name too long"
    assert registry.subscriptions == 1


def test_long_identifiers_are_rejected_before_parsing(log: LogRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    session, registry = action_cable(Policy(False, None, SHOWCASE), log)
    parsed: list[int] = []
    real = cable._parse_object
    monkeypatch.setattr(cable, "_parse_object", lambda text: parsed.append(len(text)) or real(text))
    identifier = json.dumps({"channel": "CurrentHeatChannel", "database": "d", "pad": "p" * MAX_IDENTIFIER_BYTES})
    reply = subscribe_identifier(session, identifier)
    assert reply == {"identifier": identifier, "type": "reject_subscription"}
    assert len(parsed) == 1  # the message itself, not the identifier inside it
    assert log.events[-1] == ("subscription_rejected", {"why": "identifier too long"})
    assert registry.subscriptions == 0
    assert session.receive(json.dumps({"command": "unsubscribe", "identifier": identifier})) == []
    assert log.events[-1][1]["why"] == "identifier too long"


def test_identifier_limit_counts_utf8_bytes(log: LogRecorder) -> None:
    session, _ = action_cable(Policy(False, None, SHOWCASE), log)
    base = json.dumps({"channel": "CurrentHeatChannel", "database": "d", "pad": ""}, ensure_ascii=False)
    fits = base[:-2] + "é" * ((MAX_IDENTIFIER_BYTES - len(base)) // 2) + '"}'
    assert len(fits.encode()) <= MAX_IDENTIFIER_BYTES
    assert subscribe_identifier(session, fits)["type"] == "confirm_subscription"
    over = base[:-2] + "é" * ((MAX_IDENTIFIER_BYTES - len(base)) // 2 + 1) + '"}'
    assert len(over) <= MAX_IDENTIFIER_BYTES < len(over.encode())
    assert subscribe_identifier(session, over)["type"] == "reject_subscription"


def test_limits_can_be_set_on_the_policy(log: LogRecorder) -> None:
    policy = Policy(True, None, SHOWCASE, max_stream_name_bytes=8, max_identifier_bytes=64)
    session, _ = navigator(policy, log)
    assert len(nav_subscribe(session, "12345678")) == 1
    assert nav_subscribe(session, "123456789") == []
    ac, _ = action_cable(policy, log)
    assert subscribe(ac, channel="$pubsub", stream_name="12345678")["type"] == "confirm_subscription"
    assert subscribe(ac, channel="$pubsub", stream_name="x" * 40)["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == "identifier too long"


def test_lone_surrogates_do_not_break_the_length_check(log: LogRecorder) -> None:
    session, _ = navigator(Policy(True, None, SHOWCASE), log)
    assert len(session.receive('{"type":"subscribe","stream":"a\\ud800"}')) == 1
    assert session.receive('{"type":"subscribe","stream":"' + "\\ud800" * 400 + '"}') == []


# --- 3. Unsigned channels that overlap signed ones ----------------------------------------

ROOMS = {"RoomChannel": Channel("room_{id}"), "AdminRoomChannel": Channel("room_admin_{n}", signed=True)}


def test_an_unsigned_channel_cannot_reach_a_signed_channels_stream(log: LogRecorder, secret: bytes) -> None:
    session, registry = action_cable(Policy(False, secret, ROOMS), log)
    assert subscribe(session, channel="RoomChannel", id="admin_7")["type"] == "reject_subscription"
    assert log.events[-1] == (
        "subscription_rejected",
        {"channel": "RoomChannel", "why": SIGNED},
    )
    assert registry.broadcast("room_admin_7", "secret") == 0
    assert subscribe(session, channel="RoomChannel", id="7")["type"] == "confirm_subscription"
    signed = signing.sign("room_admin_7", secret)
    assert subscribe(session, channel="AdminRoomChannel", n=7, signed_stream_name=signed)["type"] == "confirm_subscription"
    assert registry.broadcast("room_admin_7", "secret") == 1


def test_an_unsigned_channel_overlap_through_the_query_string(log: LogRecorder, secret: bytes) -> None:
    registry = StreamRegistry()
    session = ActionCableSession(Context(Policy(True, secret, ROOMS), registry, log), FakeSubscriber(), "id=admin_7")
    assert subscribe(session, channel="RoomChannel")["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == SIGNED


def test_navigator_cannot_reach_the_overlap_either(log: LogRecorder) -> None:
    session, registry = navigator(Policy(False, None, ROOMS), log)
    assert nav_subscribe(session, "room_admin_7") == []
    assert log.events[-1][1]["why"] == SIGNED
    assert len(nav_subscribe(session, "room_7")) == 1
