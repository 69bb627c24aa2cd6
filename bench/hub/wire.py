"""The few RFC 6455 pieces the bench needs on both sides, kept out of the
hub's code on purpose so the bench never measures the hub with itself."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
OP_TEXT = 0x1
OP_CLOSE = 0x8


def accept_key(client_key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(client_key + GUID).digest())


def frame_header(opcode: int, length: int, masked: bool) -> bytes:
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, mask_bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    return frame_header(opcode, len(payload), masked=False) + payload


def masked(payload: bytes, mask: bytes) -> bytes:
    """`payload` XOR the repeated 4-byte `mask`: masks a client's payload, and unmasks it."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    mask = os.urandom(4)
    return frame_header(opcode, len(payload), masked=True) + mask + masked(payload, mask)


def parse_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Pop every complete frame from `buffer` as (opcode, payload), unmasked."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    size = len(buffer)
    while size - offset >= 2:
        opcode = buffer[offset] & 0x0F
        mask_size = 4 if buffer[offset + 1] & 0x80 else 0
        length = buffer[offset + 1] & 0x7F
        start = offset + 2
        if length == 126:
            if size - offset < 4:
                break
            (length,) = struct.unpack_from("!H", buffer, start)
            start += 2
        elif length == 127:
            if size - offset < 10:
                break
            (length,) = struct.unpack_from("!Q", buffer, start)
            start += 8
        mask = bytes(buffer[start : start + mask_size])
        start += mask_size
        if size < start + length:
            break
        payload = bytes(buffer[start : start + length])
        frames.append((opcode, masked(payload, mask) if mask_size else payload))
        offset = start + length
    del buffer[:offset]
    return frames
