"""Attacks on the running hub (a subprocess): each bounds a resource the attack used to grow without limit.

Growth is measured by what the kernel reports for the hub process (/proc/PID/status VmRSS, /proc/PID/fd)
with generous bounds, and by the hub's own /metrics counters; nothing waits on a clock.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from hub.frames import OP_CLOSE, OP_PING, OP_TEXT
from hub_testkit import RawClient, client_frame
from tests.polling import wait_for

CABLE = "/showcase/regions/iad/cable"
MB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def hub_holds_socket_to(port: int, peer_port: int) -> bool:
    """Whether the hub still has a descriptor for its TCP socket from `port` to `peer_port` (an orphan has inode 0)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and int(remote.rsplit(":", 1)[1], 16) == peer_port and inode != "0":
                return True
    return False


def metric_or_zero(hub, name: str) -> float:
    """A metric's value, 0 when the hub does not (yet) expose it."""
    status, body = hub.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class Flood:
    """Sends `chunk` over `sock` again and again from a thread until stopped or the hub drops the socket."""

    def __init__(self, sock: socket.socket, chunk: bytes) -> None:
        self.sock = sock
        self.chunk = chunk
        self.sent = 0
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(None)
        try:
            while not self.stopped.is_set():
                self.sock.sendall(self.chunk)
                self.sent += len(self.chunk)
        except OSError as error:  # the hub dropped us, or the test closed the socket
            self.error = error

    def stop(self) -> None:
        self.stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)


# --- 1. every write is bounded: a ping flood from a client that never reads -------------------------


def test_a_ping_flood_from_a_client_that_never_reads_is_dropped_as_too_slow(start_hub) -> None:
    hub = start_hub(hub="limits: {output_buffer_bytes: 65536}\n")
    client = RawClient(hub.port, CABLE, rcvbuf=4096)  # Navigator protocol; it never reads a byte
    hub.request("GET", "/metrics")
    before = rss(hub.proc.pid)
    flood = Flood(client.sock, client_frame(OP_PING, b"p" * 125) * 1000)
    try:
        wait_for(
            lambda: rss(hub.proc.pid) - before > 50 * MB or metric_or_zero(hub, "hub_slow_client_disconnects_total") >= 1,
            timeout=60,
            what="the hub to drop the flooding client (or to grow by 50 MB)",
        )
        grown = rss(hub.proc.pid) - before
        assert grown < 50 * MB, f"the hub grew by {grown // MB} MB answering pings nobody reads"
        assert hub.metric("hub_slow_client_disconnects_total") == 1
    finally:
        flood.stop()
    hub.wait_log("too_slow")


# --- 2. a closing connection whose peer never reads is aborted after a deadline ---------------------


def stuck_subscriber(hub) -> RawClient:
    """A subscriber that never reads, with megabytes queued for it in the hub (over any kernel buffer)."""
    client = RawClient(hub.port, CABLE, rcvbuf=4096)
    client.send(OP_TEXT, b'{"type":"subscribe","stream":"s"}')
    wait_for(lambda: hub.metric("hub_subscriptions") == 1, what="the subscription")
    data = "z" * 1_000_000
    for _ in range(12):
        assert hub.broadcast({"stream": "s", "data": data}) == 201
    return client


STUCK_HUB = "public_streams: true\nlimits: {output_buffer_bytes: 268435456, max_broadcast_bytes: 2097152, handshake_timeout_seconds: 0.3}\n"


@pytest.mark.parametrize("ending", ["close frame", "fin"])
def test_a_closing_connection_whose_peer_never_reads_is_aborted(start_hub, ending) -> None:
    hub = start_hub(hub=STUCK_HUB)
    client = stuck_subscriber(hub)
    peer_port = client.sock.getsockname()[1]
    assert hub_holds_socket_to(hub.port, peer_port)
    if ending == "fin":
        client.sock.shutdown(socket.SHUT_WR)
    else:
        client.send(OP_CLOSE, b"\x03\xe8")
    wait_for(lambda: hub.metric("hub_connections") == 0, what="the session to end")
    wait_for(lambda: not hub_holds_socket_to(hub.port, peer_port), what="the hub to let go of the socket")
    client.close()


# --- 3. pipelined HTTP requests from a peer that never reads the responses --------------------------


def test_pipelined_requests_from_a_peer_that_never_reads_stop_being_read(start_hub) -> None:
    hub = start_hub()
    hub.request("GET", "/metrics")
    before = rss(hub.proc.pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", hub.port))
    flood = Flood(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 4000)
    try:
        wait_for(
            lambda: rss(hub.proc.pid) - before > 50 * MB or metric_or_zero(hub, "hub_http_read_pauses_total") >= 1,
            timeout=60,
            what="the hub to stop reading (or to grow by 50 MB)",
        )
        grown = rss(hub.proc.pid) - before
        assert grown < 50 * MB, f"the hub grew by {grown // MB} MB queueing responses nobody reads"
        assert hub.request("GET", "/health") == (200, b"OK")  # others are still served
        assert rss(hub.proc.pid) - before < 50 * MB
    finally:
        flood.stop()


# --- 4. Content-Length and Transfer-Encoding together: answer, then close (RFC 9112 6.3) -------------


def test_a_request_with_content_length_and_transfer_encoding_closes_after_the_response(start_hub) -> None:
    hub = start_hub()
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    body = json.dumps({"stream": "s", "data": "x"}).encode()
    sock.sendall(
        b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"  # smuggled, in the eyes of a proxy that used Content-Length
    )
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break  # a timeout: the hub kept the connection open
        if not chunk:
            break
        received += chunk
    sock.close()
    assert received.startswith(b"HTTP/1.1 201 ")
    assert b"connection: close" in received.lower()
    assert received.count(b"HTTP/1.1") == 1


# --- 5. every accepted socket counts, plain HTTP ones too ------------------------------------------


def sockets_held(port: int) -> int:
    """How many accepted sockets on `port` the hub holds a descriptor for."""
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in open(table).readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "0A" and fields[9] != "0":
                    held += 1  # 0A: the listening socket
    return held


def test_plain_connections_are_bounded_by_max_connections_plus_the_reserve(start_hub) -> None:
    from hub import server

    hub = start_hub(hub="limits: {max_connections: 2}\n")
    cap = 2 + getattr(server, "SOCKET_RESERVE", 64)
    idle = [socket.create_connection(("127.0.0.1", hub.port), timeout=10) for _ in range(cap + 20)]
    try:
        wait_for(lambda: sockets_held(hub.port) <= cap, what=f"the hub to hold at most {cap} sockets")
        wait_for(lambda: hub.find("sockets_refused"), what="a sockets_refused log line")
    finally:
        for sock in idle:
            sock.close()
    assert hub.request("GET", "/health") == (200, b"OK")
    assert len([line for line in hub.lines if line["event"] == "sockets_refused"]) == 1  # not one line per socket
