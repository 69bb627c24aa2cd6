"""Stream registry and fan-out: each broadcast is encoded once per (stream, identifier)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .frames import text_frame

# Subscriptions made with Navigator's protocol have no Action Cable identifier.
NAVIGATOR = None


class Subscriber(Protocol):
    def send_frame(self, frame: bytes) -> None: ...


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot be sent as UTF-8; escape them instead
            return json.dumps(value, separators=(",", ":"))
    return text


class Payload:
    """One broadcast's data, with its two JSON renderings computed at most once."""

    __slots__ = ("data", "_cable", "_raw")

    def __init__(self, data: Any) -> None:
        self.data = data
        self._cable: str | None = None
        self._raw: str | None = None

    def cable_json(self) -> str:
        """Action Cable's `message`: string data that is JSON goes out decoded, any other string as a string."""
        if self._cable is None:
            data = self.data
            if isinstance(data, str):
                try:
                    data = json.loads(data, parse_constant=_reject_constant)
                except (ValueError, RecursionError):
                    pass
            self._cable = dumps(data)
        return self._cable

    def raw_json(self) -> str:
        """Navigator's `data`: the broadcast's data value passed through unchanged."""
        if self._raw is None:
            self._raw = dumps(self.data)
        return self._raw


def broadcast_frame(stream: str, identifier: str | None, payload: Payload) -> bytes:
    if identifier is NAVIGATOR:
        text = '{"type":"message","stream":' + dumps(stream) + ',"data":' + payload.raw_json() + "}"
    else:
        text = '{"identifier":' + dumps(identifier) + ',"message":' + payload.cable_json() + "}"
    return text_frame(text)


class StreamRegistry:
    __slots__ = ("_streams", "subscriptions")

    def __init__(self) -> None:
        self._streams: dict[str, dict[str | None, set[Subscriber]]] = {}
        self.subscriptions = 0

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def add(self, stream: str, identifier: str | None, subscriber: Subscriber) -> bool:
        """Register; False when this subscriber already had this subscription."""
        by_id = self._streams.get(stream)
        if by_id is None:
            by_id = self._streams[stream] = {}
        members = by_id.get(identifier)
        if members is None:
            members = by_id[identifier] = set()
        elif subscriber in members:
            return False
        members.add(subscriber)
        self.subscriptions += 1
        return True

    def remove(self, stream: str, identifier: str | None, subscriber: Subscriber) -> bool:
        by_id = self._streams.get(stream)
        members = by_id.get(identifier) if by_id is not None else None
        if members is None or subscriber not in members:
            return False
        members.remove(subscriber)
        self.subscriptions -= 1
        if not members:
            del by_id[identifier]  # type: ignore[union-attr]
            if not by_id:
                del self._streams[stream]
        return True

    def broadcast(self, stream: str, data: Any) -> int:
        """Write `data` to every subscriber of `stream`; returns the number of deliveries."""
        by_id = self._streams.get(stream)
        if not by_id:
            return 0
        payload = Payload(data)
        delivered = 0
        for identifier, members in list(by_id.items()):
            frame = broadcast_frame(stream, identifier, payload)
            # A write may disconnect a slow subscriber, which edits `members`.
            for subscriber in tuple(members):
                subscriber.send_frame(frame)
                delivered += 1
        return delivered
