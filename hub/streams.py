"""Stream registry and fan-out: each broadcast is encoded once per (stream, identifier).

Also what bounds it: the depth of the JSON taken from peers (`loads`), and the subscriptions and
connections of each client (`Client`, `Clients`).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, repeat
from operator import sub

from .frames import text_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Subscriber(Protocol):
        """What the registry delivers to: a connection (type checkers only, to keep typing out of the hub)."""

        client: Client | None  # None: counted per connection only

        def send_frame(self, frame: bytes) -> None: ...

# Subscriptions made with Navigator's protocol have no Action Cable identifier.
NAVIGATOR = None
# JSON nested deeper is refused wherever it enters (broadcasts, broker messages, client messages). Ruby's
# JSON parses and generates at most 100 levels by default, so no Rails app sends more; and whatever passes
# is encoded again for subscribers far below Python's recursion limit, which json.loads alone does not
# ensure (it takes ~990 levels, which json.dumps then cannot encode from deeper in the stack).
MAX_JSON_DEPTH = 100
# A JSON string once its escaped backslashes and quotes are blanked out: possessive, so never tried twice.
_JSON_STRING = re.compile(r'"[^"]*+"')
# Brackets as 2 (open) or 0 (close), everything else deleted: minus one each, their running sum is the depth.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


class Client:
    """One client (see hub.server.client_address) over all its connections: what the per-client limits count."""

    __slots__ = ("address", "connections", "subscriptions")

    def __init__(self, address: str) -> None:
        self.address = address
        self.connections = 0
        self.subscriptions = 0


class Clients:
    """address -> Client, for the clients that have a connection open; the table shrinks as they leave."""

    __slots__ = ("_by_address", "_peak")

    def __init__(self) -> None:
        self._by_address: dict[str, Client] = {}
        self._peak = 0

    def __len__(self) -> int:
        return len(self._by_address)

    def admit(self, address: str, max_connections: int) -> Client | None:
        """The client at `address` with one more connection counted; None when it already has `max_connections`."""
        client = self._by_address.get(address)
        if client is None:
            client = self._by_address[address] = Client(address)
            self._peak = max(self._peak, len(self._by_address))
        elif client.connections >= max_connections:
            return None
        client.connections += 1
        return client

    def release(self, client: Client) -> None:
        """One of the client's connections closed (its subscriptions are gone already)."""
        client.connections -= 1
        if not client.connections:
            del self._by_address[client.address]
            if _shrinkable(len(self._by_address), self._peak):
                self._by_address = dict(self._by_address)
                self._peak = len(self._by_address)


class NestedTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_JSON_DEPTH} deep")


def loads(text: str | bytes) -> Any:
    """json.loads of a document from a peer; ValueError when it is not JSON, NestedTooDeep when it is nested too deep.

    The depth is measured before parsing, in C-speed passes over the text (no recursion, no
    backtracking): a document that json.loads accepts is lexed here as it lexes it.
    """
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads decodes bytes
    if _nested_deeper(text, MAX_JSON_DEPTH):
        raise NestedTooDeep
    return json.loads(text)


def _nested_deeper(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:  # the common case: too few brackets to nest that deep
        return False
    if "\\" in text:  # backslashes pair up left to right, and only a lone one escapes a quote
        text = text.replace("\\\\", "__").replace('\\"', "__")
    structure = _JSON_STRING.sub("", text)
    if structure.count("[") + structure.count("{") <= limit:
        return False
    steps = structure.encode("ascii", "ignore").translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(map(sub, steps, repeat(1)))) > limit


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
    """Raised by `StreamRegistry.add` when the subscriber, or its client over all its connections,
    already holds the maximum number of subscriptions. Nothing was registered; the session should
    answer with a refusal (Action Cable: reject_subscription) and keep the connection."""

    def __init__(self, limit: int, per: str = "connection") -> None:
        super().__init__(f"at most {limit} subscriptions per {per}")
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
    subscription. A subscriber's `client` counts its subscriptions over all its connections.
    """

    __slots__ = (
        "_streams", "_counts", "_streams_peak", "_counts_peak", "subscriptions",
        "max_subscriptions_per_connection", "max_subscriptions_per_client",
    )  # fmt: skip

    def __init__(self, max_subscriptions_per_connection: int = 1000, max_subscriptions_per_client: int = 10000) -> None:
        if max_subscriptions_per_connection < 1 or max_subscriptions_per_client < 1:
            raise ValueError("max_subscriptions_per_connection and max_subscriptions_per_client must be at least 1")
        self._streams: dict[str, dict[str | None, set[Subscriber]]] = {}
        self._counts: dict[Subscriber, int] = {}
        self._streams_peak = 0
        self._counts_peak = 0
        self.subscriptions = 0
        # Plain attributes, so a reload can change them; lowering one removes nothing and refuses
        # new subscriptions until a connection (or client) is below the new limit.
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.max_subscriptions_per_client = max_subscriptions_per_client

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
        when the subscriber already holds max_subscriptions_per_connection subscriptions, or
        its client max_subscriptions_per_client."""
        by_id = self._streams.get(stream)
        members = by_id.get(identifier) if by_id is not None else None
        if members is not None and subscriber in members:
            return False
        count = self._counts.get(subscriber, 0)
        if count >= self.max_subscriptions_per_connection:
            raise SubscriptionLimitReached(self.max_subscriptions_per_connection)
        client = subscriber.client
        if client is not None and client.subscriptions >= self.max_subscriptions_per_client:
            raise SubscriptionLimitReached(self.max_subscriptions_per_client, "client")
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
        if client is not None:
            client.subscriptions += 1
        return True

    def remove(self, stream: str, identifier: str | None, subscriber: Subscriber) -> bool:
        """Unregister; False when this subscriber did not have this subscription."""
        by_id = self._streams.get(stream)
        members = by_id.get(identifier) if by_id is not None else None
        if members is None or subscriber not in members:
            return False
        members.remove(subscriber)
        self.subscriptions -= 1
        client = subscriber.client
        if client is not None:
            client.subscriptions -= 1
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
