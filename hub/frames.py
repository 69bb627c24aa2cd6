"""Server side of RFC 6455, sans-I/O: the opening handshake and the frame codec."""

from __future__ import annotations

import base64
import codecs
from collections.abc import Iterable, Iterator

# Not hashlib: without OpenSSL's _hashlib it imports every built-in hash module (see hub/signing.py).
from _sha1 import sha1

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ACTION_CABLE = "actioncable-v1-json"
ACTION_CABLE_EXT = "actioncable-v1-ext-json"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

# Frames in one message, the first included. One more closes with 1009 (message too big) rather
# than 1008 (policy violation): like payload bytes, every fragment costs the hub work, so this is
# the message's size counted in frames. Browsers never fragment what they send; only a hostile
# client (a flood of empty continuation frames) comes near it.
MAX_FRAGMENTS = 1024


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(sha1(key + GUID).digest())


_NEGOTIATED = frozenset((b"upgrade", b"connection", b"sec-websocket-version", b"sec-websocket-key", b"sec-websocket-protocol"))


def _negotiated_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """The values of the headers the handshake reads, by lower-cased name, in one pass over the headers."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        name = name.lower()
        if name in _NEGOTIATED:
            found.setdefault(name, []).append(value)
    return found


def _tokens(values: list[bytes] | None) -> list[bytes]:
    """The comma-separated tokens of a header's values, lower-cased."""
    return [token.strip().lower() for value in values or () for token in value.split(b",") if token.strip()]


def negotiate(method: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """Check an upgrade request; return the 101 response headers and the chosen subprotocol.

    No subprotocol chosen means the client speaks Navigator's cable protocol.
    """
    if method.upper() != b"GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", ((b"allow", b"GET"),))
    found = _negotiated_values(headers)
    if b"websocket" not in _tokens(found.get(b"upgrade")):
        raise HandshakeError(400, "missing Upgrade: websocket")
    if b"upgrade" not in _tokens(found.get(b"connection")):
        raise HandshakeError(400, "missing Connection: upgrade")
    versions = _tokens(found.get(b"sec-websocket-version"))
    if versions != [b"13"]:
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version", ((b"sec-websocket-version", b"13"),))
    keys = [value.strip() for value in found.get(b"sec-websocket-key", ())]
    if len(keys) != 1 or not _is_nonce(keys[0]):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    offered = _tokens(found.get(b"sec-websocket-protocol"))
    response = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_key(keys[0])),
    ]
    for protocol in (ACTION_CABLE, ACTION_CABLE_EXT):
        if protocol.encode() in offered:
            response.append((b"sec-websocket-protocol", protocol.encode()))
            return response, protocol
    return response, None


def switching_protocols(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The 101 response for `negotiate`'s headers, byte for byte what h11 writes for them: the upgrade
    is the one response per connection, and h11 validating and writing it cost as much as parsing the request."""
    return b"HTTP/1.1 101 \r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"


def _is_nonce(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


class ProtocolError(Exception):
    """The peer broke RFC 6455; close the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Text:
    __slots__ = ("data",)

    def __init__(self, data: str) -> None:
        self.data = data


class Binary:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Ping:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Pong:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason


Event = Text | Binary | Ping | Pong | Close


def valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    # One big-integer XOR is far faster in CPython than a per-byte loop.
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class FrameParser:
    """Turns bytes from a client into events; raises ProtocolError on the first violation.

    A control frame, or a whole unfragmented data frame that has arrived, is decoded in one go.
    Any other data frame is consumed as its payload arrives, so that invalid UTF-8 fails as soon
    as the bytes that make it invalid are here, and a partial frame is held once, unmasked.
    """

    __slots__ = (
        "max_size",
        "max_fragments",
        "_buf",
        "_message",
        "_opcode",
        "_count",
        "_decoder",
        "_left",
        "_fin",
        "_mask",
        "closed",
    )

    def __init__(self, max_size: int, max_fragments: int = MAX_FRAGMENTS) -> None:
        self.max_size = max_size
        self.max_fragments = max_fragments
        # Unparsed bytes; a bytearray only while a header is incomplete, so idle connections hold none.
        self._buf: bytes | bytearray = b""
        # The message being assembled: its unmasked payload so far, its opcode (0: none), its frames.
        self._message: bytearray | None = None
        self._opcode = 0
        self._count = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        # The data frame whose payload is arriving: bytes still to come (-1: between frames),
        # its FIN bit, and its mask rotated to line up with the next payload byte.
        self._left = -1
        self._fin = False
        self._mask: bytes | bytearray = b""
        self.closed = False

    def feed(self, data: bytes) -> Iterator[Event]:
        if self.closed:
            return
        if self._buf:
            # Appending in place keeps a header that trickles in byte by byte linear, not quadratic.
            self._buf += data
            buf = self._buf
        else:
            buf = data
        pos = 0
        end = len(buf)
        try:
            while True:
                if self._left >= 0:
                    n = min(self._left, end - pos)
                    if n == 0 and self._left:
                        break
                    chunk = buf[pos : pos + n]
                    pos += n
                    event = self._payload(chunk)
                    if event is not None:
                        yield event
                    continue
                if end - pos < 2:
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                header = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    header = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    if length >> 63:
                        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "64-bit payload length with its top bit set")
                    header = 10
                self._check_header(b0, b1, length)
                start = pos + header + 4
                if end < start:
                    break
                mask = buf[pos + header : start]  # a copy, even of a bytearray
                opcode = b0 & 0x0F
                if (opcode >= OP_CLOSE or (b0 & 0x80 and opcode)) and end - start >= length:
                    payload = unmask(buf[start : start + length], mask)
                    pos = start + length
                    yield _message(opcode, payload) if opcode < OP_CLOSE else self._control(opcode, payload)
                    if self.closed:
                        return
                    continue
                if opcode >= OP_CLOSE:
                    break  # at most 125 bytes: wait for all of it
                pos = start
                self._begin(bool(b0 & 0x80), opcode, length, mask)
        finally:
            if pos >= end:
                self._buf = b""
            elif isinstance(buf, bytearray) and buf is self._buf:
                del buf[:pos]
            else:
                self._buf = bytearray(buf[pos:])

    def _check_header(self, b0: int, b1: int, length: int) -> None:
        if b0 & 0x70:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if not b1 & 0x80:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        opcode = b0 & 0x0F
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not b0 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame too long")
            return
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        # Headers are checked only between frames, when _opcode is set only inside a fragmented message.
        if opcode == OP_CONT:
            if not self._opcode:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            if self._count >= self.max_fragments:
                raise ProtocolError(CLOSE_TOO_BIG, f"message in over {self.max_fragments} fragments")
            assert self._message is not None
            length += len(self._message)
        elif self._opcode:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if length > self.max_size:
            raise ProtocolError(CLOSE_TOO_BIG, f"message over {self.max_size} bytes")

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        self.closed = True
        return _close_event(payload)

    def _begin(self, fin: bool, opcode: int, length: int, mask: bytes | bytearray) -> None:
        if opcode != OP_CONT:
            self._opcode = opcode
            self._message = bytearray()
            self._count = 0
            self._decoder = codecs.getincrementaldecoder("utf-8")() if opcode == OP_TEXT else None
        self._count += 1
        self._left = length
        self._fin = fin
        self._mask = mask

    def _payload(self, chunk: bytes | bytearray) -> Event | None:
        """Take the next bytes of the current data frame; return the message it completes, if any."""
        message = self._message
        assert message is not None
        n = len(chunk)
        if n:
            data = unmask(chunk, self._mask)
            if n & 3:
                self._mask = self._mask[n & 3 :] + self._mask[: n & 3]
            message += data
            self._left -= n
            if self._decoder is not None:
                _validate(self._decoder, data)
        if self._left:
            return None
        self._left = -1
        if not self._fin:
            return None
        opcode = self._opcode
        self._message = None
        self._opcode = 0
        self._decoder = None
        if opcode == OP_BINARY:
            return Binary(bytes(message))
        # Decoding the whole message again, rather than trusting the incremental decoder to have
        # been finalised, is what rejects a message that ends in half a character.
        return _message(OP_TEXT, message)


def _validate(decoder: codecs.IncrementalDecoder, data: bytes) -> None:
    try:
        decoder.decode(data)
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in text message") from None
    # CPython's decoder waits for the third byte of a would-be surrogate (ED A0..BF) to refuse it.
    pending = decoder.getstate()[0]
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] > 0x9F:
        raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in text message")


def _message(opcode: int, payload: bytes | bytearray) -> Event:
    if opcode == OP_BINARY:
        return Binary(bytes(payload))
    try:
        return Text(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in text message") from None


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in close reason") from None
    return Close(code, reason)


def encode_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + n.to_bytes(8, "big")
    return header + payload


def text_frame(text: str) -> bytes:
    return encode_frame(OP_TEXT, text.encode("utf-8"))


def close_frame(code: int | None = CLOSE_NORMAL, reason: str = "") -> bytes:
    if code is None:
        return encode_frame(OP_CLOSE, b"")
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        # Cut at a character boundary: half a character would make the client fail the close itself.
        encoded = encoded[:123].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + encoded)
