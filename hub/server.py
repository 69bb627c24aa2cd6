"""The I/O layer: one protocol object per connection, no task per connection.

It only moves bytes between sockets and the sans-I/O layers (hub.http for HTTP,
hub.frames for WebSocket frames, hub.cable for sessions), and owns the
process-wide timers, limits, reload and shutdown. A Connection is an asyncio
BufferedProtocol: it runs on hub.loop's epoll loop, or on asyncio's when a broker
(whose client libraries are asyncio's) is configured or epoll is missing.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import struct
import time

from . import frames, http, signing
from .cable import ActionCableSession, Context, NavigatorSession, Policy, disconnect_message
from .config import HubConfig, Overrides, load
from .errors import InputError
from .frames import Binary, Close, FrameParser, HandshakeError, Ping, ProtocolError, Text
from .log import Logger
from .streams import Client, Clients, NestedTooDeep, StreamRegistry, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable
    from typing import Any

    from .loop import Loop

    EventLoop = Loop | asyncio.AbstractEventLoop

NAVIGATOR_PING_SECONDS = 30.0
NAVIGATOR_SILENCE_SECONDS = 60.0
NAVIGATOR_PING = frames.text_frame('{"type":"ping"}')
TEXT_HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
# A plain HTTP connection stops being read while this much of our output waits for its peer
# (asyncio's pause_writing/resume_writing), so pipelined requests cannot queue responses without end.
HTTP_OUTPUT_HIGH_WATER = 65536
HTTP_OUTPUT_LOW_WATER = 16384
# Every connection reads into this one buffer (each read is handled before the next one starts). A plain
# Protocol's read allocates asyncio's 256 KiB per recv, which glibc serves with mmap, mremap and munmap
# once its heap has no such room: three more system calls and a page fault for every message read.
READ_BUFFER_BYTES = 65536
_read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))
# Closing connections are aborted after limits.handshake_timeout_seconds: the peer had that long to
# read what was left for it (the same bound a client has to finish its handshake or answer a close).
_LINGER_RESET = struct.pack("ii", 1, 0)
# Every accepted socket counts: WebSocket upgrades stop at limits.max_connections, and this many more
# are kept for plain HTTP (health checks, broadcasts, metrics); sockets beyond are dropped at once.
SOCKET_RESERVE = 64
# Descriptors beyond the sockets: stdio, the listening socket, the event loop's own, files read on reload.
DESCRIPTOR_MARGIN = 32
# Headers a proxy adds: a broadcast carrying one did not come from a local process, whatever its peer address.
# The standard and de facto ones, then those of Fly.io's proxy, Cloudflare, Akamai, Fastly, Azure Front Door,
# App Engine, DigitalOcean, Envoy and the ingress-nginx controller.
PROXY_HEADERS = frozenset((
    b"forwarded", b"via", b"x-real-ip", b"x-client-ip", b"x-cluster-client-ip", b"true-client-ip",
    b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-ssl",
    b"x-forwarded-server", b"x-forwarded-scheme", b"x-forwarded-prefix", b"x-original-forwarded-for",
    b"fly-client-ip", b"fly-forwarded-port", b"fly-region",
    b"cf-connecting-ip", b"cf-connecting-ipv6", b"cf-ray", b"fastly-client-ip", b"x-azure-clientip",
    b"x-appengine-user-ip", b"do-connecting-ip", b"x-envoy-external-address", b"x-original-host",
))  # fmt: skip
LISTEN_BACKLOG = 1024
# Refused sockets and failed accepts are logged at most once per this many seconds, with a count.
REFUSAL_LOG_SECONDS = 10.0
_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def _is_loopback(peer: Any) -> bool:
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    return host == "::1" or host.startswith("127.") or host.startswith("::ffff:127.")


def client_address(peer: Any, headers: Iterable[tuple[bytes, bytes]], header: bytes) -> str:
    """Who a WebSocket client is, for the per-client limits.

    The peer's address; but a loopback peer is a local proxy (Navigator, which reverse-proxies the
    cable path to the hub), and then the last address in `header` (client_ip_header, lower case):
    Navigator appends the address it accepted the connection from to X-Forwarded-For itself, so a
    client cannot choose it. Only a loopback peer is trusted with the header. An IPv6 address
    stands for its /64, which one host or network holds as a whole.
    """
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    if _is_loopback(peer):
        value = None
        for name, field_value in headers:
            if name == header:
                value = field_value
        if value is not None:
            forwarded = address_key(value.rpartition(b",")[2].decode("latin-1"))
            if forwarded is not None:
                return forwarded
    return address_key(host) or host


def address_key(text: str) -> str | None:
    """An IPv4 address (port dropped), or an IPv6 one as its /64 (IPv4-mapped ones as IPv4); None when `text` is neither."""
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text.partition("%")[0])
    except OSError:
        return None
    if packed.startswith(_IPV4_MAPPED):
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


def raise_descriptor_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted`, never past the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


class HttpState:
    """Only exists until a connection upgrades (or for plain HTTP requests)."""

    __slots__ = ("parser", "request", "body", "body_size", "timer")

    def __init__(self, timer: Any) -> None:
        self.parser = http.RequestParser()
        self.request: http.Request | None = None
        self.body: list[bytes] | None = None
        self.body_size = 0
        self.timer = timer


class Connection:
    """One TCP connection: HTTP until it upgrades, then WebSocket frames."""

    __slots__ = ("hub", "transport", "number", "http", "parser", "session", "client", "seen", "closer", "write_paused", "read_paused")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: Any = None  # hub.loop's transport or asyncio's
        self.number = 0
        self.http: HttpState | None = None
        self.parser: FrameParser | None = None
        # None once the WebSocket is closing: nothing more is delivered to it.
        self.session: ActionCableSession | NavigatorSession | None = None
        self.client: Client | None = None  # once upgraded: counted towards the per-client limits
        self.seen = 0.0
        self.closer: Any = None  # a timer that aborts the transport if closing takes too long
        self.write_paused = False
        self.read_paused = False

    # --- protocol callbacks (asyncio's BufferedProtocol) ----------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        hub = self.hub
        if len(hub.sockets) >= hub.config.limits.max_connections + SOCKET_RESERVE:
            hub.refuse_socket()
            transport.abort()
            return
        hub.opened += 1
        self.number = hub.opened
        hub.sockets.add(self)
        transport.set_write_buffer_limits(HTTP_OUTPUT_HIGH_WATER, HTTP_OUTPUT_LOW_WATER)
        self.http = HttpState(hub.loop.call_later(hub.config.limits.handshake_timeout_seconds, self._handshake_expired))

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.http is not None:
            self._http_received(data)
        elif self.parser is not None:
            self._ws_received(data)

    def eof_received(self) -> bool | None:
        if self.session is not None:
            self._end_session()
        self._close()
        return None  # the transport closes our side too

    def pause_writing(self) -> None:
        """Our peer does not read: a plain HTTP connection is not read either until it does."""
        self.write_paused = True
        if self.http is not None and self.transport is not None and not self.read_paused:
            self.read_paused = True
            self.hub.http_read_pauses += 1
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        transport = self.transport
        if self.read_paused and transport is not None:
            self.read_paused = False
            if not transport.is_closing():
                transport.resume_reading()
            if self.http is not None:
                self._http_process()  # requests already received and not yet answered

    def connection_lost(self, exc: Exception | None) -> None:
        hub = self.hub
        if self not in hub.sockets:
            return  # refused in connection_made
        hub.sockets.discard(self)
        if self.closer is not None:
            self.closer.cancel()
            self.closer = None
        if self.http is not None:
            self.http.timer.cancel()
            self.http = None
        if self.session is not None:
            self._end_session()
        if self.parser is not None:
            hub.log("disconnected", conn=self.number)
            self.parser = None
        hub.connection_gone()

    # --- closing ------------------------------------------------------------------------

    def _close(self) -> None:
        """Close once what is queued is sent, but give a peer that does not read only a bounded time."""
        transport = self.transport
        if transport is None:
            return
        transport.close()
        self._abort_later()

    def _abort_later(self) -> None:
        if self.closer is None:
            self.closer = self.hub.loop.call_later(self.hub.config.limits.handshake_timeout_seconds, self._abort)

    def _abort(self) -> None:
        """Drop the connection and what is queued for it; a reset frees the kernel's copy too."""
        self.closer = None
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        transport.abort()

    # --- HTTP ---------------------------------------------------------------------------

    def _handshake_expired(self) -> None:
        if self.http is not None and self.transport is not None:
            self.hub.log("handshake_timeout", level="warn", conn=self.number)
            self.transport.abort()

    def _http_received(self, data: bytes) -> None:
        http_state = self.http
        assert http_state is not None
        try:
            http_state.parser.receive_data(data)
        except http.BadRequest as error:
            self._bad_request(error)
            return
        self._http_process()

    def _http_process(self) -> None:
        """Handle the requests received, until more data is needed or our peer stops reading."""
        http_state = self.http
        assert http_state is not None
        parser = http_state.parser
        try:
            while self.http is not None:
                if self.write_paused:
                    return  # resume_writing continues from here
                event = parser.next_event()
                if event is http.NEED_DATA or event is http.PAUSED:
                    return
                if isinstance(event, http.Request):
                    self._request_started(http_state, event)
                elif isinstance(event, bytes):
                    if http_state.body is None:
                        continue  # only a broadcast's body is read
                    http_state.body_size += len(event)
                    if http_state.body_size > self.hub.config.limits.max_broadcast_bytes:
                        self.hub.failed_broadcasts += 1
                        self._respond(413, b"broadcast too large\n", close=True)
                        return
                    http_state.body.append(event)
                elif event is http.END_OF_MESSAGE:
                    self._request_complete()
                elif event is http.CLOSED:
                    self._close()
                    return
        except http.BadRequest as error:
            self._bad_request(error)

    def _request_started(self, http_state: HttpState, request: http.Request) -> None:
        http_state.request = request
        is_broadcast = request.target.split(b"?", 1)[0] == self.hub.broadcast_path
        http_state.body = [] if is_broadcast else None
        http_state.body_size = 0
        if is_broadcast:
            self._broadcast_started(request)

    def _bad_request(self, error: http.BadRequest) -> None:
        """Every response is written whole, so a malformed request always finds us before an answer."""
        self.hub.log("bad_request", level="warn", conn=self.number, error=error.reason)
        self._respond(error.status, b"bad request\n", close=True)

    def _broadcast_started(self, request: http.Request) -> None:
        """Refuse from the head alone what must not be read (the body may be large or unwanted)."""
        hub = self.hub
        if request.method != b"POST":
            self._respond(405, b"method not allowed\n", [(b"allow", b"POST")])
            return
        status = hub.broadcast_auth(request.headers, self.transport.get_extra_info("peername"))
        if status:
            hub.failed_broadcasts += 1
            headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            self._respond(status, b"unauthorized\n" if status == 401 else b"forbidden\n", headers, close=True)
            return
        for name, value in request.headers:
            if name == b"content-length" and int(value) > hub.config.limits.max_broadcast_bytes:
                hub.failed_broadcasts += 1
                self._respond(413, b"broadcast too large\n", close=True)
                return

    def _request_complete(self) -> None:
        http_state = self.http
        assert http_state is not None and http_state.request is not None
        request = http_state.request
        hub = self.hub
        path, _, query = request.target.partition(b"?")
        if path == hub.cable_path:
            self._upgrade(request, query)
        elif path == hub.broadcast_path:
            status, body = hub.handle_broadcast(b"".join(http_state.body or ()))
            self._respond(status, body)
        elif request.method not in (b"GET", b"HEAD"):
            self._respond(404, b"not found\n")
        elif path == hub.health_path or path == b"/health":
            self._respond(200, hub.health())
        elif path == b"/metrics":
            self._respond(200, hub.metrics().encode(), [(b"content-type", b"text/plain; version=0.0.4")])
        else:
            self._respond(404, b"not found\n")

    def _respond(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False
    ) -> None:
        """Answer the current request; the connection stays for the next one unless something says it may not:
        the caller; the request (Connection: close; Content-Length with Transfer-Encoding, RFC 9112 6.3; HTTP/1.0,
        which the hub never keeps alive, as h11 did not); or a request answered before it has arrived whole."""
        http_state = self.http
        transport = self.transport
        assert http_state is not None and transport is not None
        all_headers = list(headers or ())
        if not any(name == b"content-type" for name, _ in all_headers):
            all_headers += TEXT_HEADERS
        all_headers.append((b"content-length", str(len(body)).encode()))
        parser = http_state.parser
        request = http_state.request
        close = (
            close or not parser.keep_alive or not parser.request_complete
            or request is None or request.http_version == b"1.0"
        )  # fmt: skip
        if close:
            all_headers.append((b"connection", b"close"))
        head_only = request is not None and request.method == b"HEAD"
        transport.write(http.response(status, all_headers, body, head_only))
        http_state.timer.cancel()
        if close:
            self._close()
            self.http = None
            return
        parser.start_next_cycle()
        http_state.request = None
        http_state.timer = self.hub.loop.call_later(self.hub.config.limits.handshake_timeout_seconds, self._handshake_expired)

    # --- WebSocket ----------------------------------------------------------------------

    def _upgrade(self, request: http.Request, query: bytes) -> None:
        hub = self.hub
        refusal = hub.upgrade_refusal()
        if refusal:
            hub.log("upgrade_refused", level="warn", conn=self.number, why=refusal)
            self._respond(503, (refusal + "\n").encode(), close=True)
            return
        try:
            headers, subprotocol = frames.negotiate(request.method, list(request.headers))
        except HandshakeError as error:
            self._respond(error.status, (error.reason + "\n").encode(), list(error.headers), close=True)
            return
        http_state = self.http
        assert http_state is not None and self.transport is not None
        address = client_address(self.transport.get_extra_info("peername"), request.headers, hub.client_ip_header)
        client = hub.clients.admit(address, hub.config.limits.max_connections_per_client)
        if client is None:
            hub.log("upgrade_refused", level="warn", conn=self.number, why="too many connections from this client", client=address)
            self._respond(429, b"too many connections from this client\n", close=True)
            return
        self.client = client
        transport = self.transport
        response = frames.switching_protocols(headers)
        leftover = http_state.parser.trailing_data
        http_state.timer.cancel()
        self.http = None
        self.parser = FrameParser(hub.config.limits.max_message_bytes)
        ctx = hub.context
        if subprotocol is None:
            self.session = NavigatorSession(ctx, self)
            self.seen = hub.loop.time()
            hub.navigator.add(self)
        else:
            self.session = ActionCableSession(ctx, self, query.decode("latin-1"))
            hub.cable.add(self)
        hub.log("connected", conn=self.number, protocol=subprotocol or "navigator")
        if subprotocol is None:
            transport.write(response)
        else:
            welcome = frames.text_frame(ActionCableSession.welcome(f"{hub.sid_prefix}{self.number:x}"))
            if transport.get_write_buffer_size():
                # Responses to earlier requests still wait for this peer: the welcome meets the slow-client bound.
                transport.write(response)
                self.send_frame(welcome)
            else:
                # Nothing queued, so that bound cannot refuse it: it goes in the 101's write (one send, not two).
                hub.bytes_sent += len(welcome)
                transport.write(response + welcome)
        if leftover:
            self._ws_received(leftover)

    def _ws_received(self, data: bytes) -> None:
        parser = self.parser
        assert parser is not None
        self.seen = self.hub.loop.time()
        try:
            for event in parser.feed(data):
                if isinstance(event, Text):
                    session = self.session
                    if session is not None:
                        for reply in session.receive(event.data):
                            self.send_frame(frames.text_frame(reply))
                elif isinstance(event, Ping):
                    # Under the slow-client policy like any frame: a ping flood from a client
                    # that never reads must not queue pongs without end.
                    self.send_frame(frames.encode_frame(frames.OP_PONG, event.data))
                elif isinstance(event, Close):
                    self._close_received(event)
                elif isinstance(event, Binary):
                    self.hub.log("ignored", conn=self.number, why="binary message")
        except ProtocolError as error:
            self.hub.log("protocol_error", level="warn", conn=self.number, code=error.code, error=error.reason)
            self.close_websocket(error.code, error.reason)
            # Failing the connection (RFC 6455 7.1.7) does not wait for the client's close frame.
            self._close()

    def _close_received(self, event: Close) -> None:
        if self.session is not None:
            self._end_session()
            self._write(frames.close_frame(event.code))
        self._close()

    def _write(self, frame: bytes) -> None:
        """Frames that end a session (a disconnect message, a close frame): at most once per connection,
        so they need no check of the backlog; everything else goes through send_frame."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.hub.bytes_sent += len(frame)
            transport.write(frame)

    def send_frame(self, frame: bytes) -> None:
        """Deliver to an open WebSocket; frames for a closing one are dropped.

        The fan-out hot path: an open session implies an open transport, since every
        path that closes the transport ends the session first. A client is too slow when
        its unsent backlog is already over the limit as a new frame arrives, so one large
        message alone never disconnects a client that keeps up.
        """
        if self.session is not None:
            transport = self.transport
            assert transport is not None
            hub = self.hub
            if transport.get_write_buffer_size() > hub.output_buffer_bytes:
                hub.slow_disconnects += 1
                hub.log("too_slow", level="warn", conn=self.number, buffered=transport.get_write_buffer_size())
                self.close_websocket(frames.CLOSE_GOING_AWAY, "too slow", "too_slow", True)
                return
            hub.bytes_sent += len(frame)
            transport.write(frame)

    def _end_session(self) -> None:
        session = self.session
        assert session is not None and self.client is not None
        self.session = None
        session.close()
        self.hub.clients.release(self.client)
        self.client = None
        self.hub.cable.discard(self)
        self.hub.navigator.discard(self)

    def close_websocket(self, code: int, reason: str, disconnect: str | None = None, reconnect: bool = False) -> None:
        """Start the closing handshake; the client gets a bounded time to answer."""
        session = self.session
        if session is None:
            return
        if disconnect is not None and isinstance(session, ActionCableSession):
            self._write(frames.text_frame(disconnect_message(disconnect, reconnect)))
        self._end_session()
        self._write(frames.close_frame(code, reason))
        self._abort_later()


class Hub:
    """Process-wide state: configuration, registry, connection sets, counters, timers."""

    def __init__(self, config: HubConfig, overrides: Overrides, log: Logger, loop: EventLoop) -> None:
        self.config = config
        self.overrides = overrides
        self.log = log
        self.loop = loop
        self.registry = StreamRegistry(config.limits.max_subscriptions_per_connection, config.limits.max_subscriptions_per_client)
        self.clients = Clients()
        self.context = Context(self._policy(config), self.registry, log)
        self.sockets: set[Connection] = set()
        self.cable: set[Connection] = set()
        self.navigator: set[Connection] = set()
        self.sid_prefix = os.urandom(3).hex() + "-"
        self.opened = 0
        self.broadcasts = 0
        self.deliveries = 0
        self.failed_broadcasts = 0
        self.slow_disconnects = 0
        self.http_read_pauses = 0
        self.refused_sockets = 0
        self.accept_failures = 0
        self._refusals_logged = (0, 0)  # (refused, failed accepts) at the last log line
        self._refusal_log_at = -REFUSAL_LOG_SECONDS
        self.bytes_sent = 0
        self.broker: Any = None  # hub.broker.Broker, imported only when a broker is configured
        self._retiring: set[asyncio.Task[None]] = set()  # brokers replaced by a reload, closing
        self.listeners: list[Any] = []  # what accepts connections: each has close()
        self.stopping = False
        self.stopped = False
        self.on_stopped: Callable[[], None] | None = None  # called once, when the last connection is gone
        self.runs_brokers = True  # False on hub.loop's epoll loop: a broker's client library needs asyncio
        self._last_ping = 0
        self._last_navigator_ping = loop.time()
        self._ping_timer: Any = None
        self._apply_config(config)

    @staticmethod
    def _policy(config: HubConfig) -> Policy:
        return Policy(
            config.public_streams, config.signing_secret, config.channels, navigator_open=config.navigator_protocol == "open"
        )

    def _apply_config(self, config: HubConfig) -> None:
        self.output_buffer_bytes = config.limits.output_buffer_bytes
        self.registry.max_subscriptions_per_connection = config.limits.max_subscriptions_per_connection
        self.registry.max_subscriptions_per_client = config.limits.max_subscriptions_per_client
        self.client_ip_header = config.client_ip_header.lower().encode()
        self.navigator_open = config.navigator_protocol == "open"
        # Navigator with its cable off does not know either path: requests to them fall through to its
        # routes. The policy hub keeps both, to answer 503 on the cable path and to take broadcasts.
        known = config.cable_enabled or not self.navigator_open
        self.cable_path: bytes | None = config.cable_path.encode() if known else None
        self.broadcast_path: bytes | None = config.broadcast_path.encode() if known else None
        self.health_path = config.health_path.encode()
        if self.broker is not None:
            self.broker.max_body_bytes = config.limits.max_broadcast_bytes

    def _check_descriptors(self) -> None:
        """Make room for max_connections, or say once per start or reload why there is none."""
        needed = self.config.limits.max_connections + SOCKET_RESERVE + DESCRIPTOR_MARGIN
        limit = raise_descriptor_limit(needed)
        unlimited = limit == resource.RLIM_INFINITY
        self.descriptor_limit: int | str = "unlimited" if unlimited else limit
        if not unlimited and limit < needed:
            self.log(
                "descriptors_low", level="warn", limit=limit, needed=needed,
                advice="raise the hard open-files limit (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=)"
                " or lower limits.max_connections; until then accepts may fail with EMFILE",
            )  # fmt: skip

    # --- lifecycle -----------------------------------------------------------------------

    def refuse_socket(self) -> None:
        self.refused_sockets += 1
        self._log_refusals()

    def _log_refusals(self) -> None:
        """One line per interval however many sockets are refused or accepts fail (not one per socket)."""
        now = self.loop.time()
        if now - self._refusal_log_at < REFUSAL_LOG_SECONDS:
            return
        self._refusal_log_at = now
        refused, failed = self.refused_sockets - self._refusals_logged[0], self.accept_failures - self._refusals_logged[1]
        self._refusals_logged = (self.refused_sockets, self.accept_failures)
        self.log("sockets_refused", level="warn", refused=refused, accept_failures=failed, open=len(self.sockets))

    def accept_failed(self, error: OSError) -> None:
        """A failed accept (EMFILE, ENFILE, ...): counted, and logged at most once per interval."""
        self.accept_failures += 1
        self._log_refusals()

    def internal_error(self, error: BaseException, what: str) -> None:
        """A bug met at run time: logged with its traceback; the connection it happened on is dropped, the hub goes on."""
        import traceback  # only now: it loads linecache and tokenize

        self.log("internal_error", level="error", where=what, error=f"{type(error).__name__}: {error}",
                 traceback="".join(traceback.format_exception(error)))  # fmt: skip

    def bind(self) -> list[socket.socket]:
        """The listening sockets for config.host and config.port (one per address the host has, as asyncio binds)."""
        self._check_descriptors()
        config = self.config
        sockets = []
        # An ASCII host as bytes: given a str, getaddrinfo encodes it with the idna codec, which imports
        # stringprep and unicodedata for the hub's lifetime.
        host = config.host.encode("ascii") if config.host.isascii() else config.host
        try:
            for family, kind, proto, _, address in socket.getaddrinfo(
                host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        host, port = sockets[0].getsockname()[:2]
        self.log(
            "listening", host=host, port=port, cable_path=config.cable_path, cable_enabled=config.cable_enabled,
            navigator_protocol=config.navigator_protocol, descriptor_limit=self.descriptor_limit,
        )  # fmt: skip
        return sockets

    def started(self, listeners: list[Any]) -> None:
        """Accepting on `listeners`: the timers and the broker start."""
        self.listeners = listeners
        self._schedule_ping()
        self._start_broker()

    def _start_broker(self) -> None:
        if self.config.broker is not None:
            from .broker import Broker  # the client library too only once a broker is configured

            self.broker = Broker(self.config.broker, self.deliver_body, self.log, self.loop, self.config.limits.max_broadcast_bytes)
            self.broker.start()

    async def close_broker(self) -> None:
        if self.broker is not None:
            broker, self.broker = self.broker, None
            await broker.close()
        for closing in tuple(self._retiring):
            await closing

    def _schedule_ping(self) -> None:
        self._ping_timer = self.loop.call_later(self.config.ping_interval_seconds, self._ping)

    def _ping(self) -> None:
        # Action Cable clients compare successive ping values, so they must strictly increase.
        self._last_ping = max(int(time.time()), self._last_ping + 1)
        frame = frames.text_frame('{"type":"ping","message":' + str(self._last_ping) + "}")
        for conn in tuple(self.cable):
            conn.send_frame(frame)
        now = self.loop.time()
        if now - self._last_navigator_ping >= NAVIGATOR_PING_SECONDS:
            self._last_navigator_ping = now
            for conn in tuple(self.navigator):
                if now - conn.seen > NAVIGATOR_SILENCE_SECONDS:
                    self.log("silent_client", conn=conn.number)
                    conn.close_websocket(frames.CLOSE_GOING_AWAY, "no pong")
                else:
                    conn.send_frame(NAVIGATOR_PING)
        self._schedule_ping()

    def reload(self) -> None:
        try:
            config = load(self.config.navigator_path, self.overrides)
        except Exception as error:  # noqa: BLE001 (MemoryError too: whatever the new files do, the running hub keeps its configuration)
            why = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}".removesuffix(": ")
            self.log("reload_failed", level="error", error=why)
            return
        old = self.config
        if (config.host, config.port) != (old.host, old.port):
            self.log("reload_listen_ignored", level="warn", why="changing the listen address needs a restart")
            config = config.replace(host=old.host, port=old.port)
        if config.broker is not None and not self.runs_brokers:
            self.log("reload_broker_ignored", level="warn", why="this hub started without a broker: adding one needs a restart")
            config = config.replace(broker=None)
        self.config = config
        self.context.policy = self._policy(config)
        self._apply_config(config)
        if config.limits.max_connections != old.limits.max_connections:
            self._check_descriptors()
        if config.ping_interval_seconds != old.ping_interval_seconds and self._ping_timer is not None:
            self._ping_timer.cancel()
            self._schedule_ping()
        self.log("reloaded", cable_enabled=config.cable_enabled, cable_path=config.cable_path, navigator_protocol=config.navigator_protocol)
        if config.broker != old.broker:
            if self.broker is not None:
                retired, self.broker = self.broker, None
                closing = retired.retire()  # delivers locally what was on its way, then closes
                self._retiring.add(closing)
                closing.add_done_callback(self._retiring.discard)
            self._start_broker()
        if old.cable_enabled and not config.cable_enabled:
            self._disconnect_all(frames.CLOSE_GOING_AWAY, "cable disabled", "remote", reconnect=False)
        else:
            self._revoke_forbidden_subscriptions()

    def _revoke_forbidden_subscriptions(self) -> None:
        """After a reload, what the new policy refuses stops receiving.

        Navigator's protocol cannot tell a client: its refused streams are just unregistered and its
        other streams keep flowing. Action Cable cannot unsubscribe a client either, so a connection
        holding a refused subscription is disconnected with reconnect: true; the client then
        resubscribes and gets reject_subscription for what the new policy refuses.
        """
        dropped = 0
        revoked = 0
        for conn in tuple(self.navigator):
            if isinstance(conn.session, NavigatorSession):
                dropped += conn.session.drop_forbidden()
        for conn in tuple(self.cable):
            if isinstance(conn.session, ActionCableSession) and conn.session.has_forbidden_subscriptions():
                conn.close_websocket(frames.CLOSE_GOING_AWAY, "policy changed", "policy_changed", reconnect=True)
                revoked += 1
        if dropped or revoked:
            self.log("subscriptions_revoked", navigator_streams=dropped, cable_connections=revoked)

    def _disconnect_all(self, code: int, reason: str, disconnect: str, reconnect: bool) -> None:
        for conn in tuple(self.cable | self.navigator):
            conn.close_websocket(code, reason, disconnect, reconnect)

    def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.log("shutting_down", connections=len(self.cable) + len(self.navigator))
        for listener in self.listeners:
            listener.close()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        self._disconnect_all(frames.CLOSE_GOING_AWAY, "server restart", "server_restart", reconnect=True)
        for conn in tuple(self.sockets):
            if conn.http is not None and conn.transport is not None:
                conn._close()
        self.loop.call_later(self.config.limits.shutdown_timeout_seconds, self._force_stop)
        self.connection_gone()

    def connection_gone(self) -> None:
        if self.stopping and not self.sockets:
            self._stop()

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            if self.on_stopped is not None:
                self.on_stopped()

    def _force_stop(self) -> None:
        for conn in tuple(self.sockets):
            if conn.transport is not None:
                conn.transport.abort()
        if not self.stopped:
            self.log("shutdown_timeout", level="warn", aborted=len(self.sockets))
            self._stop()

    # --- policies used by connections -------------------------------------------------------

    def upgrade_refusal(self) -> str:
        if self.stopping:
            return "shutting down"
        if not self.config.cable_enabled:
            return "cable disabled"
        if len(self.cable) + len(self.navigator) >= self.config.limits.max_connections:
            return "too many connections"
        return ""

    def broadcast_auth(self, headers: Iterable[tuple[bytes, bytes]], peer: Any) -> int:
        """0 when the broadcast may proceed, else the HTTP status refusing it."""
        key = self.config.broadcast_key
        if key is None:
            # Behind a proxy the peer is the proxy; loopback then says nothing about the sender.
            proxied = any(name in PROXY_HEADERS for name, _ in headers)
            return 0 if _is_loopback(peer) and not proxied else 403
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and signing.same_secret(token.strip(), key):
                    return 0
        return 401

    def handle_broadcast(self, body: bytes) -> tuple[int, bytes]:
        # Navigator decodes one object; an array does not fit it.
        items = broadcast_items(body, batch=not self.navigator_open)
        if isinstance(items, str):
            self.failed_broadcasts += 1
            return 400, (items + "\n").encode()
        self.broadcasts += len(items)
        # With a broker, every hub (this one included) delivers it when it comes back from the broker.
        if self.broker is None or not self.broker.share(body, len(items)):
            self._deliver(items)
        return (200, b"") if self.navigator_open else (201, b"")

    def _deliver(self, items: list[dict[str, Any]]) -> None:
        """One log line per request, however many broadcasts it holds."""
        delivered = 0
        for item in items:
            delivered += self.registry.broadcast(item["stream"], item.get("data"))
        self.deliveries += delivered
        if len(items) == 1:
            self.log("broadcast", stream=items[0]["stream"], delivered=delivered)
        else:
            self.log("broadcast", items=len(items), streams=len({item["stream"] for item in items}), delivered=delivered)

    def deliver_body(self, body: bytes) -> str:
        """A broadcast request's body from the broker (any hub's): "" once delivered, else why it is not one."""
        items = broadcast_items(body)
        if isinstance(items, str):
            return items
        self._deliver(items)
        return ""

    def health(self) -> bytes:
        """200 either way: a hub whose broker is away still serves its own clients."""
        return b"degraded: broker unreachable" if self.broker is not None and not self.broker.connected else b"OK"

    def metrics(self) -> str:
        rows = [
            ("hub_connections", "gauge", "Open WebSocket connections.", len(self.cable) + len(self.navigator)),
            ("hub_subscriptions", "gauge", "Active stream subscriptions.", self.registry.subscriptions),
            ("hub_streams", "gauge", "Streams with at least one subscriber.", self.registry.stream_count),
            ("hub_clients", "gauge", "Clients (addresses, an IPv6 one by its /64) with an open WebSocket.", len(self.clients)),
            ("hub_broadcasts_total", "counter", "Broadcast messages accepted.", self.broadcasts),
            ("hub_broadcast_deliveries_total", "counter", "Broadcast frames written to clients.", self.deliveries),
            ("hub_failed_broadcasts_total", "counter", "Broadcast requests refused.", self.failed_broadcasts),
            ("hub_slow_client_disconnects_total", "counter", "Clients disconnected as too slow.", self.slow_disconnects),
            ("hub_rejected_subscriptions_total", "counter", "Subscriptions refused (policy, limits, malformed identifiers).", self.context.rejected_subscriptions),
            ("hub_bytes_sent_total", "counter", "WebSocket bytes written to clients.", self.bytes_sent),
            ("hub_refused_sockets_total", "counter", "Sockets dropped at accept: max_connections plus the reserve were open.", self.refused_sockets),
            ("hub_accept_failures_total", "counter", "Failed accepts (such as running out of descriptors).", self.accept_failures),
            ("hub_sockets", "gauge", "Accepted TCP connections, plain HTTP and closing ones included.", len(self.sockets)),
            ("hub_http_read_pauses_total", "counter", "Times a plain HTTP connection stopped being read because its peer did not read.", self.http_read_pauses),
        ]
        if self.broker is not None:
            rows += self.broker.metric_rows()
        return "".join(f"# HELP {n} {h}\n# TYPE {n} {t}\n{n} {v}\n" for n, t, h, v in rows)


def broadcast_items(body: bytes, batch: bool = True) -> list[dict[str, Any]] | str:
    """The broadcasts of a request's body (one object, or with `batch` an array of them), or why there are none.

    JSON nested more deeply than hub.streams.MAX_JSON_DEPTH is refused here, before the broker
    or any subscriber sees it: whatever passes can be encoded for subscribers.
    """
    try:
        doc = loads(body)
    except NestedTooDeep as error:
        return str(error)
    except ValueError:
        return "invalid JSON"
    if isinstance(doc, list) and not batch:
        return "invalid JSON"
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) and isinstance(i.get("stream"), str) and i["stream"] for i in items):
        return "each broadcast needs a stream"
    return items


def serve(config: HubConfig, overrides: Overrides, log: Logger) -> None:
    """Run the hub until SIGTERM or SIGINT has closed its connections.

    On hub.loop's epoll loop, unless a broker is configured (its client libraries run on asyncio)
    or the platform has no epoll: then on asyncio's.
    """
    if config.broker is None and hasattr(select, "epoll"):
        _serve_on_epoll(config, overrides, log)
    else:
        import asyncio

        asyncio.run(_serve_on_asyncio(config, overrides, log))
    log("stopped")
    log.flush()


def _serve_on_epoll(config: HubConfig, overrides: Overrides, log: Logger) -> None:
    from .loop import Loop

    loop = Loop()
    try:
        hub = Hub(config, overrides, log, loop)
        hub.runs_brokers = False
        loop.on_error = hub.internal_error
        hub.on_stopped = loop.stop
        hub.started([loop.serve(sock, lambda: Connection(hub), hub.accept_failed) for sock in hub.bind()])
        _handle_signals(loop, hub)
        log.schedule = loop.call_soon
        loop.run()
    finally:
        log.schedule = None
        log.flush()
        loop.close()


async def _serve_on_asyncio(config: HubConfig, overrides: Overrides, log: Logger) -> None:
    import asyncio

    class AsyncioConnection(Connection, asyncio.BufferedProtocol):
        """asyncio's transports call get_buffer/buffer_updated only for a BufferedProtocol subclass."""

        __slots__ = ()

    def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio logs a traceback for every failed accept (EMFILE, ENFILE, ...): count them instead."""
        error = context.get("exception")
        if isinstance(error, OSError) and "accept" in str(context.get("message", "")):
            hub.accept_failed(error)
        else:
            loop.default_exception_handler(context)

    loop = asyncio.get_running_loop()
    hub = Hub(config, overrides, log, loop)
    stopped = loop.create_future()
    hub.on_stopped = lambda: stopped.set_result(None)
    loop.set_exception_handler(exception_handler)
    servers = []
    for sock in hub.bind():
        servers.append(await loop.create_server(lambda: AsyncioConnection(hub), sock=sock, backlog=LISTEN_BACKLOG))
    hub.started(servers)
    _handle_signals(loop, hub)
    log.schedule = loop.call_soon
    try:
        await stopped
        await hub.close_broker()
    finally:
        log.schedule = None


def _handle_signals(loop: EventLoop, hub: Hub) -> None:
    loop.add_signal_handler(signal.SIGHUP, hub.reload)
    loop.add_signal_handler(signal.SIGTERM, hub.shutdown)
    loop.add_signal_handler(signal.SIGINT, hub.shutdown)
