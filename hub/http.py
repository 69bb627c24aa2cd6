"""A strict, sans-I/O HTTP/1.1 request parser and response writer: what the hub needs of h11, lighter.

The caller feeds the bytes it reads to `RequestParser.receive_data` and takes events from `next_event`:
a `Request`, then its body as non-empty `bytes` chunks, then `END_OF_MESSAGE`; `NEED_DATA` when more
bytes are needed, `PAUSED` until the caller answered and called `start_next_cycle`, `CLOSED` when the
peer closed between requests. Anything malformed raises `BadRequest` from `next_event` (never from
`receive_data`), with the status to answer and then close with.

It faces the internet:
- everything a peer controls is bounded: the request head (with the empty lines before it), each
  chunk-size line and the trailers by max_head_bytes; Content-Length and chunk sizes by their digits;
- every search is linear: bytes.find from where the previous search stopped, and byte classes are
  checked with bytes.translate (no regex, which could backtrack; and `re` would import enum);
- no error message holds the peer's bytes: they are logged, and a malformed header line may hold a
  credential.

Compared with h11 0.16 (the hub's parser before this one), it is stricter where noted in comments, and
it keeps HTTP/1.0 connections alive when they ask to, and skips empty lines before a request line.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MAX_HEAD_BYTES = 16384
MAX_LENGTH_DIGITS = 18  # below 2**63: any Content-Length fits a signed 64-bit integer
MAX_CHUNK_SIZE_DIGITS = 16  # a 64-bit chunk size (h11 allows 20 digits)

# Byte classes, checked by deleting them (bytes.translate): no regex, as `re` would import enum.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Like h11: visible ASCII only. RFC 9112 has no obs-text in a request-target either.
_TARGET = bytes(range(0x21, 0x7F))
# Stricter than h11, which allows control bytes other than NUL and whitespace (\x01 in some cookies):
# RFC 9110 5.5 makes them invalid, and they serve to smuggle or to confuse logs.
_FIELD_VALUE = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_HEXDIG = b"0123456789ABCDEFabcdef"
_HEAD_BYTES = _FIELD_VALUE + b"\n"
_FRAMING = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection"))


def _token(data: bytes | bytearray) -> bool:
    return bool(data) and not data.translate(None, _TCHAR)


def _target(data: bytes) -> bool:
    return bool(data) and not data.translate(None, _TARGET)


def _field_value(data: bytes) -> bool:
    """Empty or made of field-value bytes."""
    return not data.translate(None, _FIELD_VALUE)


def _hex(data: bytes) -> bool:
    return bool(data) and not data.translate(None, _HEXDIG)


_CHUNKED = -1  # the body length of a chunked body, unknown until its last chunk


class BadRequest(Exception):
    """A malformed request: answer `status` and close. `reason` is a fixed phrase, never the peer's bytes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")
END_OF_MESSAGE = _Sentinel("END_OF_MESSAGE")
CLOSED = _Sentinel("CLOSED")


class Request:
    """A request head. Headers in order, duplicates kept: names lower-cased, values stripped of spaces and
    tabs (a Content-Length's is its one value: "5" for "5, 5")."""

    __slots__ = ("method", "target", "headers", "http_version", "keep_alive")

    def __init__(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], http_version: bytes, keep_alive: bool
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive


def _closed_mid_request() -> BadRequest:
    return BadRequest(400, "connection closed mid-request")


def _chomp(line: bytes) -> bytes:
    """A line split at LF, without the CR before the LF (like h11, only one)."""
    return line[:-1] if line[-1:] == b"\r" else line


def _request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    parts = line.split(b" ", 3)
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _token(method):
        raise BadRequest(400, "method is not a token")
    if not _target(target):
        raise BadRequest(400, "malformed request target")
    if version == b"HTTP/1.1" or version == b"HTTP/1.0":
        return method, target, version[5:]
    # h11 accepts any HTTP/d.d; RFC 9110 15.6.6 answers a major version it does not support with 505.
    digits = version[5:6] + version[7:]
    if len(version) == 8 and version[:5] == b"HTTP/" and version[6:7] == b"." and digits.isdigit():
        raise BadRequest(505, "unsupported HTTP version")
    raise BadRequest(400, "malformed HTTP version")


def _field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] == b" " or line[:1] == b"\t":
        # h11 unfolds obs-fold; RFC 9112 5.2 lets a server refuse it instead, which leaves no ambiguity.
        raise BadRequest(400, "obsolete line folding")
    name, colon, value = line.partition(b":")
    if not colon:
        raise BadRequest(400, "malformed header line")
    if not _token(name):
        raise BadRequest(400, "header name is not a token")
    if not _field_value(value):
        raise BadRequest(400, "control byte in a header value")
    return name.lower(), value.strip(b" \t")


def _list(value: bytes) -> list[bytes]:
    """A comma-separated header value's elements, lower-cased, empty ones kept (they are refused where it matters)."""
    return [element.strip(b" \t") for element in value.lower().split(b",")]


def _content_length(value: bytes, previous: bytes | None) -> bytes:
    """The length `value` gives: one, or a list of equal ones ("5, 5": RFC 9110 8.6), which must also
    equal any previous Content-Length's. Like h11, "05" is not "5"."""
    lengths = set(_list(value))
    if previous is not None:
        lengths.add(previous)
    if len(lengths) != 1:
        raise BadRequest(400, "conflicting Content-Length headers")
    length = lengths.pop()
    # bytes.isdigit is ASCII-only, and refuses signs, spaces and underscores, which int() would take.
    if len(length) > MAX_LENGTH_DIGITS or not length.isdigit():
        raise BadRequest(400, "bad Content-Length")
    return length


def _body_length(version: bytes, length: int | None, codings: list[bytes] | None) -> int:
    """The body's length in bytes, or _CHUNKED (RFC 9112 6.3: Transfer-Encoding overrides Content-Length)."""
    if codings is None:
        return length or 0
    if version == b"1.0":
        # h11 reads a chunked HTTP/1.0 body; RFC 9112 6.1 calls that faulty framing.
        raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
    if codings[-1] != b"chunked":
        # RFC 9112 6.3: the length cannot be determined (h11 answers 501 here too).
        raise BadRequest(400, "chunked is not the final transfer coding")
    if len(codings) != 1:
        raise BadRequest(501, "unsupported transfer coding")
    return _CHUNKED


def _parse_head(head: bytes) -> tuple[Request, int]:
    """The request and its body length (or _CHUNKED) from its lines, each with its LF (not the final empty line)."""
    lines = head.split(b"\n")
    del lines[-1]  # what follows the last LF: nothing
    method, target, version = _request_line(_chomp(lines[0]))
    # One pass over the whole head for control bytes (a CR is one unless before an LF): the lines of
    # a head without any, the usual head, need no check of their values.
    clean = not head.replace(b"\r\n", b"\n").translate(None, _HEAD_BYTES)
    headers = _fields(lines[1:], clean)
    body, keep_alive = _framing(headers, version)
    return Request(method, target, headers, version, keep_alive), body


def _fields(lines: list[bytes], clean: bool) -> list[tuple[bytes, bytes]]:
    headers = []
    for line in lines:
        if line[-1:] == b"\r":  # _chomp and _token, inlined in the loop that costs most
            line = line[:-1]
        name, colon, value = line.partition(b":")
        if clean and colon and name and not name.translate(None, _TCHAR):
            headers.append((name.lower(), value.strip(b" \t")))
        else:
            headers.append(_field(line))  # raises with the reason, unless the line at fault is another
    return headers


def _framing(headers: list[tuple[bytes, bytes]], version: bytes) -> tuple[int, bool]:
    """The body length (or _CHUNKED) and whether to keep the connection alive after this request."""
    hosts = 0
    length: bytes | None = None
    codings: list[bytes] | None = None
    connection: list[bytes] = []
    for index, (name, value) in enumerate(headers):
        if name not in _FRAMING:
            continue
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            length = _content_length(value, length)
            headers[index] = (name, length)  # as h11 does for "5, 5": whoever reads it can int() it
        elif name == b"transfer-encoding":
            codings = _list(value) if codings is None else codings + _list(value)
        else:
            connection += _list(value)
    if hosts > 1:
        raise BadRequest(400, "several Host headers")
    if hosts == 0 and version == b"1.1":
        raise BadRequest(400, "missing Host header")
    body = _body_length(version, None if length is None else int(length), codings)
    if version == b"1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if body == _CHUNKED and length is not None:
        keep_alive = False  # RFC 9112 6.3: close after answering a request with both
    return body, keep_alive


# The parser's states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DONE, _CLOSED = range(8)


class RequestParser:
    """Parses the requests of one connection, one at a time (see the module's docstring)."""

    __slots__ = ("_max", "_buf", "_scan", "_consumed", "_eof", "_state", "_remaining", "_keep_alive", "_error")

    def __init__(self, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._max = max_head_bytes
        self._buf = bytearray()
        self._scan = 0  # where the search for the end of a head, chunk-size line or trailers resumes
        # Bytes of the current head or trailer section consumed already (the empty lines before a request
        # line, the trailer lines read): they count towards the bound.
        self._consumed = 0
        self._eof = False
        self._state = _HEAD
        self._remaining = 0  # of the Content-Length, or of the current chunk
        self._keep_alive = True
        self._error: BadRequest | None = None

    def receive_data(self, data: bytes) -> None:
        """Buffer `data`; b"" means the peer closed its side. Never raises BadRequest: next_event does."""
        if not data:
            self._eof = True
        elif self._eof:
            raise RuntimeError("data received after EOF")
        else:
            self._buf += data

    def next_event(self) -> Request | bytes | _Sentinel:
        """The next event; BadRequest for a malformed request, then again for every later call."""
        if self._error is not None:
            raise BadRequest(self._error.status, self._error.reason)
        try:
            while True:
                event = _STEPS[self._state](self)
                if event is not None:
                    return event
        except BadRequest as error:
            self._error = error
            self._keep_alive = False
            raise

    @property
    def trailing_data(self) -> bytes:
        """The bytes received and not consumed: after an upgrade request, the first WebSocket bytes."""
        return bytes(self._buf)

    @property
    def request_complete(self) -> bool:
        """Whether END_OF_MESSAGE was returned for the current request."""
        return self._state == _DONE

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may serve another request after the current one."""
        return self._keep_alive

    def start_next_cycle(self) -> None:
        """Parse the next request: only once the current one ended and was answered, on a kept-alive connection."""
        if self._state != _DONE or not self._keep_alive:
            raise RuntimeError("start_next_cycle before the request ended, or on a connection that must close")
        self._state = _HEAD

    # --- the steps: each returns an event, or None once it changed the state --------------

    def _read_head(self) -> Request | bytes | _Sentinel | None:
        buf = self._buf
        self._skip_empty_lines()
        limit = self._max - self._consumed
        # Early refusal of what cannot start a request line (a TLS handshake, say); h11 does it below 0x21.
        if buf and buf != b"\r" and not _token(buf[:1]):
            raise BadRequest(400, "malformed request line")
        lf = self._head_end(limit)
        if lf < 0:
            if buf and len(buf) >= limit:
                raise BadRequest(431, "request head too large")
            if not self._eof:
                return NEED_DATA
            if buf:
                raise _closed_mid_request()
            self._state = _CLOSED
            return None
        head = bytes(buf[: lf + 1])
        del buf[: lf + (2 if buf[lf + 1] == 10 else 3)]
        self._scan = 0
        self._consumed = 0
        request, body = _parse_head(head)
        self._keep_alive = request.keep_alive
        if body == _CHUNKED:
            self._state = _CHUNK_SIZE
        else:
            self._state = _LENGTH
            self._remaining = body
        return request

    def _skip_empty_lines(self) -> None:
        # RFC 9112 2.2: a server SHOULD ignore empty lines before a request line (h11 refuses them).
        buf = self._buf
        while buf[:1] == b"\n" or buf[:2] == b"\r\n":
            size = 1 if buf[0] == 10 else 2
            del buf[:size]
            self._consumed += size
            if self._consumed > self._max:
                raise BadRequest(431, "request head too large")

    def _head_end(self, limit: int) -> int:
        """The index of the LF that ends the last line of the head, if the head ends within `limit` bytes, else -1."""
        buf = self._buf
        start = self._scan
        stop = min(len(buf), limit)
        crlf = buf.find(b"\n\r\n", start, stop)
        lf = buf.find(b"\n\n", start, stop if crlf < 0 else crlf + 1)
        if lf >= 0:
            return lf
        if crlf >= 0:
            return crlf
        self._scan = max(start, stop - 2)  # a terminator may start in the last two bytes searched
        return -1

    def _read_length(self) -> Request | bytes | _Sentinel | None:
        if not self._remaining:
            self._state = _DONE
            return END_OF_MESSAGE
        return self._read_body()

    def _read_chunk_size(self) -> Request | bytes | _Sentinel | None:
        line = self._chunked_line(self._max, "chunk-size line too long")
        if line is None:
            return self._starved()
        size, _, extensions = line.partition(b";")
        # RFC 9112 7.1.1 allows whitespace before ";", h11 only at the end of a line without extensions: both pass.
        size = size.rstrip(b" \t")
        if len(size) > MAX_CHUNK_SIZE_DIGITS or not _hex(size):
            raise BadRequest(400, "bad chunk size")
        # Extensions are ignored; h11 takes any byte in them, this takes what a header value may hold.
        if not _field_value(extensions):
            raise BadRequest(400, "control byte in a chunk extension")
        self._remaining = int(size, 16)
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return None

    def _read_chunk_data(self) -> Request | bytes | _Sentinel | None:
        data = self._read_body()
        if not self._remaining:
            self._state = _CHUNK_END
        return data

    def _read_chunk_end(self) -> Request | bytes | _Sentinel | None:
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = _CHUNK_SIZE
            return None
        if b"\r\n".startswith(buf):
            return self._starved()
        raise BadRequest(400, "chunk data not followed by CRLF")

    def _read_trailers(self) -> Request | bytes | _Sentinel | None:
        while True:
            line = self._chunked_line(self._max - self._consumed, "trailers too large")
            if line is None:
                return self._starved()
            self._consumed += len(line) + 2
            if not line:
                self._consumed = 0
                self._state = _DONE
                return END_OF_MESSAGE
            _field(line)  # validated like a header line, then dropped

    def _read_done(self) -> Request | bytes | _Sentinel | None:
        return PAUSED

    def _read_closed(self) -> Request | bytes | _Sentinel | None:
        return CLOSED

    # --- helpers --------------------------------------------------------------------------

    def _read_body(self) -> bytes | _Sentinel:
        """Up to `_remaining` bytes of what is buffered: never the whole body at once unless it came so."""
        buf = self._buf
        if not buf:
            return self._starved()
        count = self._remaining
        if len(buf) <= count:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:count])
            del buf[:count]
        self._remaining -= len(data)
        return data

    def _chunked_line(self, limit: int, too_long: str) -> bytes | None:
        """The next line without its CRLF, consumed, if it ends within `limit` bytes; None until it does."""
        buf = self._buf
        stop = min(len(buf), limit)
        lf = buf.find(b"\n", self._scan, stop)
        if lf < 0:
            self._scan = stop
            if len(buf) >= limit:
                raise BadRequest(431, too_long)
            return None
        # Stricter than h11 for trailers (it takes a bare LF there, as in a head), as strict for chunk sizes:
        # the chunked framing takes CRLF only, which RFC 9112 2.2 allows a bare LF to replace in a head alone.
        if buf[lf - 1 : lf] != b"\r":
            raise BadRequest(400, "line not ended by CRLF in a chunked body")
        line = bytes(buf[: lf - 1])
        del buf[: lf + 1]
        self._scan = 0
        return line

    def _starved(self) -> _Sentinel:
        if self._eof:
            raise _closed_mid_request()
        return NEED_DATA


_STEPS: tuple[Callable[[RequestParser], Request | bytes | _Sentinel | None], ...] = (
    RequestParser._read_head,
    RequestParser._read_length,
    RequestParser._read_chunk_size,
    RequestParser._read_chunk_data,
    RequestParser._read_chunk_end,
    RequestParser._read_trailers,
    RequestParser._read_done,
    RequestParser._read_closed,
)

_REASONS = {
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    505: b"HTTP Version Not Supported",
}


def response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, head_only: bool = False) -> bytes:
    """A response, headers as given (the caller adds content-type, content-length and connection).

    Like h11, a header that could split the response (a CR or LF in a value, a name that is not a token)
    raises ValueError: the hub's own bug, not the peer's.
    """
    if not 100 <= status <= 999:
        raise ValueError("status out of range")
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    for name, value in headers:
        if not _token(name) or not _field_value(value):
            raise ValueError("response header is not a valid field")
        parts.append(b"%s: %s\r\n" % (name, value))
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
