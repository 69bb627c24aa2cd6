"""Sessions and policy: what mutation testing of hub/cable.py found untested (bench/results/mutation.md).

The log lines are an interface (operators search for these events, and a rejected subscription must
never log its identifier or stream: either may carry a signed name), so they are pinned exactly.
"""

from __future__ import annotations

import json

import pytest

from hub.cable import ActionCableSession, Channel, Context, NavigatorSession, Policy, template_problem
from hub.streams import StreamRegistry
from hub_testkit import FakeSubscriber, LogRecorder

CHANNELS = {"RoomChannel": Channel("room_{id}"), "SecretChannel": Channel("secret_{id}", signed=True)}


def session(public: bool = True, secret: bytes | None = b"k", limit: int = 10) -> tuple[ActionCableSession, LogRecorder, StreamRegistry]:
    log, registry = LogRecorder(), StreamRegistry(limit)
    policy = Policy(public, secret, CHANNELS, max_identifier_bytes=100)
    return ActionCableSession(Context(policy, registry, log), FakeSubscriber()), log, registry


def command(kind: str, identifier: object) -> str:
    return json.dumps({"command": kind, "identifier": identifier if not isinstance(identifier, dict) else json.dumps(identifier)})


def replies(texts: list[str]) -> list[dict]:
    return [json.loads(text) for text in texts]


# --- Action Cable: what each input logs ---------------------------------------------------------------

LONG = "x" * 101  # over the identifier limit of 100 bytes
ACTION_CABLE_LOGS = [
    ("nope", [("ignored", {"why": "malformed JSON", "size": 4})]),
    (json.dumps({"command": "c" * 70, "identifier": 5}), [("ignored", {"why": "identifier is not a string", "command": "c" * 64})]),
    (command("subscribe", LONG), [("subscription_rejected", {"why": "identifier too long"})]),
    (command("d" * 70, LONG), [("ignored", {"why": "identifier too long", "command": "d" * 64})]),
    (command("message", {"channel": "R" * 70}), [("ignored", {"why": "channel actions are not served", "channel": "R" * 64})]),
    (command("message", {"channel": 7}), [("ignored", {"why": "channel actions are not served", "channel": ""})]),
    (command("e" * 70, {"channel": "RoomChannel"}), [("ignored", {"why": "unknown command", "command": "e" * 64})]),
    (command("pong", {"channel": "RoomChannel"}), []),
    (command("subscribe", "not json"), [("subscription_rejected", {"channel": "", "why": "identifier is not a JSON object"})]),
    (command("subscribe", {"channel": "Nope"}), [("subscription_rejected", {"channel": "Nope", "why": "unknown channel"})]),
    (command("subscribe", {"channel": "$pubsub"}), [("subscription_rejected", {"channel": "$pubsub", "why": "no stream name"})]),
    (command("subscribe", {"channel": "$pubsub", "stream_name": 42}),
     [("subscription_rejected", {"channel": "$pubsub", "why": "stream_name is not a string"})]),
    (command("subscribe", {"channel": "$pubsub", "stream_name": ""}),
     [("subscription_rejected", {"channel": "$pubsub", "why": "stream_name is not a string"})]),
    (command("subscribe", {"channel": "SecretChannel", "id": 1}),
     [("subscription_rejected", {"channel": "SecretChannel", "why": "signed_stream_name missing"})]),
    (command("unsubscribe", {"channel": "$pubsub", "stream_name": "never"}), []),
]


@pytest.mark.parametrize(("text", "logged"), ACTION_CABLE_LOGS, ids=[str(i) for i in range(len(ACTION_CABLE_LOGS))])
def test_each_action_cable_input_logs_exactly_this(text: str, logged: list) -> None:
    cable, log, _ = session()
    cable.receive(text)
    assert log.events == logged


def test_a_subscription_logs_its_stream_when_it_starts_and_ends() -> None:
    cable, log, _ = session()
    identifier = {"channel": "$pubsub", "stream_name": "s"}
    cable.receive(command("subscribe", identifier))
    cable.receive(command("unsubscribe", identifier))
    assert log.events == [("subscribed", {"stream": "s"}), ("unsubscribed", {"stream": "s"})]


def test_policy_refusals_without_public_streams_or_a_secret_say_why() -> None:
    closed, log, _ = session(public=False)
    closed.receive(command("subscribe", {"channel": "$pubsub", "stream_name": "s"}))
    no_secret, log2, _ = session(secret=None)
    no_secret.receive(command("subscribe", {"channel": "Turbo::StreamsChannel", "signed_stream_name": "x--y"}))
    assert log.events == [("subscription_rejected", {"channel": "$pubsub", "why": "public streams are off"})]
    assert log2.events == [("subscription_rejected", {"channel": "Turbo::StreamsChannel", "why": "no signing secret configured"})]


@pytest.mark.parametrize("name", [42, "", None, ["s"], {"s": 1}, True])
def test_a_stream_name_that_is_not_a_non_empty_string_is_rejected_not_raised(name: object) -> None:
    cable, _, registry = session()
    identifier = json.dumps({"channel": "$pubsub", "stream_name": name})
    assert replies(cable.receive(command("subscribe", identifier))) == [{"identifier": identifier, "type": "reject_subscription"}]
    assert registry.subscriptions == 0


def test_a_rejection_at_the_subscription_limit_names_its_identifier_and_says_why() -> None:
    cable, log, registry = session(limit=1)
    cable.receive(command("subscribe", {"channel": "$pubsub", "stream_name": "s"}))
    second = json.dumps({"channel": "$pubsub", "stream_name": "t"})
    assert replies(cable.receive(command("subscribe", second))) == [{"identifier": second, "type": "reject_subscription"}]
    assert log.events[-1] == ("subscription_rejected", {"channel": "$pubsub", "why": "at most 1 subscriptions per connection"})
    assert registry.subscriptions == 1


# --- Navigator's protocol ---------------------------------------------------------------------------------


def navigator(public: bool = True, limit: int = 10) -> tuple[NavigatorSession, LogRecorder, StreamRegistry, FakeSubscriber]:
    log, registry, subscriber = LogRecorder(), StreamRegistry(limit), FakeSubscriber()
    return NavigatorSession(Context(Policy(public, None, CHANNELS), registry, log), subscriber), log, registry, subscriber


def test_each_navigator_input_logs_exactly_this_and_never_a_refused_stream() -> None:
    nav, log, _, _ = navigator(limit=1)
    for text in [
        "nope",
        json.dumps({"type": "y" * 70}),
        '{"type":"pong"}',
        '{"type":"subscribe","stream":"s"}',
        '{"type":"subscribe","stream":"t"}',
        '{"type":"unsubscribe","stream":"s"}',
        '{"type":"unsubscribe","stream":"never"}',
    ]:
        nav.receive(text)
    closed, closed_log, _, _ = navigator(public=False)
    closed.receive('{"type":"subscribe","stream":"private-7"}')
    assert log.events == [
        ("ignored", {"why": "malformed JSON", "size": 4}),
        ("ignored", {"why": "unknown message", "type": "y" * 64}),
        ("subscribed", {"stream": "s"}),
        ("subscription_rejected", {"why": "at most 1 subscriptions per connection"}),
        ("unsubscribed", {"stream": "s"}),
    ]
    assert closed_log.events == [("subscription_rejected", {"why": "public streams are off"})]


def test_a_stream_unsubscribed_then_subscribed_again_is_delivered_again() -> None:
    nav, _, registry, subscriber = navigator()
    for kind in ("subscribe", "unsubscribe", "subscribe"):
        nav.receive(json.dumps({"type": kind, "stream": "s"}))
    assert registry.broadcast("s", "again") == 1 and b"again" in subscriber.frames[-1]
    nav.close()
    assert registry.subscriptions == 0


# --- stream templates in configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("template", ["plain", "room_{id}", "{a}{b_2}-x", ""])
def test_well_formed_templates_have_no_problem(template: str) -> None:
    assert template_problem(template) == ""


@pytest.mark.parametrize("template", ["room_{id", "room_id}", "{1}", "{}", "a{b-c}", "{a}}"])
def test_a_stray_or_malformed_brace_is_a_problem_naming_the_template(template: str) -> None:
    problem = template_problem(template)
    assert problem.startswith(repr(template) + ":") and "{name}" in problem
