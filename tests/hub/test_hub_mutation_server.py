"""The slow-client policy and the other output bounds of hub/server.py, driven in this process.

Written against the mutants of `Connection.send_frame`, `_write`, `close_websocket`, `_abort_later`,
`_abort`, `pause_writing`, `resume_writing` and `Hub._apply_config` that the rest of the suite let
live (bench/results/mutation.md): the tests that run the hub as a subprocess cannot see a mutant.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from hub.loop import Loop, Timer
from hub.config import HubConfig, Limits, Overrides
from hub.frames import OP_TEXT, close_frame, text_frame
from hub.log import Logger
from hub.server import HTTP_OUTPUT_HIGH_WATER, HTTP_OUTPUT_LOW_WATER, SOCKET_RESERVE, Connection, Hub
from hub_testkit import client_frame

LIMIT = 8192
TIMEOUT = 7.5  # limits.handshake_timeout_seconds: also how long a closing peer gets
UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
ACTION_CABLE = b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n"
SUBSCRIBE_CABLE = json.dumps({"command": "subscribe", "identifier": '{"channel":"$pubsub","stream_name":"s"}'})
SUBSCRIBE_NAVIGATOR = '{"type":"subscribe","stream":"s"}'


class FakeSocket:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, bytes]] = []

    def setsockopt(self, level: int, name: int, value: bytes) -> None:
        self.options.append((level, name, value))


class FakeTransport:
    """Records what the hub does to it; `backlog` is what the kernel has not taken yet."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closing = self.aborted = self.reading_paused = False
        self.backlog = 0
        self.limits: tuple[int | None, int | None] | None = None
        self.sock = FakeSocket()
        self.pauses = self.resumes = 0

    def write(self, data: Any) -> None:
        assert not self.aborted
        self.data += data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "socket": self.sock}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def pause_reading(self) -> None:
        self.reading_paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading_paused = False
        self.resumes += 1


class RecordingLoop(Loop):
    """Never runs: records what is scheduled on it instead."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> Timer:
        self.scheduled.append((delay, callback))
        return super().call_later(delay, callback, *args)


class World:
    def __init__(self, hub: Hub, log: io.StringIO, loop: RecordingLoop) -> None:
        self.hub, self.log, self.loop = hub, log, loop

    def events(self, name: str) -> list[dict]:
        return [record for record in map(json.loads, self.log.getvalue().splitlines()) if record["event"] == name]

    def connect(self, protocol: bytes = ACTION_CABLE, subscribe: str = SUBSCRIBE_CABLE) -> tuple[Connection, FakeTransport]:
        conn = Connection(self.hub)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.data_received(UPGRADE + protocol + b"\r\n")
        conn.data_received(client_frame(OP_TEXT, subscribe.encode()))
        assert self.hub.registry.subscriptions_of(conn) == 1
        return conn, transport


@pytest.fixture
def world() -> Iterator[World]:
    with make_world(Limits(output_buffer_bytes=LIMIT, handshake_timeout_seconds=TIMEOUT)) as made:
        yield made


@contextmanager
def make_world(limits: Limits) -> Iterator[World]:
    loop = RecordingLoop()
    log = io.StringIO()
    config = HubConfig(navigator_path="navigator.yml", hub_path=None, host="127.0.0.1", port=0, public_streams=True, limits=limits)
    try:
        yield World(Hub(config, Overrides(), Logger("json", log), loop), log, loop)
    finally:
        loop.close()


# --- the slow-client limit ---------------------------------------------------------------------------


def test_the_limit_comes_from_the_configuration(world: World) -> None:
    assert world.hub.output_buffer_bytes == LIMIT


def test_a_backlog_of_exactly_the_limit_still_gets_the_next_frame(world: World) -> None:
    conn, transport = world.connect()
    transport.backlog = LIMIT
    assert world.hub.registry.broadcast("s", "still here") == 1
    assert b'"message":"still here"' in transport.data
    assert world.hub.slow_disconnects == 0 and conn.session is not None


@pytest.mark.parametrize("protocol", [ACTION_CABLE, b""], ids=["action cable", "navigator"])
def test_one_byte_over_the_limit_ends_the_session_instead_of_queueing_more(world: World, protocol: bytes) -> None:
    conn, transport = world.connect(protocol, SUBSCRIBE_CABLE if protocol else SUBSCRIBE_NAVIGATOR)
    transport.backlog = LIMIT + 1
    sent_before, written_before = world.hub.bytes_sent, len(transport.data)
    world.hub.registry.broadcast("s", "dropped")
    written = bytes(transport.data[written_before:])
    assert b"dropped" not in written
    disconnect = text_frame('{"type":"disconnect","reason":"too_slow","reconnect":true}')
    assert written == (disconnect if protocol else b"") + close_frame(1001, "too slow")
    assert world.hub.bytes_sent - sent_before == len(written)
    assert world.hub.slow_disconnects == 1
    assert conn.session is None and world.hub.registry.subscriptions == 0
    assert conn not in world.hub.cable and conn not in world.hub.navigator
    [too_slow] = world.events("too_slow")
    assert too_slow["level"] == "warn" and too_slow["conn"] == conn.number and too_slow["buffered"] == LIMIT + 1
    # The peer gets the bounded time to answer the close, then is aborted: nothing else frees its backlog.
    assert (TIMEOUT, conn._abort) in world.loop.scheduled
    assert not transport.aborted
    # Nothing more is queued for it.
    world.hub.registry.broadcast("s", "later")
    conn.send_frame(text_frame("later"))
    assert bytes(transport.data[written_before:]) == written


def test_each_client_dropped_as_too_slow_is_counted(world: World) -> None:
    clients = [world.connect() for _ in range(3)]
    for _, transport in clients:
        transport.backlog = LIMIT + 1
    world.hub.registry.broadcast("s", "dropped")
    assert world.hub.slow_disconnects == 3 and len(world.events("too_slow")) == 3


def test_every_byte_written_to_a_websocket_is_counted(world: World) -> None:
    conn, transport = world.connect()
    head = bytes(transport.data).index(b"\r\n\r\n") + 4  # the 101 response is HTTP, not WebSocket
    world.hub.registry.broadcast("s", "x" * 300)
    assert world.hub.bytes_sent == len(transport.data) - head


def test_nothing_is_written_to_a_closing_transport(world: World) -> None:
    conn, transport = world.connect()
    transport.closing = True
    sent, written = world.hub.bytes_sent, len(transport.data)
    conn.close_websocket(1001, "bye", "server_restart", True)
    assert len(transport.data) == written and world.hub.bytes_sent == sent


def test_an_abort_resets_the_connection_so_the_kernel_drops_its_copy_too(world: World) -> None:
    conn, transport = world.connect()
    transport.backlog = LIMIT + 1
    world.hub.registry.broadcast("s", "dropped")
    conn._abort()
    assert transport.aborted and conn.closer is None
    assert transport.sock.options == [(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))]


def test_a_failed_linger_option_still_aborts(world: World) -> None:
    conn, transport = world.connect()

    def refuse(*_: Any) -> None:
        raise OSError("not supported")

    transport.sock.setsockopt = refuse  # type: ignore[method-assign,assignment]
    conn._abort()
    assert transport.aborted


def test_a_closing_connection_is_aborted_at_most_once_on_its_deadline(world: World) -> None:
    conn, _ = world.connect()
    conn.close_websocket(1001, "bye")
    conn._close()
    assert [delay for delay, callback in world.loop.scheduled if callback == conn._abort] == [TIMEOUT]


# --- plain HTTP: a peer that does not read stops being read ------------------------------------------------


def test_http_connections_get_the_output_bound(world: World) -> None:
    conn = Connection(world.hub)
    transport = FakeTransport()
    conn.connection_made(transport)
    assert transport.limits == (HTTP_OUTPUT_HIGH_WATER, HTTP_OUTPUT_LOW_WATER)


def test_a_plain_http_peer_that_does_not_read_is_not_read_until_it_does(world: World) -> None:
    conn = Connection(world.hub)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.pause_writing()
    conn.pause_writing()
    assert transport.reading_paused and transport.pauses == 1 and world.hub.http_read_pauses == 1
    # Requests that arrive meanwhile wait for the peer to read.
    conn.data_received(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.data == b""
    conn.resume_writing()
    assert not transport.reading_paused and transport.resumes == 1 and not conn.write_paused
    assert transport.data.startswith(b"HTTP/1.1 200 ")
    conn.resume_writing()
    assert transport.resumes == 1


def test_each_pause_is_counted(world: World) -> None:
    for _ in range(2):
        conn = Connection(world.hub)
        conn.connection_made(FakeTransport())
        conn.pause_writing()
    assert world.hub.http_read_pauses == 2


def test_sockets_beyond_max_connections_and_the_reserve_are_dropped_at_once() -> None:
    with make_world(Limits(max_connections=2)) as small:
        accepted = []
        for _ in range(2 + SOCKET_RESERVE):
            transport = FakeTransport()
            Connection(small.hub).connection_made(transport)
            accepted.append(transport)
        assert not any(t.aborted for t in accepted) and len(small.hub.sockets) == 2 + SOCKET_RESERVE
        refused = FakeTransport()
        Connection(small.hub).connection_made(refused)
        assert refused.aborted and small.hub.refused_sockets == 1 and len(small.hub.sockets) == 2 + SOCKET_RESERVE


def test_a_websocket_that_does_not_read_is_still_read(world: World) -> None:
    """Its output is bounded by the slow-client limit instead; pausing would also stop its pings and closes."""
    conn, transport = world.connect()
    conn.pause_writing()
    assert conn.write_paused and not transport.reading_paused and world.hub.http_read_pauses == 0
    conn.resume_writing()
    assert not conn.write_paused and transport.resumes == 0


def test_a_transport_that_closed_while_paused_is_not_resumed(world: World) -> None:
    conn = Connection(world.hub)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.pause_writing()
    transport.closing = True
    conn.resume_writing()
    assert transport.resumes == 0 and not conn.read_paused
