"""Action Cable and Navigator-cable sessions, sans-I/O.

A session turns one client text message into the texts to send back and
registers its subscriptions in the stream registry. It never raises on input.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping

from . import signing
from .record import Record
from .streams import NAVIGATOR, StreamRegistry, SubscriptionLimitReached, dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .streams import Subscriber

PUBSUB = "$pubsub"
TURBO = "Turbo::StreamsChannel"
# Longest stream name and Action Cable identifier accepted from a client, in UTF-8 bytes.
MAX_STREAM_NAME_BYTES = 1024
MAX_IDENTIFIER_BYTES = 4096
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Log = Callable[..., None]


class Channel(Record):
    stream: str
    signed: bool = False


class Policy:
    """Which subscriptions are allowed; rebuilt from configuration on reload."""

    __slots__ = (
        "public_streams",
        "navigator_open",
        "secret",
        "channels",
        "max_stream_name_bytes",
        "max_identifier_bytes",
        "_signed",
        "_unsigned",
    )

    def __init__(
        self,
        public_streams: bool,
        secret: bytes | None,
        channels: Mapping[str, Channel],
        max_stream_name_bytes: int = MAX_STREAM_NAME_BYTES,
        max_identifier_bytes: int = MAX_IDENTIFIER_BYTES,
        navigator_open: bool = False,
    ) -> None:
        self.public_streams = public_streams
        # navigator_protocol: open, where the hub stands in for Navigator's cable, which
        # subscribes anyone to any stream; Action Cable subscriptions keep every rule.
        self.navigator_open = navigator_open
        self.secret = secret
        self.channels = dict(channels)
        self.max_stream_name_bytes = max_stream_name_bytes
        self.max_identifier_bytes = max_identifier_bytes
        self._signed = Templates([c.stream for c in self.channels.values() if c.signed])
        self._unsigned = Templates([c.stream for c in self.channels.values() if not c.signed])

    def _signed_only(self, stream: str) -> bool:
        """Streams of signed channels are only ever reachable with a signature."""
        return self._signed.match(stream)

    def stream_too_long(self, stream: str) -> bool:
        return _longer_than(stream, self.max_stream_name_bytes)

    def identifier_too_long(self, identifier: str) -> bool:
        return _longer_than(identifier, self.max_identifier_bytes)

    def navigator_allowed(self, stream: str) -> str:
        """Why a raw Navigator-protocol subscribe to `stream` is refused, or "" when it is allowed.

        That protocol cannot carry a signature, so it gets what an unsigned Action Cable
        subscription could reach: streams of unsigned channels, or any other unsigned
        stream when public streams are on. When open, only the length bound applies.
        """
        if self.stream_too_long(stream):
            return "stream name too long"
        if self.navigator_open:
            return ""
        if self._signed_only(stream):
            return "stream of a signed channel"
        if self.public_streams or self._unsigned.match(stream):
            return ""
        return "public streams are off"

    def resolve(self, params: dict[str, Any], query: str) -> tuple[str | None, str]:
        """The stream a subscription maps to, or None and why not."""
        channel = params.get("channel")
        signed_name = params.get("signed_stream_name")
        if channel in (PUBSUB, TURBO):
            if signed_name is not None:
                return self._verified(signed_name)
            if channel == PUBSUB and "stream_name" in params:
                name = params["stream_name"]
                if not isinstance(name, str) or not name:
                    return None, "stream_name is not a string"
                if self.stream_too_long(name):
                    return None, "stream name too long"
                if self._signed_only(name):
                    return None, "stream of a signed channel"
                if not self.public_streams:
                    return None, "public streams are off"
                return name, ""
            return None, "no stream name"
        config = self.channels.get(channel) if isinstance(channel, str) else None
        if config is None:
            return None, "unknown channel"
        stream, missing = fill(config.stream, params, query)
        if stream is None:
            return None, f"missing {missing}"
        if self.stream_too_long(stream):
            return None, "stream name too long"
        if config.signed:
            verified, why = self._verified(signed_name)
            if verified is None:
                return None, why
            if verified != stream:
                return None, "signed stream does not match"
        elif self._signed_only(stream):
            # An unsigned template can produce a signed channel's stream: room_{id} with id admin_7
            # gives room_admin_7 of room_admin_{n}.
            return None, "stream of a signed channel"
        return stream, ""

    def _verified(self, signed_name: Any) -> tuple[str | None, str]:
        if self.secret is None:
            return None, "no signing secret configured"
        if not isinstance(signed_name, str):
            return None, "signed_stream_name missing"
        stream = signing.verify(signed_name, self.secret)
        if stream is None:
            return None, "bad signature"
        if self.stream_too_long(stream):
            return None, "stream name too long"
        return stream, ""


def _longer_than(text: str, limit: int) -> bool:
    """Whether `text` is more than `limit` bytes in UTF-8, without encoding it when its length decides."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class Templates:
    """Matches stream names against {placeholder} templates in time linear in the name.

    A placeholder stands for one or more characters of any kind, newlines included. Names come
    from the network, so there is no regex here: `.+` per placeholder backtracks polynomially.
    """

    __slots__ = ("_exact", "_pieces")

    def __init__(self, templates: list[str]) -> None:
        # split() alternates literal text and placeholder names; keep the literals.
        split = [_PLACEHOLDER.split(t)[::2] for t in templates]
        self._exact = frozenset(p[0] for p in split if len(p) == 1)
        self._pieces = tuple(tuple(p) for p in split if len(p) > 1)

    def match(self, name: str) -> bool:
        return name in self._exact or any(_fits(pieces, name) for pieces in self._pieces)


def _fits(pieces: tuple[str, ...], name: str) -> bool:
    """Whether `name` is pieces[0] X pieces[1] X ... X pieces[-1], each X non-empty.

    Taking each middle literal at its leftmost place (after at least one character) is enough:
    it ends no later than in any other match, which leaves the most room for what follows.
    """
    first, last = pieces[0], pieces[-1]
    position = len(first)
    end = len(name) - len(last)
    if end <= position or not name.startswith(first) or not name.endswith(last):
        return False
    for literal in pieces[1:-1]:
        found = name.find(literal, position + 1, end)
        if found < 0:
            return False
        position = found + len(literal)
    return position < end


def _param_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def template_problem(template: str) -> str:
    """Why a stream template is malformed, or "" when every brace belongs to a {name} placeholder."""
    leftover = _PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        return f"{template!r}: placeholders are {{name}} with letters, digits and _"
    return ""


def placeholders(template: str) -> list[str]:
    """The {name}s a template uses, in order."""
    return _PLACEHOLDER.findall(template)


def fill(template: str, params: dict[str, Any], query: str) -> tuple[str | None, str]:
    """Fill {placeholders} from subscription params, then the URL query; (None, name) if one is missing."""
    names = placeholders(template)
    if not names:
        return template, ""
    from_query: dict[str, list[str]] = {}
    if query:
        # Imported on first use: most deployments never need it, and it costs resident memory for good.
        from urllib.parse import parse_qs

        from_query = parse_qs(query)
    values: dict[str, str] = {}
    for name in names:
        value = _param_text(params.get(name))
        if value is None and name in from_query:
            value = _param_text(from_query[name][0])
        if value is None:
            return None, name
        values[name] = value
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template), ""


class Context:
    """What all sessions share: the current policy, the registry, the log and the count of refused subscriptions."""

    __slots__ = ("policy", "registry", "log", "rejected_subscriptions")

    def __init__(self, policy: Policy, registry: StreamRegistry, log: Log) -> None:
        self.policy = policy
        self.registry = registry
        self.log = log
        self.rejected_subscriptions = 0

    def reject(self, **fields: Any) -> None:
        self.rejected_subscriptions += 1
        self.log("subscription_rejected", **fields)


def disconnect_message(reason: str, reconnect: bool) -> str:
    return '{"type":"disconnect","reason":' + dumps(reason) + ',"reconnect":' + ("true" if reconnect else "false") + "}"


def _parse_object(text: str) -> dict[str, Any] | None:
    try:
        value = loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class ActionCableSession:
    __slots__ = ("ctx", "subscriber", "query", "subs")

    def __init__(self, ctx: Context, subscriber: Subscriber, query: str = "") -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.query = query
        # identifier -> stream: O(1) subscribe and unsubscribe (issue: a tuple scan grew with every subscription).
        self.subs: dict[str, str] = {}

    @staticmethod
    def welcome(sid: str) -> str:
        return '{"type":"welcome","sid":' + dumps(sid) + "}"

    def receive(self, text: str) -> list[str]:
        message = _parse_object(text)
        if message is None:
            self.ctx.log("ignored", why="malformed JSON", size=len(text))
            return []
        command = message.get("command")
        identifier = message.get("identifier")
        if not isinstance(identifier, str):
            self.ctx.log("ignored", why="identifier is not a string", command=str(command)[:64])
            return []
        # Identifiers are never logged: one may carry a signed_stream_name, a bearer credential.
        if self.ctx.policy.identifier_too_long(identifier):
            if command == "subscribe":
                # Rejected rather than ignored: Action Cable clients resend an unanswered subscribe.
                self.ctx.reject(why="identifier too long")
                return [_reply(identifier, "reject_subscription")]
            self.ctx.log("ignored", why="identifier too long", command=str(command)[:64])
            return []
        if command == "subscribe":
            return self._subscribe(identifier)
        if command == "unsubscribe":
            self._unsubscribe(identifier)
        elif command == "message":
            self.ctx.log("ignored", why="channel actions are not served", channel=_channel_of(_parse_object(identifier)))
        elif command != "pong":  # pong only arrives from actioncable-v1-ext-json clients
            self.ctx.log("ignored", why="unknown command", command=str(command)[:64])
        return []

    def _resolve(self, identifier: str) -> tuple[str | None, str, str]:
        """The stream the current policy maps `identifier` to (None and why not), and its channel for the log."""
        params = _parse_object(identifier)
        if params is None:
            return None, "identifier is not a JSON object", ""
        return *self.ctx.policy.resolve(params, self.query), _channel_of(params)

    def _subscribe(self, identifier: str) -> list[str]:
        if identifier in self.subs:
            return [_reply(identifier, "confirm_subscription")]
        stream, why, channel = self._resolve(identifier)
        if stream is None:
            self.ctx.reject(channel=channel, why=why)
            return [_reply(identifier, "reject_subscription")]
        # Interned, so thousands of clients on the same channel share one identifier and stream object.
        identifier = sys.intern(identifier)
        stream = sys.intern(stream)
        try:
            self.ctx.registry.add(stream, identifier, self.subscriber)
        except SubscriptionLimitReached as limit:
            self.ctx.reject(channel=channel, why=str(limit))
            return [_reply(identifier, "reject_subscription")]
        self.subs[identifier] = stream
        self.ctx.log("subscribed", stream=stream)
        return [_reply(identifier, "confirm_subscription")]

    def _unsubscribe(self, identifier: str) -> None:
        stream = self.subs.pop(identifier, None)
        if stream is not None:
            self.ctx.registry.remove(stream, identifier, self.subscriber)
            self.ctx.log("unsubscribed", stream=stream)

    def has_forbidden_subscriptions(self) -> bool:
        """Whether the current policy (after a reload) would refuse a subscription held, or map it elsewhere."""
        return any(self._resolve(identifier)[0] != stream for identifier, stream in self.subs.items())

    def close(self) -> None:
        for identifier, stream in self.subs.items():
            self.ctx.registry.remove(stream, identifier, self.subscriber)
        self.subs = {}


def _channel_of(params: dict[str, Any] | None) -> str:
    channel = params.get("channel") if params is not None else None
    return channel[:64] if isinstance(channel, str) else ""


def _reply(identifier: str, kind: str) -> str:
    return '{"identifier":' + dumps(identifier) + ',"type":"' + kind + '"}'


class NavigatorSession:
    """Navigator's built-in cable protocol: raw stream names, no identifiers."""

    __slots__ = ("ctx", "subscriber", "subs")

    def __init__(self, ctx: Context, subscriber: Subscriber) -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.subs: set[str] = set()

    def receive(self, text: str) -> list[str]:
        message = _parse_object(text)
        if message is None:
            self.ctx.log("ignored", why="malformed JSON", size=len(text))
            return []
        kind = message.get("type")
        stream = message.get("stream")
        if kind == "pong":
            return []
        if kind not in ("subscribe", "unsubscribe") or not isinstance(stream, str) or not stream:
            self.ctx.log("ignored", why="unknown message", type=str(kind)[:64])
            return []
        if kind == "unsubscribe":
            if stream in self.subs:
                self.ctx.registry.remove(stream, NAVIGATOR, self.subscriber)
                self.subs.discard(stream)
                self.ctx.log("unsubscribed", stream=stream)
            return []
        refusal = self.ctx.policy.navigator_allowed(stream)
        if refusal:
            # Not the stream: a client may send a signed stream name here.
            self.ctx.reject(why=refusal)
            return []
        if stream not in self.subs:
            stream = sys.intern(stream)
            try:
                self.ctx.registry.add(stream, NAVIGATOR, self.subscriber)
            except SubscriptionLimitReached as limit:
                self.ctx.reject(why=str(limit))
                return []
            self.subs.add(stream)
            self.ctx.log("subscribed", stream=stream)
        return ['{"type":"subscribed","stream":' + dumps(stream) + "}"]

    def drop_forbidden(self) -> int:
        """Unregister the streams the current policy (after a reload) refuses; how many there were.

        Navigator's protocol has no message telling a client so: it simply receives nothing more for them.
        """
        forbidden = [stream for stream in self.subs if self.ctx.policy.navigator_allowed(stream)]
        for stream in forbidden:
            self.ctx.registry.remove(stream, NAVIGATOR, self.subscriber)
            self.subs.discard(stream)
        return len(forbidden)

    def close(self) -> None:
        for stream in self.subs:
            self.ctx.registry.remove(stream, NAVIGATOR, self.subscriber)
        self.subs = set()
