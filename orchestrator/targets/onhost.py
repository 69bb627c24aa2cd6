"""Probes that run on a region's own host or machine, with python3's standard library only.

Navigator accepts broadcasts only from loopback, memory is read from the host's
/proc, and on Fly only a probe run on the machine itself knows which machine
answered. So the ssh target runs these on its hosts and the fly target on each
machine, as `python3 -c <program()> COMMAND ARGS...`: `program()` is this
module's source and the one it imports (hub/signing.py), loaded by a few lines
of bootstrap, so a host needs nothing but python3.

    publish KIND URL STREAM DATA_JSON KEY_ENV SECRET_ENV TIMEOUT
    memory PID_FILE
    files PATH...
    http URL TIMEOUT
    metrics URL TIMEOUT
    websocket URL PROTOCOL OPEN TIMEOUT SIGNING_ENV KIND BROADCAST_URL KEY_ENV SECRET_ENV

`publish` prints what answered, `memory` {process: resident bytes}, `files`
{path: text, or null for a missing file} and `metrics` the cable server's
unlabelled counters and gauges {name: value}; they exit 1 with the reason on failure. `http` and `websocket` print one JSON
object {"ok", "evidence"} and exit 0 whatever they observed: the verdict is in
the output, never in an exit status (flyctl does not pass remote statuses on).

Publishing: KIND is "http" (Navigator's built-in cable or the hub: {"stream",
"data": <data>}), "anycable" (anycable-go's HTTP broadcaster: {"stream", "data":
"<data as JSON text>"}, keyed) or "redis" (Action Cable's redis adapter:
PUBLISH <stream> <data as JSON text>). Keys and secrets are read from the
environment variables named, never passed as arguments.

The two WebSocket round trips (`navigator_round_trip`, `actioncable_round_trip`)
are written against a `Channel` (send a text, receive a JSON object), so the
rollout's own gates run the very same exchange over their client library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import struct
import sys
import time
import urllib.parse
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

from hub.signing import sign

# The probe's own messages are tiny; anything near this is not the probe's and is refused unread.
MAX_MESSAGE_BYTES = 65536
MAX_RESPONSE_HEAD_BYTES = 16384
# A configuration file larger than this is not one of ours.
MAX_FILE_BYTES = 4 * 1024 * 1024
# The hub's /metrics is a few kilobytes.
MAX_METRICS_BYTES = 256 * 1024
ACTION_CABLE_SUBPROTOCOL = "actioncable-v1-json"
TURBO_CHANNEL = "Turbo::StreamsChannel"
PROBE_STREAM_PREFIX = "orchestrate-probe-"
EXCERPT_CHARS = 80
WANTED_PROCESSES = ("redis-server", "puma", "anycable-go", "nats-server")
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Publish = Callable[[str, str], None]


class ProbeFailed(Exception):
    """Ends a probe; its one argument is the evidence, safe to show (no secret, no signed name)."""

    @property
    def evidence(self) -> str:
        return str(self.args[0])


class Channel(Protocol):
    def send(self, text: str) -> None: ...

    def receive(self, waiting_for: str) -> dict[str, Any]:
        """The next JSON object from the server; ProbeFailed when none comes in time."""
        ...


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def type_of(message: dict[str, Any]) -> str:
    kind = message.get("type")
    return excerpt(repr(kind)) if isinstance(kind, str) else "none"


def milliseconds_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


# --- the round trips ---------------------------------------------------------------------------


def navigator_round_trip(channel: Channel, stream: str, data: Any, data_json: str, publish: Publish) -> None:
    """Navigator's protocol: subscribe, be confirmed, publish, receive exactly that message."""
    channel.send(json.dumps({"type": "subscribe", "stream": stream}))
    waiting_for = "subscription confirmation for the probe stream"
    message = _next(channel, waiting_for)
    if message.get("type") != "subscribed" or message.get("stream") != stream:
        raise ProbeFailed(f"unexpected message of type {type_of(message)} while waiting for {waiting_for}")
    publish(stream, data_json)
    message = _next(channel, "probe")
    if message.get("type") != "message" or message.get("stream") != stream:
        raise ProbeFailed(f"unexpected message of type {type_of(message)} while waiting for probe")
    if "data" not in message or message["data"] != data:
        got = json.dumps(message.get("data")) if "data" in message else "no data"
        raise ProbeFailed(f"probe stream delivered different data: {excerpt(got)}")


def actioncable_round_trip(
    channel: Channel, stream: str, data: Any, data_json: str, publish: Publish, secret: bytes
) -> None:
    """Action Cable: welcome, a signed Turbo::StreamsChannel subscription confirmed, publish, that message."""
    identifier = json.dumps({"channel": TURBO_CHANNEL, "signed_stream_name": sign(stream, secret)})

    def describe(message: dict[str, Any], waiting_for: str) -> str:
        # Never the identifier itself: it carries the signed name.
        if message.get("type") == "disconnect":
            reason = message.get("reason")
            why = excerpt(reason) if isinstance(reason, str) else "none given"
            return f"server sent disconnect (reason {why}) while waiting for {waiting_for}"
        whose = ""
        if "identifier" in message:
            whose = " for the probe subscription" if message["identifier"] == identifier else " for another subscription"
        return f"unexpected message of type {type_of(message)}{whose} while waiting for {waiting_for}"

    message = _next(channel, "welcome")
    if message.get("type") != "welcome":
        raise ProbeFailed(describe(message, "welcome"))
    channel.send(json.dumps({"command": "subscribe", "identifier": identifier}))
    waiting_for = "subscription confirmation for the probe stream"
    message = _next(channel, waiting_for)
    ours = message.get("identifier") == identifier
    if ours and message.get("type") == "reject_subscription":
        raise ProbeFailed(f"{TURBO_CHANNEL} subscription to the probe stream rejected (reject_subscription)")
    if not (ours and message.get("type") == "confirm_subscription"):
        raise ProbeFailed(describe(message, waiting_for))
    publish(stream, data_json)
    message = _next(channel, "probe")
    while message.get("type") == "confirm_subscription" and message.get("identifier") == identifier:
        message = _next(channel, "probe")  # a repeated confirmation is harmless
    if message.get("identifier") != identifier or "message" not in message or "type" in message:
        raise ProbeFailed(describe(message, "probe"))
    if message["message"] != data:
        raise ProbeFailed(f"probe stream delivered different data: {excerpt(json.dumps(message['message']))}")


def _next(channel: Channel, waiting_for: str) -> dict[str, Any]:
    """The next message that is not a ping."""
    while True:
        message = channel.receive(waiting_for)
        if message.get("type") != "ping":
            return message


def json_object(text: str, waiting_for: str) -> dict[str, Any]:
    """A received text as the JSON object it must be; ProbeFailed when it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        message = None
    if not isinstance(message, dict):
        raise ProbeFailed(f"unexpected message that is not a JSON object while waiting for {waiting_for}")
    return message


def probe_payload() -> tuple[str, Any, str]:
    """A unique probe stream, its message and the message as JSON text."""
    data = {"probe": secrets.token_hex(8)}
    return f"{PROBE_STREAM_PREFIX}{secrets.token_hex(8)}", data, json.dumps(data)


# --- publishing --------------------------------------------------------------------------------


def publish(kind: str, url: str, stream: str, data_json: str, key_env: str, secret_env: str, timeout: float) -> str:
    """Post one broadcast where the region's Rails app would; what answered, or ProbeFailed saying why."""
    if kind == "redis":
        return _publish_redis(url, stream, data_json, timeout)
    body = {"stream": stream, "data": data_json if kind == "anycable" else json.loads(data_json)}
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(key_env) if key_env else None
    if not key and kind == "anycable" and secret_env and os.environ.get(secret_env):
        # anycable-go derives its broadcast key from the secret.
        key = hmac.new(os.environ[secret_env].encode(), b"broadcast-cable", hashlib.sha256).hexdigest()
    if key:
        headers["Authorization"] = "Bearer " + key
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("POST", parts.path or "/", json.dumps(body).encode(), headers)
        status = connection.getresponse().status
    except OSError as error:
        raise ProbeFailed(f"POST {url}: {error}") from None
    finally:
        connection.close()
    if status >= 300:
        hint = f" (is {key_env} set on this host?)" if status in (401, 403) and key_env and not key else ""
        raise ProbeFailed(f"POST {url} answered {status}{hint}")
    return str(status)


def _publish_redis(url: str, stream: str, data_json: str, timeout: float) -> str:
    parts = urllib.parse.urlsplit(url)

    def encode(*words: bytes) -> bytes:
        return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)

    host, port = parts.hostname or "localhost", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            replies = connection.makefile("rb")
            if parts.password:
                auth = [parts.username, parts.password] if parts.username else [parts.password]
                connection.sendall(encode(b"AUTH", *(urllib.parse.unquote(word).encode() for word in auth)))
                if not replies.readline(256).startswith(b"+"):
                    raise ProbeFailed("redis AUTH refused")
            connection.sendall(encode(b"PUBLISH", stream.encode(), data_json.encode()))
            reply = replies.readline(256).decode(errors="replace").strip()
    except OSError as error:
        raise ProbeFailed(f"PUBLISH to {host}:{port}: {error}") from None
    if not reply.startswith(":"):
        raise ProbeFailed(f"PUBLISH answered {excerpt(reply)}")
    return f"published to {reply[1:]} subscribers"


# --- memory ------------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode(errors="replace")


def _resident(pid: int) -> int | None:
    try:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _process_name(pid: int) -> str | None:
    try:
        words = _read(f"/proc/{pid}/cmdline").replace("\0", " ").split()
    except OSError:
        return None
    if words[1:3] == ["-m", "hub"]:
        return "cable-hub"
    for word in words[:4]:
        base = os.path.basename(word)
        for wanted in WANTED_PROCESSES:
            if base == wanted or base.startswith(wanted + ":"):
                return wanted
    return None


def memory(pid_file: str) -> dict[str, int]:
    """Resident bytes of the front (the pid in `pid_file`) and of its descendants that are cable servers or Redis."""
    try:
        front = int(_read(pid_file).split()[0])
    except (OSError, ValueError, IndexError) as error:
        raise ProbeFailed(f"cannot read the front's pid from {pid_file}: {error}") from None
    size = _resident(front)
    if size is None:
        raise ProbeFailed(f"the front (pid {front} from {pid_file}) is not running")
    sizes = {"front": size}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = _read(f"/proc/{entry}/stat")
            except OSError:
                continue
            parent = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    todo = list(children.get(front, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        name, size = _process_name(pid), _resident(pid)
        if name and size is not None:
            sizes[name] = sizes.get(name, 0) + size
    return sizes


def read_files(paths: list[str]) -> dict[str, str | None]:
    """Each file's text, or None when it does not exist."""
    found: dict[str, str | None] = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            found[path] = None
            continue
        except OSError as error:
            raise ProbeFailed(f"cannot read {path}: {error.strerror or error}") from None
        if len(data) > MAX_FILE_BYTES:
            raise ProbeFailed(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        found[path] = data.decode("utf-8", errors="replace")
    return found


# --- HTTP and WebSocket, observed from the host ------------------------------------------------


def http_probe(url: str, timeout: float) -> tuple[bool, str]:
    """GET `url`; ok on 200. Redirects are not followed and the body is not read."""
    started = time.monotonic()
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        status = connection.getresponse().status
    except TimeoutError:
        return False, f"GET {url}: no answer within {timeout:g} s"
    except OSError as error:
        return False, f"GET {url}: cannot connect ({excerpt(error.strerror or str(error))})"
    except http.client.HTTPException as error:
        return False, f"GET {url}: {type(error).__name__}: {excerpt(str(error))}"
    finally:
        connection.close()
    return status == 200, f"GET {url}: {status} in {milliseconds_since(started)} ms"


def metrics(url: str, timeout: float) -> dict[str, float]:
    """The unlabelled samples of the Prometheus text at `url` (the hub's /metrics), {name: value}. The whole
    answer is read within `timeout` and MAX_RESPONSE_HEAD_BYTES + MAX_METRICS_BYTES, however the peer drips it:
    an HTTP/1.0 GET, so the body ends when the peer closes, never chunked."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout
    received = bytearray()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            while len(received) <= MAX_RESPONSE_HEAD_BYTES + MAX_METRICS_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    except TimeoutError:
        raise ProbeFailed(f"GET {url}: no answer within {timeout:g} s") from None
    except OSError as error:
        raise ProbeFailed(f"GET {url}: cannot connect ({excerpt(error.strerror or str(error))})") from None
    head, blank, body = bytes(received).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ")[1:2] if blank and len(head) <= MAX_RESPONSE_HEAD_BYTES else []
    if status != [b"200"]:
        shown = excerpt(status[0].decode(errors="replace")) if status else "no HTTP response head"
        raise ProbeFailed(f"GET {url}: {shown}")
    if len(body) > MAX_METRICS_BYTES:
        raise ProbeFailed(f"GET {url}: more than {MAX_METRICS_BYTES} bytes")
    return parse_metrics(body.decode(errors="replace"))


def parse_metrics(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) != 2 or line.startswith("#") or "{" in words[0]:
            continue
        try:
            value = float(words[1])
        except ValueError:
            continue
        if value == value and abs(value) != float("inf"):  # NaN and infinities say nothing to a rule
            found[words[0]] = value
    return found


class UpgradeRefused(Exception):
    """The server answered the WebSocket handshake with this HTTP status."""


class Closed(Exception):
    """The server closed the connection (a close frame, or none)."""


class WebSocket:
    """A minimal client connection: text messages only, every read within the deadline, messages bounded."""

    def __init__(self, url: str, subprotocol: str | None, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.subprotocol: str | None = None
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=self._left())
        try:
            self._handshake(parts, subprotocol)
        except BaseException:
            self.sock.close()
            raise

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _handshake(self, parts: urllib.parse.SplitResult, subprotocol: str | None) -> None:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                 f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            self.sock.settimeout(self._left())
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed("connection closed by the server during the handshake")
            head += chunk
            if len(head) > MAX_RESPONSE_HEAD_BYTES:
                raise ProbeFailed("handshake response too large")
        head, _, self.buffer = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        words = status_line.split(" ", 2)
        status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        if status != 101:
            raise UpgradeRefused(status)
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WEBSOCKET_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ProbeFailed("the server's Sec-WebSocket-Accept does not match the key")
        self.subprotocol = headers.get("sec-websocket-protocol")

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.sock.settimeout(self._left())
            chunk = self.sock.recv(max(4096, count - len(self.buffer)))
            if not chunk:
                raise Closed("connection closed by the server without a close frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.settimeout(self._left())
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def receive_text(self) -> str:
        """The next text message; pings are answered, pongs skipped; a close frame raises Closed."""
        parts: list[bytes] = []
        size = 0
        while True:
            first, second = self._exactly(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._exactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._exactly(8))
            if second & 0x80:
                raise ProbeFailed("the server sent a masked frame")
            if size + length > MAX_MESSAGE_BYTES:
                raise ProbeFailed(f"a message over {MAX_MESSAGE_BYTES} bytes, not the probe's")
            payload = self._exactly(length)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode(errors="replace")
                raise Closed(f"connection closed by the server (code {code}{' ' + excerpt(reason) if reason else ''})")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x2:
                raise ProbeFailed("unexpected binary message")
            parts.append(payload)
            size += length
            if first & 0x80:
                return b"".join(parts).decode(errors="replace")

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self._send_frame(0x8, struct.pack("!H", 1000))
        except (OSError, TimeoutError):
            pass
        self.sock.close()


class _SocketChannel:
    def __init__(self, websocket: WebSocket, timeout: float) -> None:
        self.websocket = websocket
        self.timeout = timeout

    def send(self, text: str) -> None:
        self.websocket.send(text)

    def receive(self, waiting_for: str) -> dict[str, Any]:
        try:
            return json_object(self.websocket.receive_text(), waiting_for)
        except TimeoutError:
            raise ProbeFailed(f"{waiting_for} not received within {self.timeout:g} s") from None


def websocket_probe(
    url: str, protocol: str, expect_open: bool, timeout: float, signing_env: str, publish_to: tuple[str, str, str, str]
) -> tuple[bool, str]:
    """With `expect_open`, a probe published through `publish_to` (kind, url, key_env, secret_env)
    arrives at `url` over `protocol`; without, `url` refuses the WebSocket upgrade."""
    started = time.monotonic()
    deadline = started + timeout
    subprotocol = ACTION_CABLE_SUBPROTOCOL if protocol == "actioncable" else None
    secret = os.environ.get(signing_env, "") if signing_env else ""
    if expect_open and protocol == "actioncable" and not secret:
        return False, f"environment variable {signing_env or '(none named)'} (the actioncable probe's signing secret) is not set here"
    try:
        websocket = WebSocket(url, subprotocol, deadline)
    except UpgradeRefused as refused:
        status = refused.args[0]
        return (not expect_open), (f"upgrade refused: HTTP {status}" if not expect_open
                                   else f"{url} refused the upgrade: HTTP {status}")
    except ConnectionRefusedError:
        return (not expect_open), ("upgrade refused: connection refused" if not expect_open
                                   else f"cannot connect to {url}: connection refused")
    except TimeoutError:
        return False, f"no answer to the WebSocket upgrade at {url} within {timeout:g} s"
    except (ProbeFailed, Closed) as error:
        return False, str(error.args[0])
    except OSError as error:
        return False, f"cannot connect to {url}: {excerpt(error.strerror or str(error))}"
    try:
        if not expect_open:
            return False, "cable path still accepts WebSocket upgrades"
        if protocol == "actioncable" and websocket.subprotocol != ACTION_CABLE_SUBPROTOCOL:
            return False, f"server did not accept the {ACTION_CABLE_SUBPROTOCOL} subprotocol"
        kind, broadcast_url, key_env, secret_env = publish_to

        def publish_probe(stream: str, data_json: str) -> None:
            try:
                publish(kind, broadcast_url, stream, data_json, key_env, secret_env, max(0.1, deadline - time.monotonic()))
            except ProbeFailed as failed:
                raise ProbeFailed(f"publish failed: {failed.evidence}") from None

        stream, data, data_json = probe_payload()
        channel = _SocketChannel(websocket, timeout)
        if protocol == "actioncable":
            actioncable_round_trip(channel, stream, data, data_json, publish_probe, secret.encode())
        else:
            navigator_round_trip(channel, stream, data, data_json, publish_probe)
    except (ProbeFailed, Closed) as error:
        return False, str(error.args[0])
    except OSError as error:
        return False, f"WebSocket to {url} failed: {excerpt(error.strerror or str(error))}"
    finally:
        websocket.close()
    return True, f"probe received over {url} ({protocol} protocol) in {milliseconds_since(started)} ms"


# --- the command line, and the program text that carries it -------------------------------------


def main(argv: list[str]) -> int:
    command, arguments = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "publish" and len(arguments) == 7:
            print(publish(*arguments[:6], float(arguments[6])))
        elif command == "memory" and len(arguments) == 1:
            print(json.dumps(memory(arguments[0])))
        elif command == "files" and arguments:
            print(json.dumps(read_files(arguments)))
        elif command == "http" and len(arguments) == 2:
            ok, evidence = http_probe(arguments[0], float(arguments[1]))
            print(json.dumps({"ok": ok, "evidence": evidence}))
        elif command == "metrics" and len(arguments) == 2:
            print(json.dumps(metrics(arguments[0], float(arguments[1]))))
        elif command == "websocket" and len(arguments) == 9:
            url, protocol, wanted, timeout, signing_env, *publish_to = arguments
            ok, evidence = websocket_probe(url, protocol, wanted == "open", float(timeout), signing_env,
                                           (publish_to[0], publish_to[1], publish_to[2], publish_to[3]))
            print(json.dumps({"ok": ok, "evidence": evidence}))
        else:
            print(f"usage: publish|memory|files|http|metrics|websocket ARGS (got {' '.join(argv[:1]) or 'nothing'})", file=sys.stderr)
            return 2
    except ProbeFailed as failed:
        print(failed.evidence, file=sys.stderr)
        return 1
    return 0


_BOOTSTRAP = """\
import sys, types
def _load(name, source):
    for end in range(1, name.count(".") + 1):
        parent = ".".join(name.split(".")[:end])
        if parent not in sys.modules:
            package = types.ModuleType(parent)
            package.__path__ = []
            sys.modules[parent] = package
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, "<" + name + ">", "exec"), module.__dict__)
    return module
"""


@cache
def program() -> str:
    """The text of `python3 -c`: this module and hub.signing loaded from their sources, then main(argv)."""
    import hub.signing

    sources = [(module.__name__, _source_of(module.__file__)) for module in (hub.signing, sys.modules[__name__])]
    loads = "".join(f"_load({name!r}, {source!r})\n" for name, source in sources[:-1])
    name, source = sources[-1]
    return f"{_BOOTSTRAP}{loads}sys.exit(_load({name!r}, {source!r}).main(sys.argv[1:]))\n"


def _source_of(path: str | None) -> str:
    assert path is not None
    with open(path, encoding="utf-8") as handle:
        return handle.read()
