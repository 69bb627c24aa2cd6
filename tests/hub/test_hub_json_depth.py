"""JSON nested too deep, wherever it enters the hub: a broadcast's body, a broker's message, a client's message.

json.loads takes about 990 levels, but encoding such a value again for subscribers, from deeper in the
stack, raised RecursionError: without a broker the request got no answer and the broadcast was lost,
with Redis every hub dropped its connection to the broker, with NATS it was answered 201 and lost.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from hub.loop import Loop
from hub.cable import ActionCableSession, Context, NavigatorSession, Policy
from hub.config import Overrides, load
from hub.log import Logger
from hub.server import Hub
from hub.streams import MAX_JSON_DEPTH, NestedTooDeep, StreamRegistry, _nested_deeper, loads
from hub_testkit import FakeSubscriber, LogRecorder, recv_until, subscribe

ATTACK_DEPTH = 976  # passes json.loads, and used to fail when encoded for subscribers


def nested(depth: int, inner: Any = 1) -> Any:
    value = inner
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def nested_text(depth: int) -> str:
    """The JSON of nested(depth), written out: json.dumps itself cannot encode it from a test's stack."""
    pairs = [('{"k":', "}") if level % 2 == 0 else ("[", "]") for level in range(depth)]  # innermost first
    return "".join(opening for opening, _ in reversed(pairs)) + "1" + "".join(closing for _, closing in pairs)


def stderr_of(hub) -> str:
    """What the hub wrote to stderr, once it is stopped (the fixture's teardown then only reaps it)."""
    hub.proc.kill()
    hub.proc.wait(10)
    return hub.proc.stderr.read()


def depth_of(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# --- the check --------------------------------------------------------------------------------


def test_the_bound_is_100_levels_counted_as_json_nests_them() -> None:
    assert loads(json.dumps(nested(MAX_JSON_DEPTH))) == nested(MAX_JSON_DEPTH)
    with pytest.raises(NestedTooDeep, match="JSON nested more than 100 deep"):
        loads(json.dumps(nested(MAX_JSON_DEPTH + 1)))
    with pytest.raises(NestedTooDeep):
        loads(nested_text(ATTACK_DEPTH).encode())  # bytes, as bodies and broker messages come


@pytest.mark.parametrize(
    "value",
    [
        "[" * 500 + "{" * 500,  # brackets inside a string are text
        ['\\"' + "[" * 300, "\\" * 7 + "{" * 300, '"]' * 300],  # escaped quotes and backslashes do not end a string
        [[1, 2, {"a": [3]}] for _ in range(1000)],  # many brackets, little depth
    ],
)
def test_brackets_in_strings_and_wide_documents_are_not_depth(value: Any) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value, ensure_ascii=False).encode("utf-16")) == value  # json.loads decodes UTF-16 and -32 too


def test_what_is_not_json_stays_a_value_error() -> None:
    for text in ("{not json", "", '"unterminated [[[[', b"\xff\xfe\xfd"):
        with pytest.raises(ValueError):
            loads(text)


JSON_TEXT = st.text(alphabet=st.sampled_from(list('[]{}"\\ab,:') + ["\u00e9", "\ud800"]), max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | JSON_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(JSON_TEXT, children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES, st.booleans(), st.integers(min_value=0, max_value=6))
def test_the_depth_measured_on_the_text_is_the_depth_of_the_value(value: Any, ascii_only: bool, limit: int) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert _nested_deeper(text, limit) == (depth_of(value) > limit)


# --- a broadcast's body --------------------------------------------------------------------------


def test_a_deep_broadcast_is_answered_400_and_never_reaches_the_broker(tmp_path) -> None:
    (tmp_path / "navigator.yml").write_text("{}\n")
    shared: list[bytes] = []

    class Broker:
        connected = True

        def share(self, body: bytes, broadcasts: int) -> bool:
            shared.append(body)
            return True

    loop = Loop()
    try:
        hub = Hub(load(str(tmp_path / "navigator.yml"), Overrides(), {}), Overrides(), Logger(stream=io.StringIO()), loop)
        hub.broker = Broker()
        deep = json.dumps({"stream": "s", "data": nested(500)}).encode()
        assert hub.handle_broadcast(deep) == (400, b"JSON nested more than 100 deep\n")
        assert hub.handle_broadcast(json.dumps([{"stream": "s"}, {"stream": "t", "data": nested(101)}]).encode())[0] == 400
        assert shared == [] and hub.failed_broadcasts == 2 and hub.broadcasts == 0
        # The body counts as a whole: its object is a level, so data may nest 99 deep in it.
        assert hub.handle_broadcast(json.dumps({"stream": "s", "data": nested(MAX_JSON_DEPTH - 1)}).encode()) == (201, b"")
        assert len(shared) == 1
        assert hub.deliver_body(deep) == "JSON nested more than 100 deep"  # the same from the broker
    finally:
        loop.close()


def test_without_a_broker_a_deep_broadcast_is_answered_and_the_subscribers_go_on(start_hub) -> None:
    hub = start_hub(hub="public_streams: true\n")
    with connect(hub.ws_url("/showcase/regions/iad/cable"), subprotocols=["actioncable-v1-json"], open_timeout=10) as ws:
        identifier, reply = subscribe(ws, channel="$pubsub", stream_name="s")
        assert reply["type"] == "confirm_subscription"
        body = ('{"stream":"s","data":' + nested_text(ATTACK_DEPTH) + "}").encode()
        assert hub.request("POST", "/_broadcast", body, {"Content-Type": "application/json"}) == (400, b"JSON nested more than 100 deep\n")
        assert hub.broadcast({"stream": "s", "data": {"after": 1}}) == 201
        assert recv_until(ws, lambda m: m.get("identifier") == identifier and "message" in m)["message"] == {"after": 1}
    assert hub.metric("hub_failed_broadcasts_total") == 1
    assert "Traceback" not in stderr_of(hub)


# --- a client's message --------------------------------------------------------------------------


def test_a_client_message_nested_too_deep_is_ignored_as_malformed() -> None:
    log = LogRecorder()
    registry = StreamRegistry()
    ctx = Context(Policy(True, None, {}), registry, log)
    cable = ActionCableSession(ctx, FakeSubscriber())
    deep_identifier = json.dumps({"channel": "$pubsub", "stream_name": "s", "x": nested(MAX_JSON_DEPTH)})
    subscribe_deep = json.dumps({"command": "subscribe", "identifier": deep_identifier})
    assert cable.receive(subscribe_deep) == [json.dumps({"identifier": deep_identifier, "type": "reject_subscription"}, separators=(",", ":"))]
    assert cable.receive('{"identifier":"x","command":' + nested_text(ATTACK_DEPTH) + "}") == []
    navigator = NavigatorSession(ctx, FakeSubscriber())
    assert navigator.receive(json.dumps({"type": "subscribe", "stream": "s", "x": nested(MAX_JSON_DEPTH)})) == []
    assert registry.subscriptions == 0
    assert [fields.get("why") for event, fields in log.events] == [
        "identifier is not a JSON object", "malformed JSON", "malformed JSON",
    ]  # fmt: skip
