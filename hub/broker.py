"""Sharing broadcasts between the hubs of a region through NATS or Redis.

Imported only when hub.yml has a `broker` section (or --broker is given), as is the client
library (nats-py, or redis-py's asyncio client): when the configuration is loaded, so that
a missing one is a configuration error rather than a broker that never answers.

How a broadcast travels: the hub that accepts it over HTTP publishes it once to
`<prefix>.broadcast` (one subject or channel per group of hubs, so the broker keeps one
publisher's order) and delivers it to its own clients only when it comes back from the
broker, as every other hub does. Each published message is an envelope

    <origin>:<seq>\\n<the broadcast request's body, unchanged>

where `origin` is 16 hex digits drawn at start and `seq` counts up. The hub keeps its own
messages until they come back (`Sharing.pending`); a message of its own that cannot come
back any more (the connection was lost, a later one came back first, the broker stalled
or too much is on its way) is delivered locally at that moment instead and counted as
unshared, and a copy that turns up afterwards is ignored. So each broadcast reaches a
hub's clients exactly once, in the order it was accepted, whatever the broker does; one
accepted while the broker is unreachable is delivered locally at once and never
published later.

`Sharing` is the sans-I/O part (tested on its own); `Broker` runs one connection at a
time with capped, jittered exponential backoff between attempts; `_NatsLink` and
`_RedisLink` are the thin layers over the two client libraries.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import types
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from .config import BrokerSettings
from .log import Logger

ORIGIN_LENGTH = 16
HEADER_MAX = ORIGIN_LENGTH + 1 + 20 + 1  # origin ":" seq (at most 20 digits) "\n"
# Messages on their way through the broker (published, not yet back) at most; past either
# bound the broker is taken as too slow: its connection is dropped, what is on its way is
# delivered locally, and the hub connects again after a backoff.
MAX_PENDING = 10000
MAX_PENDING_BYTES = 16 * 1024 * 1024
CONNECT_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0
BACKOFF_FIRST = 0.2
BACKOFF_CAP = 5.0
# NATS: what the client library may queue for the hub's subscription before it drops messages.
NATS_PENDING_MESSAGES = 65536
NATS_PENDING_BYTES = 64 * 1024 * 1024
NATS_PING_SECONDS = 20
# A failed connection attempt, or a message dropped, is logged on the 1st, 2nd, 4th, 8th, ... and then every this many.
LOG_EVERY_ATTEMPTS = 64

Deliver = Callable[[bytes], str]  # a broadcast request's body -> "" when delivered, else why it is not a broadcast


def subject(prefix: str) -> str:
    return prefix + ".broadcast"


def backoff_seconds(failures: int, jitter: float) -> float:
    """Delay before the next attempt after `failures` failed ones: doubling from BACKOFF_FIRST up to
    BACKOFF_CAP, then scaled into [50%, 100%] by `jitter` (0..1) so that hubs do not retry in step."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(failures - 1, 0))
    return delay * (0.5 + 0.5 * jitter)


def _jitter() -> float:
    return int.from_bytes(os.urandom(2), "big") / 65535  # `random` is not needed for this


def worth_logging(count: int) -> bool:
    """Whether the `count`th of a repeated event is logged: the 1st, 2nd, 4th, 8th, ... and then every 64th."""
    return count & (count - 1) == 0 or count % LOG_EVERY_ATTEMPTS == 0


class Sharing:
    """Sans-I/O: what is on its way through the broker, and what to deliver when a message comes back.

    `offer` decides whether a broadcast may be published (and wraps it); `receive` turns a
    message from the broker into the bodies to deliver now, in order; `lose` gives back
    everything still on its way when the connection is gone.
    """

    __slots__ = (
        "origin", "max_body_bytes", "max_pending", "max_pending_bytes", "connected", "_seq", "pending",
        "pending_bytes", "progress_at", "unshared", "lost_in_transit", "stale", "malformed",
    )  # fmt: skip

    def __init__(self, origin: bytes, max_body_bytes: int, max_pending: int = MAX_PENDING, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        assert len(origin) == ORIGIN_LENGTH
        self.origin = origin
        self.max_body_bytes = max_body_bytes
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.connected = False
        self._seq = 0
        # (seq, body, broadcasts in it, published): one not published (too large for the broker) waits
        # here only behind published ones, to keep the order; the first entry is always a published one.
        self.pending: deque[tuple[int, bytes, int, bool]] = deque()
        self.pending_bytes = 0
        self.progress_at = 0.0  # when something last came back (or the first of `pending` was sent)
        self.unshared = 0  # broadcasts delivered locally without the broker
        self.lost_in_transit = 0  # own messages published that did not come back in time
        self.stale = 0  # own messages that came back after being delivered locally
        self.malformed = 0

    def room_for(self, size: int) -> bool:
        return len(self.pending) < self.max_pending and self.pending_bytes + size <= self.max_pending_bytes

    def offer(self, body: bytes, broadcasts: int, now: float) -> bytes:
        """Take `body` on its way; returns the message to publish. Check `connected` and `room_for` first."""
        self._seq += 1
        if not self.pending:
            self.progress_at = now
        self.pending.append((self._seq, body, broadcasts, True))
        self.pending_bytes += len(body)
        return self.origin + b":" + str(self._seq).encode() + b"\n" + body

    def keep_local(self, body: bytes, broadcasts: int) -> bool:
        """A broadcast this hub delivers without the broker: True when it waits behind ones on their way
        (delivered after them), False when the caller delivers it now. Check `room_for` first."""
        self.unshared += broadcasts
        if not self.pending:
            return False
        self._seq += 1
        self.pending.append((self._seq, body, broadcasts, False))
        self.pending_bytes += len(body)
        return True

    def unshare(self, broadcasts: int) -> None:
        self.unshared += broadcasts

    def receive(self, message: bytes, now: float) -> list[bytes]:
        """The bodies to deliver now, in order (empty for a stale or malformed message)."""
        newline = message.find(b"\n", 0, HEADER_MAX)
        if newline < 0 or len(message) - newline - 1 > self.max_body_bytes:
            self.malformed += 1
            return []
        origin, colon, number = message[:newline].partition(b":")
        if not colon or len(origin) != ORIGIN_LENGTH or not number.isdigit() or not number.isascii():
            self.malformed += 1
            return []
        body = message[newline + 1 :]
        if origin != self.origin:
            return [body]
        seq = int(number)
        pending = self.pending
        if not pending or seq < pending[0][0]:
            self.stale += 1  # delivered locally already: when its connection was given up
            return []
        out: list[bytes] = []
        while pending and pending[0][0] < seq:  # published before it, and will not come back any more
            _, lost, broadcasts, published = pending.popleft()
            self.pending_bytes -= len(lost)
            if published:
                self.unshared += broadcasts
                self.lost_in_transit += 1
            out.append(lost)
        if pending and pending[0][0] == seq:
            _, mine, _, _ = pending.popleft()
            self.pending_bytes -= len(mine)
            out.append(mine)
        while pending and not pending[0][3]:  # kept local behind it: their turn now
            _, local, _, _ = pending.popleft()
            self.pending_bytes -= len(local)
            out.append(local)
        self.progress_at = now
        return out

    def stalled(self, now: float, timeout: float) -> bool:
        return bool(self.pending) and now - self.progress_at > timeout

    def lose(self) -> list[bytes]:
        """The connection is gone: everything on its way, to deliver locally now, in order."""
        self.connected = False
        out = [body for _, body, _, _ in self.pending]
        self.unshared += sum(broadcasts for _, _, broadcasts, published in self.pending if published)
        self.lost_in_transit += sum(1 for entry in self.pending if entry[3])
        self.pending.clear()
        self.pending_bytes = 0
        return out


# --- importing the client libraries without what the hub keeps out of its process -----------

_ABSENT = object()


class _NoTls(OSError):
    """Stands for every name of the `ssl` module while a broker client library is imported."""

    def __init__(self, *args: Any) -> None:
        raise OSError("TLS is not available in the hub: reach the broker without it")


def _ssl_stand_in() -> types.ModuleType:
    """hub/__main__.py keeps `ssl` (and OpenSSL, ~4 MB) out of the process; nats-py and redis-py import
    it unconditionally but touch it only for TLS, which the hub's broker URLs cannot ask for."""
    module = types.ModuleType("ssl", "stand-in: the hub process has no TLS")

    def __getattr__(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _NoTls

    setattr(module, "__getattr__", __getattr__)  # noqa: B010 (a module-level __getattr__, PEP 562)
    return module


class _NoPackageData(ModuleNotFoundError):
    """The stand-in's PackageNotFoundError."""


def _metadata_stand_in() -> types.ModuleType:
    """nats-py and redis-py read only their own version from importlib.metadata, and carry on when it
    is not found; the real module (with email, zipfile, csv and pathlib) costs ~2.6 MB of resident memory."""
    module = types.ModuleType("importlib.metadata", "stand-in: the hub reads no package metadata")

    def version(name: str) -> str:
        raise _NoPackageData(name)

    module.PackageNotFoundError = _NoPackageData  # type: ignore[attr-defined]
    module.version = version  # type: ignore[attr-defined]
    return module


# What the client libraries import only to do without it: a stand-in (a factory), or None (absent).
# redis-py looks for cryptography (for OCSP over TLS) and takes ImportError as "not installed".
_STAND_INS: dict[str, Callable[[], types.ModuleType] | None] = {"importlib.metadata": _metadata_stand_in, "cryptography": None}


def import_client(name: str) -> Any:
    """Import `name` ("nats" or "redis.asyncio"), keeping out of the process what the hub has no use for.

    Only a process that marked `ssl` absent (python -m hub) gets the stand-ins; elsewhere (a test
    importing the hub) the real modules are left alone. They stay absent from sys.modules afterwards.
    """
    saved: dict[str, Any] = {}
    if name not in sys.modules and "ssl" in sys.modules and sys.modules["ssl"] is None:
        saved["ssl"] = None
        sys.modules["ssl"] = _ssl_stand_in()
        for other, make in _STAND_INS.items():
            if other not in sys.modules:
                saved[other] = _ABSENT
                sys.modules[other] = make() if make is not None else None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        for other, value in saved.items():
            if value is _ABSENT:
                sys.modules.pop(other, None)
            else:
                sys.modules[other] = value


# The module each kind of link imports, and what installs it.
CLIENT_MODULES = {"nats": "nats", "redis": "redis.asyncio"}
_INSTALL = {
    "nats": "pip install 'cable-orchestrator[broker]' (Debian does not package nats-py;"
            " an image built from orchestrate render's output carries it beside the hub)",
    "redis": "pip install 'cable-orchestrator[broker]', or on Debian apt-get install python3-redis",
}


def client_problem(kind: str) -> str | None:
    """Why the client library a `kind` broker needs cannot be imported, and what installs it; None when it can.

    A missing library is a configuration error found at load, not an outage found by retrying connections.
    """
    module = CLIENT_MODULES[kind]
    try:
        import_client(module)
    except ImportError as error:
        return f"a {kind} broker needs the Python module {error.name or module}, which cannot be imported ({error}): {_INSTALL[kind]}"
    return None


def _close_method(thing: Any) -> Callable[[], Awaitable[Any]]:
    """redis-py 5+ calls it aclose (close is deprecated); 4.x has close only."""
    return getattr(thing, "aclose", None) or thing.close


# --- one connection, per library ----------------------------------------------------------------


class _Link:
    """One connection to the broker: opened once, closed once; `lost` is called at most once."""

    def __init__(self, settings: BrokerSettings, on_message: Callable[[bytes], None], on_lost: Callable[[str], None]) -> None:
        self.settings = settings
        self.on_message = on_message
        self._on_lost = on_lost
        self.failed: str | None = None  # why the connection went, once it did

    def on_lost(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            self._on_lost(why)

    async def open(self) -> None:
        raise NotImplementedError

    async def publish(self, messages: list[bytes]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def too_large(self, size: int) -> bool:
        return False


class _NatsLink(_Link):
    client: Any = None

    async def open(self) -> None:
        nats = import_client(CLIENT_MODULES["nats"])
        settings = self.settings

        last_error: list[Exception] = []

        async def on_error(error: Exception) -> None:
            # While connecting: why it failed (the library then says only "no servers"). Once connected, a
            # slow consumer: messages the subscription could not queue were dropped; an own message among
            # them is delivered locally when a later one comes back (or the broker is taken as stalled).
            last_error[:] = [error]

        async def on_disconnected() -> None:
            self.on_lost("connection lost")

        options: dict[str, Any] = {
            # The hub retries with its own backoff: one attempt here (0 would mean "for ever" to the library).
            "servers": [settings.url], "name": "cable-hub", "allow_reconnect": False, "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0,
            "connect_timeout": CONNECT_TIMEOUT, "ping_interval": NATS_PING_SECONDS, "max_outstanding_pings": 2,
            "error_cb": on_error, "disconnected_cb": on_disconnected, "closed_cb": on_disconnected,
        }  # fmt: skip
        if settings.user is not None:
            options["user"] = settings.user
        if settings.password is not None:
            options["password"] = settings.password
        if settings.token is not None:
            options["token"] = settings.token
        try:
            self.client = await nats.connect(**options)
        except Exception as error:
            raise (last_error[0] if last_error else error) from None

        async def on_message(message: Any) -> None:
            self.on_message(message.data)

        await self.client.subscribe(
            subject(settings.prefix), cb=on_message,
            pending_msgs_limit=NATS_PENDING_MESSAGES, pending_bytes_limit=NATS_PENDING_BYTES,
        )  # fmt: skip
        await self.client.flush(timeout=CONNECT_TIMEOUT)  # the server has the subscription before anything is published

    def too_large(self, size: int) -> bool:
        return self.client is not None and size > self.client.max_payload

    async def publish(self, messages: list[bytes]) -> None:
        name = subject(self.settings.prefix)
        for message in messages:
            await self.client.publish(name, message)  # queued by the library; its flusher writes it

    async def close(self) -> None:
        if self.client is not None and not self.client.is_closed:
            await self.client.close()


class _RedisLink(_Link):
    client: Any = None
    pubsub: Any = None
    reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        redis_asyncio = import_client(CLIENT_MODULES["redis"])
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        settings = self.settings
        host, port, db = settings.address()
        # No retries inside the library: a failure must reach the hub, which then delivers locally
        # what was on its way; a retried PUBLISH could also reach the other hubs twice.
        self.client = redis_asyncio.Redis(
            host=host, port=port, db=db, username=settings.user, password=settings.password,
            socket_connect_timeout=CONNECT_TIMEOUT, socket_keepalive=True, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        await self.client.ping()  # connects and authenticates the connection PUBLISH will use
        self.pubsub = self.client.pubsub()
        channel = subject(settings.prefix)
        await self.pubsub.subscribe(channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_TIMEOUT
        while True:  # the server confirms the subscription before anything is published
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no subscription confirmation")
            reply = await self.pubsub.get_message(timeout=left)
            if reply is not None and reply.get("type") in ("subscribe", b"subscribe"):
                break
        self.reader = loop.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.pubsub.listen():
                if message.get("type") in ("message", b"message"):
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self.on_message(data)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.on_lost(f"{type(error).__name__}: {error}")
            return
        self.on_lost("subscription ended")

    async def publish(self, messages: list[bytes]) -> None:
        channel = subject(self.settings.prefix)
        # One round trip for whatever queued up while the last one was on its way, in order.
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.publish(channel, message)
        await pipe.execute()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            try:
                await self.reader
            except BaseException:  # noqa: BLE001 (cancelled, or whatever ended it)
                pass
        try:
            if self.pubsub is not None:
                await _close_method(self.pubsub)()
        finally:
            if self.client is not None:
                await _close_method(self.client)()


LINKS: dict[str, type[_Link]] = {"nats": _NatsLink, "redis": _RedisLink}


# --- the broker as the hub sees it ---------------------------------------------------------------


class Broker:
    """Connects, shares, reconnects; the hub calls `start`, `share`, `close` and reads the counters."""

    def __init__(self, settings: BrokerSettings, deliver: Deliver, log: Logger, loop: asyncio.AbstractEventLoop, max_body_bytes: int) -> None:
        self.settings = settings
        self.deliver = deliver
        self.log = log
        self.loop = loop
        self.sharing = Sharing(os.urandom(ORIGIN_LENGTH // 2).hex().encode(), max_body_bytes)
        self._outbox: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._generation = 0  # bumped whenever a connection is given up: what it still says is ignored
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._closing = False
        self._link: _Link | None = None
        self.connections = 0
        self.reconnects = 0
        self.connect_failures = 0
        self.published = 0
        self.received = 0
        self.overflows = 0
        self.stalls = 0

    @property
    def connected(self) -> bool:
        return self.sharing.connected

    @property
    def max_body_bytes(self) -> int:
        return self.sharing.max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int) -> None:
        self.sharing.max_body_bytes = value

    def describe(self) -> dict[str, str]:
        """What may be logged: no secret is among it (a URL with credentials is refused)."""
        return {"kind": self.settings.kind, "url": self.settings.url, "subject": subject(self.settings.prefix)}

    def start(self) -> None:
        self._task = self.loop.create_task(self._run())
        self._schedule_watch()

    # --- called by the hub ---------------------------------------------------------------

    def share(self, body: bytes, broadcasts: int) -> bool:
        """True when `body` is on its way through the broker (the hub delivers it when it comes back);
        False when the hub must deliver it locally now (counted as unshared)."""
        sharing = self.sharing
        link = self._link
        if not sharing.connected or link is None:
            sharing.unshare(broadcasts)  # nothing is on its way (it was delivered when the connection went)
            return False
        if not sharing.room_for(len(body)):
            self.overflows += 1
            self._give_up("overflow", f"more than {sharing.max_pending} messages or {sharing.max_pending_bytes} bytes on their way")
            sharing.unshare(broadcasts)
            return False  # delivered after what was on its way: the order is kept
        if link.too_large(HEADER_MAX + len(body)):
            return sharing.keep_local(body, broadcasts)  # after what is on its way, if anything is
        self._outbox.append(sharing.offer(body, broadcasts, self.loop.time()))
        self._wake.set()
        return True

    async def close(self) -> None:
        """Stop: close the connection cleanly; what is on its way is dropped (the hub is stopping)."""
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def retire(self) -> asyncio.Task[None]:
        """Replaced by a reload: deliver locally what is on its way now, and close in the background."""
        self._give_up("reload", "broker settings changed")
        return self.loop.create_task(self.close())

    def metric_rows(self) -> list[tuple[str, str, str, int]]:
        sharing = self.sharing
        return [
            ("hub_broker_connected", "gauge", "1 when the broker connection is up and broadcasts are shared, else 0.", int(sharing.connected)),
            ("hub_broker_reconnects_total", "counter", "Broker connections made after the first one.", self.reconnects),
            ("hub_broker_connect_failures_total", "counter", "Failed attempts to connect to the broker.", self.connect_failures),
            ("hub_broker_published_total", "counter", "Messages (one per accepted broadcast request) handed to the broker.", self.published),
            ("hub_broker_received_total", "counter", "Messages received from the broker (this hub's own included).", self.received),
            ("hub_broadcasts_unshared_total", "counter", "Accepted broadcasts delivered to this hub's clients only, without the broker.", sharing.unshared),
            ("hub_broker_lost_total", "counter", "Own messages published that had not come back when their connection was given up.", sharing.lost_in_transit),
            ("hub_broker_dropped_total", "counter", "Messages from the broker dropped: malformed, over max_broadcast_bytes, or already delivered.", sharing.malformed + sharing.stale),
            ("hub_broker_overflows_total", "counter", "Times too much was on its way through the broker and the connection was given up.", self.overflows),
            ("hub_broker_stalls_total", "counter", "Times nothing came back from the broker within stall_timeout_seconds and the connection was given up.", self.stalls),
            ("hub_broker_pending", "gauge", "Own messages on their way through the broker.", len(sharing.pending)),
            ("hub_broker_pending_bytes", "gauge", "Bytes of own messages on their way through the broker.", sharing.pending_bytes),
        ]  # fmt: skip

    # --- the connection's life -----------------------------------------------------------

    def _received(self, generation: int, message: bytes) -> None:
        if generation != self._generation:
            return  # from a connection already given up: its own messages were delivered locally
        self.received += 1
        sharing = self.sharing
        malformed = sharing.malformed
        bodies = sharing.receive(message, self.loop.time())
        if sharing.malformed != malformed:
            self._dropped(message, "not in the hubs' format, or over limits.max_broadcast_bytes")
        for body in bodies:
            problem = self.deliver(body)
            if problem:
                sharing.malformed += 1
                self._dropped(message, problem)

    def _dropped(self, message: bytes, why: str) -> None:
        """A message from the broker was dropped (and counted); the connection stays: it says nothing about the broker."""
        if worth_logging(self.sharing.malformed):
            self.log("broker_message_dropped", level="warn", why=why, size=len(message), dropped=self.sharing.malformed, **self.describe())

    def _lost(self, generation: int, why: str) -> None:
        if generation == self._generation:
            self._give_up("lost", why)

    def _give_up(self, event: str, why: str) -> None:
        """Drop the current connection: deliver locally, in order, what was on its way."""
        if not self.sharing.connected:
            return
        self._generation += 1
        self._outbox.clear()
        bodies = self.sharing.lose()
        for body in bodies:
            self.deliver(body)
        self._wake.set()
        self.log("broker_" + event, level="warn", why=self._scrub(why), delivered_locally=len(bodies), **self.describe())

    def _schedule_watch(self) -> None:
        self._watch = self.loop.call_later(max(self.settings.stall_timeout_seconds / 4, 0.05), self._check_stall)

    def _check_stall(self) -> None:
        if self.sharing.stalled(self.loop.time(), self.settings.stall_timeout_seconds):
            self.stalls += 1
            self._give_up("stalled", f"nothing came back within {self.settings.stall_timeout_seconds} s")
        if not self._closing:
            self._schedule_watch()

    def _scrub(self, text: str) -> str:
        """An error message from a library, with any secret's value cut out (they should hold none)."""
        for secret in (self.settings.password, self.settings.token):
            if secret:
                text = text.replace(secret, "[secret]")
        return text[:300]

    async def _run(self) -> None:
        failures = 0
        try:
            while not self._closing:
                generation = self._generation
                link = LINKS[self.settings.kind](self.settings, partial(self._received, generation), partial(self._lost, generation))
                self._link = link
                try:
                    await asyncio.wait_for(link.open(), CONNECT_TIMEOUT * 2)
                    if link.failed is not None:  # lost while it was still opening
                        raise ConnectionError(link.failed)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 (whatever the library raises: retry later)
                    failures += 1
                    self.connect_failures += 1
                    self._generation += 1  # a half-opened connection must not deliver
                    await self._close_link(link)
                    wait = backoff_seconds(failures, _jitter())
                    if worth_logging(failures):
                        self.log("broker_unreachable", level="warn", attempts=failures, retry_in=round(wait, 2),
                                 error=self._scrub(f"{type(error).__name__}: {error}"), **self.describe())
                    if not self._closing:
                        await asyncio.sleep(wait)
                    continue
                failures = 0
                self.connections += 1
                if self.connections > 1:
                    self.reconnects += 1
                self.sharing.connected = True
                self.log("broker_connected", reconnects=self.reconnects, **self.describe())
                await self._pump(link, generation)
                if self._closing:
                    break
                self._give_up("lost", "connection ended")  # no-op when already given up
                await self._close_link(link)
                if not self._closing:
                    await asyncio.sleep(backoff_seconds(1, _jitter()))
        finally:
            self._generation += 1
            self.sharing.connected = False
            last, self._link = self._link, None
            if last is not None:
                await self._close_link(last)
                self.log("broker_closed", **self.describe())

    async def _pump(self, link: _Link, generation: int) -> None:
        """Hand what is queued to the library, in order, until the connection is given up or the broker closed.

        `close` cancels this task, but in Python 3.11 a cancellation that arrives as an awaited
        `wait_for` completes is lost (the result is returned instead): so the loops here also stop on
        `_closing`, which `close` sets first, or `close` would wait for this task for ever.
        """
        outbox = self._outbox
        while generation == self._generation and not self._closing:
            if not outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(outbox)
            outbox.clear()
            try:
                # Bounded: a broker that takes the connection but never answers must not hold the reconnect
                # (the stall watch gives the connection up first; this ends the wait for its answer).
                await asyncio.wait_for(link.publish(batch), 2 * self.settings.stall_timeout_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                if generation == self._generation:
                    self._give_up("lost", f"publish failed: {type(error).__name__}: {error}")
                return
            if generation == self._generation:
                self.published += len(batch)

    async def _close_link(self, link: _Link) -> None:
        try:
            await asyncio.wait_for(link.close(), CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 (the connection goes either way; say why it did not close cleanly)
            self.log("broker_close_failed", level="warn", error=self._scrub(f"{type(error).__name__}: {error}"), **self.describe())
