"""The RFC 6455 codec and handshake, checked by hand and against the websockets library."""

from __future__ import annotations

import base64

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from hub import frames
from hub.frames import (
    Binary,
    Close,
    FrameParser,
    HandshakeError,
    Ping,
    Pong,
    ProtocolError,
    Text,
    negotiate,
    switching_protocols,
)
from hub_testkit import client_frame

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_headers(**overrides: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = {
        b"host": b"h",
        b"upgrade": b"websocket",
        b"connection": b"keep-alive, Upgrade",
        b"sec-websocket-key": KEY,
        b"sec-websocket-version": b"13",
    }
    for name, value in overrides.items():
        key = name.replace("_", "-").encode()
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return list(headers.items())


def parse_all(data: bytes, max_size: int = 65536, chunk: int | None = None) -> list:
    parser = FrameParser(max_size)
    events: list = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        events.extend(parser.feed(data[i : i + step]))
    return events


def failure(data: bytes, max_size: int = 65536) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_all(data, max_size)
    return info.value


# --- handshake ---------------------------------------------------------------


def test_accept_key_matches_rfc_example() -> None:
    assert frames.accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_no_subprotocol_means_navigator_protocol() -> None:
    headers, protocol = negotiate(b"GET", upgrade_headers())
    assert protocol is None
    assert (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in headers
    assert all(name != b"sec-websocket-protocol" for name, _ in headers)


def test_action_cable_subprotocol_is_chosen_from_the_rails_offer() -> None:
    headers, protocol = negotiate(
        b"GET", upgrade_headers(sec_websocket_protocol=b"actioncable-v1-json, actioncable-unsupported")
    )
    assert protocol == "actioncable-v1-json"
    assert (b"sec-websocket-protocol", b"actioncable-v1-json") in headers


def test_ext_json_is_accepted_when_it_is_the_only_offer() -> None:
    _, protocol = negotiate(b"GET", upgrade_headers(sec_websocket_protocol=b"actioncable-v1-ext-json"))
    assert protocol == "actioncable-v1-ext-json"


@pytest.mark.parametrize(
    ("method", "overrides", "status"),
    [
        (b"POST", {}, 405),
        (b"GET", {"upgrade": None}, 400),
        (b"GET", {"upgrade": b"h2c"}, 400),
        (b"GET", {"connection": b"keep-alive"}, 400),
        (b"GET", {"sec_websocket_version": b"8"}, 426),
        (b"GET", {"sec_websocket_version": None}, 426),
        (b"GET", {"sec_websocket_key": None}, 400),
        (b"GET", {"sec_websocket_key": b"not base64!"}, 400),
        (b"GET", {"sec_websocket_key": base64.b64encode(b"short")}, 400),
    ],
)
def test_invalid_upgrades_are_refused(method: bytes, overrides: dict, status: int) -> None:
    with pytest.raises(HandshakeError) as info:
        negotiate(method, upgrade_headers(**overrides))
    assert info.value.status == status


def test_version_refusal_names_the_supported_version() -> None:
    with pytest.raises(HandshakeError) as info:
        negotiate(b"GET", upgrade_headers(sec_websocket_version=b"8"))
    assert (b"sec-websocket-version", b"13") in info.value.headers


@pytest.mark.parametrize("subprotocols", [None, ["actioncable-v1-json", "actioncable-unsupported"]])
def test_handshake_is_accepted_by_the_websockets_client(subprotocols: list[str] | None) -> None:
    client = ClientProtocol(parse_uri("ws://h/cable"), subprotocols=subprotocols)
    client.send_request(client.connect())
    server = h11.Connection(h11.SERVER)
    server.receive_data(client.data_to_send()[0])
    request = server.next_event()
    assert isinstance(request, h11.Request)
    headers, protocol = negotiate(request.method, list(request.headers))
    response = switching_protocols(headers)
    assert response == server.send(h11.InformationalResponse(status_code=101, headers=headers))
    client.receive_data(response)
    assert client.handshake_exc is None
    assert client.state is State.OPEN
    assert client.subprotocol == (subprotocols[0] if subprotocols else None)
    assert protocol == client.subprotocol


# --- parser: hand-made frames -------------------------------------------------


def test_single_text_and_binary_frames() -> None:
    data = client_frame(frames.OP_TEXT, "héllo".encode()) + client_frame(frames.OP_BINARY, b"\x00\xff")
    events = parse_all(data)
    assert [type(e) for e in events] == [Text, Binary]
    assert events[0].data == "héllo"
    assert events[1].data == b"\x00\xff"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_payload_length_encodings(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (event,) = parse_all(client_frame(frames.OP_BINARY, payload), max_size=1 << 20, chunk=1000)
    assert event.data == payload


def test_fragmented_text_with_a_ping_in_between() -> None:
    data = (
        client_frame(frames.OP_TEXT, b"ab", fin=False)
        + client_frame(frames.OP_PING, b"p")
        + client_frame(frames.OP_CONT, b"cd", fin=False)
        + client_frame(frames.OP_CONT, b"e")
    )
    events = parse_all(data, chunk=3)
    assert [type(e) for e in events] == [Ping, Text]
    assert events[0].data == b"p" and events[1].data == "abcde"


def test_utf8_character_split_across_fragments_is_fine() -> None:
    encoded = "€".encode()
    data = client_frame(frames.OP_TEXT, encoded[:1], fin=False) + client_frame(frames.OP_CONT, encoded[1:])
    assert parse_all(data)[0].data == "€"


def test_invalid_utf8_is_1007_even_before_the_message_ends() -> None:
    data = client_frame(frames.OP_TEXT, b"ok\xff", fin=False)
    assert failure(data).code == 1007


def test_truncated_utf8_at_message_end_is_1007() -> None:
    data = client_frame(frames.OP_TEXT, "€".encode()[:2])
    assert failure(data).code == 1007


def test_unmasked_client_frame_is_1002() -> None:
    assert failure(client_frame(frames.OP_TEXT, b"x", mask=None)).code == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_are_1002(rsv: int) -> None:
    assert failure(client_frame(frames.OP_TEXT, b"x", rsv=rsv)).code == 1002


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
def test_unknown_opcodes_are_1002(opcode: int) -> None:
    assert failure(client_frame(opcode, b"")).code == 1002


def test_long_or_fragmented_control_frames_are_1002() -> None:
    assert failure(client_frame(frames.OP_PING, b"x" * 126)).code == 1002
    assert failure(client_frame(frames.OP_PING, b"x", fin=False)).code == 1002


def test_continuation_without_start_and_interleaved_messages_are_1002() -> None:
    assert failure(client_frame(frames.OP_CONT, b"x")).code == 1002
    data = client_frame(frames.OP_TEXT, b"a", fin=False) + client_frame(frames.OP_TEXT, b"b")
    assert failure(data).code == 1002


def test_oversized_message_is_1009_from_the_header_alone() -> None:
    header_only = client_frame(frames.OP_TEXT, b"x" * 2000)[:8]
    assert failure(header_only, max_size=1024).code == 1009


def test_oversized_fragmented_message_is_1009() -> None:
    data = client_frame(frames.OP_TEXT, b"x" * 600, fin=False) + client_frame(frames.OP_CONT, b"x" * 600)
    assert failure(data, max_size=1024).code == 1009


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (None, "")),
        (b"\x03\xe8", (1000, "")),
        (b"\x03\xe9bye", (1001, "bye")),
        (b"\x0f\xa0", (4000, "")),
    ],
)
def test_close_frames(payload: bytes, expected: tuple) -> None:
    parser = FrameParser(1024)
    events = list(parser.feed(client_frame(frames.OP_CLOSE, payload) + client_frame(frames.OP_TEXT, b"after")))
    assert len(events) == 1 and isinstance(events[0], Close)
    assert (events[0].code, events[0].reason) == expected
    assert parser.closed
    assert list(parser.feed(client_frame(frames.OP_TEXT, b"more"))) == []


@pytest.mark.parametrize(("payload", "code"), [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x00\x00", 1002), (b"\x03\xe8\xff", 1007)])
def test_invalid_close_frames(payload: bytes, code: int) -> None:
    assert failure(client_frame(frames.OP_CLOSE, payload)).code == code


def test_close_code_validity() -> None:
    valid = [c for c in range(0, 5100) if frames.valid_close_code(c)]
    assert 1004 not in valid and 1005 not in valid and 1006 not in valid and 1015 not in valid
    assert {1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999} <= set(valid)
    assert 2999 not in valid and 5000 not in valid


def test_a_frame_fed_byte_by_byte_and_a_caller_bytearray_left_untouched() -> None:
    parser = FrameParser(1 << 20)
    data = client_frame(frames.OP_TEXT, b"x" * 70000) + client_frame(frames.OP_TEXT, b"tail")
    events = [e for i in range(0, len(data) - 10, 1) for e in parser.feed(data[i : i + 1])]
    assert [e.data for e in events] == ["x" * 70000]
    assert [e.data for e in parser.feed(data[len(data) - 10 :])] == ["tail"]
    fresh = FrameParser(1024)
    tail = client_frame(frames.OP_TEXT, b"tail")
    given = bytearray(client_frame(frames.OP_TEXT, b"a") + tail[:3])
    assert [e.data for e in fresh.feed(given)] == ["a"]
    assert given == client_frame(frames.OP_TEXT, b"a") + tail[:3]
    assert [e.data for e in fresh.feed(tail[3:])] == ["tail"]


def test_events_before_a_violation_are_delivered() -> None:
    parser = FrameParser(1024)
    seen = []
    with pytest.raises(ProtocolError):
        for event in parser.feed(client_frame(frames.OP_TEXT, b"first") + client_frame(frames.OP_TEXT, b"x", mask=None)):
            seen.append(event)
    assert [e.data for e in seen] == ["first"]


# --- encoder ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_server_frames_are_accepted_by_the_websockets_client(size: int) -> None:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN, max_size=None)
    text = "é" * (size // 2) + "a" * (size % 2)
    client.receive_data(frames.text_frame(text) + frames.encode_frame(frames.OP_PING, b"hi"))
    received = client.events_received()
    assert [(f.opcode, f.data) for f in received] == [(Opcode.TEXT, text.encode()), (Opcode.PING, b"hi")]


def test_server_close_frame_is_understood_by_the_websockets_client() -> None:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    client.receive_data(frames.close_frame(1001, "going away"))
    (frame,) = client.events_received()
    assert frame.opcode is Opcode.CLOSE
    assert client.close_rcvd is not None
    assert (client.close_rcvd.code, client.close_rcvd.reason) == (1001, "going away")


# --- differential: frames produced by the websockets client ----------------------

control = st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125))
message = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300), st.lists(st.integers(0, 300), max_size=4)),
    st.tuples(st.just("binary"), st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4)),
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(st.tuples(message, st.lists(control, max_size=2)), max_size=6),
    close=st.one_of(st.none(), st.tuples(st.sampled_from([1000, 1001, 1011, 3000, 4999]), st.text(max_size=20))),
    chunk=st.integers(1, 64),
)
def test_parser_decodes_what_the_websockets_client_sends(script, close, chunk) -> None:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    expected: list[tuple] = []
    for (kind, value, cuts), controls in script:
        payload = value.encode() if kind == "text" else value
        pieces = _split(payload, cuts) or [b""]
        for i, piece in enumerate(pieces):
            fin = i == len(pieces) - 1
            if i == 0:
                (client.send_text if kind == "text" else client.send_binary)(piece, fin=fin)
            else:
                client.send_continuation(piece, fin=fin)
            if not fin:  # control frames may sit between fragments
                for ckind, cdata in controls:
                    (client.send_ping if ckind == "ping" else client.send_pong)(cdata)
                    expected.append((ckind, cdata))
        expected.append((kind, value))
    if close is not None:
        code, reason = close
        client.send_close(code, reason)
        expected.append(("close", (code, reason)))
    wire = b"".join(client.data_to_send())
    got = []
    for event in parse_all(wire, chunk=chunk):
        if isinstance(event, Close):
            got.append(("close", (event.code, event.reason)))
        else:
            got.append(({Text: "text", Binary: "binary", Ping: "ping", Pong: "pong"}[type(event)], event.data))
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(max_size=70000 // 4), max_size=4))
def test_websockets_client_reads_every_server_text_frame(texts: list[str]) -> None:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN, max_size=None)
    client.receive_data(b"".join(frames.text_frame(t) for t in texts))
    assert [f.data.decode() for f in client.events_received()] == texts


# --- fuzzing -------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=400), chunk=st.integers(1, 50))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(data: bytes, chunk: int) -> None:
    try:
        events = parse_all(data, max_size=2048, chunk=chunk)
    except ProtocolError as error:
        assert error.code in (1002, 1007, 1009)
    else:
        assert all(isinstance(e, (Text, Binary, Ping, Pong, Close)) for e in events)


frame_parts = st.tuples(
    st.booleans(), st.integers(0, 7), st.integers(0, 15), st.binary(max_size=200), st.booleans()
)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(frame_parts, max_size=8))
def test_random_well_formed_headers_never_crash(parts) -> None:
    data = b"".join(
        client_frame(opcode, payload, fin=fin, rsv=rsv, mask=b"\x01\x02\x03\x04" if masked else None)
        for fin, rsv, opcode, payload, masked in parts
    )
    try:
        parse_all(data, max_size=1024)
    except ProtocolError as error:
        assert error.code in (1002, 1007, 1009)


def test_frame_objects_from_websockets_match_our_opcodes() -> None:
    assert Frame(Opcode.TEXT, b"").opcode.value == frames.OP_TEXT
    assert (Opcode.CONT.value, Opcode.BINARY.value, Opcode.CLOSE.value, Opcode.PING.value, Opcode.PONG.value) == (
        frames.OP_CONT,
        frames.OP_BINARY,
        frames.OP_CLOSE,
        frames.OP_PING,
        frames.OP_PONG,
    )
