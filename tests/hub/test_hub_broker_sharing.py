"""The broker's decisions without a broker: hub.broker.Sharing (sans-I/O), the backoff, the Broker
shell driven through a stand-in link, and how the client libraries are imported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hub import broker as broker_module
from hub.broker import HEADER_MAX, BACKOFF_CAP, BACKOFF_FIRST, Broker, Sharing, backoff_seconds
from hub.config import BrokerSettings
from hub_testkit import LogRecorder

REPO = Path(__file__).resolve().parents[2]
ME = b"aaaaaaaaaaaaaaaa"
OTHER = b"bbbbbbbbbbbbbbbb"


def envelope(origin: bytes, seq: int, body: bytes) -> bytes:
    return origin + b":" + str(seq).encode() + b"\n" + body


def connected_sharing(**limits) -> Sharing:
    sharing = Sharing(ME, 1024, **limits)
    sharing.connected = True
    return sharing


# --- Sharing ----------------------------------------------------------------------------------


def test_an_own_message_is_delivered_when_it_comes_back_and_only_then() -> None:
    sharing = connected_sharing()
    message = sharing.offer(b"A", 1, now=0.0)
    assert message == envelope(ME, 1, b"A")
    assert list(sharing.pending) == [(1, b"A", 1, True)] and sharing.pending_bytes == 1
    assert sharing.receive(message, now=1.0) == [b"A"]
    assert not sharing.pending and sharing.pending_bytes == 0 and sharing.unshared == 0


def test_another_hubs_message_is_delivered_as_it_comes() -> None:
    sharing = connected_sharing()
    sharing.offer(b"mine", 1, now=0.0)
    assert sharing.receive(envelope(OTHER, 7, b"theirs"), now=0.0) == [b"theirs"]
    assert len(sharing.pending) == 1  # still waiting for its own


def test_an_own_message_that_comes_back_after_its_local_delivery_is_ignored() -> None:
    sharing = connected_sharing()
    first = sharing.offer(b"A", 1, now=0.0)
    assert sharing.lose() == [b"A"]  # the connection went: delivered locally
    sharing.connected = True
    second = sharing.offer(b"B", 1, now=0.0)
    assert sharing.receive(first, now=0.0) == []  # the broker passed it on late: not twice
    assert sharing.receive(second, now=0.0) == [b"B"]
    assert sharing.receive(second, now=0.0) == []  # nor a copy of one delivered through the broker
    assert sharing.stale == 2 and sharing.unshared == 1


def test_own_messages_that_never_come_back_are_delivered_before_a_later_one_that_does() -> None:
    sharing = connected_sharing()
    messages = [sharing.offer(body, 2, now=0.0) for body in (b"A", b"B", b"C")]
    assert sharing.receive(messages[2], now=0.0) == [b"A", b"B", b"C"]  # the order of acceptance
    assert sharing.unshared == 4 and sharing.lost_in_transit == 2 and not sharing.pending


def test_a_broadcast_kept_local_waits_behind_those_on_their_way_and_only_behind_them() -> None:
    sharing = connected_sharing()
    assert sharing.keep_local(b"alone", 1) is False  # nothing on its way: the caller delivers it now
    first = sharing.offer(b"A", 1, now=0.0)
    assert sharing.keep_local(b"big", 2) is True
    second = sharing.offer(b"B", 1, now=0.0)
    assert sharing.keep_local(b"big2", 1) is True
    assert sharing.receive(first, now=0.0) == [b"A", b"big"]
    assert sharing.receive(second, now=0.0) == [b"B", b"big2"]
    assert not sharing.pending and sharing.pending_bytes == 0
    assert sharing.unshared == 4 and sharing.lost_in_transit == 0
    third = sharing.offer(b"C", 1, now=0.0)
    assert sharing.keep_local(b"big3", 1) is True
    fourth = sharing.offer(b"D", 1, now=0.0)
    assert sharing.receive(fourth, now=0.0) == [b"C", b"big3", b"D"]  # C never came back
    assert sharing.lost_in_transit == 1 and sharing.unshared == 6
    sharing.offer(b"E", 1, now=0.0)
    sharing.keep_local(b"big4", 1)
    assert sharing.lose() == [b"E", b"big4"] and sharing.lost_in_transit == 2 and sharing.unshared == 8
    assert sharing.receive(third, now=0.0) == []


def test_a_lost_connection_gives_back_everything_on_its_way_in_order() -> None:
    sharing = connected_sharing()
    for body in (b"A", b"BB", b"CCC"):
        sharing.offer(body, 1, now=0.0)
    assert sharing.lose() == [b"A", b"BB", b"CCC"]
    assert not sharing.connected and not sharing.pending and sharing.pending_bytes == 0
    assert sharing.unshared == 3 and sharing.lost_in_transit == 3


@pytest.mark.parametrize(
    "message",
    [
        b"no header line",
        b"short:1\n{}",
        ME + b"\n{}",
        ME + b":x1\n{}",
        ME + b":\xd9\xa1\n{}",  # a non-ASCII digit
        OTHER + b":" + b"1" * (HEADER_MAX) + b"\n{}",
        envelope(OTHER, 1, b"x" * 1025),  # over max_body_bytes
    ],
)
def test_malformed_or_oversized_messages_are_dropped_and_counted(message: bytes) -> None:
    sharing = connected_sharing()
    sharing.offer(b"A", 1, now=0.0)
    assert sharing.receive(message, now=0.0) == []
    assert sharing.malformed == 1 and len(sharing.pending) == 1


def test_a_body_of_exactly_max_body_bytes_is_accepted() -> None:
    assert connected_sharing().receive(envelope(OTHER, 1, b"x" * 1024), now=0.0) == [b"x" * 1024]


def test_room_is_bounded_by_count_and_by_bytes() -> None:
    sharing = connected_sharing(max_pending=2, max_pending_bytes=10)
    assert sharing.room_for(10)
    assert not sharing.room_for(11)
    sharing.offer(b"12345", 1, now=0.0)
    assert sharing.room_for(5) and not sharing.room_for(6)
    sharing.offer(b"1", 1, now=0.0)
    assert not sharing.room_for(1)  # two on their way


def test_stalled_only_with_something_on_its_way_and_no_progress_for_the_timeout() -> None:
    sharing = connected_sharing()
    assert not sharing.stalled(now=100.0, timeout=1.0)
    first = sharing.offer(b"A", 1, now=10.0)
    sharing.offer(b"B", 1, now=10.5)
    assert not sharing.stalled(now=11.0, timeout=1.0)
    assert sharing.stalled(now=11.1, timeout=1.0)
    sharing.receive(first, now=11.05)  # progress: B has had no time of its own yet
    assert not sharing.stalled(now=12.0, timeout=1.0)
    assert sharing.stalled(now=12.1, timeout=1.0)


def test_backoff_doubles_up_to_the_cap_and_is_jittered_into_the_upper_half() -> None:
    assert backoff_seconds(1, 1.0) == BACKOFF_FIRST
    assert backoff_seconds(2, 1.0) == 2 * BACKOFF_FIRST
    assert backoff_seconds(3, 0.0) == 2 * BACKOFF_FIRST
    assert backoff_seconds(100, 1.0) == BACKOFF_CAP
    assert backoff_seconds(100, 0.0) == BACKOFF_CAP / 2
    assert all(0 < backoff_seconds(n, j) <= BACKOFF_CAP for n in range(1, 60) for j in (0.0, 0.5, 1.0))


# --- the Broker shell, through a stand-in link ---------------------------------------------------


class FakeLink(broker_module._Link):
    """Echoes what is published only when told to; records what it was given."""

    made: list[FakeLink] = []

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.published: list[bytes] = []
        self.closed = False
        FakeLink.made.append(self)

    async def open(self) -> None:
        pass

    async def publish(self, messages: list[bytes]) -> None:
        self.published += messages

    async def close(self) -> None:
        self.closed = True

    def echo(self) -> None:
        for message in self.published:
            self.on_message(message)


async def until(condition, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def fake_link(monkeypatch):
    FakeLink.made = []
    monkeypatch.setitem(broker_module.LINKS, "nats", FakeLink)
    return FakeLink


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` on a loop of its own for at most 20 s; then whatever it left running is cancelled and
    waited for at most 5 s more (asyncio.run waits for ever, and a task that loses its cancellation never ends)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 20))
    finally:
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.wait(leftover, timeout=5))
        loop.close()


@contextlib.asynccontextmanager
async def started_broker(delivered: list[bytes], log: LogRecorder, stall: float = 60.0) -> AsyncIterator[Broker]:
    """A Broker over the stand-in link, closed when the block ends, however it ends."""
    settings = BrokerSettings("nats", "nats://127.0.0.1:4222", stall_timeout_seconds=stall)
    broker = Broker(settings, lambda body: delivered.append(body) or "", log, asyncio.get_running_loop(), 4096)
    broker.start()
    try:
        yield broker
    finally:
        await broker.close()


def body(n: int) -> bytes:
    return json.dumps({"stream": "s", "data": n}).encode()


def test_past_the_bound_the_broker_is_given_up_and_everything_is_delivered_locally_in_order(fake_link, log) -> None:
    async def scenario() -> None:
        delivered: list[bytes] = []
        async with started_broker(delivered, log) as broker:
            broker.sharing.max_pending = 3
            await until(lambda: broker.connected, "the connection")
            assert [broker.share(body(n), 1) for n in range(3)] == [True, True, True]
            await until(lambda: len(fake_link.made[0].published) == 3, "the messages to be handed over")
            assert delivered == []  # nothing came back yet
            assert broker.share(body(3), 1) is False  # the caller delivers this one itself, right after:
            assert delivered == [body(0), body(1), body(2)]
            assert broker.overflows == 1 and broker.sharing.unshared == 4 and not broker.connected
            fake_link.made[0].echo()  # the old connection's copies are ignored
            assert delivered == [body(0), body(1), body(2)]
            await until(lambda: broker.connected and len(fake_link.made) == 2, "a new connection")
            assert fake_link.made[0].closed and broker.reconnects == 1
            assert broker.share(body(4), 1) is True
            await until(lambda: fake_link.made[1].published, "the new message to be handed over")
            fake_link.made[1].echo()
            assert delivered[-1] == body(4) and broker.published == 4
            await broker.close()
            assert fake_link.made[1].closed and ("broker_closed", ) == tuple(e for e, _ in log.events[-1:])

    run(scenario)


def test_a_broadcast_too_large_for_the_broker_is_delivered_locally_in_its_turn(fake_link, monkeypatch, log) -> None:
    monkeypatch.setattr(FakeLink, "too_large", lambda self, size: size > 100)

    async def scenario() -> None:
        delivered: list[bytes] = []
        async with started_broker(delivered, log) as broker:
            await until(lambda: broker.connected, "the connection")
            large = json.dumps({"stream": "s", "data": "x" * 100}).encode()
            assert broker.share(large, 1) is False  # nothing on its way: the hub delivers it now
            assert broker.share(body(1), 1) is True
            assert broker.share(large, 1) is True  # behind body(1)
            await until(lambda: len(fake_link.made[0].published) == 1, "the small one to be handed over")
            assert delivered == []
            fake_link.made[0].echo()
            assert delivered == [body(1), large] and broker.sharing.unshared == 2 and broker.connected

    run(scenario)


def test_a_failed_assertion_inside_a_scenario_fails_the_test_instead_of_hanging_it(fake_link, log) -> None:
    """The shape of the test above, failing right after a publish: asyncio.run used to wait for ever on the
    broker's task, which had lost its cancellation (see the next test); the scenario now closes it."""

    async def scenario() -> None:
        async with started_broker([], log) as broker:
            await until(lambda: broker.connected, "the connection")
            assert broker.share(body(1), 1) is True
            raise AssertionError("failed in the middle")

    with pytest.raises(AssertionError, match="failed in the middle"):
        run(scenario)
    assert fake_link.made[0].closed


def test_close_ends_the_broker_even_when_its_cancellation_arrives_as_a_publish_completes(fake_link, monkeypatch, log) -> None:
    """Python 3.11's asyncio.wait_for returns the result when the cancellation of its caller arrives after
    the awaited publish completed: the pump went on waiting for more to publish, and close() waited for it for ever."""
    closing: list[asyncio.Task[None]] = []
    original = FakeLink.publish

    async def publish_then_close(self, messages: list[bytes]) -> None:
        await original(self, messages)
        # close() starts after the publish completes and before the pump resumes from it.
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: closing.append(loop.create_task(broker.close())))

    monkeypatch.setattr(FakeLink, "publish", publish_then_close)

    async def scenario() -> None:
        nonlocal broker
        async with started_broker([], log) as broker:
            await until(lambda: broker.connected, "the connection")
            assert broker.share(body(1), 1) is True
            await until(lambda: closing, "close() to be called")
            done, _ = await asyncio.wait(closing, timeout=5)
            assert done, "close() did not return"
            assert fake_link.made[0].closed and log.names()[-1] == "broker_closed"

    broker: Broker
    run(scenario)


def test_a_connection_lost_while_it_opens_is_a_failed_attempt(fake_link, monkeypatch, log) -> None:
    async def open_then_lose(self) -> None:
        if len(FakeLink.made) == 1:
            self.on_lost("went away during the handshake")

    monkeypatch.setattr(FakeLink, "open", open_then_lose)

    async def scenario() -> None:
        async with started_broker([], log) as broker:
            await until(lambda: broker.connected, "the second attempt to connect")
            assert broker.connect_failures == 1 and broker.connections == 1 and len(fake_link.made) == 2
            assert fake_link.made[0].closed

    run(scenario)


def test_while_disconnected_broadcasts_are_refused_for_local_delivery_and_never_published(fake_link, log) -> None:
    async def scenario() -> None:
        async with started_broker([], log) as broker:
            await until(lambda: broker.connected, "the connection")
            broker._lost(broker._generation, "test")
            assert broker.share(body(1), 2) is False and broker.sharing.unshared == 2
            await until(lambda: len(fake_link.made) == 2 and broker.connected, "a new connection")
            assert fake_link.made[0].published == [] and fake_link.made[1].published == []

    run(scenario)


def test_a_stall_gives_the_connection_up(fake_link, log) -> None:
    async def scenario() -> None:
        delivered: list[bytes] = []
        async with started_broker(delivered, log, stall=0.05) as broker:
            await until(lambda: broker.connected, "the connection")
            assert broker.share(body(1), 1) is True
            await until(lambda: delivered == [body(1)], "local delivery after the stall")
            assert broker.stalls == 1 and broker.sharing.lost_in_transit == 1
            assert log.names().count("broker_stalled") == 1

    run(scenario)


def test_a_bad_message_from_the_broker_is_dropped_and_logged_and_the_connection_kept(fake_link, log) -> None:
    """Whatever a message holds, the hub's deliver says why it is not a broadcast; the log says so on the 1st,
    2nd, 4th, ... such message, and the connection is not given up over it."""
    problems = {b"deep": "JSON nested more than 100 deep", b"ok": ""}

    async def scenario() -> None:
        settings = BrokerSettings("nats", "nats://127.0.0.1:4222")
        broker = Broker(settings, lambda body: problems[body], log, asyncio.get_running_loop(), 4096)
        broker.start()
        try:
            await until(lambda: broker.connected, "the connection")
            link = fake_link.made[0]
            for message in [envelope(OTHER, 1, b"deep"), b"no envelope", envelope(OTHER, 2, b"ok"), envelope(OTHER, 3, b"deep")]:
                link.on_message(message)
            dropped = [fields for event, fields in log.events if event == "broker_message_dropped"]
            assert [(d["dropped"], d["why"]) for d in dropped] == [
                (1, "JSON nested more than 100 deep"),
                (2, "not in the hubs' format, or over limits.max_broadcast_bytes"),
            ]  # the 3rd is counted, not logged
            assert broker.sharing.malformed == 3 and broker.received == 4
            assert broker.connected and len(fake_link.made) == 1 and "broker_lost" not in log.names()
        finally:
            await broker.close()

    run(scenario)


# --- importing the client libraries ---------------------------------------------------------------

PROBE = """
import json, sys
for name in ("ssl", "_ssl", "_hashlib"):
    sys.modules[name] = None   # as hub/__main__.py does
import asyncio
from hub.broker import import_client
import_client(sys.argv[1])
print(json.dumps({
    "ssl": repr(sys.modules.get("ssl", "gone")),
    "metadata": repr(sys.modules.get("importlib.metadata", "gone")),
    "cryptography": repr(sys.modules.get("cryptography", "gone")),
    "openssl": [line for line in open("/proc/self/maps") if "libssl" in line or "libcrypto" in line],
}))
"""


@pytest.mark.parametrize("name", ["nats", "redis.asyncio"])
def test_a_client_library_is_imported_without_tls_and_the_stand_ins_are_removed_afterwards(name: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, name], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    state = json.loads(done.stdout)
    assert state == {"ssl": "None", "metadata": "'gone'", "cryptography": "'gone'", "openssl": []}


def test_the_hub_without_a_broker_does_not_import_the_broker_module() -> None:
    probe = ("import sys; from hub.__main__ import _skip_unneeded_modules; _skip_unneeded_modules(); import hub.server;"
             " print(sorted(m for m in sys.modules if m == 'hub.broker' or m.split('.')[0] in ('nats', 'redis')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
