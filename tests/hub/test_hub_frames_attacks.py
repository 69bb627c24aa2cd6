"""Frame codec defects found by attacking the hub (issue 9): each test fails on the codec before its fix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from hub import frames
from hub.frames import Binary, FrameParser, ProtocolError, Text
from hub_testkit import client_frame

MASK = b"\x11\x22\x33\x44"


def feed_all(parser: FrameParser, *chunks: bytes) -> list:
    return [event for chunk in chunks for event in parser.feed(chunk)]


def code_of(parser: FrameParser, *chunks: bytes) -> int:
    with pytest.raises(ProtocolError) as info:
        feed_all(parser, *chunks)
    return info.value.code


# --- fragments per message ----------------------------------------------------------


def test_the_default_bound_on_fragments_is_a_module_constant() -> None:
    assert frames.MAX_FRAGMENTS == 1024
    assert FrameParser(1024).max_fragments == frames.MAX_FRAGMENTS


def test_a_message_of_exactly_max_fragments_is_accepted_and_one_more_is_1009() -> None:
    n = frames.MAX_FRAGMENTS
    first = client_frame(frames.OP_TEXT, b"a", fin=False)
    middle = client_frame(frames.OP_CONT, b"", fin=False)
    last = client_frame(frames.OP_CONT, b"z")
    parser = FrameParser(65536)
    (event,) = feed_all(parser, first + middle * (n - 2) + last)
    assert isinstance(event, Text) and event.data == "az"
    # The count starts again with each message.
    (event,) = feed_all(parser, first + middle * (n - 2) + last)
    assert event.data == "az"
    assert code_of(FrameParser(65536), first + middle * (n - 1) + last) == frames.CLOSE_TOO_BIG


def test_1025_fragments_are_refused_by_default() -> None:
    data = (
        client_frame(frames.OP_BINARY, b"", fin=False)
        + client_frame(frames.OP_CONT, b"", fin=False) * 1023
        + client_frame(frames.OP_CONT, b"")
    )
    assert code_of(FrameParser(65536), data) == frames.CLOSE_TOO_BIG


def test_a_flood_of_empty_continuations_fails_on_the_header_of_the_first_extra_fragment() -> None:
    parser = FrameParser(1024, max_fragments=3)
    feed_all(parser, client_frame(frames.OP_BINARY, b"", fin=False), client_frame(frames.OP_CONT, b"", fin=False))
    header = client_frame(frames.OP_CONT, b"x" * 10, fin=False)[:2]
    assert code_of(parser, client_frame(frames.OP_CONT, b"", fin=False), header) == frames.CLOSE_TOO_BIG


def test_control_frames_between_fragments_do_not_count_as_fragments() -> None:
    parser = FrameParser(1024, max_fragments=2)
    data = (
        client_frame(frames.OP_BINARY, b"a", fin=False)
        + client_frame(frames.OP_PING, b"") * 5
        + client_frame(frames.OP_CONT, b"b")
    )
    events = feed_all(parser, data)
    assert [type(e).__name__ for e in events] == ["Ping"] * 5 + ["Binary"]
    assert events[-1].data == b"ab"


# --- UTF-8 validated as payload bytes arrive ------------------------------------------


@pytest.mark.parametrize(
    "bad_prefix",
    [b"\xff", b"ok\xc0", b"\x80", b"\xe0\x80", b"\xf0\x80", b"\xf4\x90", b"\xf5", b"\xed\xa0", b"\xe2\x82A"],
)
@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_fails_as_soon_as_its_bytes_arrive(bad_prefix: bytes, fragmented: bool) -> None:
    payload = bad_prefix + b"x" * 1000
    parser = FrameParser(65536)
    head = b""
    if fragmented:
        head = client_frame(frames.OP_TEXT, "début ".encode(), fin=False)
        frame = client_frame(frames.OP_CONT, payload)
    else:
        frame = client_frame(frames.OP_TEXT, payload)
    arrived = frame[: 2 + 2 + 4 + len(bad_prefix)]  # 16-bit length, mask, then the offending bytes only
    assert feed_all(parser, head, arrived[:-1]) == []
    assert code_of(parser, arrived[-1:]) == frames.CLOSE_INVALID_DATA


@pytest.mark.parametrize("char", ["€", "\ud7ff", "\ue000", "\u0800", "\U00010000", "\U0010ffff", "😀"])
def test_a_valid_prefix_that_stops_mid_character_is_not_an_error_yet(char: str) -> None:
    head = ("ok " + char).encode()
    payload = head + b"x" * 1000
    frame = client_frame(frames.OP_TEXT, payload)
    parser = FrameParser(65536)
    assert feed_all(parser, frame[:8]) == []  # header and mask
    for i in range(8, 8 + len(head)):  # then "ok " and the character, a byte at a time
        assert feed_all(parser, frame[i : i + 1]) == []
    (event,) = feed_all(parser, frame[8 + len(head) :])
    assert event.data == payload.decode()


@pytest.mark.parametrize("opcode", [frames.OP_TEXT, frames.OP_BINARY])
def test_a_frame_split_at_every_byte_is_decoded_exactly(opcode: int) -> None:
    text = "aé€😀b" * 7 + "z"  # not a multiple of 4 bytes, so the mask phase matters
    payload = text.encode() if opcode == frames.OP_TEXT else bytes(range(131))
    frame = client_frame(opcode, payload, fin=False) + client_frame(frames.OP_CONT, payload)
    for cut in range(len(frame) + 1):
        for second in range(cut, len(frame) + 1, 7):
            events = feed_all(FrameParser(4096), frame[:cut], frame[cut:second], frame[second:])
            assert len(events) == 1, (cut, second)
            expected = payload * 2
            assert events[0].data == (expected.decode() if opcode == frames.OP_TEXT else expected), (cut, second)


def _proper_prefixes() -> frozenset[bytes]:
    prefixes = set()
    for code in range(0x80, 0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        encoded = chr(code).encode()
        prefixes.update(encoded[:i] for i in range(1, len(encoded)))
    return frozenset(prefixes)


PREFIXES = _proper_prefixes()


def _could_still_be_utf8(data: bytes) -> bool:
    """An oracle independent of codecs' incremental decoder: some ending makes `data` valid UTF-8."""
    for tail in range(min(3, len(data)) + 1):
        body, rest = data[: len(data) - tail], data[len(data) - tail :]
        if tail and rest not in PREFIXES:
            continue
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


payloads = st.lists(
    st.one_of(st.text(max_size=8).map(str.encode), st.binary(max_size=3), st.sampled_from([b"\xed\xa0", b"\xed\x9f", b"\xf4\x8f", b"\xf4\x90"])),
    max_size=8,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(payload=payloads)
def test_a_text_frame_fails_exactly_at_the_first_byte_that_makes_it_invalid(payload: bytes) -> None:
    body = payload + b"." * 130  # long enough to always use a 16-bit length: the payload starts at byte 8
    frame = client_frame(frames.OP_TEXT, body)
    bad = next((k for k in range(1, len(body) + 1) if not _could_still_be_utf8(body[:k])), None)
    parser = FrameParser(4096)
    if bad is None:
        assert [e.data for e in feed_all(parser, frame)] == [body.decode()]
        return
    assert feed_all(parser, frame[: 8 + bad - 1]) == []
    assert code_of(parser, frame[8 + bad - 1 : 8 + bad]) == frames.CLOSE_INVALID_DATA


@settings(max_examples=200, deadline=None)
@given(payload=payloads, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_a_fragmented_text_message_is_accepted_exactly_when_it_is_utf8(payload: bytes, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if 0 < c < len(payload)})
    pieces = [payload[a:b] for a, b in zip([0, *points], [*points, len(payload)])] or [b""]
    data = b"".join(
        client_frame(frames.OP_TEXT if i == 0 else frames.OP_CONT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    try:
        expected = payload.decode("utf-8")
    except UnicodeDecodeError:
        assert code_of(FrameParser(4096), data) == frames.CLOSE_INVALID_DATA
    else:
        assert [e.data for e in feed_all(FrameParser(4096), data)] == [expected]


# --- 64-bit lengths --------------------------------------------------------------


@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, (1 << 63) | 5])
def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error(length: int) -> None:
    header = bytes((0x82, 0xFF)) + length.to_bytes(8, "big") + MASK
    assert code_of(FrameParser(1024), header) == frames.CLOSE_PROTOCOL_ERROR


def test_a_large_64_bit_length_without_the_top_bit_is_still_too_big() -> None:
    header = bytes((0x82, 0xFF)) + ((1 << 63) - 1).to_bytes(8, "big") + MASK
    assert code_of(FrameParser(1024), header) == frames.CLOSE_TOO_BIG


# --- close reasons -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        ("é" * 100, "é" * 61),
        ("a" + "😀" * 40, "a" + "😀" * 30),
        ("ab" + "€" * 50, "ab" + "€" * 40),
        ("x" * 123, "x" * 123),
        ("x" * 124, "x" * 123),
        ("x" * 122 + "é", "x" * 122),
        ("x" * 200, "x" * 123),
    ],
)
def test_a_long_close_reason_is_cut_at_a_character_boundary(reason: str, kept: str) -> None:
    frame = frames.close_frame(1011, reason)
    assert len(frame) <= 2 + 125
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN)
    client.receive_data(frame)
    (event,) = client.events_received()
    assert event.opcode is Opcode.CLOSE
    assert client.close_rcvd is not None
    assert (client.close_rcvd.code, client.close_rcvd.reason) == (1011, kept)


# --- the end of a fragmented text message -------------------------------------------------


def _fragmented(pieces: list[bytes]) -> bytes:
    return b"".join(
        client_frame(frames.OP_TEXT if i == 0 else frames.OP_CONT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )


@pytest.mark.parametrize(
    "pieces",
    [
        [b"a", "€".encode()[:2], "€".encode()[2:]],
        [b"a", "😀".encode()[:1], "😀".encode()[1:3], "😀".encode()[3:]],
        ["é".encode()[:1], "é".encode()[1:]],
        [b"", "€".encode()[:1], "€".encode()[1:2], "€".encode()[2:], b""],
    ],
)
def test_a_last_fragment_that_completes_a_character_gives_the_exact_text(pieces: list[bytes]) -> None:
    (event,) = feed_all(FrameParser(1024), _fragmented(pieces))
    assert isinstance(event, Text) and event.data == b"".join(pieces).decode()


@pytest.mark.parametrize(
    "pieces",
    [
        [b"a", "€".encode()[:2]],
        [b"a", "€".encode()[:1], "€".encode()[1:2]],
        [b"ab", b"c", "😀".encode()[:3]],
        [b"a", "😀".encode()[:2], b""],
        ["€".encode()[:1], b""],
    ],
)
def test_a_message_ending_in_half_a_character_is_1007(pieces: list[bytes]) -> None:
    # Catches a decoder that is never told the message ended (final=False on the last fragment):
    # such a decoder keeps the dangling bytes to itself and the message would be accepted short.
    assert code_of(FrameParser(1024), _fragmented(pieces)) == frames.CLOSE_INVALID_DATA


def test_a_message_ending_in_half_a_character_is_1007_fed_byte_by_byte() -> None:
    data = _fragmented([b"ok", "€".encode()[:2]])
    parser = FrameParser(1024)
    assert feed_all(parser, *(data[i : i + 1] for i in range(len(data) - 1))) == []
    assert code_of(parser, data[-1:]) == frames.CLOSE_INVALID_DATA


def test_a_binary_message_ending_in_half_a_character_is_not_checked() -> None:
    data = client_frame(frames.OP_BINARY, b"a", fin=False) + client_frame(frames.OP_CONT, "€".encode()[:2])
    (event,) = feed_all(FrameParser(1024), data)
    assert isinstance(event, Binary) and event.data == b"a\xe2\x82"
