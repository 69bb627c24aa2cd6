"""hub.loop: the epoll loop the hub runs on without a broker, with asyncio's semantics for what the hub uses.

Real sockets on 127.0.0.1 and socketpairs; each test runs the loop until a condition holds or a
deadline (a timer that stops the loop) passes.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from hub.loop import ACCEPT_RETRY_SECONDS, Loop, _Transport

DEADLINE = 10.0


@contextmanager
def running_loop() -> Iterator[Loop]:
    loop = Loop()
    errors: list[tuple[BaseException, str]] = []
    loop.on_error = lambda error, what: errors.append((error, what))
    loop.errors = errors  # type: ignore[attr-defined]
    try:
        yield loop
    finally:
        loop.close()


def run_until(loop: Loop, condition: Callable[[], bool]) -> None:
    """Run the loop until `condition` holds (checked after every turn), failing after DEADLINE seconds."""
    expired = []
    deadline = loop.call_later(DEADLINE, lambda: (expired.append(True), loop.stop()))

    def check() -> None:
        if condition():
            loop.stop()
        else:
            loop.call_later(0.001, check)

    loop.call_soon(check)
    loop.run()
    deadline.cancel()
    assert not expired, "the condition did not hold before the deadline"


class Recorder:
    """A BufferedProtocol that records what the transport tells it."""

    def __init__(self, eof_keeps_open: bool = False) -> None:
        self.transport = None
        self.buffer = bytearray(4096)
        self.received = b""
        self.events: list[str] = []
        self.lost: list[object] = []
        self.eof_keeps_open = eof_keeps_open

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append("made")

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.received += bytes(self.buffer[:nbytes])

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.eof_keeps_open

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, error) -> None:
        self.events.append("lost")
        self.lost.append(error)


@contextmanager
def served(loop: Loop, make: Callable[[], Recorder] = Recorder) -> Iterator[tuple[socket.socket, list[Recorder], list[OSError]]]:
    listening = socket.create_server(("127.0.0.1", 0))
    protocols: list[Recorder] = []
    failures: list[OSError] = []

    def factory() -> Recorder:
        protocols.append(make())
        return protocols[-1]

    listener = loop.serve(listening, factory, failures.append)
    try:
        yield listening, protocols, failures
    finally:
        listener.close()


def test_timers_run_in_time_order_and_a_cancelled_one_never_runs() -> None:
    with running_loop() as loop:
        ran: list[str] = []
        loop.call_later(0.03, ran.append, "third")
        loop.call_later(0.01, ran.append, "first")
        cancelled = loop.call_later(0.02, ran.append, "never")
        loop.call_later(0.02, ran.append, "second")
        loop.call_soon(ran.append, "soon")
        cancelled.cancel()
        run_until(loop, lambda: len(ran) == 4)
        assert ran == ["soon", "first", "second", "third"]


def test_a_timer_cancelled_by_a_callback_of_the_same_turn_does_not_run() -> None:
    with running_loop() as loop:
        ran: list[str] = []
        victim = loop.call_later(0.0, ran.append, "victim")
        loop.call_soon(victim.cancel)
        loop.call_later(0.05, ran.append, "later")
        run_until(loop, lambda: "later" in ran)
        assert ran == ["later"]


def test_cancelled_timers_do_not_pile_up_in_the_heap() -> None:
    with running_loop() as loop:
        timers = [loop.call_later(3600, lambda: None) for _ in range(1000)]
        for timer in timers:
            timer.cancel()
        assert len(loop._timers) <= 200


def test_a_failing_callback_is_reported_and_the_loop_goes_on() -> None:
    with running_loop() as loop:
        ran: list[str] = []
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(ran.append, "after")
        run_until(loop, lambda: bool(ran))
        [(error, what)] = loop.errors  # type: ignore[attr-defined]
        assert isinstance(error, ZeroDivisionError) and what.startswith("callback")


def test_a_signal_runs_its_handler_on_the_loop() -> None:
    with running_loop() as loop:
        seen: list[str] = []
        loop.add_signal_handler(signal.SIGUSR1, lambda: seen.append("usr1"))
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        run_until(loop, lambda: bool(seen))
        assert seen == ["usr1"]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_accepted_connections_read_write_and_see_the_peer_s_end() -> None:
    with running_loop() as loop, served(loop) as (listening, protocols, _):
        client = socket.create_connection(listening.getsockname())
        try:
            run_until(loop, lambda: bool(protocols))
            [server] = protocols
            assert server.transport.get_extra_info("peername") == client.getsockname()
            client.sendall(b"hello")
            run_until(loop, lambda: server.received == b"hello")
            server.transport.write(b"back")
            assert client.recv(10) == b"back"
            client.shutdown(socket.SHUT_WR)
            run_until(loop, lambda: "lost" in server.events)
            assert server.events == ["made", "eof", "lost"] and server.lost == [None]
            assert client.recv(10) == b""  # eof_received returned False: the transport closed our side
        finally:
            client.close()


@contextmanager
def small_send_buffer_pair(loop: Loop) -> Iterator[tuple[_Transport, Recorder, socket.socket]]:
    """A transport over one end of a socketpair whose send buffer is small, the Recorder on it, the other end."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    protocol = Recorder()
    try:
        yield _Transport(loop, ours, None, protocol), protocol, theirs
    finally:
        theirs.close()


def test_output_beyond_the_high_water_pauses_the_protocol_and_close_waits_for_it_to_be_sent() -> None:
    with running_loop() as loop, small_send_buffer_pair(loop) as (transport, protocol, theirs):
        transport.set_write_buffer_limits(high=10000, low=100)
        payload = os.urandom(1 << 20)
        transport.write(payload)
        assert protocol.events == ["made", "pause"] and transport.get_write_buffer_size() > 10000
        transport.close()
        assert transport.is_closing()
        transport.write(b"dropped after close")
        received = bytearray()

        def drain() -> bool:
            try:
                received.extend(theirs.recv(1 << 16, socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
            return "lost" in protocol.events

        run_until(loop, drain)
        while chunk := theirs.recv(1 << 16):
            received.extend(chunk)
        assert bytes(received) == payload
        assert protocol.events == ["made", "pause", "resume", "lost"]


def test_abort_drops_the_output_and_pause_reading_stops_reading() -> None:
    with running_loop() as loop, served(loop) as (listening, protocols, _):
        client = socket.create_connection(listening.getsockname())
        try:
            run_until(loop, lambda: bool(protocols))
            [server] = protocols
            server.transport.pause_reading()
            client.sendall(b"unread")
            turns = []
            run_until(loop, lambda: len(turns) > 20 or turns.append(1))  # type: ignore[func-returns-value]
            assert server.received == b""
            server.transport.resume_reading()
            run_until(loop, lambda: server.received == b"unread")
            server.transport.abort()
            run_until(loop, lambda: "lost" in server.events)
            assert client.recv(10) == b""
        finally:
            client.close()


def test_a_reset_from_the_peer_is_lost_with_its_error() -> None:
    with running_loop() as loop, served(loop) as (listening, protocols, _):
        client = socket.create_connection(listening.getsockname())
        run_until(loop, lambda: bool(protocols))
        [server] = protocols
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        run_until(loop, lambda: "lost" in server.events)
        assert isinstance(server.lost[0], ConnectionResetError)


def test_a_protocol_that_raises_loses_its_connection_and_the_loop_goes_on() -> None:
    class Failing(Recorder):
        def buffer_updated(self, nbytes: int) -> None:
            raise RuntimeError("bug")

    with running_loop() as loop, served(loop, Failing) as (listening, protocols, _):
        client = socket.create_connection(listening.getsockname())
        try:
            client.sendall(b"x")
            run_until(loop, lambda: bool(protocols) and "lost" in protocols[0].events)
            [(error, what)] = loop.errors  # type: ignore[attr-defined]
            assert isinstance(error, RuntimeError) and what == "protocol"
        finally:
            client.close()


class FailingOnceListener(socket.socket):
    """A listening socket whose first accept fails with an error no accept is expected to give."""

    failed = False

    def _accept(self):  # type: ignore[no-untyped-def, override]  (what the loop calls: the C-level accept)
        if not self.failed:
            self.failed = True
            raise OSError(errno.EPROTO, "protocol error")
        return super()._accept()


def test_an_unexpected_accept_error_is_reported_and_the_listener_rests_then_accepts_again() -> None:
    """It used to escape the loop and end the hub."""
    with running_loop() as loop:
        plain = socket.create_server(("127.0.0.1", 0))
        listening = FailingOnceListener(plain.family, plain.type, 0, plain.detach())
        protocols: list[Recorder] = []
        failures: list[OSError] = []
        listener = loop.serve(listening, lambda: protocols.append(Recorder()) or protocols[-1], failures.append)
        client = socket.create_connection(listening.getsockname())
        try:
            run_until(loop, lambda: bool(loop.errors))  # type: ignore[attr-defined]
            [(error, what)] = loop.errors  # type: ignore[attr-defined]
            assert (error.errno, what, failures, protocols) == (errno.EPROTO, "accept", [], [])
            run_until(loop, lambda: bool(protocols))
        finally:
            client.close()
            listener.close()


@pytest.mark.timeout(30)
def test_out_of_descriptors_the_listener_rests_and_accepts_again() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with running_loop() as loop, served(loop) as (listening, protocols, failures):
        clients = []
        fillers = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            while True:
                try:
                    fillers.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    break
            os.close(fillers.pop())  # one left: for the client's socket, none for the accept
            clients.append(socket.create_connection(listening.getsockname()))
            run_until(loop, lambda: bool(failures))
            assert failures[0].errno in (24, 23) and not protocols
            for fd in fillers:
                os.close(fd)
            fillers.clear()
            started = loop.time()
            run_until(loop, lambda: bool(protocols))
            assert loop.time() - started >= ACCEPT_RETRY_SECONDS * 0.9
        finally:
            for fd in fillers:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for client in clients:
                client.close()


# --- edges that mutation testing found untested (bench/results/mutation.md) ------------------------------


class MeteredSocket(socket.socket):
    """A socket whose send takes at most `budget` bytes (none: it would block), so what the transport
    buffers is exact whatever the kernel's buffer sizes."""

    budget = 0
    error: OSError | None = None

    def send(self, data, flags=0):  # type: ignore[no-untyped-def, override]
        if self.error is not None:
            raise self.error
        if self.budget <= 0:
            raise BlockingIOError
        sent = super().send(bytes(data[: self.budget]), flags)
        self.budget -= sent
        return sent


@contextmanager
def metered_transport(loop: Loop) -> Iterator[tuple[_Transport, Recorder, MeteredSocket, socket.socket]]:
    a, theirs = socket.socketpair()
    ours = MeteredSocket(a.family, a.type, 0, a.detach())
    protocol = Recorder()
    try:
        yield _Transport(loop, ours, None, protocol), protocol, ours, theirs
    finally:
        ours.close()
        theirs.close()


def test_the_default_high_water_is_64_kib() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, _):
        assert transport.get_write_buffer_size() == 0
        transport.write(b"x" * 65536)
        assert transport.get_write_buffer_size() == 65536 and protocol.events == ["made"]
        transport.write(b"x")
        assert protocol.events == ["made", "pause"]


@pytest.mark.parametrize(
    ("high", "low", "limits"),
    [(None, None, (65536, 16384)), (1001, None, (1001, 250)), (None, 1000, (4000, 1000)), (1000, 10, (1000, 10))],
)
def test_write_buffer_limits_default_as_asyncio_s(high, low, limits) -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, _, _, _):
        transport.set_write_buffer_limits(high=high, low=low)
        assert (transport.high, transport.low) == limits


def test_pause_above_the_high_water_exactly_and_pause_again_after_a_resume() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, theirs):
        transport.set_write_buffer_limits(high=100, low=10)
        transport.write(b"a" * 100)
        assert protocol.events == ["made"]
        transport.write(b"b")
        assert protocol.events == ["made", "pause"] and transport.get_write_buffer_size() == 101
        ours.budget = 101
        run_until(loop, lambda: "resume" in protocol.events)
        assert transport.get_write_buffer_size() == 0 and theirs.recv(200) == b"a" * 100 + b"b"
        transport.write(b"c" * 101)
        assert protocol.events == ["made", "pause", "resume", "pause"]


@pytest.mark.parametrize(("sent", "resumed"), [(90, False), (91, True)])
def test_a_send_that_leaves_the_output_at_the_low_water_resumes_the_protocol(sent: int, resumed: bool) -> None:
    """As asyncio: at the low water, not only once everything is sent."""
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, _):
        transport.set_write_buffer_limits(high=100, low=10)
        transport.write(b"a" * 101)
        assert protocol.events == ["made", "pause"]
        ours.budget = sent
        run_until(loop, lambda: ours.budget == 0)
        assert transport.get_write_buffer_size() == 101 - sent
        assert ("resume" in protocol.events) is resumed


def test_lowering_the_high_water_below_the_buffered_output_pauses_at_once() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, _):
        transport.write(b"x" * 1000)
        assert protocol.events == ["made"]
        transport.set_write_buffer_limits(high=999)
        assert protocol.events == ["made", "pause"]


def test_extra_info_gives_the_socket_and_a_default_for_anything_else() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, _, ours, _):
        assert transport.get_extra_info("socket") is ours
        assert transport.get_extra_info("sockname") is None
        assert transport.get_extra_info("sockname", "none") == "none"


def test_nothing_is_read_once_closing_even_when_asked_to_resume() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, theirs):
        transport.write(b"pending")  # held: close waits for it
        theirs.sendall(b"unread")
        transport.close()
        transport.resume_reading()
        turns: list[int] = []
        run_until(loop, lambda: len(turns) > 20 or turns.append(1))  # type: ignore[func-returns-value]
        assert protocol.received == b"" and protocol.events == ["made"]
        ours.budget = 100
        run_until(loop, lambda: "lost" in protocol.events)
        assert protocol.received == b"" and protocol.events == ["made", "lost"]
        assert theirs.recv(100) == b"pending"


class RecordingEpoll:
    """The loop's epoll, recording how long each wait may last."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.timeouts: list[float] = []

    def poll(self, timeout: float = -1.0):  # type: ignore[no-untyped-def]
        self.timeouts.append(timeout)
        return self.real.poll(timeout)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)


def test_the_loop_never_waits_with_callbacks_ready_and_waits_for_the_next_timer_otherwise() -> None:
    with running_loop() as loop:
        epoll = loop._epoll = RecordingEpoll(loop._epoll)  # type: ignore[assignment]
        ran: list[str] = []
        loop.call_later(3600, ran.append, "never")
        loop.add_signal_handler(signal.SIGUSR1, loop.stop)
        # Pending before the loop waits: the wait returns at once, but its timeout is the timer's.
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run()
        assert ran == []
        assert len(epoll.timeouts) == 2  # the signal's callback ran in the turn that read it
        assert epoll.timeouts[0] == 0.0  # a callback was ready
        assert 3500 < epoll.timeouts[1] <= 3600  # only the timer, an hour away


def test_abort_drops_the_output_and_nothing_more_is_read_or_written() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, theirs):
        transport.write(b"dropped")  # held: the socket takes nothing
        theirs.sendall(b"unread")
        transport.abort()
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
        ours.budget = 100
        transport.write(b"late")
        run_until(loop, lambda: "lost" in protocol.events)
        assert protocol.received == b"" and protocol.events == ["made", "lost"] and protocol.lost == [None]
        theirs.settimeout(DEADLINE)
        try:
            received = theirs.recv(100)
        except ConnectionResetError:  # closed with our bytes unread
            received = b""
        assert received == b""


def test_a_send_that_fails_loses_the_connection_with_its_error() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, _):
        transport.write(b"held")
        error = ConnectionResetError(104, "reset")
        ours.error = error
        run_until(loop, lambda: "lost" in protocol.events)
        assert protocol.lost == [error]


def test_eof_kept_open_is_received_once_and_the_transport_still_writes() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, theirs):
        protocol.eof_keeps_open = True
        theirs.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: "eof" in protocol.events)
        turns: list[int] = []
        run_until(loop, lambda: len(turns) > 20 or turns.append(1))  # type: ignore[func-returns-value]
        assert protocol.events == ["made", "eof"] and not transport.is_closing()
        ours.budget = 100
        transport.write(b"still")
        assert theirs.recv(100) == b"still"


def test_a_write_that_fails_loses_the_connection_with_its_error() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, _):
        error = BrokenPipeError(32, "broken pipe")
        ours.error = error
        transport.write(b"never")
        assert transport.is_closing()
        run_until(loop, lambda: "lost" in protocol.events)
        assert protocol.lost == [error]


def test_a_paused_transport_does_not_read_when_woken_to_write() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, theirs):
        transport.pause_reading()
        transport.write(b"held")  # the socket is writable: every wait wakes for it
        theirs.sendall(b"unread")
        turns: list[int] = []
        run_until(loop, lambda: len(turns) > 20 or turns.append(1))  # type: ignore[func-returns-value]
        assert protocol.received == b""
        ours.budget = 100
        run_until(loop, lambda: transport.get_write_buffer_size() == 0)
        assert protocol.received == b""
        transport.resume_reading()
        run_until(loop, lambda: protocol.received == b"unread")


def test_connection_lost_comes_once_whatever_ends_the_connection_and_the_loop_forgets_it() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, _):
        transport.close()
        transport.abort()
        transport.close()
        turns: list[int] = []
        run_until(loop, lambda: len(turns) > 5 or turns.append(1))  # type: ignore[func-returns-value]
        assert protocol.events == ["made", "lost"] and protocol.lost == [None]
        assert transport not in loop._handlers.values()
        assert loop.errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["pause_writing", "resume_writing"])
def test_a_protocol_failing_in_pause_or_resume_writing_is_reported_and_its_connection_aborted(method: str) -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, _):

        def fail() -> None:
            raise RuntimeError("bug")

        transport.set_write_buffer_limits(high=10, low=5)
        if method == "pause_writing":
            protocol.pause_writing = fail  # type: ignore[method-assign]
            transport.write(b"x" * 11)
        else:
            transport.write(b"x" * 11)
            protocol.resume_writing = fail  # type: ignore[method-assign]
            transport.set_write_buffer_limits(high=100, low=50)
        [(error, what)] = loop.errors  # type: ignore[attr-defined]
        assert isinstance(error, RuntimeError) and what == method
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
        run_until(loop, lambda: "lost" in protocol.events)


def test_raising_the_low_water_above_the_buffered_output_resumes_at_once() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, _):
        transport.set_write_buffer_limits(high=100, low=10)
        transport.write(b"x" * 101)
        assert protocol.events == ["made", "pause"]
        transport.set_write_buffer_limits(high=1000, low=100)
        assert protocol.events == ["made", "pause"]
        transport.set_write_buffer_limits(high=1000, low=101)
        assert protocol.events == ["made", "pause", "resume"]
        transport.write(b"x" * 899)  # 1000: at the high water
        assert protocol.events == ["made", "pause", "resume"]
        transport.write(b"x")
        assert protocol.events == ["made", "pause", "resume", "pause"]


def test_the_default_low_water_is_16_kib() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, ours, _):
        transport.write(b"x" * 65537)
        assert protocol.events == ["made", "pause"]
        ours.budget = 65537 - 16385
        run_until(loop, lambda: transport.get_write_buffer_size() == 16385)
        assert protocol.events == ["made", "pause"]  # above the low water still
        ours.budget = 1
        run_until(loop, lambda: transport.get_write_buffer_size() == 16384)
        assert protocol.events == ["made", "pause", "resume"]  # at the low water


def test_a_closed_listener_closes_its_socket_and_accepts_no_more() -> None:
    with running_loop() as loop:
        listening = socket.create_server(("127.0.0.1", 0))
        address = listening.getsockname()
        protocols: list[Recorder] = []
        listener = loop.serve(listening, lambda: protocols.append(Recorder()) or protocols[-1], lambda error: None)
        listener.close()
        assert listening.fileno() == -1
        listener.close()  # twice is once
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=DEADLINE).close()
        turns: list[int] = []
        run_until(loop, lambda: len(turns) > 5 or turns.append(1))  # type: ignore[func-returns-value]
        assert protocols == [] and loop.errors == []  # type: ignore[attr-defined]


class RecordingEvents(RecordingEpoll):
    """The loop's epoll, recording what each wait returned too."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        super().__init__(real)
        self.events: list[tuple[int, int]] = []

    def poll(self, timeout: float = -1.0):  # type: ignore[no-untyped-def]
        events = super().poll(timeout)
        self.events += events
        return events


def test_an_idle_or_paused_connection_does_not_wake_the_loop() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, theirs):
        epoll = loop._epoll = RecordingEvents(loop._epoll)  # type: ignore[assignment]
        loop.call_later(0.05, loop.stop)
        loop.run()
        assert epoll.events == []  # idle: nothing to read, nothing to write
        transport.pause_reading()
        theirs.sendall(b"unread")
        loop.call_later(0.05, loop.stop)
        loop.run()
        assert epoll.events == [] and protocol.received == b""  # paused: the bytes wait in the kernel


def test_a_connection_with_output_held_still_reads() -> None:
    with running_loop() as loop, metered_transport(loop) as (transport, protocol, _, theirs):
        transport.write(b"held")
        theirs.sendall(b"read anyway")
        run_until(loop, lambda: protocol.received == b"read anyway")
        assert transport.get_write_buffer_size() == 4


def test_a_protocol_failing_in_connection_made_is_reported_and_the_loop_goes_on() -> None:
    class FailingMade(Recorder):
        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            raise RuntimeError("bug")

    with running_loop() as loop, served(loop, FailingMade) as (listening, protocols, _):
        client = socket.create_connection(listening.getsockname())
        try:
            run_until(loop, lambda: bool(protocols) and "lost" in protocols[0].events)
            [(error, what)] = loop.errors  # type: ignore[attr-defined]
            assert isinstance(error, RuntimeError) and what == "connection_made"
            client.settimeout(DEADLINE)
            assert client.recv(10) == b""
        finally:
            client.close()


def test_with_nothing_scheduled_the_loop_waits_for_an_event_without_a_timeout() -> None:
    with running_loop() as loop:
        epoll = loop._epoll = RecordingEpoll(loop._epoll)  # type: ignore[assignment]
        loop.add_signal_handler(signal.SIGUSR1, loop.stop)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run()
        assert len(epoll.timeouts) == 2 and epoll.timeouts[0] == 0.0
        assert epoll.timeouts[1] is None or epoll.timeouts[1] < 0  # epoll: wait for ever


def test_cancelled_timers_stay_at_most_100_or_half_of_the_heap_after_others_left_it_cancelled() -> None:
    with running_loop() as loop:
        for timer in [loop.call_later(0, lambda: None) for _ in range(50)]:
            timer.cancel()
        loop.call_soon(loop.stop)
        loop.run()  # the 50 are due: they leave the heap, cancelled, without running
        assert loop._timers == []
        for timer in [loop.call_later(3600, lambda: None) for _ in range(1000)]:
            timer.cancel()
            cancelled = sum(1 for each in loop._timers if each.cancelled)
            assert cancelled <= max(100, len(loop._timers) // 2)


def test_by_default_a_failing_callback_s_traceback_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    loop = Loop()
    try:
        ran: list[str] = []
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(ran.append, "after")
        loop.call_soon(loop.stop)
        loop.run()
        assert ran == ["after"]
    finally:
        loop.close()
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_a_connection_whose_peer_does_not_read_still_reads_what_the_peer_sends() -> None:
    """The kernel's buffer full, no wake-up for writing comes: reading must not wait on one."""
    with running_loop() as loop, small_send_buffer_pair(loop) as (transport, protocol, theirs):
        transport.write(os.urandom(1 << 20))
        assert transport.get_write_buffer_size() > 0
        theirs.sendall(b"still read")
        run_until(loop, lambda: protocol.received == b"still read")
        transport.abort()
        run_until(loop, lambda: "lost" in protocol.events)
