"""Bugs put into the hub on purpose that the rest of the suite let through; each test here fails for one.

- the codec taking the last fragment of a message as not final (the message never completes, or a
  text message that ends in half a UTF-8 character is accepted with its last bytes dropped), however
  the frames arrive, including an unfragmented frame that arrives in pieces;
- a slow-client limit eight times larger than configured, over a real socket;
- the broadcast key compared with == rather than through signing.same_secret (constant time).
"""

from __future__ import annotations

import io
import json

import pytest

from hub.loop import Loop
from hub import frames, signing
from hub.config import HubConfig, Overrides
from hub.frames import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, Binary, FrameParser, Ping, ProtocolError, Text
from hub.log import Logger
from hub.server import Hub
from hub_testkit import RawClient, client_frame
from tests.polling import wait_for

# --- the end of a message ------------------------------------------------------------------------

EURO = "€".encode()  # three bytes


def message(opcode: int, pieces: list[bytes], ping_before_last: bool = False) -> bytes:
    """One message in len(pieces) frames (one frame when there is one piece)."""
    out = b""
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if last and ping_before_last and len(pieces) > 1:
            out += client_frame(OP_PING, b"p")
        out += client_frame(opcode if i == 0 else OP_CONT, piece, fin=last)
    return out


SHAPES = {
    # name: (opcode, pieces, a ping between the last two fragments)
    "one text frame": (OP_TEXT, [b"hello " + EURO], False),
    "text in two": (OP_TEXT, [b"hello ", EURO], False),
    "text in three, a character across the last two": (OP_TEXT, [b"a", EURO[:1], EURO[1:]], False),
    "text ending in an empty fragment": (OP_TEXT, [b"ab", EURO, b""], False),
    "text with a ping before its last fragment": (OP_TEXT, [b"ab", b"cd"], True),
    "binary in three": (OP_BINARY, [b"\x00", b"\xff\xfe", b"\x01"], False),
    "binary ending in an empty fragment": (OP_BINARY, [b"\x00\x01", b""], False),
}


def events_per_byte(parser: FrameParser, data: bytes) -> list[list]:
    return [list(parser.feed(data[i : i + 1])) for i in range(len(data))]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_message_is_complete_exactly_when_the_last_byte_of_its_final_fragment_arrives(shape: str) -> None:
    opcode, pieces, ping = SHAPES[shape]
    data = message(opcode, pieces, ping)
    whole = b"".join(pieces)
    expected = whole.decode() if opcode == OP_TEXT else whole
    parser = FrameParser(1024)
    per_byte = events_per_byte(parser, data)
    messages_before = [e for events in per_byte[:-1] for e in events if not isinstance(e, Ping)]
    assert messages_before == []  # not one byte early
    (last,) = per_byte[-1]  # and not one byte late
    assert isinstance(last, Text if opcode == OP_TEXT else Binary)
    assert last.data == expected
    # The parser is between messages again: a new one is not "a new message inside a fragmented one".
    assert [(type(e), e.data) for e in parser.feed(client_frame(OP_TEXT, b"next")) if isinstance(e, Text)] == [(Text, "next")]
    # The same bytes in one piece give the same message.
    assert [e.data for e in FrameParser(1024).feed(data) if isinstance(e, (Text, Binary))] == [expected]


HALF_A_CHARACTER = {
    "one frame, arriving in pieces": [b"ok " + EURO[:2]],
    "the last of two fragments": [b"ok ", EURO[:2]],
    "a character begun in one fragment, not finished in the last": [b"ok " + EURO[:1], EURO[1:2]],
    "then an empty last fragment": [b"ok " + EURO[:2], b""],
}


@pytest.mark.parametrize("shape", HALF_A_CHARACTER)
def test_a_text_message_ending_in_half_a_character_fails_at_its_last_byte(shape: str) -> None:
    data = message(OP_TEXT, HALF_A_CHARACTER[shape])
    parser = FrameParser(1024)
    assert [e for events in events_per_byte(parser, data[:-1]) for e in events] == []
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(data[-1:]))
    assert info.value.code == frames.CLOSE_INVALID_DATA


# --- the slow-client limit over a real socket ------------------------------------------------------

LIMIT = 65536
FRAME_DATA = "y" * (LIMIT // 4)
# What the hub writes per broadcast to a Navigator-protocol subscriber of stream s.
FRAME = frames.text_frame('{"type":"message","stream":"s","data":' + json.dumps(FRAME_DATA) + "}")


def test_a_client_that_never_reads_is_dropped_with_at_most_the_limit_plus_one_frame_queued(start_hub) -> None:
    """The hub queues at most limits.output_buffer_bytes for a client, plus the one frame that crosses it.

    A client that never reads fills the kernel's buffers first (how much they take varies), then
    the hub's own queue: the hub logs that queue's size when it drops the client. A limit applied
    eight times too large (or not at all) leaves more than the limit plus one frame queued.
    """
    hub = start_hub(hub=f"public_streams: true\nlimits: {{output_buffer_bytes: {LIMIT}}}\n")
    client = RawClient(hub.port, "/showcase/regions/iad/cable", rcvbuf=4096)
    client.send(OP_TEXT, b'{"type":"subscribe","stream":"s"}')
    wait_for(lambda: hub.metric("hub_subscriptions") == 1, what="the subscription")
    broadcasts = 0

    def dropped() -> bool:
        nonlocal broadcasts
        assert hub.broadcast({"stream": "s", "data": FRAME_DATA}) == 201
        broadcasts += 1
        return hub.metric("hub_slow_client_disconnects_total") == 1

    try:
        wait_for(dropped, timeout=60, interval=0, what="the client that never reads to be dropped")
        queued = hub.wait_log("too_slow")["buffered"]
        assert LIMIT < queued <= LIMIT + len(FRAME), f"{queued} bytes queued for a limit of {LIMIT}"
        sent = hub.metric("hub_bytes_sent_total")
        # Everything written went to this one client: each broadcast's frame, at most, and the
        # few bytes of the reply to its subscribe and of its disconnect.
        assert queued < sent <= broadcasts * len(FRAME) + 1024
        assert hub.metric("hub_subscriptions") == 0
    finally:
        client.close()


# --- the broadcast key is compared in constant time ------------------------------------------------


def test_the_broadcast_key_goes_through_the_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/hub/test_hub_signing.py holds signing.same_secret to hmac.compare_digest; this holds the
    server to signing.same_secret: a key compared with == in hub/server.py fails here."""
    compared: list[tuple[bytes, bytes]] = []
    real = signing.same_secret

    def recording(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(signing, "same_secret", recording)
    loop = Loop()
    try:
        config = HubConfig(navigator_path="navigator.yml", hub_path=None, host="127.0.0.1", port=0, broadcast_key=b"the-key")
        hub = Hub(config, Overrides(), Logger(stream=io.StringIO()), loop)
        peer = ("192.0.2.7", 1)
        assert hub.broadcast_auth([(b"authorization", b"Bearer the-key")], peer) == 0
        assert hub.broadcast_auth([(b"authorization", b"Bearer the-kez")], peer) == 401
    finally:
        loop.close()
    assert compared == [(b"the-key", b"the-key"), (b"the-kez", b"the-key")]
