"""Helpers shared by the hub tests (a distinct module name, so it cannot clash with other test folders)."""

from __future__ import annotations

import struct


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = b"\x11\x22\x33\x44") -> bytes:
    """A client frame built by hand, for the malformed cases a real client library refuses to produce."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if mask is None:
        return header + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class FakeSubscriber:
    """Stands in for a connection in the registry: records the frames written to it."""

    def __init__(self, name: str = "c") -> None:
        self.name = name
        self.frames: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def __repr__(self) -> str:
        return f"FakeSubscriber({self.name})"


class LogRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]
