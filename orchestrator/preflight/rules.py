"""What the facts mean for one mode: the findings, each blocking, a warning, or a note.

`action_cable` runs the app's own channel code on Puma, so it serves channel
actions and commands; it speaks only Action Cable's protocol. The three pub/sub
modes (`anycable` without RPC, `integrated`, `hub`) run none of the app's Ruby
code for a WebSocket: they map subscriptions to streams and forward broadcasts.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model import ChannelMapping, Inventory, Mode
from orchestrator.preflight.cable_config import GENERATED, GENERATED_ADAPTERS
from orchestrator.preflight.facts import AppFacts, Stream, Subscription
from orchestrator.preflight.findings import Code, Finding, Severity, Where
from orchestrator.stream_templates import templates_overlap

BLOCKING, WARNING, INFO = Severity.BLOCKING, Severity.WARNING, Severity.INFO
# What anycable-go without RPC accepts (anycable-go's own channels; v1.5.1 cli/cli.go:493-511): $pubsub always,
# Turbo::StreamsChannel with --turbo_streams, CableReady::Stream with --cable_ready.
_ANYCABLE_CHANNELS = ("$pubsub", "Turbo::StreamsChannel", "CableReady::Stream")
_ANYCABLE_ACCEPTS = ("$pubsub, Turbo::StreamsChannel (with websocket.turbo_streams) and CableReady::Stream "
                     "(with websocket.cable_ready)")
# What the hub serves without a websocket.channels entry: signed Turbo streams and $pubsub.
_HUB_BUILT_IN = ("$pubsub", "Turbo::StreamsChannel")
_TO_HTTP = ("move it to an HTTP request: a controller action that starts a job, and the job broadcasts its progress "
            "to a stream the page subscribes to (Showcase's CommandExecutionJob)")


@dataclass(frozen=True)
class CableSettings:
    """What the inventory says about the cable, or nothing when there is no inventory."""

    channels: dict[str, ChannelMapping]
    public_streams: bool
    turbo_streams: bool
    cable_ready: bool = False

    @classmethod
    def of(cls, inventory: Inventory | None) -> CableSettings:
        if inventory is None:
            return cls({}, False, False)
        websocket = inventory.websocket
        return cls({channel.name: channel for channel in websocket.channels}, websocket.public_streams,
                   websocket.turbo_streams, websocket.cable_ready)


class _Findings:
    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.found: list[Finding] = []

    def add(self, code: Code, severity: Severity, where: Where, message: str, remedy: str) -> None:
        self.found.append(Finding(code, severity, where, message, remedy, (self.mode,)))


def judge(facts: AppFacts, mode: Mode, settings: CableSettings) -> list[Finding]:
    findings = _Findings(mode)
    if mode != "action_cable":
        _ruby_needed(facts, findings)
    _protocols(facts, mode, settings, findings)
    _per_user_streams(facts, mode, settings, findings)
    _cable_yml(facts, findings)
    for what, where in facts.unused_clients:
        findings.add(Code.CLIENT_UNUSED, INFO, where, f"{what} speaks Action Cable, but no page loads it (nothing imports it)",
                     "remove it, or import it where it is meant to run (the audit ignores it until then)")
    for name, where in facts.unused_packages:
        findings.add(Code.CLIENT_UNUSED, INFO, where, f"{name} is a dependency, but no code the pages load imports it",
                     "remove it once nothing needs it")
    for where, why in facts.skipped:
        findings.add(Code.FILE_SKIPPED, WARNING, where, f"not audited: {why}", "check this file by hand")
    return findings.found


def _ruby_needed(facts: AppFacts, findings: _Findings) -> None:
    """What needs a server that runs the app's Ruby code for a WebSocket: no pub/sub cable is one."""
    for channel in facts.channels:
        for action, where in channel.actions:
            if channel.base:
                message = (f"{channel.name}#{action} is public, so every channel inherits it as an action a client can "
                           f"`perform`; answering it needs a server that runs the app's Ruby code, and no pub/sub cable does")
            else:
                message = (f"{channel.name}#{action} is public, so it is an action a client can `perform`; answering it "
                           f"needs a server that runs the app's Ruby code, and no pub/sub cable does")
            findings.add(Code.CHANNEL_ACTION, BLOCKING, where, message, f"{_TO_HTTP}; or make it private if no client calls it")
        for where in channel.callbacks:
            findings.add(Code.STREAM_CALLBACK, BLOCKING, where,
                         f"{channel.name} streams with a block or lambda: Ruby code run for every broadcast, which only Action Cable runs",
                         "broadcast the finished payload from the server side instead")
        for what, where in channel.commands:
            findings.add(Code.CHANNEL_RUNS_COMMANDS, BLOCKING, where,
                         f"{channel.name} runs a command ({what}) inside the cable server: the command output has not moved to HTTP yet",
                         _TO_HTTP)
    for where in facts.tokens:
        what = "the token registry exists" if where.line is None else "code reads or writes the token registry"
        findings.add(Code.TOKENS_FILE, BLOCKING, where,
                     f"{what}: a channel action looks commands up by token, a leftover of command output over the WebSocket",
                     f"finish the move to HTTP and remove the registry and the code that registers tokens; {_TO_HTTP}")
    for call, where in facts.messages:
        findings.add(Code.CLIENT_PERFORM, BLOCKING, where,
                     f"{call}(...) sends a message to the server over a subscription; no pub/sub cable runs the channel code that answers it",
                     "send it as an HTTP request (fetch or a form) and let the server broadcast what follows")
    for what, where in facts.connection_auth:
        findings.add(Code.CONNECTION_AUTH, WARNING, where,
                     f"{what} authenticates WebSocket connections, but no pub/sub cable runs it: the cable path is protected "
                     f"only by Navigator's auth (and, in the hub mode, by signed streams)",
                     "keep the cable path behind Navigator's auth (websocket.public_path off) where it must be, and sign per-user streams")
    for what, where in facts.redis:
        findings.add(Code.REDIS_IN_USE, WARNING, where,
                     f"{what}: Redis is used outside Action Cable, so it cannot be removed from the image, and this mode starts none",
                     "keep a Redis running for it (about 13 MB per region off the saving), or move that use off Redis")


def _protocols(facts: AppFacts, mode: Mode, settings: CableSettings, findings: _Findings) -> None:
    """Whether the mode speaks the protocol each page's subscription uses."""
    for stream in facts.navigator_streams:
        if mode in ("action_cable", "anycable"):
            findings.add(Code.CLIENT_PROTOCOL, BLOCKING, stream.where,
                         f"the page subscribes to {stream.shown} over Navigator's protocol (the turbo_cable gem's "
                         f"turbo_stream_from), which neither Action Cable on Puma nor anycable-go speaks",
                         "serve it in the integrated or hub mode, or subscribe with turbo-rails' signed turbo_stream_from")
        elif mode == "hub" and not _hub_lets_through(stream, settings):
            findings.add(Code.HUB_STREAM_REFUSED, BLOCKING, stream.where,
                         f"the page subscribes to {stream.shown} over Navigator's protocol; the hub lets that protocol reach "
                         f"only streams of unsigned channels (or any unsigned stream with websocket.public_streams), and "
                         f"neither covers {stream.template!r}",
                         "set websocket.public_streams: true, or map an unsigned channel whose stream template covers it")
    for subscription in facts.subscriptions:
        if mode == "integrated":
            findings.add(Code.CLIENT_PROTOCOL, BLOCKING, subscription.where,
                         f"subscribes to {subscription.channel or 'a channel'} with an Action Cable client "
                         f"({subscription.via}); Navigator's built-in cable speaks only its own protocol and answers no "
                         f"Action Cable subscription",
                         "subscribe by stream name with the turbo_cable gem's turbo_stream_from, or use the hub mode, "
                         "which speaks both protocols")
        elif mode == "anycable":
            _anycable_subscription(subscription, settings, findings)
        elif mode == "hub":
            _hub_subscription(subscription, settings, findings)


def _anycable_subscription(subscription: Subscription, settings: CableSettings, findings: _Findings) -> None:
    channel = subscription.channel
    if channel is None:
        findings.add(Code.CHANNEL_UNSUPPORTED, WARNING, subscription.where,
                     f"subscribes to a channel the audit cannot name; anycable-go without RPC accepts only {_ANYCABLE_ACCEPTS}",
                     "check that the channel is one of those")
    elif channel not in _ANYCABLE_CHANNELS:
        findings.add(Code.CHANNEL_UNSUPPORTED, BLOCKING, subscription.where,
                     f"subscribes to {channel}: anycable-go without RPC rejects every channel but {_ANYCABLE_ACCEPTS}",
                     "subscribe with turbo-rails' turbo_stream_from or a signed $pubsub stream, or use the hub mode")
    elif channel == "Turbo::StreamsChannel" and not settings.turbo_streams:
        findings.add(Code.CHANNEL_UNSUPPORTED, BLOCKING, subscription.where,
                     "subscribes with turbo-rails' turbo_stream_from, but websocket.turbo_streams is not set, so "
                     "anycable-go runs without --turbo_streams and rejects Turbo::StreamsChannel",
                     "set websocket.turbo_streams: true (the signing secret is Turbo's signed_stream_verifier_key)")
    elif channel == "CableReady::Stream" and not settings.cable_ready:
        findings.add(Code.CHANNEL_UNSUPPORTED, BLOCKING, subscription.where,
                     "subscribes to CableReady::Stream, but websocket.cable_ready is not set, so anycable-go runs "
                     "without --cable_ready and rejects CableReady::Stream",
                     "set websocket.cable_ready: true (the signing secret must be CableReady's verifier key)")


def _hub_subscription(subscription: Subscription, settings: CableSettings, findings: _Findings) -> None:
    channel = subscription.channel
    if channel is None:
        findings.add(Code.CHANNEL_UNMAPPED, WARNING, subscription.where,
                     "subscribes to a channel the audit cannot name; the hub serves only the channels websocket.channels maps",
                     "check that websocket.channels maps it")
    elif channel not in _HUB_BUILT_IN and channel not in settings.channels:
        findings.add(Code.CHANNEL_UNMAPPED, BLOCKING, subscription.where,
                     f"subscribes to {channel}, which websocket.channels does not map to a stream: the hub refuses "
                     f"subscriptions to channels it does not know",
                     f"add websocket.channels.{channel} with its stream template (signed: true when the stream is one user's)")


def _hub_lets_through(stream: Stream, settings: CableSettings) -> bool:
    if settings.public_streams:
        return True
    return any(templates_overlap(stream.template, mapping.stream) for mapping in settings.channels.values() if not mapping.signed)


def _per_user_streams(facts: AppFacts, mode: Mode, settings: CableSettings, findings: _Findings) -> None:
    """Streams with one user's id (or a secret) in their name, where nothing checks who subscribes."""
    subscribed = {subscription.channel for subscription in facts.subscriptions}
    for channel in facts.channels:
        for stream in channel.streams:
            if not stream.per_user:
                continue
            mapping = settings.channels.get(channel.name)
            parts = ", ".join(stream.per_user)
            if mode == "integrated":
                findings.add(Code.STREAM_PER_USER, WARNING, stream.where,
                             f"{channel.name} streams {stream.shown}, one user's stream ({parts}); Navigator's built-in "
                             f"cable authorizes no stream, so anyone who can guess the name can read it",
                             f"the hub mode with {channel.name} as a signed channel (websocket.channels.{channel.name}.signed: true)")
            elif mode == "hub" and (mapping is not None or channel.name in subscribed) and not (mapping and mapping.signed):
                findings.add(Code.STREAM_PER_USER, BLOCKING, stream.where,
                             f"{channel.name} streams {stream.shown}, one user's stream ({parts}), but websocket.channels "
                             f"does not mark {channel.name} signed: any client can subscribe with another user's id",
                             f"map it with signed: true (websocket.channels.{channel.name}) and have the page subscribe "
                             f"with a signed identifier")
    for stream in facts.navigator_streams:
        if not stream.per_user:
            continue
        parts = ", ".join(stream.per_user)
        if mode == "integrated":
            findings.add(Code.STREAM_PER_USER, WARNING, stream.where,
                         f"the page subscribes to {stream.shown}, one user's stream ({parts}), unsigned (the turbo_cable "
                         f"gem signs nothing); Navigator's built-in cable authorizes no stream, so anyone who can guess the "
                         f"name can read it",
                         "the hub mode with a signed channel for this stream, subscribed with an Action Cable client")
        elif mode == "hub":
            findings.add(Code.STREAM_PER_USER, BLOCKING, stream.where,
                         f"the page subscribes to {stream.shown}, one user's stream ({parts}), over Navigator's protocol, "
                         f"which cannot carry a signature: the hub would serve it to anyone who guesses the name",
                         "subscribe through a signed channel with an Action Cable client, or with turbo-rails' signed "
                         "turbo_stream_from")


def _cable_yml(facts: AppFacts, findings: _Findings) -> None:
    """The app's config/cable.yml against the generated one (templates/rails/cable.yml.j2), the same in every mode."""
    where = Where("config/cable.yml")
    if facts.cable_problem is not None:
        findings.add(Code.CABLE_YML_UNREADABLE, WARNING, where, f"cannot be read as Rails reads it: {facts.cable_problem}",
                     "compare it with the generated config/cable.yml by hand")
    if facts.cable is None:
        findings.add(Code.CABLE_YML, INFO, where, "the app has no config/cable.yml; the generated one supplies it",
                     "nothing to do")
        return
    for environment in facts.cable:
        place = Where(where.file, environment.line)
        shown = ", ".join(f"{key} {setting.value}" for key, setting in environment.settings.items()) or "nothing"
        kept = GENERATED.get(environment.name)
        if kept is None:
            findings.add(Code.CABLE_YML_LOST, WARNING, place,
                         f"{environment.name} ({shown}) is not in the generated config/cable.yml (development, test and "
                         f"production only): Rails run with RAILS_ENV={environment.name} would find no cable settings",
                         f"run that environment as production, or add {environment.name} to the generated file's copy")
            continue
        generated = GENERATED_ADAPTERS.get(environment.name, "CABLE_ADAPTER (each region's mode: redis, http_broadcast or any_cable_http)")
        findings.add(Code.CABLE_YML, INFO, place,
                     f"{environment.name} uses the {environment.adapter or 'default'} adapter ({shown}); the generated "
                     f"config/cable.yml uses {generated}",
                     "nothing to do: the generated file replaces it")
        for key, setting in environment.settings.items():
            if key not in kept:
                findings.add(Code.CABLE_YML_LOST, WARNING, Where(where.file, setting.line),
                             f"{environment.name}.{key} ({setting.value}) would be lost: the generated config/cable.yml "
                             f"sets only {' and '.join(kept)}" + (
                                 "; with no channel_prefix, apps that share a Redis share stream names, and Navigator's "
                                 "cable and the hub have no prefix at all" if key == "channel_prefix" else ""),
                             "make stream names unique by themselves (Showcase's carry the tenant's database), or keep "
                             "what the key does another way")
