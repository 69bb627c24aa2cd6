"""The codec's edges that mutation testing of hub/frames.py found untested (bench/results/mutation.md)."""

from __future__ import annotations

import base64

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from hub import frames
from hub.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    HandshakeError,
    Ping,
    ProtocolError,
    Text,
    negotiate,
)
from hub_testkit import client_frame

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = [
    (b"host", b"h"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
]


def without(name: bytes, value: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(n, v) for n, v in UPGRADE if n != name]
    return headers + ([(name, value)] if value is not None else [])


# --- every refusal carries a reason the server can send ------------------------------------------
# The server writes a HandshakeError's reason into the HTTP response and its headers after it, and a
# ProtocolError's reason into the close frame: a reason that is not text would make those fail.

HANDSHAKES = {
    "not GET": (b"POST", UPGRADE, 405),
    "no Upgrade": (b"GET", without(b"upgrade"), 400),
    "no Connection: upgrade": (b"GET", without(b"connection", b"keep-alive"), 400),
    "version 8": (b"GET", without(b"sec-websocket-version", b"8"), 426),
    "bad key": (b"GET", without(b"sec-websocket-key", b"short"), 400),
}


@pytest.mark.parametrize("case", HANDSHAKES)
def test_each_refused_handshake_has_a_status_a_text_reason_and_header_pairs(case: str) -> None:
    method, headers, status = HANDSHAKES[case]
    with pytest.raises(HandshakeError) as info:
        negotiate(method, headers)
    error = info.value
    assert error.status == status
    assert isinstance(error.reason, str) and error.reason and str(error) == error.reason
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in error.headers)


def test_a_refused_method_names_get_in_allow_and_a_refused_version_names_13() -> None:
    with pytest.raises(HandshakeError) as info:
        negotiate(b"POST", UPGRADE)
    assert info.value.headers == ((b"allow", b"GET"),)
    with pytest.raises(HandshakeError) as info:
        negotiate(b"GET", without(b"sec-websocket-version", b"8"))
    assert info.value.headers == ((b"sec-websocket-version", b"13"),)


MASK = b"\x11\x22\x33\x44"
VIOLATIONS = {
    "64-bit length with the top bit set": (bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big") + MASK, 1002),
    "reserved bits": (client_frame(OP_TEXT, b"x", rsv=4), 1002),
    "unmasked": (client_frame(OP_TEXT, b"x", mask=None), 1002),
    "unknown control opcode": (client_frame(0xB, b""), 1002),
    "fragmented control frame": (client_frame(OP_PING, b"", fin=False), 1002),
    "control frame too long": (client_frame(OP_PING, b"x" * 126), 1002),
    "unknown data opcode": (client_frame(3, b""), 1002),
    "continuation without a message": (client_frame(OP_CONT, b"x"), 1002),
    "too many fragments": (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_CONT, b"", fin=False) * 1024, 1009),
    "new message inside a fragmented one": (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
    "too big": (client_frame(OP_BINARY, b"x" * 2000), 1009),
    "invalid UTF-8 as it arrives": (client_frame(OP_TEXT, b"ok\xff", fin=False), 1007),
    "a surrogate's first two bytes": (client_frame(OP_TEXT, b"\xed\xa0", fin=False), 1007),
    "invalid UTF-8 in a whole frame": (client_frame(OP_TEXT, b"\xff"), 1007),
    "close with one byte": (client_frame(OP_CLOSE, b"\x03"), 1002),
    "close with an invalid code": (client_frame(OP_CLOSE, b"\x03\xed"), 1002),
    "close reason not UTF-8": (client_frame(OP_CLOSE, b"\x03\xe8\xff"), 1007),
}


@pytest.mark.parametrize("case", VIOLATIONS)
def test_each_violation_has_its_code_and_a_reason_a_close_frame_can_carry(case: str) -> None:
    data, code = VIOLATIONS[case]
    with pytest.raises(ProtocolError) as info:
        list(FrameParser(1024).feed(data))
    error = info.value
    assert error.code == code
    assert isinstance(error.reason, str) and error.reason and str(error) == error.reason
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    client.receive_data(frames.close_frame(error.code, error.reason))
    assert client.close_rcvd is not None and client.close_rcvd.reason == error.reason


# --- limits are inclusive ------------------------------------------------------------------------------


def test_a_control_frame_of_125_bytes_is_accepted() -> None:
    (event,) = FrameParser(1024).feed(client_frame(OP_PING, b"p" * 125))
    assert isinstance(event, Ping) and event.data == b"p" * 125


@pytest.mark.parametrize("fragmented", [False, True])
def test_a_message_of_exactly_max_size_is_accepted(fragmented: bool) -> None:
    if fragmented:
        data = client_frame(OP_TEXT, b"x" * 600, fin=False) + client_frame(OP_CONT, b"x" * 424)
    else:
        data = client_frame(OP_TEXT, b"x" * 1024)
    (event,) = FrameParser(1024).feed(data)
    assert isinstance(event, Text) and event.data == "x" * 1024


def test_close_code_1014_is_valid() -> None:
    assert frames.valid_close_code(1014)
    assert not frames.valid_close_code(1015)


# --- what an idle parser holds ----------------------------------------------------------------------


def test_a_parser_between_frames_holds_no_buffer_of_its_own() -> None:
    """Idle connections hold no bytearray (56 bytes each, times every connection)."""
    parser = FrameParser(1024)
    frame = client_frame(OP_TEXT, b"hello")
    assert list(parser.feed(frame[:1])) == []  # a header in pieces is kept in a bytearray
    assert isinstance(parser._buf, bytearray)
    assert [e.data for e in parser.feed(frame[1:])] == ["hello"]
    assert parser._buf == b"" and not isinstance(parser._buf, bytearray)


# --- the encoder ------------------------------------------------------------------------------------------


def test_a_non_final_frame_and_its_continuation_are_encoded_as_such() -> None:
    assert frames.encode_frame(OP_TEXT, b"he", fin=False)[:1] == b"\x01"
    assert frames.encode_frame(OP_CONT, b"llo", fin=False)[:1] == b"\x00"
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    client.receive_data(
        frames.encode_frame(OP_TEXT, b"he", fin=False)
        + frames.encode_frame(OP_CONT, b"ll", fin=False)
        + frames.encode_frame(OP_CONT, b"o")
    )
    received = client.events_received()
    assert [(f.opcode, f.fin, f.data) for f in received] == [
        (Opcode.TEXT, False, b"he"),
        (Opcode.CONT, False, b"ll"),
        (Opcode.CONT, True, b"o"),
    ]


def test_a_close_frame_without_a_code_is_empty() -> None:
    """What the hub answers to a client's close frame that had no code."""
    assert frames.close_frame(None) == b"\x88\x00"
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    client.receive_data(frames.close_frame(None))
    (frame,) = client.events_received()
    assert frame.opcode is Opcode.CLOSE and frame.data == b""


def test_the_accept_key_is_base64_of_sha1() -> None:
    assert base64.b64decode(frames.accept_key(KEY)) == bytes.fromhex("b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45 b2 be c4 ea")
