"""The stream registry and broadcast framing."""

from __future__ import annotations

import json

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from hub.streams import NAVIGATOR, Payload, StreamRegistry, broadcast_frame
from hub_testkit import FakeSubscriber


def decode(frame: bytes) -> dict:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN, max_size=None)
    client.receive_data(frame)
    (event,) = client.events_received()
    return json.loads(event.data)


def test_string_data_that_reads_as_json_stays_a_string_as_rails_sends_it() -> None:
    frame = broadcast_frame("s", '{"channel":"X"}', Payload('{"html":"<p>"}'))
    assert decode(frame) == {"identifier": '{"channel":"X"}', "message": '{"html":"<p>"}'}
    assert decode(broadcast_frame("s", "id", Payload("42")))["message"] == "42"


def test_non_json_string_data_is_sent_as_a_string() -> None:
    assert decode(broadcast_frame("s", "id", Payload("hello <b>")))["message"] == "hello <b>"
    assert decode(broadcast_frame("s", "id", Payload("NaN")))["message"] == "NaN"


def test_object_data_is_sent_as_is() -> None:
    assert decode(broadcast_frame("s", "id", Payload({"a": [1, 2]})))["message"] == {"a": [1, 2]}


def test_navigator_frame_passes_data_through() -> None:
    frame = broadcast_frame("s", NAVIGATOR, Payload('{"a":1}'))
    assert decode(frame) == {"type": "message", "stream": "s", "data": '{"a":1}'}


def test_lone_surrogates_still_produce_valid_utf8() -> None:
    # A broadcast body's JSON may hold a lone surrogate escape; json.loads keeps it in the str.
    assert decode(broadcast_frame("s", "id", Payload(json.loads('"\\ud800"'))))["message"] == "\ud800"


def test_one_encoding_per_identifier_shared_by_all_subscribers() -> None:
    registry = StreamRegistry()
    a, b, c, nav = FakeSubscriber("a"), FakeSubscriber("b"), FakeSubscriber("c"), FakeSubscriber("nav")
    registry.add("s", "id1", a)
    registry.add("s", "id1", b)
    registry.add("s", "id2", c)
    registry.add("s", NAVIGATOR, nav)
    assert registry.broadcast("s", '"x"') == 4
    assert a.frames[0] is b.frames[0]
    assert decode(c.frames[0])["identifier"] == "id2"
    assert decode(nav.frames[0])["type"] == "message"
    assert registry.broadcast("other", "x") == 0


def test_add_is_idempotent_and_remove_cleans_up() -> None:
    registry = StreamRegistry()
    sub = FakeSubscriber()
    assert registry.add("s", "id", sub)
    assert not registry.add("s", "id", sub)
    assert (registry.subscriptions, registry.stream_count) == (1, 1)
    assert registry.remove("s", "id", sub)
    assert not registry.remove("s", "id", sub)
    assert not registry.remove("missing", "id", sub)
    assert (registry.subscriptions, registry.stream_count) == (0, 0)


def test_a_subscriber_removed_during_broadcast_does_not_break_the_loop() -> None:
    registry = StreamRegistry()

    class Quitter(FakeSubscriber):
        def send_frame(self, frame: bytes) -> None:
            super().send_frame(frame)
            registry.remove("s", "id", self)

    subs = [Quitter(str(i)) for i in range(5)]
    for sub in subs:
        registry.add("s", "id", sub)
    assert registry.broadcast("s", "x") == 5
    assert all(len(s.frames) == 1 for s in subs)
    assert registry.stream_count == 0
