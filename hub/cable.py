"""Action Cable and Navigator-cable sessions, sans-I/O.

A session turns one client text message into the texts to send back and
registers its subscriptions in the stream registry. It never raises on input.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import signing
from .streams import NAVIGATOR, StreamRegistry, Subscriber, dumps

PUBSUB = "$pubsub"
TURBO = "Turbo::StreamsChannel"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Log = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Channel:
    stream: str
    signed: bool = False


class Policy:
    """Which subscriptions are allowed; rebuilt from configuration on reload."""

    __slots__ = ("public_streams", "secret", "channels", "_signed", "_unsigned")

    def __init__(self, public_streams: bool, secret: bytes | None, channels: Mapping[str, Channel]) -> None:
        self.public_streams = public_streams
        self.secret = secret
        self.channels = dict(channels)
        self._signed = _templates_pattern([c.stream for c in self.channels.values() if c.signed])
        self._unsigned = _templates_pattern([c.stream for c in self.channels.values() if not c.signed])

    def _signed_only(self, stream: str) -> bool:
        """Streams of signed channels are only ever reachable with a signature."""
        return self._signed is not None and self._signed.fullmatch(stream) is not None

    def navigator_allowed(self, stream: str) -> str:
        """Why a raw Navigator-protocol subscribe to `stream` is refused, or "" when it is allowed.

        That protocol cannot carry a signature, so it gets what an unsigned Action Cable
        subscription could reach: streams of unsigned channels, or any other unsigned
        stream when public streams are on.
        """
        if self._signed_only(stream):
            return "stream of a signed channel"
        if self.public_streams or (self._unsigned is not None and self._unsigned.fullmatch(stream)):
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
        if config.signed:
            verified, why = self._verified(signed_name)
            if verified is None:
                return None, why
            if verified != stream:
                return None, "signed stream does not match"
        return stream, ""

    def _verified(self, signed_name: Any) -> tuple[str | None, str]:
        if self.secret is None:
            return None, "no signing secret configured"
        if not isinstance(signed_name, str):
            return None, "signed_stream_name missing"
        stream = signing.verify(signed_name, self.secret)
        if stream is None:
            return None, "bad signature"
        return stream, ""


def _templates_pattern(templates: list[str]) -> re.Pattern[str] | None:
    """A regex matching every stream the templates can produce."""
    if not templates:
        return None
    # split() alternates literal text and placeholder names.
    alternatives = ("".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(_PLACEHOLDER.split(t))) for t in templates)
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


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
    """What all sessions share: the current policy, the registry and the log."""

    __slots__ = ("policy", "registry", "log")

    def __init__(self, policy: Policy, registry: StreamRegistry, log: Log) -> None:
        self.policy = policy
        self.registry = registry
        self.log = log


def disconnect_message(reason: str, reconnect: bool) -> str:
    return '{"type":"disconnect","reason":' + dumps(reason) + ',"reconnect":' + ("true" if reconnect else "false") + "}"


def _parse_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class ActionCableSession:
    __slots__ = ("ctx", "subscriber", "query", "subs")

    def __init__(self, ctx: Context, subscriber: Subscriber, query: str = "") -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.query = query
        # (identifier, stream) pairs: a tuple is far smaller than a dict for the usual one or two.
        self.subs: tuple[tuple[str, str], ...] = ()

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
        if command == "subscribe":
            return self._subscribe(identifier)
        if command == "unsubscribe":
            self._unsubscribe(identifier)
        elif command == "message":
            self.ctx.log("ignored", why="channel actions are not served", identifier=identifier[:200])
        elif command != "pong":  # pong only arrives from actioncable-v1-ext-json clients
            self.ctx.log("ignored", why="unknown command", command=str(command)[:64])
        return []

    def _subscribe(self, identifier: str) -> list[str]:
        if any(i == identifier for i, _ in self.subs):
            return [_reply(identifier, "confirm_subscription")]
        params = _parse_object(identifier)
        if params is None:
            stream, why = None, "identifier is not a JSON object"
        else:
            stream, why = self.ctx.policy.resolve(params, self.query)
        if stream is None:
            self.ctx.log("subscription_rejected", identifier=identifier[:200], why=why)
            return [_reply(identifier, "reject_subscription")]
        # Interned, so thousands of clients on the same channel share one identifier and stream object.
        identifier = sys.intern(identifier)
        stream = sys.intern(stream)
        self.ctx.registry.add(stream, identifier, self.subscriber)
        self.subs += ((identifier, stream),)
        self.ctx.log("subscribed", stream=stream)
        return [_reply(identifier, "confirm_subscription")]

    def _unsubscribe(self, identifier: str) -> None:
        kept = tuple(pair for pair in self.subs if pair[0] != identifier)
        for i, stream in self.subs:
            if i == identifier:
                self.ctx.registry.remove(stream, i, self.subscriber)
                self.ctx.log("unsubscribed", stream=stream)
        self.subs = kept

    def close(self) -> None:
        for identifier, stream in self.subs:
            self.ctx.registry.remove(stream, identifier, self.subscriber)
        self.subs = ()


def _reply(identifier: str, kind: str) -> str:
    return '{"identifier":' + dumps(identifier) + ',"type":"' + kind + '"}'


class NavigatorSession:
    """Navigator's built-in cable protocol: raw stream names, no identifiers."""

    __slots__ = ("ctx", "subscriber", "subs")

    def __init__(self, ctx: Context, subscriber: Subscriber) -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.subs: tuple[str, ...] = ()

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
                self.subs = tuple(s for s in self.subs if s != stream)
                self.ctx.log("unsubscribed", stream=stream)
            return []
        refusal = self.ctx.policy.navigator_allowed(stream)
        if refusal:
            self.ctx.log("subscription_rejected", stream=stream, why=refusal)
            return []
        if stream not in self.subs:
            stream = sys.intern(stream)
            self.ctx.registry.add(stream, NAVIGATOR, self.subscriber)
            self.subs += (stream,)
            self.ctx.log("subscribed", stream=stream)
        return ['{"type":"subscribed","stream":' + dumps(stream) + "}"]

    def close(self) -> None:
        for stream in self.subs:
            self.ctx.registry.remove(stream, NAVIGATOR, self.subscriber)
        self.subs = ()
