"""Opens many Action Cable clients at once for as little of the load generator's CPU as Python allows:
non-blocking sockets on one epoll, no asyncio, no task, future or transport per client while it
connects. Each client sends its upgrade request, waits for the 101 and the welcome, subscribes and
is done once its confirm_subscription has arrived; its socket is then handed back, still open.

Why not asyncio's create_connection: with it the load generator spent more CPU per client than any
server it measured (about 130 µs against the servers' 100), so the connect rate it reported was the
load generator's ceiling and moved with the machine's speed, not with the server's
(docs/benchmarks.md, "Why the two connect rates disagreed")."""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable

from wire import OP_CLOSE, OP_TEXT, parse_frames

Opened = tuple[socket.socket, bytes]  # a subscribed client's socket, and any partial frame read after its confirmation


class _Opening:
    __slots__ = ("sock", "buffer", "sent", "upgraded")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.sent = False  # the upgrade request
        self.upgraded = False


def open_subscribed(
    addresses: list[tuple[str, int]],
    count: int,
    request: Callable[[], bytes],
    subscribe: bytes,
    in_flight: int,
    timeout: float,
) -> list[Opened]:
    """Opens `count` clients, spread over `addresses` in turn, at most `in_flight` between connect and
    confirmation at any moment. Raises RuntimeError naming the first client the server refused,
    closed or rejected, and TimeoutError after `timeout` seconds; either way every socket it opened
    is closed."""
    poller = select.epoll()
    opening: dict[int, _Opening] = {}
    opened: list[Opened] = []
    started = 0
    deadline = time.monotonic() + timeout

    def start() -> None:
        nonlocal started
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(addresses[started % len(addresses)])
        started += 1
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise RuntimeError(f"connect failed: {errno.errorcode.get(code, code)}")
        opening[sock.fileno()] = _Opening(sock)
        poller.register(sock.fileno(), select.EPOLLOUT)

    def connected(client: _Opening) -> None:
        code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise RuntimeError(f"connect failed: {errno.errorcode.get(code, code)}")
        message = request()
        if client.sock.send(message) != len(message):
            raise RuntimeError("the upgrade request did not fit in an empty socket buffer")
        client.sent = True
        poller.modify(client.sock.fileno(), select.EPOLLIN)

    def readable(client: _Opening) -> bool:
        """True once the client's subscription is confirmed."""
        data = client.sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed a connection before confirming its subscription")
        client.buffer += data
        if not client.upgraded:
            end = client.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            if not client.buffer.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"refused: {bytes(client.buffer[:end]).decode('latin-1')}")
            client.upgraded = True
            del client.buffer[: end + 4]
        for opcode, payload in parse_frames(client.buffer):
            if opcode == OP_CLOSE:
                raise RuntimeError(f"closed by server: {payload!r}")
            if opcode != OP_TEXT:
                continue
            if b"confirm_subscription" in payload:
                return True
            if b'"welcome"' in payload:
                client.sock.send(subscribe)
            elif b"reject_subscription" in payload:
                raise RuntimeError("subscription rejected")
        return False

    try:
        while started < min(count, in_flight):
            start()
        while opening:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(opened)} of {count} clients subscribed within {timeout} s")
            for fd, _ in poller.poll(min(remaining, 1.0)):
                client = opening[fd]
                if not client.sent:
                    connected(client)
                elif readable(client):
                    poller.unregister(fd)
                    del opening[fd]
                    opened.append((client.sock, bytes(client.buffer)))
                    if started < count:
                        start()
        return opened
    except BaseException:
        for client in opening.values():
            client.sock.close()
        for sock, _ in opened:
            sock.close()
        raise
    finally:
        poller.close()
