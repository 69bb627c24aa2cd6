"""The hub's own HTTP/1.1 request parser (hub/http.py), held to h11 0.16 as an oracle where they agree by design."""

from __future__ import annotations

import re
import subprocess
import sys

import h11
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub import http
from hub.http import (
    CLOSED,
    END_OF_MESSAGE,
    MAX_HEAD_BYTES,
    NEED_DATA,
    PAUSED,
    BadRequest,
    Request,
    RequestParser,
    response,
)

UPGRADE = (
    b"GET /cable?x=1 HTTP/1.1\r\n"
    b"Host: hub.example\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
WS_BYTES = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello", right behind the head


def drain(parser: RequestParser) -> list:
    """The events up to NEED_DATA (left out), PAUSED or CLOSED (kept)."""
    events = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if event is PAUSED or event is CLOSED:
            return events


def feed(parser: RequestParser, *pieces: bytes) -> list:
    """The events of each piece in turn, one PAUSED for a run of them."""
    events: list = []
    for piece in pieces:
        parser.receive_data(piece)
        for event in drain(parser):
            if event is not PAUSED or events[-1:] != [PAUSED]:
                events.append(event)
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def body_of(events: list) -> bytes:
    chunks = [event for event in events if type(event) is bytes]
    assert all(chunks), "a body chunk is never empty"
    return b"".join(chunks)


def refusal(data: bytes, max_head_bytes: int = MAX_HEAD_BYTES, pieces: bool = False) -> tuple[int, str]:
    parser = RequestParser(max_head_bytes)
    with pytest.raises(BadRequest) as info:
        if pieces:
            feed(parser, *bytewise(data))
        else:
            feed(parser, data)
    error = info.value
    assert str(error) == error.reason
    return error.status, error.reason


# --- requests that parse --------------------------------------------------------------------


def test_a_simple_get_is_a_request_then_the_end_of_its_message_then_a_pause() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert (request.method, request.target, request.http_version) == (b"GET", b"/health", b"1.1")
    assert request.headers == [(b"host", b"a")]
    assert request.keep_alive and parser.keep_alive
    assert not parser.request_complete
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.request_complete
    assert parser.next_event() is PAUSED
    assert parser.next_event() is PAUSED
    assert parser.trailing_data == b""


def test_the_sentinels_are_distinct_and_events_are_slotted() -> None:
    sentinels = {id(NEED_DATA), id(PAUSED), id(END_OF_MESSAGE), id(CLOSED)}
    assert len(sentinels) == 4
    assert repr(PAUSED) == "PAUSED"
    (request, _, _) = feed(RequestParser(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert not hasattr(request, "__dict__")


def test_method_and_target_are_kept_as_sent_bytes() -> None:
    (request, _, _) = feed(RequestParser(), b"get /%C3%A9?q=a+b&x=%00 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert request.method == b"get"  # a token, case-sensitive: not b"GET"
    assert request.target == b"/%C3%A9?q=a+b&x=%00"
    assert type(request.method) is bytes and type(request.target) is bytes


def test_headers_are_lower_cased_stripped_in_order_with_duplicates_kept() -> None:
    data = (
        b"GET / HTTP/1.1\r\n"
        b"X-Forwarded-For: \t 10.0.0.1 \t\r\n"
        b"HOST:hub\r\n"
        b"x-forwarded-for: 10.0.0.2\r\n"
        b"Empty:\r\n"
        b"Spaces:   \r\n"
        b"Inner: a \t b\r\n"
        b"Latin: caf\xe9\r\n"
        b"\r\n"
    )
    (request, _, _) = feed(RequestParser(), data)
    assert request.headers == [
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"host", b"hub"),
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"empty", b""),
        (b"spaces", b""),
        (b"inner", b"a \t b"),
        (b"latin", b"caf\xe9"),
    ]
    assert all(type(name) is bytes and type(value) is bytes for name, value in request.headers)


def test_a_content_length_header_holds_its_one_value() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc"
    events = feed(RequestParser(), data)
    assert events[0].headers[1:] == [(b"content-length", b"3"), (b"content-length", b"3")]
    assert body_of(events) == b"abc"


@pytest.mark.parametrize(
    "ending", [b"\r\n", b"\n"], ids=["crlf", "bare-lf"]
)
def test_bare_lf_line_endings_are_accepted_in_the_head_like_h11(ending: bytes) -> None:
    data = b"GET / HTTP/1.1" + ending + b"Host: a\r\nX: b" + ending + ending + b"next"
    parser = RequestParser()
    (request, end, _) = feed(parser, data)
    assert request.headers == [(b"host", b"a"), (b"x", b"b")] and end is END_OF_MESSAGE
    assert parser.trailing_data == b"next"


def test_empty_lines_before_a_request_line_are_skipped() -> None:
    parser = RequestParser()
    events = feed(parser, b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events[0].target == b"/" and events[1] is END_OF_MESSAGE


# --- upgrades and trailing data ---------------------------------------------------------------


def test_the_bytes_behind_an_upgrade_head_are_the_trailing_data_exactly() -> None:
    parser = RequestParser()
    parser.receive_data(UPGRADE + WS_BYTES)
    request = parser.next_event()
    assert isinstance(request, Request) and request.target == b"/cable?x=1"
    assert (b"upgrade", b"websocket") in request.headers
    assert parser.trailing_data == WS_BYTES
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.trailing_data == WS_BYTES  # a GET without a body consumes nothing more


def test_trailing_data_is_exact_whatever_the_pieces_the_head_came_in() -> None:
    data = UPGRADE + WS_BYTES
    for cut in range(1, len(data)):
        parser = RequestParser()
        events = feed(parser, data[:cut], data[cut:])
        assert isinstance(events[0], Request) and events[1] is END_OF_MESSAGE
        assert parser.trailing_data == WS_BYTES


@pytest.mark.parametrize("terminator", [b"\n\n", b"\n\r\n", b"\r\n\n", b"\r\n\r\n"])
def test_the_trailing_data_follows_every_form_of_the_final_empty_line(terminator: bytes) -> None:
    parser = RequestParser()
    events = feed(parser, b"GET / HTTP/1.1\r\nHost: a" + terminator + b"\r\n\x81")
    assert isinstance(events[0], Request)
    assert parser.trailing_data == b"\r\n\x81"


# --- pipelining and the cycle ---------------------------------------------------------------------


def test_pipelined_requests_wait_behind_a_pause_until_the_next_cycle() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_event().target == b"/a"
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is PAUSED
    assert parser.trailing_data == b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"  # not parsed before /a is answered
    parser.start_next_cycle()
    assert not parser.request_complete
    assert parser.next_event().target == b"/b"
    assert parser.next_event() is END_OF_MESSAGE
    parser.start_next_cycle()
    assert parser.next_event() is NEED_DATA
    assert parser.trailing_data == b""


def test_a_body_is_not_read_into_the_next_pipelined_request() -> None:
    parser = RequestParser()
    events = feed(parser, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events[1:] == [b"hi", END_OF_MESSAGE, PAUSED]
    parser.start_next_cycle()
    assert parser.next_event().method == b"GET"


def test_start_next_cycle_is_refused_before_the_end_of_the_request() -> None:
    parser = RequestParser()
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nh")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == b"h"
    assert not parser.request_complete
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()


def test_start_next_cycle_is_refused_on_a_connection_that_must_close() -> None:
    parser = RequestParser()
    feed(parser, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert parser.request_complete and not parser.keep_alive
    with pytest.raises(RuntimeError):
        parser.start_next_cycle()


# --- bodies ---------------------------------------------------------------------------------------


def test_a_content_length_body_fed_byte_by_byte_comes_out_byte_by_byte() -> None:
    head = b"POST /_broadcast HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
    parser = RequestParser()
    events = feed(parser, *bytewise(head + b"hello world" + b"GET"))
    assert isinstance(events[0], Request)
    assert events[1:12] == [bytes([byte]) for byte in b"hello world"]
    assert events[12:] == [END_OF_MESSAGE, PAUSED]
    assert parser.trailing_data == b"GET"


def test_a_body_chunk_is_what_arrived_never_more_than_the_length() -> None:
    parser = RequestParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"abcd")
    assert parser.next_event() == b"abcd"
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"efghijklmn")
    assert parser.next_event() == b"efghij"
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.trailing_data == b"klmn"


CHUNKED = (
    b"POST /_broadcast HTTP/1.1\r\n"
    b"Host: a\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;name=value;other\r\n"
    b"hello\r\n"
    b"1 ; spaced = ext\r\n"
    b" \r\n"
    b"00005\r\n"
    b"world\r\n"
    b"A\t\r\n"
    b"0123456789\r\n"
    b"0;last\r\n"
    b"Expires: never\r\n"
    b"X-Trailer: \t one\r\n"
    b"\r\n"
)


def test_a_chunked_body_with_extensions_and_trailers_fed_whole() -> None:
    parser = RequestParser()
    events = feed(parser, CHUNKED + b"\x81")
    assert isinstance(events[0], Request)
    assert body_of(events) == b"hello world0123456789"
    assert events[-2:] == [END_OF_MESSAGE, PAUSED]
    assert parser.trailing_data == b"\x81"
    assert parser.keep_alive


def test_a_chunked_body_fed_byte_by_byte() -> None:
    parser = RequestParser()
    events = feed(parser, *bytewise(CHUNKED + b"\x81"))
    assert body_of(events) == b"hello world0123456789"
    assert events[-2:] == [END_OF_MESSAGE, PAUSED]
    assert parser.trailing_data == b"\x81"


def test_a_chunk_is_delivered_as_it_arrives_not_when_complete() -> None:
    parser = RequestParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == b"abc"
    assert parser.next_event() is NEED_DATA


def test_an_empty_chunked_body_ends_at_once() -> None:
    parser = RequestParser()
    events = feed(parser, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n")
    assert events[1:] == [END_OF_MESSAGE, PAUSED]


def test_with_content_length_and_transfer_encoding_chunked_wins_and_the_connection_closes() -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + b"3\r\nabc\r\n0\r\n\r\n"
    parser = RequestParser()
    events = feed(parser, data)
    assert events[0].keep_alive is False and parser.keep_alive is False
    assert body_of(events) == b"abc" and events[-2] is END_OF_MESSAGE


def test_no_body_headers_mean_no_body_whatever_the_method() -> None:
    parser = RequestParser()
    events = feed(parser, b"POST / HTTP/1.1\r\nHost: a\r\n\r\nbody?")
    assert events[1:] == [END_OF_MESSAGE, PAUSED]
    assert parser.trailing_data == b"body?"


# --- refusals ---------------------------------------------------------------------------------------

H = b"GET / HTTP/1.1\r\nHost: a\r\n"  # a head so far, to which a case adds lines
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

REFUSALS = [
    # request line
    (b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host header"),
    (H + b"Host: b\r\n\r\n", 400, "several Host headers"),
    (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "several Host headers"),
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed request line"),
    (b"GET /\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    (b"GET / a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    (b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method is not a token"),
    (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
    (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
    (b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / HTTP/0.9\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/11\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/1.a\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/a.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTP/1x1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"GET / HTTPS1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    (b"\x16\x03\x01", 400, "malformed request line"),  # a TLS handshake: refused before any line ends
    (b" GET / HTTP/1.1\r\n", 400, "malformed request line"),
    (b"\r\r\n", 400, "malformed request line"),
    # header lines
    (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obsolete line folding"),
    (H + b"X: a\r\n\tb\r\n\r\n", 400, "obsolete line folding"),
    (H + b"X a\r\n\r\n", 400, "malformed header line"),
    (H + b"X : a\r\n\r\n", 400, "header name is not a token"),
    (H + b": a\r\n\r\n", 400, "header name is not a token"),
    (H + b"X\x80: a\r\n\r\n", 400, "header name is not a token"),
    (H + b"X: a\x00b\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\x01b\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\x7fb\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\rb\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\x0bb\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\r\r\n\r\n", 400, "control byte in a header value"),
    (H + b"X: a\x01:b\r\n\r\n", 400, "control byte in a header value"),
    # Content-Length
    (H + b"Content-Length: -1\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: +1\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 1 2\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 0x10\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 1_0\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: \xd9\xa1\r\n\r\n", 400, "bad Content-Length"),  # an Arabic-Indic digit
    (H + b"Content-Length:\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 5,\r\n\r\n", 400, "conflicting Content-Length headers"),
    (H + b"Content-Length: ,\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 1234567890123456789\r\n\r\n", 400, "bad Content-Length"),
    (H + b"Content-Length: 5, 6\r\n\r\n", 400, "conflicting Content-Length headers"),
    (H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, "conflicting Content-Length headers"),
    (H + b"Content-Length: 5\r\nContent-Length: 05\r\n\r\n", 400, "conflicting Content-Length headers"),
    (H + b"Content-Length: 5, 05\r\n\r\n", 400, "conflicting Content-Length headers"),
    # Transfer-Encoding
    (H + b"Transfer-Encoding: gzip\r\n\r\n", 400, "chunked is not the final transfer coding"),
    (H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400, "chunked is not the final transfer coding"),
    (H + b"Transfer-Encoding: chunked,\r\n\r\n", 400, "chunked is not the final transfer coding"),
    (H + b"Transfer-Encoding:\r\n\r\n", 400, "chunked is not the final transfer coding"),
    (H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported transfer coding"),
    (H + b"Transfer-Encoding: , chunked\r\n\r\n", 501, "unsupported transfer coding"),
    (H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "unsupported transfer coding"),
    (H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "unsupported transfer coding"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding in an HTTP/1.0 request"),
    # chunked framing
    (CHUNKED_HEAD + b"zz\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"X\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1X\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1\x0b\r\n", 400, "bad chunk size"),  # only spaces and tabs may follow a size
    (CHUNKED_HEAD + b"1\x0c;a\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1\r\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b" 1\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"-1\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"0x1\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1_0\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1" * 17 + b"\r\n", 400, "bad chunk size"),
    (CHUNKED_HEAD + b"1\n", 400, "line not ended by CRLF in a chunked body"),
    (CHUNKED_HEAD + b"\n", 400, "line not ended by CRLF in a chunked body"),
    (CHUNKED_HEAD + b"1;a\x00\r\n", 400, "control byte in a chunk extension"),
    (CHUNKED_HEAD + b"1;a\rb\r\n", 400, "control byte in a chunk extension"),
    (CHUNKED_HEAD + b"1\r\nXY", 400, "chunk data not followed by CRLF"),
    (CHUNKED_HEAD + b"1\r\nX\n", 400, "chunk data not followed by CRLF"),
    (CHUNKED_HEAD + b"1\r\nX\r\r", 400, "chunk data not followed by CRLF"),
    (CHUNKED_HEAD + b"0\r\n\n", 400, "line not ended by CRLF in a chunked body"),
    (CHUNKED_HEAD + b"0\r\nA: b\nC: d\r\n\r\n", 400, "line not ended by CRLF in a chunked body"),
    (CHUNKED_HEAD + b"0\r\nA: b\r\n\n", 400, "line not ended by CRLF in a chunked body"),
    (CHUNKED_HEAD + b"0\r\n\rX\r\n", 400, "malformed header line"),
    (CHUNKED_HEAD + b"0\r\n: x\r\n", 400, "header name is not a token"),
    (CHUNKED_HEAD + b"0\r\nA b\r\n", 400, "malformed header line"),
    (CHUNKED_HEAD + b"0\r\nA: b\x01\r\n", 400, "control byte in a header value"),
    (CHUNKED_HEAD + b"0\r\nA: b\r\n c\r\n\r\n", 400, "obsolete line folding"),
]


@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("data", "status", "reason"), REFUSALS)
def test_each_malformed_request_is_refused_with_its_status_and_fixed_reason(
    data: bytes, status: int, reason: str, pieces: bool
) -> None:
    assert refusal(data, pieces=pieces) == (status, reason)


def test_no_refusal_quotes_the_peer_s_bytes() -> None:
    secret = b"s3cret-Bearer-token"
    for data in (
        H + b"Authorization " + secret + b"\r\n\r\n",
        H + b"Authorization: " + secret + b"\x01\r\n\r\n",
        b"GET /" + secret + b"\x7f HTTP/1.1\r\n\r\n",
        CHUNKED_HEAD + secret + b"\r\n",
    ):
        parser = RequestParser()
        parser.receive_data(data)
        with pytest.raises(BadRequest) as info:
            drain(parser)
        assert b"s3cret" not in str(info.value).encode() and b"s3cret" not in repr(info.value).encode()
        assert "s3cret" not in info.value.reason


def test_the_accepted_near_misses_of_the_refusals() -> None:
    accepted = [
        b"GET / HTTP/1.0\r\n\r\n",  # no Host needed in HTTP/1.0
        H + b"Content-Length: 123456789012345678\r\n\r\n",  # 18 digits
        H + b"Content-Length: 5, 5\r\n\r\n",
        H + b"Content-Length: 05\r\nContent-Length:\t05 , 05\r\n\r\n",
        H + b"Transfer-Encoding: CHUNKED\r\n\r\n",
        CHUNKED_HEAD + b"F" * 16 + b"\r\n",  # 16 hex digits
        CHUNKED_HEAD + b"1 ;a\r\nx\r\n",
        CHUNKED_HEAD + b"1\t\r\nx\r\n",
        CHUNKED_HEAD + b"1;\r\nx\r\n",
    ]
    for data in accepted:
        events = feed(RequestParser(), data)
        assert isinstance(events[0], Request), data


def test_a_refusal_is_final_and_ends_keep_alive() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(BadRequest):
        parser.next_event()
    assert not parser.keep_alive
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(BadRequest) as info:
        parser.next_event()
    assert (info.value.status, info.value.reason) == (400, "missing Host header")


def test_a_head_is_refused_as_soon_as_it_ends_before_any_of_its_body() -> None:
    parser = RequestParser()
    parser.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"\r\n")
    with pytest.raises(BadRequest) as info:
        parser.next_event()
    assert info.value.status == 501


# --- the bounds -------------------------------------------------------------------------------------


def head_of(size: int, terminator: bytes = b"\r\n\r\n") -> bytes:
    start = b"GET / HTTP/1.1\r\nHost: a\r\nX: "
    head = start + b"a" * (size - len(start) - len(terminator)) + terminator
    assert len(head) == size
    return head


@pytest.mark.parametrize("terminator", [b"\r\n\r\n", b"\n\n", b"\n\r\n"])
@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "bytewise"])
def test_a_head_of_exactly_the_bound_passes_and_one_byte_more_is_431(terminator: bytes, pieces: bool) -> None:
    bound = 300
    parser = RequestParser(bound)
    data = head_of(bound, terminator)
    events = feed(parser, *(bytewise(data) if pieces else [data]))
    assert isinstance(events[0], Request) and events[1] is END_OF_MESSAGE
    assert refusal(head_of(bound + 1, terminator), bound, pieces) == (431, "request head too large")


def test_the_default_bound_is_16_kib() -> None:
    assert MAX_HEAD_BYTES == 16384
    assert isinstance(feed(RequestParser(), head_of(16384))[0], Request)
    assert refusal(head_of(16385)) == (431, "request head too large")


def test_a_head_that_cannot_end_within_the_bound_is_431_without_waiting_for_its_end() -> None:
    bound = 300
    parser = RequestParser(bound)
    parser.receive_data(head_of(bound)[: bound - 1])
    assert parser.next_event() is NEED_DATA  # it may still end at the bound
    parser.receive_data(b"x")
    with pytest.raises(BadRequest) as info:
        parser.next_event()
    assert info.value.status == 431


def test_empty_lines_before_the_request_line_count_towards_the_bound() -> None:
    bound = 300
    data = b"\r\n" * 10 + head_of(bound - 20)
    assert isinstance(feed(RequestParser(bound), data)[0], Request)
    assert refusal(b"\n" + data, bound) == (431, "request head too large")


def test_empty_lines_alone_are_refused_once_past_the_bound() -> None:
    bound = 300
    parser = RequestParser(bound)
    assert feed(parser, b"\r\n" * 100, b"\n" * 100) == []
    assert parser.trailing_data == b""  # skipped as they come: they take no memory
    assert refusal(b"\r\n" * 150 + b"\n", bound) == (431, "request head too large")


def test_the_bound_applies_to_each_head_of_a_connection_anew() -> None:
    bound = 300
    parser = RequestParser(bound)
    data = head_of(bound)
    for _ in range(3):
        events = feed(parser, data)
        assert isinstance(events[0], Request)
        parser.start_next_cycle()


def chunk_line_of(size: int) -> bytes:
    line = b"1;" + b"e" * (size - 4) + b"\r\n"
    assert len(line) == size
    return line


@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "bytewise"])
def test_a_chunk_size_line_of_exactly_the_bound_passes_and_one_byte_more_is_431(pieces: bool) -> None:
    bound = 300
    data = CHUNKED_HEAD + chunk_line_of(bound) + b"x\r\n0\r\n\r\n"
    parser = RequestParser(bound)
    events = feed(parser, *(bytewise(data) if pieces else [data]))
    assert body_of(events) == b"x" and events[-2] is END_OF_MESSAGE
    over = CHUNKED_HEAD + chunk_line_of(bound + 1)
    assert refusal(over, bound, pieces) == (431, "chunk-size line too long")


def test_an_unfinished_chunk_size_line_is_431_once_it_reaches_the_bound() -> None:
    bound = 300
    parser = RequestParser(bound)
    feed(parser, CHUNKED_HEAD + chunk_line_of(bound)[:-1])
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"e")
    with pytest.raises(BadRequest) as info:
        parser.next_event()
    assert info.value.status == 431


def trailers_of(size: int) -> bytes:
    trailers = b"Trailer: " + b"t" * (size - 13) + b"\r\n\r\n"
    assert len(trailers) == size
    return trailers


def many_trailers(size: int) -> bytes:
    """A trailer section of `size` bytes in lines of 10 bytes or so, each far below any bound."""
    lines = (size - 12) // 10
    last = size - 2 - 10 * lines
    trailers = b"T: ttttt\r\n" * lines + b"T: " + b"t" * (last - 5) + b"\r\n" + b"\r\n"
    assert len(trailers) == size
    return trailers


@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("trailers", [trailers_of, many_trailers], ids=["one line", "many lines"])
def test_trailers_of_exactly_the_bound_pass_and_one_byte_more_is_431(pieces: bool, trailers) -> None:
    """Many short lines count together towards the bound, as one long line does."""
    bound = 300
    data = CHUNKED_HEAD + b"0\r\n" + trailers(bound) + b"\x81"
    parser = RequestParser(bound)
    events = feed(parser, *(bytewise(data) if pieces else [data]))
    assert events[-2:] == [END_OF_MESSAGE, PAUSED] and parser.trailing_data == b"\x81"
    over = CHUNKED_HEAD + b"0\r\n" + trailers(bound + 1)
    assert refusal(over, bound, pieces) == (431, "trailers too large")


def test_a_body_is_not_bound_by_the_head_bound() -> None:
    bound = 300
    body = b"b" * 10000
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n" + body
    assert body_of(feed(RequestParser(bound), data)) == body
    chunked = CHUNKED_HEAD + b"2710\r\n" + body + b"\r\n0\r\n\r\n"
    assert body_of(feed(RequestParser(bound), chunked)) == body


class CountingBuffer(bytearray):
    """The parser's buffer, counting the bytes its searches examine."""

    examined = 0

    def find(self, sub, start=0, end=None):  # type: ignore[no-untyped-def, override]
        stop = len(self) if end is None else min(end, len(self))
        self.examined += max(0, stop - start)
        return super().find(sub, start, end)


@pytest.mark.parametrize(
    ("prefix", "part", "finish", "first"),
    [
        (b"", head_of(MAX_HEAD_BYTES)[:-4], b"\r\n\r\n", Request),
        (b"", b"GET / HTTP/1.0\n" + b"X: a\n" * 3200, b"\n", Request),
        (CHUNKED_HEAD, chunk_line_of(MAX_HEAD_BYTES)[:-2], b"\r\nx", bytes),
        (CHUNKED_HEAD + b"0\r\n", trailers_of(MAX_HEAD_BYTES)[:-4], b"\r\n\r\n", type(END_OF_MESSAGE)),
    ],
    ids=["head", "bare-lf-head", "chunk-size-line", "trailers"],
)
def test_a_bound_fed_byte_by_byte_is_searched_in_linear_time(
    prefix: bytes, part: bytes, finish: bytes, first: type
) -> None:
    parser = RequestParser()
    buffer = CountingBuffer()
    parser._buf = buffer
    if prefix:
        feed(parser, prefix)
    buffer.examined = 0
    for byte in bytewise(part):
        parser.receive_data(byte)
        assert parser.next_event() is NEED_DATA
    parser.receive_data(finish)
    assert isinstance(parser.next_event(), first)
    # Each search resumes a few bytes before where the last one stopped: a few bytes examined per byte
    # received. Searching from the start each time would examine len(part) ** 2 / 2: over 100 million.
    assert 0 < buffer.examined <= 8 * len(part)


# --- EOF ----------------------------------------------------------------------------------------------


def test_eof_before_any_request_is_closed_and_stays_closed() -> None:
    parser = RequestParser()
    parser.receive_data(b"")
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED


def test_eof_after_empty_lines_only_is_closed() -> None:
    parser = RequestParser()
    assert feed(parser, b"\r\n\n", b"") == [CLOSED]


def test_eof_between_requests_is_closed() -> None:
    parser = RequestParser()
    feed(parser, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    parser.receive_data(b"")
    assert parser.next_event() is PAUSED  # until the request is answered
    parser.start_next_cycle()
    assert parser.next_event() is CLOSED


@pytest.mark.parametrize(
    "data",
    [
        b"G",
        b"\r",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc",
        CHUNKED_HEAD,
        CHUNKED_HEAD + b"5",
        CHUNKED_HEAD + b"5\r\nab",
        CHUNKED_HEAD + b"2\r\nab",
        CHUNKED_HEAD + b"2\r\nab\r",
        CHUNKED_HEAD + b"0\r\n",
        CHUNKED_HEAD + b"0\r\n\r",
        CHUNKED_HEAD + b"0\r\nA: b\r\n",
    ],
)
def test_eof_mid_request_is_400(data: bytes) -> None:
    parser = RequestParser()
    parser.receive_data(data)
    drain(parser)
    parser.receive_data(b"")
    with pytest.raises(BadRequest) as info:
        drain(parser)
    assert (info.value.status, info.value.reason) == (400, "connection closed mid-request")


def test_data_after_eof_is_the_caller_s_bug() -> None:
    parser = RequestParser()
    parser.receive_data(b"")
    parser.receive_data(b"")  # EOF twice is EOF
    with pytest.raises(RuntimeError):
        parser.receive_data(b"GET")


def test_a_request_complete_before_eof_is_still_delivered() -> None:
    parser = RequestParser()
    events = feed(parser, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok", b"")
    assert events[1:] == [b"ok", END_OF_MESSAGE, PAUSED]


# --- keep-alive -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, CLOSE", False),
        (b"1.1", b"Upgrade", True),
        (b"1.1", b"closed", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Upgrade , Keep-Alive", True),
        (b"1.0", b"keep-alive, close", False),
        (b"1.0", b"keep-alive-ish", False),
    ],
)
def test_keep_alive_follows_the_version_and_the_connection_header(
    version: bytes, connection: bytes | None, keep_alive: bool
) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    parser = RequestParser()
    (request, _, _) = feed(parser, data + b"\r\n")
    assert request.http_version == version
    assert request.keep_alive is keep_alive and parser.keep_alive is keep_alive


def test_several_connection_headers_are_one_list() -> None:
    data = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    assert feed(RequestParser(), data)[0].keep_alive is False


def test_an_http_1_0_connection_kept_alive_serves_the_next_request() -> None:
    parser = RequestParser()
    feed(parser, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    parser.start_next_cycle()
    (request, _, _) = feed(parser, b"GET /b HTTP/1.0\r\n\r\n")
    assert request.target == b"/b" and not parser.keep_alive


# --- responses --------------------------------------------------------------------------------------------


def test_a_response_is_the_status_line_the_headers_as_given_and_the_body() -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"3"), (b"connection", b"close")]
    assert response(404, headers, b"no\n") == (
        b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nno\n"
    )


def test_a_response_to_head_leaves_the_body_out() -> None:
    assert response(200, [(b"content-length", b"2")], b"OK", head_only=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (101, b"Switching Protocols"),
        (200, b"OK"),
        (201, b"Created"),
        (400, b"Bad Request"),
        (401, b"Unauthorized"),
        (403, b"Forbidden"),
        (404, b"Not Found"),
        (405, b"Method Not Allowed"),
        (413, b"Content Too Large"),
        (429, b"Too Many Requests"),
        (431, b"Request Header Fields Too Large"),
        (501, b"Not Implemented"),
        (503, b"Service Unavailable"),
        (505, b"HTTP Version Not Supported"),
        (299, b""),
    ],
)
def test_the_reason_phrases(status: int, reason: bytes) -> None:
    assert response(status, [], b"") == b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason)


@pytest.mark.parametrize(
    "header",
    [(b"x", b"a\r\nset-cookie: b"), (b"x", b"a\nb"), (b"x y", b"a"), (b"", b"a"), (b"x:", b"a"), (b"x", b"\x00")],
)
def test_a_response_header_that_could_split_the_response_is_refused(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError):
        response(200, [header], b"")


def test_a_response_status_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        response(1000, [], b"")


def test_h11_parses_the_responses_back() -> None:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(response(200, [(b"content-length", b"2"), (b"x-a", b"b c")], b"ok"))
    event = client.next_event()
    assert isinstance(event, h11.Response) and event.status_code == 200 and event.reason == b"OK"
    assert list(event.headers) == [(b"content-length", b"2"), (b"x-a", b"b c")]
    assert client.next_event().data == b"ok"


# --- h11 as an oracle ----------------------------------------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FRAMING = {b"host", b"content-length", b"transfer-encoding", b"connection"}
tokens = st.text(TCHARS, min_size=1, max_size=10).map(str.encode)
targets = st.text([chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=30).map(str.encode)
values = st.lists(st.sampled_from([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=20).map(bytes)
fields = st.tuples(tokens.filter(lambda name: name.lower() not in FRAMING), values)
ows = st.sampled_from([b"", b" ", b"\t", b" \t "])


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A chunked body as sent (CRLF only, as both parsers require) and its content."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
    extension = st.sampled_from([b"", b";a", b";a=b", b";a=\"q s\";c"])
    sent = b""
    for chunk in chunks:
        size = b"%x" % len(chunk)
        size = b"0" * draw(st.integers(0, 3)) + draw(st.sampled_from([size, size.upper()]))
        sent += size + draw(extension) + b"\r\n" + chunk + b"\r\n"
    sent += b"0" + draw(extension) + b"\r\n"
    for name, value in draw(st.lists(fields, max_size=2)):
        sent += name + b":" + draw(ows) + value + b"\r\n"
    return sent + b"\r\n", b"".join(chunks)


@st.composite
def requests(draw: st.DrawFn, with_body: bool = True) -> tuple[bytes, bytes]:
    """A well-formed request as sent, in any of the forms both parsers accept, and its body."""
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    headers = draw(st.lists(fields, max_size=6))
    if version == b"1.1" or draw(st.booleans()):
        host = (draw(st.sampled_from([b"Host", b"host", b"HOST"])), draw(values))
        headers.insert(draw(st.integers(0, len(headers))), host)
    if draw(st.booleans()):
        connection = draw(st.sampled_from([b"close", b"keep-alive", b"Upgrade", b"Keep-Alive, Upgrade", b"CLOSE"]))
        headers.insert(draw(st.integers(0, len(headers))), (b"Connection", connection))
    framings = ["none"]
    if with_body:
        framings += ["length", "chunked"] if version == b"1.1" else ["length"]
    framing = draw(st.sampled_from(framings))
    sent_body = body = b""
    if framing == "length":
        body = sent_body = draw(st.binary(max_size=40))
        length = b"%d" % len(body)
        length = draw(st.sampled_from([length, length + b", " + length]))
        headers.insert(draw(st.integers(0, len(headers))), (b"Content-Length", length))
    elif framing == "chunked":
        sent_body, body = draw(chunked_bodies())
        headers.insert(draw(st.integers(0, len(headers))), (b"Transfer-Encoding", b"chunked"))
    eol = st.sampled_from([b"\r\n", b"\n"])
    lines = [draw(tokens) + b" " + draw(targets) + b" HTTP/" + version]
    lines += [name + b":" + draw(ows) + value + draw(ows) for name, value in headers]
    head = b"".join(line + draw(eol) for line in lines) + draw(eol)
    return head + sent_body, body


def pieces_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a] or [data]


def h11_parse(data: bytes, eof: bool = False) -> tuple[h11.Request, bytes, bytes, bool]:
    """What h11 makes of a request: raises h11.RemoteProtocolError if it refuses it or it does not end."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    request = conn.next_event()
    if not isinstance(request, h11.Request):
        raise h11.RemoteProtocolError("no request")
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        if not isinstance(event, h11.Data):
            raise h11.RemoteProtocolError("no end of message")
        body += event.data
    return request, body, conn.trailing_data[0], conn._cstate.keep_alive


def comparable(headers: list) -> list[tuple[bytes, bytes]]:
    """Headers as both parsers give them, but for h11 lower-casing Transfer-Encoding values."""
    return [(bytes(name), bytes(value).lower() if name == b"transfer-encoding" else bytes(value)) for name, value in headers]


def assert_agrees_with_h11(request: Request, body: bytes, trailing: bytes, data: bytes, eof: bool = False) -> None:
    theirs, their_body, their_trailing, their_keep_alive = h11_parse(data, eof)
    assert request.method == bytes(theirs.method)
    assert request.target == bytes(theirs.target)
    assert request.http_version == bytes(theirs.http_version)
    assert comparable(request.headers) == comparable(theirs.headers)
    assert body == their_body
    assert trailing == their_trailing
    if request.http_version == b"1.1":  # h11 never keeps an HTTP/1.0 connection alive
        assert request.keep_alive is their_keep_alive


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=requests(), after=st.binary(max_size=12), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_well_formed_requests_parse_as_h11_parses_them(
    sent: tuple[bytes, bytes], after: bytes, cuts: list[int]
) -> None:
    data, body = sent
    parser = RequestParser()
    events = [event for event in feed(parser, *pieces_of(data + after, cuts)) if event is not PAUSED]
    assert isinstance(events[0], Request) and events[-1] is END_OF_MESSAGE
    assert body_of(events) == body
    assert parser.trailing_data == after
    assert_agrees_with_h11(events[0], body, after, data + after)


# Where this parser refuses what h11 0.16 takes, on purpose (see hub/http.py).
STRICTER_THAN_H11 = {
    "obsolete line folding",
    "control byte in a header value",
    "unsupported HTTP version",
    "Transfer-Encoding in an HTTP/1.0 request",
    "control byte in a chunk extension",
    "line not ended by CRLF in a chunked body",
}
# Where it takes what h11 refuses: whitespace before a chunk extension's ";" (RFC 9112 7.1.1).
BWS_BEFORE_EXTENSION = re.compile(rb"\n[0-9A-Fa-f]+[ \t]+;")
NOISE = [b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b";", b",", b"\x00", b"\x01", b"\x7f", b"\x80", b"a", b"/", b"0", b"1"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=requests(), after=st.binary(max_size=8), data=st.data())
def test_mutated_requests_are_accepted_only_as_h11_accepts_them(sent: tuple[bytes, bytes], after: bytes, data) -> None:
    mutated = bytearray(sent[0] + after)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(mutated)))
        operation = data.draw(st.sampled_from(["insert", "replace", "delete"]))
        noise = data.draw(st.sampled_from(NOISE))
        if operation == "insert":
            mutated[at:at] = noise
        elif operation == "replace":
            mutated[at : at + len(noise)] = noise
        else:
            del mutated[at : at + 1]
    mutated = bytes(mutated)
    # Empty lines before the request line: skipped here, refused by h11.
    assume(not mutated.startswith((b"\n", b"\r\n")))
    parser = RequestParser()
    parser.receive_data(mutated)
    parser.receive_data(b"")
    try:
        events = [event for event in drain(parser) if event is not PAUSED]
    except BadRequest as error:
        refused: BadRequest | None = error
    else:
        refused = None
    try:
        h11_parse(mutated, eof=True)
    except h11.RemoteProtocolError:
        h11_refuses = True
    else:
        h11_refuses = False
    if refused is None and h11_refuses:
        assert BWS_BEFORE_EXTENSION.search(mutated), "accepted what h11 refuses"
    elif refused is None:
        assert_agrees_with_h11(events[0], body_of(events), parser.trailing_data, mutated, eof=True)
    elif not h11_refuses:
        assert refused.reason in STRICTER_THAN_H11


# --- what the module costs -------------------------------------------------------------------------------------


def test_importing_the_parser_loads_neither_h11_nor_typing_nor_re() -> None:
    code = (
        "import sys; before = set(sys.modules); import hub.http; "
        "print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['__future__', 'hub', 'hub.http']"


def test_the_module_exports_the_interface_the_hub_is_written_against() -> None:
    for name in ("MAX_HEAD_BYTES", "BadRequest", "Request", "RequestParser", "response"):
        assert hasattr(http, name)
    assert set(Request.__slots__) == {"method", "target", "headers", "http_version", "keep_alive"}


# --- edges that mutation testing found untested (bench/results/mutation.md) --------------------------------


def test_every_sentinel_has_its_name() -> None:
    assert [repr(event) for event in (NEED_DATA, PAUSED, END_OF_MESSAGE, CLOSED)] == [
        "NEED_DATA",
        "PAUSED",
        "END_OF_MESSAGE",
        "CLOSED",
    ]



@pytest.mark.parametrize("empty", [b"\n", b"\r\n", b"\n\r\n", b"\r\n\n"], ids=["lf", "crlf", "lf-crlf", "crlf-lf"])
def test_empty_lines_before_a_request_line_take_nothing_of_it(empty: bytes) -> None:
    (request, end, _) = feed(RequestParser(), empty + b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (request.method, request.target, request.headers) == (b"GET", b"/x", [(b"host", b"a")])
    assert end is END_OF_MESSAGE

def test_the_request_target_takes_every_visible_ascii_byte() -> None:
    target = b"/" + bytes(range(0x21, 0x7F))
    (request, _, _) = feed(RequestParser(), b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert request.target == target


# Every byte a field value may hold (RFC 9110 5.5), colons included, between two that are not stripped.
EVERY_VALUE_BYTE = b"a\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"a"


def test_a_header_value_takes_every_field_value_byte_and_any_colon() -> None:
    data = H + b"Referer: http://hub.example:8080/a:b\r\nX: " + EVERY_VALUE_BYTE + b"\r\nY: \tX y X \r\n\r\n"
    (request, _, _) = feed(RequestParser(), data)
    assert request.headers[1:] == [
        (b"referer", b"http://hub.example:8080/a:b"),
        (b"x", EVERY_VALUE_BYTE),
        (b"y", b"X y X"),  # only spaces and tabs are stripped
    ]


def test_a_trailer_takes_every_field_value_byte_and_any_colon() -> None:
    data = CHUNKED_HEAD + b"1\r\nx\r\n0\r\nReferer: http://hub.example:8080/a:b\r\nX: " + EVERY_VALUE_BYTE + b"\r\n\r\n"
    events = feed(RequestParser(), data)
    assert body_of(events) == b"x" and events[-2:] == [END_OF_MESSAGE, PAUSED]


@pytest.mark.parametrize(
    "first",
    [b"GET /a HTTP/1.1\nHost: a\n\n", b"GET /a HTTP/1.1\r\nHost: a\n\n", b"GET /a HTTP/1.1\nHost: a\r\n\r\n"],
    ids=["lf", "crlf-then-lf", "lf-then-crlf"],
)
def test_pipelined_requests_end_at_their_own_empty_line_whatever_its_form(first: bytes) -> None:
    second = b"GET /b HTTP/1.1\nHost: b\n\n"
    parser = RequestParser()
    events = feed(parser, first + second + second)
    assert events[0].target == b"/a" and events[0].headers == [(b"host", b"a")]
    assert events[1:] == [END_OF_MESSAGE, PAUSED]
    assert parser.trailing_data == second + second
    for _ in range(2):
        parser.start_next_cycle()
        request = parser.next_event()
        assert request.target == b"/b" and request.headers == [(b"host", b"b")]
        assert parser.next_event() is END_OF_MESSAGE
    assert parser.trailing_data == b""


@pytest.mark.parametrize(
    ("version", "values", "keep_alive"),
    [
        (b"1.0", [b"close", b"keep-alive"], False),
        (b"1.0", [b"keep-alive", b"upgrade"], True),
        (b"1.1", [b"close", b"upgrade"], False),
    ],
)
def test_every_connection_header_counts_not_only_the_last(version: bytes, values: list[bytes], keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n" + b"".join(b"Connection: " + v + b"\r\n" for v in values)
    parser = RequestParser()
    (request, _, _) = feed(parser, data + b"\r\n")
    assert request.keep_alive is keep_alive and parser.keep_alive is keep_alive


def refusal_after(parser: RequestParser, data: bytes) -> tuple[int, str]:
    with pytest.raises(BadRequest) as info:
        feed(parser, data)
    return info.value.status, info.value.reason


def test_the_head_after_a_request_with_trailers_has_the_whole_bound() -> None:
    """The trailers count towards their own bound, not the next request's head."""
    bound = 300
    parser = RequestParser(bound)
    events = feed(parser, CHUNKED_HEAD + b"1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\n")
    assert events[-2:] == [END_OF_MESSAGE, PAUSED]
    parser.start_next_cycle()
    events = feed(parser, head_of(bound))
    assert isinstance(events[0], Request) and events[1] is END_OF_MESSAGE
    parser.start_next_cycle()
    assert refusal_after(parser, head_of(bound + 1)) == (431, "request head too large")


@pytest.mark.parametrize("status", [100, 101, 599, 999])
def test_a_response_takes_every_three_digit_status(status: int) -> None:
    assert response(status, [], b"").startswith(b"HTTP/1.1 %d " % status)


@pytest.mark.parametrize("status", [0, 99, 1000])
def test_a_response_status_of_other_than_three_digits_is_refused(status: int) -> None:
    with pytest.raises(ValueError):
        response(status, [], b"")
