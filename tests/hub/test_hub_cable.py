"""Action Cable and Navigator sessions, without sockets."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import signing
from hub.cable import ActionCableSession, Channel, Context, NavigatorSession, Policy, disconnect_message, fill
from hub.log import Logger
from hub.streams import StreamRegistry
from hub_testkit import FakeSubscriber, LogRecorder

SHOWCASE = {
    "CurrentHeatChannel": Channel("current-heat-{database}"),
    "ScoresChannel": Channel("live-scores-{database}"),
    "ConfigUpdateChannel": Channel("config_update_{database}_{user_id}", signed=True),
    "CommandOutputChannel": Channel("command_output_{database}_{user_id}_{job_id}", signed=True),
}


def make(secret: bytes | None, log: LogRecorder, public: bool = False, query: str = ""):
    registry = StreamRegistry()
    ctx = Context(Policy(public, secret, SHOWCASE), registry, log)
    sub = FakeSubscriber()
    return ActionCableSession(ctx, sub, query), registry, sub


def subscribe(session: ActionCableSession, **params) -> tuple[str, dict]:
    identifier = json.dumps(params)
    (reply,) = session.receive(json.dumps({"command": "subscribe", "identifier": identifier}))
    return identifier, json.loads(reply)


def test_welcome_carries_a_sid() -> None:
    assert json.loads(ActionCableSession.welcome("abc")) == {"type": "welcome", "sid": "abc"}


def test_disconnect_message() -> None:
    assert json.loads(disconnect_message("server_restart", True)) == {
        "type": "disconnect",
        "reason": "server_restart",
        "reconnect": True,
    }
    assert json.loads(disconnect_message("remote", False))["reconnect"] is False


def test_public_stream_only_when_public_streams_are_on(log, secret) -> None:
    session, registry, _ = make(secret, log, public=False)
    identifier, reply = subscribe(session, channel="$pubsub", stream_name="news")
    assert reply == {"identifier": identifier, "type": "reject_subscription"}
    assert registry.subscriptions == 0
    session, registry, _ = make(secret, log, public=True)
    identifier, reply = subscribe(session, channel="$pubsub", stream_name="news")
    assert reply == {"identifier": identifier, "type": "confirm_subscription"}
    assert registry.broadcast("news", "x") == 1


def test_public_streams_never_reach_streams_of_signed_channels(log, secret) -> None:
    session, registry, _ = make(secret, log, public=True)
    _, reply = subscribe(session, channel="$pubsub", stream_name="config_update_db_7")
    assert reply["type"] == "reject_subscription"
    assert log.events[-1][1]["why"] == "stream of a signed channel"
    _, reply = subscribe(session, channel="$pubsub", signed_stream_name=signing.sign("config_update_db_7", secret))
    assert reply["type"] == "confirm_subscription"


@pytest.mark.parametrize("channel", ["$pubsub", "Turbo::StreamsChannel"])
def test_signed_streams_verify_with_the_secret(log, secret, channel) -> None:
    session, registry, sub = make(secret, log)
    _, reply = subscribe(session, channel=channel, signed_stream_name=signing.sign("room:1", secret))
    assert reply["type"] == "confirm_subscription"
    assert registry.broadcast("room:1", "hi") == 1
    _, reply = subscribe(session, channel=channel, signed_stream_name=signing.sign("room:2", b"wrong"))
    assert reply["type"] == "reject_subscription"
    assert registry.broadcast("room:2", "hi") == 0


def test_signed_streams_are_rejected_without_a_secret(log) -> None:
    session, registry, _ = make(None, log)
    _, reply = subscribe(session, channel="$pubsub", signed_stream_name=signing.sign("room:1", b"k"))
    assert reply["type"] == "reject_subscription"


def test_named_channel_fills_placeholders_from_params(log, secret) -> None:
    session, registry, _ = make(secret, log)
    _, reply = subscribe(session, channel="CurrentHeatChannel", database="2025-boston")
    assert reply["type"] == "confirm_subscription"
    assert registry.broadcast("current-heat-2025-boston", "{}") == 1


def test_named_channel_falls_back_to_the_query_string(log, secret) -> None:
    session, registry, _ = make(secret, log, query="database=2025-raleigh&x=1")
    _, reply = subscribe(session, channel="ScoresChannel")
    assert reply["type"] == "confirm_subscription"
    assert registry.broadcast("live-scores-2025-raleigh", "{}") == 1


def test_params_win_over_the_query_string(log, secret) -> None:
    session, registry, _ = make(secret, log, query="database=from-query")
    subscribe(session, channel="ScoresChannel", database="from-params")
    assert registry.broadcast("live-scores-from-params", "{}") == 1
    assert registry.broadcast("live-scores-from-query", "{}") == 0


def test_missing_placeholder_is_rejected(log, secret) -> None:
    session, registry, _ = make(secret, log)
    _, reply = subscribe(session, channel="ScoresChannel")
    assert reply["type"] == "reject_subscription"
    assert ("subscription_rejected", {"channel": "ScoresChannel", "why": "missing database"}) in log.events


def test_signed_channel_needs_a_signature_of_exactly_its_stream(log, secret) -> None:
    session, registry, _ = make(secret, log)
    params = {"channel": "ConfigUpdateChannel", "database": "db", "user_id": 7}
    assert subscribe(session, **params)[1]["type"] == "reject_subscription"
    wrong = signing.sign("config_update_db_8", secret)
    assert subscribe(session, **params, signed_stream_name=wrong)[1]["type"] == "reject_subscription"
    right = signing.sign("config_update_db_7", secret)
    assert subscribe(session, **params, signed_stream_name=right)[1]["type"] == "confirm_subscription"
    assert registry.broadcast("config_update_db_7", "{}") == 1


def test_unknown_channels_are_rejected(log, secret) -> None:
    session, _, _ = make(secret, log)
    assert subscribe(session, channel="ChatChannel")[1]["type"] == "reject_subscription"
    assert subscribe(session, nothing=1)[1]["type"] == "reject_subscription"
    assert subscribe(session, channel=["list"])[1]["type"] == "reject_subscription"


def test_identifier_that_is_not_a_json_object_is_rejected(log, secret) -> None:
    session, _, _ = make(secret, log)
    (reply,) = session.receive(json.dumps({"command": "subscribe", "identifier": "[1]"}))
    assert json.loads(reply) == {"identifier": "[1]", "type": "reject_subscription"}


def test_duplicate_subscribe_confirms_again_without_double_registration(log, secret) -> None:
    session, registry, sub = make(secret, log)
    first = subscribe(session, channel="CurrentHeatChannel", database="d")
    second = subscribe(session, channel="CurrentHeatChannel", database="d")
    assert first == second and first[1]["type"] == "confirm_subscription"
    assert registry.subscriptions == 1
    assert registry.broadcast("current-heat-d", "{}") == 1
    assert len(sub.frames) == 1


def test_unsubscribe_and_close_remove_registrations(log, secret) -> None:
    session, registry, _ = make(secret, log)
    identifier, _ = subscribe(session, channel="CurrentHeatChannel", database="a")
    subscribe(session, channel="CurrentHeatChannel", database="b")
    assert session.receive(json.dumps({"command": "unsubscribe", "identifier": identifier})) == []
    assert registry.broadcast("current-heat-a", "{}") == 0
    assert registry.subscriptions == 1
    session.close()
    assert (registry.subscriptions, registry.stream_count) == (0, 0)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "42",
        '{"command":"subscribe"}',
        '{"command":"subscribe","identifier":{"channel":"X"}}',
        '{"command":"dance","identifier":"{}"}',
        '{"command":"message","identifier":"{}","data":"{\\"action\\":\\"speak\\"}"}',
        '{"command":"pong","identifier":""}',
        "[" * 100000,
    ],
)
def test_garbage_is_logged_and_ignored(log, secret, text) -> None:
    session, registry, _ = make(secret, log)
    assert session.receive(text) == []
    assert registry.subscriptions == 0


def test_unknown_commands_are_logged(log, secret) -> None:
    session, _, _ = make(secret, log)
    session.receive('{"command":"dance","identifier":"{}"}')
    assert log.events[-1] == ("ignored", {"why": "unknown command", "command": "dance"})


def test_fill() -> None:
    assert fill("a-{x}-{y}", {"x": "1"}, "y=2") == ("a-1-2", "")
    assert fill("plain", {}, "") == ("plain", "")
    assert fill("a-{x}", {"x": True}, "") == (None, "x")
    assert fill("a-{x}", {"x": ""}, "x=q") == ("a-q", "")
    assert fill("a-{x}", {"x": {"nested": 1}}, "") == (None, "x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
identifiers = st.one_of(
    st.text(max_size=40),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"channel": st.sampled_from(["$pubsub", "Turbo::StreamsChannel", *SHOWCASE, "Nope"]) | json_values},
            optional={
                "stream_name": json_values,
                "signed_stream_name": json_values,
                "database": json_values,
                "user_id": json_values,
            },
        ),
    ),
    json_values,
)
commands = st.one_of(
    st.builds(
        lambda c, i, d: json.dumps({"command": c, "identifier": i, "data": d}),
        st.sampled_from(["subscribe", "unsubscribe", "message", "pong", "other"]) | json_values,
        identifiers,
        json_values,
    ),
    st.text(max_size=60),
    st.builds(json.dumps, json_values),
)


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(commands, max_size=12), public=st.booleans())
def test_no_input_raises_out_of_an_action_cable_session(texts, public) -> None:
    log = LogRecorder()
    session, registry, _ = make(b"k", log, public=public, query="database=q")
    for text in texts:
        for reply in session.receive(text):
            assert json.loads(reply)["type"] in ("confirm_subscription", "reject_subscription")
    assert registry.subscriptions == len(session.subs)
    session.close()
    assert registry.subscriptions == 0


# --- Navigator protocol ------------------------------------------------------------


def nav(secret: bytes | None, log: LogRecorder, public: bool = False):
    registry = StreamRegistry()
    sub = FakeSubscriber()
    return NavigatorSession(Context(Policy(public, secret, SHOWCASE), registry, log), sub), registry, sub


def test_navigator_subscribe_receive_unsubscribe(log) -> None:
    session, registry, sub = nav(None, log)
    (reply,) = session.receive('{"type":"subscribe","stream":"current-heat-db"}')
    assert json.loads(reply) == {"type": "subscribed", "stream": "current-heat-db"}
    assert session.receive('{"type":"subscribe","stream":"current-heat-db"}') == [reply]
    assert registry.subscriptions == 1
    assert registry.broadcast("current-heat-db", "<turbo-stream>") == 1
    assert session.receive('{"type":"pong"}') == []
    assert session.receive('{"type":"unsubscribe","stream":"current-heat-db"}') == []
    assert registry.subscriptions == 0
    assert registry.broadcast("current-heat-db", "x") == 0


@pytest.mark.parametrize("public", [False, True])
def test_navigator_cannot_reach_streams_of_signed_channels(log, public) -> None:
    session, registry, _ = nav(b"k", log, public=public)
    assert session.receive('{"type":"subscribe","stream":"config_update_db_7"}') == []
    assert registry.subscriptions == 0
    assert log.events[-1] == ("subscription_rejected", {"why": "stream of a signed channel"})


def test_navigator_reaches_other_streams_only_when_public(log) -> None:
    session, registry, _ = nav(b"k", log, public=False)
    assert session.receive('{"type":"subscribe","stream":"chat:1"}') == []
    assert log.events[-1][1]["why"] == "public streams are off"
    assert len(session.receive('{"type":"subscribe","stream":"live-scores-2025-boston"}')) == 1
    session, registry, _ = nav(b"k", log, public=True)
    assert len(session.receive('{"type":"subscribe","stream":"chat:1"}')) == 1


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.text(max_size=40), st.builds(json.dumps, json_values), st.builds(
    lambda t, s: json.dumps({"type": t, "stream": s}),
    st.sampled_from(["subscribe", "unsubscribe", "pong", "x"]) | json_values,
    json_values,
)), max_size=12))
def test_no_input_raises_out_of_a_navigator_session(texts) -> None:
    session, registry, _ = nav(b"k", LogRecorder())
    for text in texts:
        for reply in session.receive(text):
            assert json.loads(reply)["type"] == "subscribed"
    assert registry.subscriptions == len(session.subs)
    session.close()
    assert registry.stream_count == 0


# --- navigator_protocol: open ----------------------------------------------------------


def test_open_navigator_protocol_reaches_any_stream_but_action_cable_keeps_the_policy(log, secret) -> None:
    policy = Policy(False, secret, SHOWCASE, max_stream_name_bytes=32, navigator_open=True)
    registry = StreamRegistry()
    session = NavigatorSession(Context(policy, registry, log), FakeSubscriber())
    for stream in ("config_update_db_7", "chat:1", "x" * 32):
        assert session.receive(json.dumps({"type": "subscribe", "stream": stream})) == [
            json.dumps({"type": "subscribed", "stream": stream}, separators=(",", ":"))
        ]
    assert session.receive(json.dumps({"type": "subscribe", "stream": "x" * 33})) == []
    assert log.events[-1] == ("subscription_rejected", {"why": "stream name too long"})
    cable = ActionCableSession(Context(policy, registry, log), FakeSubscriber())
    assert subscribe(cable, channel="$pubsub", stream_name="chat:1")[1]["type"] == "reject_subscription"
    assert subscribe(cable, channel="ConfigUpdateChannel", database="db", user_id=7)[1]["type"] == "reject_subscription"


# --- what rejections log: never a signed value ------------------------------------------


def test_a_rejected_signed_subscription_logs_the_channel_and_reason_only(secret) -> None:
    out = io.StringIO()
    ctx = Context(Policy(False, secret, SHOWCASE), StreamRegistry(), Logger("json", out))
    session = ActionCableSession(ctx, FakeSubscriber())
    forged = signing.sign("config_update_db_7", b"another secret")
    mismatched = signing.sign("config_update_db_8", secret)
    params = {"channel": "ConfigUpdateChannel", "database": "db", "user_id": 7}
    assert subscribe(session, **params, signed_stream_name=forged)[1]["type"] == "reject_subscription"
    assert subscribe(session, **params, signed_stream_name=mismatched)[1]["type"] == "reject_subscription"
    assert subscribe(session, channel="$pubsub", signed_stream_name=forged)[1]["type"] == "reject_subscription"
    session.receive(json.dumps({"command": "message", "identifier": json.dumps({**params, "signed_stream_name": forged})}))
    NavigatorSession(ctx, FakeSubscriber()).receive(json.dumps({"type": "subscribe", "stream": forged}))
    text = out.getvalue()
    for secret_part in (forged, mismatched, *forged.split("--"), *mismatched.split("--")):
        assert secret_part not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["event"], r.get("channel"), r.get("why")) for r in records] == [
        ("subscription_rejected", "ConfigUpdateChannel", "bad signature"),
        ("subscription_rejected", "ConfigUpdateChannel", "signed stream does not match"),
        ("subscription_rejected", "$pubsub", "bad signature"),
        ("ignored", "ConfigUpdateChannel", "channel actions are not served"),
        ("subscription_rejected", None, "public streams are off"),
    ]


# --- a reloaded policy re-checks what is already subscribed ------------------------------


def test_navigator_session_drops_the_streams_a_new_policy_refuses(log) -> None:
    registry = StreamRegistry()
    ctx = Context(Policy(True, None, SHOWCASE), registry, log)
    session = NavigatorSession(ctx, FakeSubscriber())
    for stream in ("news", "live-scores-db"):
        session.receive(json.dumps({"type": "subscribe", "stream": stream}))
    ctx.policy = Policy(False, None, SHOWCASE)
    assert session.drop_forbidden() == 1
    assert (registry.broadcast("news", "x"), registry.broadcast("live-scores-db", "x")) == (0, 1)
    assert session.subs == {"live-scores-db"} and registry.subscriptions == 1
    assert session.drop_forbidden() == 0


def test_action_cable_session_finds_the_subscriptions_a_new_policy_refuses(log, secret) -> None:
    registry = StreamRegistry()
    ctx = Context(Policy(True, secret, SHOWCASE), registry, log)
    session = ActionCableSession(ctx, FakeSubscriber(), "database=db")
    subscribe(session, channel="ScoresChannel")
    subscribe(session, channel="$pubsub", signed_stream_name=signing.sign("room:1", secret))
    subscribe(session, channel="$pubsub", stream_name="news")
    assert len(session.subs) == 3 and not session.has_forbidden_subscriptions()
    for policy in (
        Policy(False, secret, SHOWCASE),  # public streams off
        Policy(True, b"rotated", SHOWCASE),  # the signature no longer verifies
        Policy(True, secret, {**SHOWCASE, "ScoresChannel": Channel("scores-{database}")}),  # another stream now
        Policy(True, secret, {**SHOWCASE, "ScoresChannel": Channel("live-scores-{database}", signed=True)}),
    ):
        ctx.policy = policy
        assert session.has_forbidden_subscriptions()
    ctx.policy = Policy(True, secret, SHOWCASE, navigator_open=True)
    assert not session.has_forbidden_subscriptions()
    assert registry.subscriptions == 3  # finding them changes nothing: the connection decides
