"""A small epoll event loop: what the hub without a broker runs on instead of asyncio.

asyncio with its imports (logging, inspect, typing, concurrent.futures, subprocess, threading)
is about a fifth of an idle hub's memory, and its transports about 1.4 KB of each connection's.
This loop offers the few parts of asyncio's interface the hub uses, with the same semantics,
so hub.server's Connection is one asyncio BufferedProtocol that runs on either loop: `time`,
`call_soon`, `call_later` (a handle with `cancel`), `add_signal_handler`, and transports with
`write`, `close`, `abort`, `is_closing`, `get_write_buffer_size`, `set_write_buffer_limits`,
`pause_reading`, `resume_reading` and `get_extra_info` ("peername", "socket"). Protocol
callbacks: connection_made, get_buffer/buffer_updated, eof_received, pause_writing,
resume_writing, connection_lost (always through call_soon, as asyncio does).

Linux only (epoll); elsewhere, and with a broker (its client libraries are asyncio's), the hub
runs on asyncio.
"""

from __future__ import annotations

import errno
import heapq
import select
import signal
import socket
import time
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
# Connections accepted per wake-up of a listening socket at most (asyncio accepts up to its backlog).
ACCEPTS_PER_WAKEUP = 1024
# After a failed accept (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listening socket rests this long (asyncio's figure).
ACCEPT_RETRY_SECONDS = 1.0
# Rebuild the timer heap once this many cancelled timers are in it and they are more than half of it.
_CANCELLED_COMPACT_MIN = 100
_READ_ERRORS = (ConnectionError, OSError)


class Timer:
    """A scheduled callback; `cancel` before it runs and it never does."""

    __slots__ = ("when", "callback", "args", "cancelled", "loop")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...], loop: Loop | None) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.loop: Loop | None = loop  # None once it ran or left the heap

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.loop is not None:
                self.loop._timer_cancelled()


def _ignore_signal(signum: int, frame: object) -> None:
    """Installed for handled signals so that Python's C handler writes them to the wake-up socket."""


class Loop:
    """Runs callbacks, timers and socket events until `stop`."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, _Transport | _Listener | _SignalReader] = {}
        self._ready: deque[Timer] = deque()  # due now, in order; a cancelled one is skipped
        self._timers: list[Timer] = []
        self._cancelled_timers = 0
        self._stopping = False
        self._signals: dict[int, Callable[[], object]] = {}
        self._signal_reader: _SignalReader | None = None
        # Called with (exception, what was running) when a callback raises; the loop goes on.
        self.on_error: Callable[[BaseException, str], None] = _print_error

    # --- asyncio's interface, the parts the hub uses ------------------------------------------

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(0.0, callback, args, None)
        self._ready.append(timer)
        return timer

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(time.monotonic() + delay, callback, args, self)
        heapq.heappush(self._timers, timer)
        return timer

    def add_signal_handler(self, signum: int, callback: Callable[[], object]) -> None:
        if self._signal_reader is None:
            self._signal_reader = _SignalReader(self)
        self._signals[signum] = callback
        signal.signal(signum, _ignore_signal)

    def serve(self, sock: socket.socket, protocol_factory: Callable[[], Any], on_accept_error: Callable[[OSError], None]) -> _Listener:
        """Accept connections on the listening `sock`, one protocol from `protocol_factory` each."""
        return _Listener(self, sock, protocol_factory, on_accept_error)

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        """Until `stop`: wait for events or the next timer, then run what is due."""
        self._stopping = False
        ready = self._ready
        timers = self._timers
        poll = self._epoll.poll
        handlers = self._handlers
        while not self._stopping:
            if ready:
                timeout = 0.0
            elif timers:
                timeout = max(0.0, timers[0].when - time.monotonic())
            else:
                timeout = -1.0
            for fd, events in poll(timeout):
                handler = handlers.get(fd)
                if handler is not None:
                    try:
                        handler.handle(events)
                    except Exception as error:  # noqa: BLE001 (a bug met on one socket must not end the loop)
                        self.on_error(error, "event")
            if timers:
                now = time.monotonic()
                while timers and timers[0].when <= now:
                    timer = heapq.heappop(timers)
                    timer.loop = None
                    if timer.cancelled:
                        self._cancelled_timers -= 1
                    else:
                        ready.append(timer)
            for _ in range(len(ready)):  # what a callback schedules runs on the next pass
                timer = ready.popleft()
                if not timer.cancelled:
                    self._guarded(timer.callback, timer.args, "callback")

    def close(self) -> None:
        for signum in self._signals:
            signal.signal(signum, signal.SIG_DFL)
        self._signals.clear()
        if self._signal_reader is not None:
            self._signal_reader.close()
            self._signal_reader = None
        for handler in list(self._handlers.values()):
            handler.close_socket()
        self._handlers.clear()
        self._epoll.close()

    # --- internals -----------------------------------------------------------------------

    def _guarded(self, callback: Callable[..., object], args: tuple[Any, ...], what: str) -> None:
        try:
            callback(*args)
        except Exception as error:  # noqa: BLE001 (one failing callback must not stop the others: asyncio's rule too)
            self.on_error(error, f"{what} {getattr(callback, '__qualname__', callback)!s}")

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        if self._cancelled_timers > _CANCELLED_COMPACT_MIN and self._cancelled_timers * 2 > len(self._timers):
            kept = []
            for timer in self._timers:
                if timer.cancelled:
                    timer.loop = None
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            self._timers[:] = kept
            self._cancelled_timers = 0

    def _watch(self, fd: int, old: int, new: int) -> None:
        """Change what epoll reports for `fd`: with nothing to wait for, it is not registered at all
        (epoll reports hang-ups and errors whatever the mask, which would wake the loop for ever)."""
        if old == new:
            return
        if not new:
            self._epoll.unregister(fd)
        elif not old:
            self._epoll.register(fd, new)
        else:
            self._epoll.modify(fd, new)


def _print_error(error: BaseException, what: str) -> None:
    import traceback  # only when something failed: it loads linecache and tokenize

    traceback.print_exception(error)


class _SignalReader:
    """The wake-up socket Python's signal handler writes each signal's number to."""

    __slots__ = ("loop", "reader", "writer")

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        loop._handlers[self.reader.fileno()] = self
        loop._watch(self.reader.fileno(), 0, _IN)

    def handle(self, events: int) -> None:
        try:
            data = self.reader.recv(4096)
        except BlockingIOError:
            return
        for signum in data:
            callback = self.loop._signals.get(signum)
            if callback is not None:
                self.loop.call_soon(callback)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.loop._handlers.pop(self.reader.fileno(), None)
        self.close_socket()

    def close_socket(self) -> None:
        self.reader.close()
        self.writer.close()


class _Listener:
    """A listening socket: accepts, makes a transport and a protocol for each connection."""

    __slots__ = ("loop", "sock", "fd", "factory", "on_accept_error", "mask")

    def __init__(self, loop: Loop, sock: socket.socket, factory: Callable[[], Any], on_accept_error: Callable[[OSError], None]) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.factory = factory
        self.on_accept_error = on_accept_error
        self.mask = 0
        sock.setblocking(False)
        loop._handlers[self.fd] = self
        self._set_mask(_IN)

    def _set_mask(self, mask: int) -> None:
        self.loop._watch(self.fd, self.mask, mask)
        self.mask = mask

    def handle(self, events: int) -> None:
        # The C-level accept and socket: socket.socket.accept() wraps each connection in socket.py's
        # class, whose family and type properties build enums; that was several microseconds of the
        # hub's own work per connection.
        accept = self.sock._accept
        family = self.sock.family
        loop = self.loop
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                # Out of descriptors or memory: counted by the caller. Anything else is unexpected: reported
                # (asyncio logs it too). Either way the listener rests, rather than fail again at once.
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.on_accept_error(error)
                else:
                    loop.on_error(error, "accept")
                self._set_mask(0)
                loop.call_later(ACCEPT_RETRY_SECONDS, self._resume)
                return
            _Transport(loop, socket.SocketType(family, socket.SOCK_STREAM, 0, fd), peer, self.factory())

    def _resume(self) -> None:
        if self.loop._handlers.get(self.fd) is self:  # not closed meanwhile (its descriptor may be another's now)
            self._set_mask(_IN)

    def close(self) -> None:
        """Stop accepting; connections already accepted go on."""
        if self.loop._handlers.pop(self.fd, None) is not None:
            self._set_mask(0)
            self.sock.close()

    def close_socket(self) -> None:
        self.sock.close()


class _Transport:
    """One accepted TCP connection, with asyncio's transport semantics for what the hub uses."""

    __slots__ = ("loop", "sock", "fd", "peer", "protocol", "buffer", "mask", "reading", "closing", "lost", "high", "low", "protocol_paused")

    def __init__(self, loop: Loop, sock: socket.socket, peer: Any, protocol: Any) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.protocol = protocol
        self.buffer: bytearray | None = None  # output not yet taken by the kernel; None when empty
        self.mask = 0
        self.reading = True
        self.closing = False
        self.lost = False
        self.high = 65536
        self.low = 16384
        self.protocol_paused = False
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop._handlers[self.fd] = self
        try:
            protocol.connection_made(self)
        except Exception as error:  # noqa: BLE001
            loop.on_error(error, "connection_made")
            self.abort()
            return
        self._update_mask()

    # --- the transport interface ------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "socket":
            return self.sock
        return default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return len(self.buffer) if self.buffer is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 65536 if low is None else 4 * low
        self.high = high
        self.low = high // 4 if low is None else low
        self._check_high_water()

    def pause_reading(self) -> None:
        if not self.closing and self.reading:
            self.reading = False
            self._update_mask()

    def resume_reading(self) -> None:
        if not self.closing and not self.reading:
            self.reading = True
            self._update_mask()

    def write(self, data: bytes) -> None:
        if self.closing or not data:
            return  # asyncio drops writes after close too
        buffer = self.buffer
        if buffer is None:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._drop(error)
                return
            if sent == len(data):
                return
            self.buffer = bytearray(memoryview(data)[sent:])
            self._update_mask()
        else:
            buffer += data
        self._check_high_water()

    def close(self) -> None:
        """Close once the output is sent; nothing more is read."""
        if self.closing:
            return
        self.closing = True
        self.reading = False
        self._update_mask()
        if self.buffer is None:
            self.loop.call_soon(self._lost, None)

    def abort(self) -> None:
        """Close now, dropping the output."""
        self._drop(None)

    # --- events -----------------------------------------------------------------------------

    def handle(self, events: int) -> None:
        if events & _OUT or (events & ~_IN and self.buffer is not None):
            self._send_buffered()
        if self.reading and not self.lost:
            self._read()

    def _read(self) -> None:
        protocol = self.protocol
        try:
            received = self.sock.recv_into(protocol.get_buffer(-1))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop(error)
            return
        try:
            if received:
                protocol.buffer_updated(received)
                return
            self.reading = False
            self._update_mask()
            if not protocol.eof_received():
                self.close()
        except Exception as error:  # noqa: BLE001 (asyncio's rule: the protocol failed, so the connection goes)
            self.loop.on_error(error, "protocol")
            self.abort()

    def _send_buffered(self) -> None:
        buffer = self.buffer
        if buffer is None:
            return
        try:
            sent = self.sock.send(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._drop(error)
            return
        del buffer[:sent]
        if self.protocol_paused and len(buffer) <= self.low:
            # As asyncio: resumed once the output is down to the low water, not only once it is all sent.
            self.protocol_paused = False
            self._guarded_protocol("resume_writing")
        if buffer:
            return
        self.buffer = None
        self._update_mask()
        if self.closing and not self.lost:
            self.loop.call_soon(self._lost, None)

    def _check_high_water(self) -> None:
        if not self.protocol_paused and self.get_write_buffer_size() > self.high:
            self.protocol_paused = True
            self._guarded_protocol("pause_writing")
        elif self.protocol_paused and self.get_write_buffer_size() <= self.low:
            self.protocol_paused = False
            self._guarded_protocol("resume_writing")

    def _guarded_protocol(self, method: str) -> None:
        try:
            getattr(self.protocol, method)()
        except Exception as error:  # noqa: BLE001
            self.loop.on_error(error, method)
            self.abort()

    def _update_mask(self) -> None:
        mask = 0
        if not self.lost:
            if self.reading:
                mask |= _IN
            if self.buffer is not None:
                mask |= _OUT
        self.loop._watch(self.fd, self.mask, mask)
        self.mask = mask

    def _drop(self, error: OSError | None) -> None:
        """Gone at once, output dropped: aborted, or the peer reset the connection (or the socket failed)."""
        if self.lost:
            return
        self.closing = True
        self.buffer = None
        self.reading = False
        self._update_mask()
        self.loop.call_soon(self._lost, error)

    def _lost(self, error: OSError | None) -> None:
        if self.lost:
            return
        self.lost = True
        self._update_mask()
        if self.loop._handlers.get(self.fd) is self:
            del self.loop._handlers[self.fd]
        self.sock.close()
        self.protocol.connection_lost(error)

    def close_socket(self) -> None:
        self.sock.close()
