"""The per-connection Protocol driven directly with a fake transport: no input may raise out of it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.loop import Loop
from hub.config import HubConfig, Limits, Overrides
from hub.frames import OP_CLOSE, OP_TEXT
from hub.log import Logger
from hub.server import Connection, Hub
from hub_testkit import client_frame

UPGRADE = (
    b"GET /cable?database=d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class FakeTransport:
    """Records writes; like asyncio, it is never fed empty data (EOF has its own callback)."""

    def __init__(self, peer=("127.0.0.1", 1)) -> None:
        super().__init__()
        self.data = bytearray()
        self.writes: list[bytes] = []  # each write, as asyncio would try to send it
        self.closing = False
        self.aborted = False
        self.peer = peer
        self.backlog = 0  # bytes the kernel has not taken yet

    def write(self, data) -> None:
        assert not self.aborted
        self.data += data
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.backlog


@contextmanager
def fresh_hub() -> Iterator[Hub]:
    """A hub on an event loop that never runs: timers are scheduled but never fire."""
    loop = Loop()
    config = HubConfig(
        navigator_path="navigator.yml", hub_path=None, host="127.0.0.1", port=0, public_streams=True, limits=Limits(max_message_bytes=2048)
    )
    try:
        yield Hub(config, Overrides(), Logger(stream=io.StringIO()), loop)
    finally:
        loop.close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    with fresh_hub() as hub:
        yield hub


def open_connection(hub: Hub, request: bytes) -> tuple[Connection, FakeTransport]:
    conn = Connection(hub)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(request)
    return conn, transport


def test_upgrade_then_action_cable_traffic(hub) -> None:
    conn, transport = open_connection(hub, UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
    assert transport.data.startswith(b"HTTP/1.1 101 ")
    assert b'"type":"welcome"' in transport.data
    conn.data_received(client_frame(OP_TEXT, json.dumps({"command": "subscribe", "identifier": '{"channel":"X"}'}).encode()))
    assert b"reject_subscription" in transport.data
    conn.data_received(client_frame(OP_CLOSE, b"\x03\xe8"))
    assert transport.data.endswith(b"\x88\x02\x03\xe8") and transport.closing
    conn.connection_lost(None)
    assert not hub.sockets and not hub.cable


def test_a_client_with_a_backlog_over_the_limit_is_dropped_as_too_slow(hub) -> None:
    conn, transport = open_connection(hub, UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
    conn.data_received(client_frame(OP_TEXT, json.dumps({"command": "subscribe", "identifier": '{"channel":"$pubsub","stream_name":"s"}'}).encode()))
    big = "x" * (hub.output_buffer_bytes * 2)
    assert hub.registry.broadcast("s", big) == 1  # one large message alone is fine
    assert big.encode() in transport.data and hub.slow_disconnects == 0
    transport.backlog = hub.output_buffer_bytes + 1
    before = len(transport.data)
    hub.registry.broadcast("s", "next")
    assert b"next" not in transport.data[before:]
    assert b'{"type":"disconnect","reason":"too_slow","reconnect":true}' in transport.data[before:]
    assert transport.data.endswith(b"\x88\x0a\x03\xe9too slow")
    assert hub.slow_disconnects == 1 and hub.registry.subscriptions == 0 and not hub.cable


def test_the_welcome_goes_in_the_same_write_as_the_101(hub) -> None:
    _, transport = open_connection(hub, UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
    [write] = transport.writes
    welcome = b'{"type":"welcome","sid":"' + hub.sid_prefix.encode() + b'1"}'
    assert write.startswith(b"HTTP/1.1 101 ") and write.endswith(b"\r\n\r\n\x81" + bytes([len(welcome)]) + welcome)
    assert hub.bytes_sent == 2 + len(welcome)


def test_a_welcome_behind_earlier_responses_meets_the_slow_client_bound(hub) -> None:
    conn = Connection(hub)
    transport = FakeTransport()
    conn.connection_made(transport)
    transport.backlog = 1  # a response to an earlier request on this connection not yet taken by the kernel
    conn.data_received(UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
    response, welcome = transport.writes
    assert response.startswith(b"HTTP/1.1 101 ") and response.endswith(b"\r\n\r\n")
    assert welcome.startswith(b"\x81") and b'"type":"welcome"' in welcome
    with fresh_hub() as slow_hub:
        conn = Connection(slow_hub)
        transport = FakeTransport()
        conn.connection_made(transport)
        transport.backlog = slow_hub.output_buffer_bytes + 1
        conn.data_received(UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n")
        assert b'"welcome"' not in transport.data and b'"reason":"too_slow"' in transport.data
        assert slow_hub.slow_disconnects == 1 and not slow_hub.cable


def test_reads_through_the_shared_buffer_keep_each_connections_bytes(hub) -> None:
    """Every connection reads into one buffer: what a connection keeps of a read must be a copy."""

    def read(conn: Connection, data: bytes) -> None:
        buffer = conn.get_buffer(-1)
        buffer[: len(data)] = data
        conn.buffer_updated(len(data))

    first, second = Connection(hub), Connection(hub)
    transports = [FakeTransport(), FakeTransport()]
    first.connection_made(transports[0])
    second.connection_made(transports[1])
    request = UPGRADE + b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
    read(first, request[:40])  # half a request head, then another connection's read overwrites the buffer
    read(second, request)
    read(first, request[40:])
    subscribe = client_frame(OP_TEXT, json.dumps({"command": "subscribe", "identifier": '{"channel":"$pubsub","stream_name":"s"}'}).encode())
    read(first, subscribe[:9])  # half a frame held by the frame parser
    read(second, subscribe)
    read(first, subscribe[9:])
    assert all(b"confirm_subscription" in transport.data for transport in transports)
    assert hub.registry.subscriptions == 2


def test_upgrade_request_and_first_frame_in_one_packet(hub) -> None:
    conn, transport = open_connection(hub, UPGRADE + b"\r\n" + client_frame(OP_TEXT, b'{"type":"subscribe","stream":"s"}'))
    assert transport.data.endswith(b'{"type":"subscribed","stream":"s"}')
    assert hub.registry.subscriptions == 1
    conn.connection_lost(None)
    assert hub.registry.subscriptions == 0


def test_pipelined_http_requests_are_answered_in_order(hub) -> None:
    _, transport = open_connection(hub, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    text = bytes(transport.data)
    assert text.index(b"200 ") < text.index(b"404 ") and not transport.closing


def test_post_to_another_path_is_not_a_broadcast(hub) -> None:
    _, transport = open_connection(hub, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    assert transport.data.startswith(b"HTTP/1.1 404 ") and hub.failed_broadcasts == 0


def test_broadcast_from_elsewhere_is_403_without_reading_the_body(hub) -> None:
    conn = Connection(hub)
    transport = FakeTransport(peer=("192.0.2.9", 1))
    conn.connection_made(transport)
    conn.data_received(b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
    assert transport.data.startswith(b"HTTP/1.1 403 ") and transport.closing


ws_chunks = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=40),
        st.builds(lambda op, p, fin: client_frame(op, p, fin=fin), st.sampled_from([0, 1, 2, 8, 9, 10]), st.binary(max_size=130), st.booleans()),
        st.builds(lambda t: client_frame(OP_TEXT, t.encode()), st.sampled_from([
            '{"command":"subscribe","identifier":"{\\"channel\\":\\"$pubsub\\",\\"stream_name\\":\\"s\\"}"}',
            '{"type":"subscribe","stream":"s"}',
            '{"command":"unsubscribe","identifier":"{}"}',
            "nonsense",
        ])),
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(protocol=st.booleans(), chunks=ws_chunks)
def test_no_websocket_input_raises(protocol, chunks) -> None:
    header = b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n" if protocol else b""
    with fresh_hub() as hub:
        conn, transport = open_connection(hub, UPGRADE + header + b"\r\n")
        for chunk in chunks:
            if transport.closing:  # asyncio stops reading once a transport closes
                break
            conn.data_received(chunk)
            hub.registry.broadcast("s", "x")
        conn.connection_lost(None)
        assert hub.registry.subscriptions == 0 and not hub.sockets


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.one_of(st.binary(min_size=1, max_size=60), st.sampled_from([
    b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n", b"Content-Length: 3\r\n", b"POST /_broadcast HTTP/1.1\r\n",
    b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n", b'{"stream":"s"}', b"Upgrade: websocket\r\n",
])), max_size=12))
def test_no_http_input_raises(chunks) -> None:
    with fresh_hub() as hub:
        conn = Connection(hub)
        transport = FakeTransport()
        conn.connection_made(transport)
        for chunk in chunks:
            if transport.closing:
                break
            conn.data_received(chunk)
        conn.connection_lost(None)
        assert not hub.sockets
