"""Stream registry and fan-out: each broadcast is encoded once per (stream, identifier)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from .frames import text_frame

# Subscriptions made with Navigator's protocol have no Action Cable identifier.
NAVIGATOR = None


class Subscriber(Protocol):
    def send_frame(self, frame: bytes) -> None: ...


def dumps(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot be sent as UTF-8; escape them instead
            return json.dumps(value, separators=(",", ":"))
    return text


class Payload:
    """One broadcast's data, rendered as JSON at most once.

    Both protocols get the data value exactly as it was posted: Navigator's `data`, and Action
    Cable's `message`, which is what Rails' own server sends for `broadcast(stream, message)`
    (a string stays a string, even one that reads as JSON).
    """

    __slots__ = ("data", "_json")

    def __init__(self, data: Any) -> None:
        self.data = data
        self._json: str | None = None

    def json(self) -> str:
        if self._json is None:
            self._json = dumps(self.data)
        return self._json


def broadcast_frame(stream: str, identifier: str | None, payload: Payload) -> bytes:
    if identifier is NAVIGATOR:
        text = '{"type":"message","stream":' + dumps(stream) + ',"data":' + payload.json() + "}"
    else:
        text = '{"identifier":' + dumps(identifier) + ',"message":' + payload.json() + "}"
    return text_frame(text)


class SubscriptionLimitReached(Exception):
    """Raised by `StreamRegistry.add` when the subscriber already holds the maximum number of
    subscriptions. Nothing was registered; the session should answer with a refusal
    (Action Cable: reject_subscription) and keep the connection."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} subscriptions per connection")
        self.limit = limit


# A table is rebuilt when what it holds falls to this fraction of its largest size since the
# last rebuild: dicts never shrink on deletion, so without this a burst of subscriptions
# would keep its memory for the life of the process. The rebuild copies at most 1/8 of the
# entries that were deleted since the peak, so add and remove stay O(1) amortized.
_SHRINK_BELOW = 8
_SHRINK_FROM = 256  # small tables are not worth rebuilding (except when emptied)


class StreamRegistry:
    """stream -> identifier -> set of subscribers, and subscriber -> number of subscriptions.

    `add` and `remove` are O(1) (amortized): hash lookups only, never a scan of a stream's
    other subscribers or of a subscriber's other subscriptions. A stream's entry, with its
    identifiers, goes when its last subscriber goes; a subscriber's count goes with its last
    subscription.
    """

    __slots__ = ("_streams", "_counts", "_streams_peak", "_counts_peak", "subscriptions", "max_subscriptions_per_connection")

    def __init__(self, max_subscriptions_per_connection: int = 1000) -> None:
        if max_subscriptions_per_connection < 1:
            raise ValueError("max_subscriptions_per_connection must be at least 1")
        self._streams: dict[str, dict[str | None, set[Subscriber]]] = {}
        self._counts: dict[Subscriber, int] = {}
        self._streams_peak = 0
        self._counts_peak = 0
        self.subscriptions = 0
        # A plain attribute, so a reload can change it; lowering it removes nothing and refuses
        # new subscriptions until a connection is below the new limit.
        self.max_subscriptions_per_connection = max_subscriptions_per_connection

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def subscriber_count(self) -> int:
        """Subscribers with at least one subscription."""
        return len(self._counts)

    def subscriptions_of(self, subscriber: Subscriber) -> int:
        return self._counts.get(subscriber, 0)

    def add(self, stream: str, identifier: str | None, subscriber: Subscriber) -> bool:
        """Register. True when added, False when this subscriber already had this subscription
        (allowed even at the limit). Raises SubscriptionLimitReached, registering nothing,
        when the subscriber already holds max_subscriptions_per_connection subscriptions."""
        by_id = self._streams.get(stream)
        members = by_id.get(identifier) if by_id is not None else None
        if members is not None and subscriber in members:
            return False
        count = self._counts.get(subscriber, 0)
        if count >= self.max_subscriptions_per_connection:
            raise SubscriptionLimitReached(self.max_subscriptions_per_connection)
        if by_id is None:
            by_id = self._streams[stream] = {}
            if len(self._streams) > self._streams_peak:
                self._streams_peak = len(self._streams)
        if members is None:
            members = by_id[identifier] = set()
        members.add(subscriber)
        self._counts[subscriber] = count + 1
        if not count and len(self._counts) > self._counts_peak:
            self._counts_peak = len(self._counts)
        self.subscriptions += 1
        return True

    def remove(self, stream: str, identifier: str | None, subscriber: Subscriber) -> bool:
        """Unregister; False when this subscriber did not have this subscription."""
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
                if _shrinkable(len(self._streams), self._streams_peak):
                    self._streams = dict(self._streams) if self._streams else {}
                    self._streams_peak = len(self._streams)
        count = self._counts[subscriber] - 1
        if count:
            self._counts[subscriber] = count
        else:
            del self._counts[subscriber]
            if _shrinkable(len(self._counts), self._counts_peak):
                self._counts = dict(self._counts) if self._counts else {}
                self._counts_peak = len(self._counts)
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


def _shrinkable(size: int, peak: int) -> bool:
    return size == 0 and peak > 0 or peak >= _SHRINK_FROM and size * _SHRINK_BELOW <= peak
