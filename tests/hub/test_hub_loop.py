"""hub.loop: the epoll loop the hub runs on without a broker, with asyncio's semantics for what the hub uses.

Real sockets on 127.0.0.1 and socketpairs; each test runs the loop until a condition holds or a
deadline (a timer that stops the loop) passes.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from hub.loop import ACCEPT_RETRY_SECONDS, Loop

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


def test_output_beyond_the_high_water_pauses_the_protocol_and_close_waits_for_it_to_be_sent() -> None:
    with running_loop() as loop:
        ours, theirs = socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        protocol = Recorder()
        try:
            from hub.loop import _Transport

            transport = _Transport(loop, ours, None, protocol)
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
        finally:
            theirs.close()


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
