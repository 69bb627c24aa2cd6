"""Server side of RFC 6455, sans-I/O: the opening handshake and the frame codec."""

from __future__ import annotations

import base64
import codecs
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ACTION_CABLE = "actioncable-v1-json"
ACTION_CABLE_EXT = "actioncable-v1-ext-json"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [
        token.strip().lower()
        for header, value in headers
        if header.lower() == name
        for token in value.split(b",")
        if token.strip()
    ]


def negotiate(method: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """Check an upgrade request; return the 101 response headers and the chosen subprotocol.

    No subprotocol chosen means the client speaks Navigator's cable protocol.
    """
    if method.upper() != b"GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", ((b"allow", b"GET"),))
    if b"websocket" not in _tokens(headers, b"upgrade"):
        raise HandshakeError(400, "missing Upgrade: websocket")
    if b"upgrade" not in _tokens(headers, b"connection"):
        raise HandshakeError(400, "missing Connection: upgrade")
    versions = _tokens(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version", ((b"sec-websocket-version", b"13"),))
    keys = [value.strip() for name, value in headers if name.lower() == b"sec-websocket-key"]
    if len(keys) != 1 or not _is_nonce(keys[0]):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key")
    offered = _tokens(headers, b"sec-websocket-protocol")
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
    """Turns bytes from a client into events; raises ProtocolError on the first violation."""

    __slots__ = ("max_size", "_buf", "_fragments", "_frag_opcode", "_frag_size", "_decoder", "closed")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        # Unparsed bytes; a bytearray only while a frame is incomplete, so idle connections hold none.
        self._buf: bytes | bytearray = b""
        self._fragments: list[Any] | None = None  # str pieces for text, bytes for binary
        self._frag_opcode = 0
        self._frag_size = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self.closed = False

    def feed(self, data: bytes) -> Iterator[Event]:
        if self.closed:
            return
        if self._buf:
            # Appending in place keeps a frame that trickles in byte by byte linear, not quadratic.
            self._buf += data
            buf = self._buf
        else:
            buf = data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
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
                    header = 10
                self._check_header(b0, b1, length)
                if end - pos < header + 4 + length:
                    break
                mask = buf[pos + header : pos + header + 4]
                start = pos + header + 4
                payload = unmask(buf[start : start + length], mask)
                pos = start + length
                event = self._frame(b0 & 0x80, b0 & 0x0F, payload)
                if event is not None:
                    yield event
                    if self.closed:
                        return
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
        if opcode == OP_CONT:
            if self._fragments is None:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation without a message")
            length += self._frag_size
        elif self._fragments is not None:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if length > self.max_size:
            raise ProtocolError(CLOSE_TOO_BIG, f"message over {self.max_size} bytes")

    def _frame(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            self.closed = True
            return _close_event(payload)
        if opcode != OP_CONT:
            if fin:
                return _message(opcode, payload)
            self._fragments = []
            self._frag_opcode = opcode
            self._frag_size = 0
            if opcode == OP_TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
        fragments = self._fragments
        assert fragments is not None
        self._frag_size += len(payload)
        if self._decoder is None:
            fragments.append(payload)
        else:
            try:
                # Validates as it goes, so bad UTF-8 fails before the message ends.
                fragments.append(self._decoder.decode(payload, final=bool(fin)))
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "invalid UTF-8 in text message") from None
        if not fin:
            return None
        self._fragments = None
        self._frag_size = 0
        if self._decoder is not None:
            self._decoder = None
            return Text("".join(fragments))
        return Binary(b"".join(fragments))


def _message(opcode: int, payload: bytes) -> Event:
    if opcode == OP_BINARY:
        return Binary(payload)
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
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8")[:123])
