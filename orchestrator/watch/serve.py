"""`orchestrate status --serve`: the live page on 127.0.0.1, read-only, until SIGTERM or SIGINT.

GET (or HEAD) `/` is the page (orchestrator.watch.live_page), `/state.json` the
journal as the page shows it (orchestrator.watch.live_state), read afresh at most
once every STATE_SECONDS and by one request at a time, however many ask at once.
Any other method is refused (405): nothing here changes anything.

It listens on the loopback address only, and still trusts no peer: a request's
head (its request line and headers; no body is ever read) must arrive whole within
HEAD_SECONDS and HEAD_BYTES, however slowly it comes; each write of the answer (its
head, then its body) completes within WRITE_SECONDS; a connection carries one request; at most MAX_CONNECTIONS are served
at once, and the ones beyond are closed unanswered. A request must name this
address in its Host header (else 421), so that a web site that points its own name
at 127.0.0.1 (DNS rebinding) cannot read the journal through a visitor's browser.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import InputError
from orchestrator.model import Inventory
from orchestrator.rollout.journal import iso_z, utc_now
from orchestrator.rollout.model import RegionKey
from orchestrator.watch.command import stopping_on_signals, say
from orchestrator.watch.live_page import CONTENT_SECURITY_POLICY, PAGE
from orchestrator.watch.live_state import read_live_state

LOOPBACK = "127.0.0.1"
HEAD_BYTES = 16 * 1024
HEAD_SECONDS = 10.0
WRITE_SECONDS = 10.0
MAX_CONNECTIONS = 16
# /state.json is made from the journal at most this often, the requests in between answered with the same.
STATE_SECONDS = 1.0

PAGE_BYTES = PAGE.encode("utf-8")
# On every answer, the error pages http.server writes included.
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)

State = Callable[[], dict[str, Any]]


def serve_live_page(inventory: Inventory, state_dir: Path, keys: Sequence[RegionKey], port: int) -> int:
    """Serve the live page of `keys` until SIGTERM or SIGINT (exit status 0)."""
    try:
        server = LiveServer(port, lambda: read_live_state(state_dir, inventory, keys, utc_now()))
    except OSError as error:
        raise InputError([f"--port {port}: cannot listen on {LOOPBACK}:{port}: {error.strerror or error} "
                          "(choose another --port, or --port 0 for any free one)"]) from error
    stop = threading.Event()
    stopped_by: list[str] = []
    thread = threading.Thread(target=server.serve_forever, name="live-page", daemon=True)
    with stopping_on_signals(stop, stopped_by):
        thread.start()
        try:
            say(f"the live page of {inventory.name}: {server.url} (read-only; SIGTERM or Ctrl-C stops it)")
            stop.wait()
        finally:
            server.shutdown()
            server.server_close()
    say(f"{iso_z(utc_now())} the live page stopped by {stopped_by[0]}")
    return 0


class HeadTooLarge(http.client.HTTPException):
    """The request's head is over the bound."""


class RequestHead:
    """The reading side of a connection, for a request's head: at most `most` bytes, all of them before `deadline`
    (time.monotonic()) however slowly they come. The socket's timeout is `write_seconds` again after each read."""

    def __init__(self, connection: socket.socket, most: int, deadline: float, write_seconds: float) -> None:
        self._connection = connection
        self._left = most
        self._deadline = deadline
        self._write_seconds = write_seconds
        self._pending = b""

    def readline(self, limit: int = -1) -> bytes:
        while b"\n" not in self._pending:
            if len(self._pending) >= self._left:
                raise HeadTooLarge
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._connection.settimeout(remaining)
            try:
                chunk = self._connection.recv(self._left - len(self._pending))
            finally:
                self._connection.settimeout(self._write_seconds)
            if not chunk:
                break
            self._pending += chunk
        end = self._pending.find(b"\n") + 1 or len(self._pending)
        if 0 <= limit < end:
            end = limit
        line, self._pending = self._pending[:end], self._pending[end:]
        self._left -= len(line)
        return line

    def close(self) -> None:
        self._pending = b""


class LiveServer(ThreadingHTTPServer):
    """The live page's HTTP server on 127.0.0.1:`port` (0: any free port), listening once made."""

    daemon_threads = True

    def __init__(self, port: int, state: State, *, head_bytes: int = HEAD_BYTES, head_seconds: float = HEAD_SECONDS,
                 write_seconds: float = WRITE_SECONDS, max_connections: int = MAX_CONNECTIONS,
                 state_seconds: float = STATE_SECONDS) -> None:
        self.state = state
        self.state_seconds = state_seconds
        self._state_lock = threading.Lock()
        self._state_json: tuple[float, bytes] | None = None  # (when it was made, time.monotonic(); the JSON)
        self.head_bytes = head_bytes
        self.head_seconds = head_seconds
        self.write_seconds = write_seconds
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((LOOPBACK, port), LiveHandler)
        self.hosts = {f"{LOOPBACK}:{self.port}", f"localhost:{self.port}"}

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def state_json(self) -> bytes:
        """/state.json's body: the journal read once per `state_seconds` at most, by one request at a time."""
        with self._state_lock:
            if self._state_json is None or time.monotonic() - self._state_json[0] >= self.state_seconds:
                body = json.dumps(self.state(), separators=(",", ":")).encode()
                self._state_json = (time.monotonic(), body)
            return self._state_json[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # as many as allowed are being served: this one is closed unanswered
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a peer that went away or stalled: nothing to report
        super().handle_error(request, client_address)


class LiveHandler(BaseHTTPRequestHandler):
    server: LiveServer
    server_version = "orchestrate-live-page"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = RequestHead(self.connection, self.server.head_bytes,  # type: ignore[assignment]
                                 time.monotonic() + self.server.head_seconds, self.server.write_seconds)
        self.connection.settimeout(self.server.write_seconds)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except HeadTooLarge:  # the request line alone is over the bound: no request to answer
            self.close_connection = True

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.close_connection = True  # one request per connection, whatever the client asked
        if self.command not in ("GET", "HEAD"):
            self._answer(405, b"the live page is read-only: GET and HEAD only\n", headers=(("Allow", "GET, HEAD"),))
            return False
        if (self.headers.get("Host") or "").lower() not in self.server.hosts:
            self._answer(421, f"ask for {self.server.url}\n".encode())
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/":
            self._answer(200, PAGE_BYTES, "text/html; charset=utf-8")
        elif path == "/state.json":
            self._answer(200, self.server.state_json(), "application/json")
        else:
            self._answer(404, b"not found: the live page is / and its data /state.json\n")

    do_HEAD = do_GET  # noqa: N815 (_answer leaves the body out)

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's naming)
        pass  # no access log: the page asks every few seconds
