"""What the app's source says, read once, before any mode is considered.

Channels and what they define, the pages' subscriptions and the protocol they
speak, streams and whether they belong to one user, leftovers of commands run
inside the cable server, Redis used for anything else, and config/cable.yml.
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hub.errors import InputError
from orchestrator.preflight import javascript, ruby
from orchestrator.preflight.cable_config import CableEnvironment, read_cable_yml
from orchestrator.preflight.findings import Where
from orchestrator.preflight.packages import Importmap, gemfile_gems, importmap, lockfile_gems, package_json_dependencies
from orchestrator.preflight.source import AppTree
from orchestrator.stream_templates import PER_USER_WORDS

CHANNEL_BASE = "ApplicationCable::Channel"
_CHANNEL_ROOTS = ("ActionCable::Channel::Base", CHANNEL_BASE, "Turbo::StreamsChannel")
_CONNECTION_ROOTS = ("ActionCable::Connection::Base", "ApplicationCable::Connection")
# Not actions a client performs: the subscription callbacks.
_NOT_ACTIONS = frozenset(("subscribed", "unsubscribed"))
_STREAM_CALLS = ("stream_from", "stream_for")
_CONNECTION_CALLS = ("identified_by", "reject_unauthorized_connection")
# Ways Ruby runs a program; the receiver is the module the call is made on (None: Kernel's own).
_COMMAND_CALLS = {
    "system": (None, "Kernel"), "exec": (None, "Kernel"), "spawn": (None, "Kernel", "Process", "PTY"),
    "`": (None,), "popen": ("IO", "Open3"), "popen2": ("Open3",), "popen2e": ("Open3",), "popen3": ("Open3",),
    "capture2": ("Open3",), "capture2e": ("Open3",), "capture3": ("Open3",), "pipeline": ("Open3",),
}
_TOKEN_FILES = ("tmp/tokens.yaml", "tmp/tokens.yml")
_TOKEN_NAMES = ("tokens.yaml", "tokens.yml")
_CLIENT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".jsx", ".tsx", ".coffee")
_VIEW_SUFFIXES = (".erb", ".haml", ".slim")
_SOURCE_DIRECTORIES = ("app", "lib", "config")
# Redis used for something else than Action Cable: constants, cache and session stores, gems.
_REDIS_CONSTANTS = ("Redis", "Sidekiq", "Kredis", "Resque")
_REDIS_SYMBOLS = ("redis_cache_store", "redis_store", "redis_session_store")
_REDIS_GEMS = ("sidekiq", "kredis", "resque", "redis-session-store", "redis-rails", "redis-store", "redis-actionpack")
_REDIS_MARKERS = (*_REDIS_CONSTANTS, "REDIS_URL", *_REDIS_SYMBOLS)  # only files that mention one are scanned
_PLACEHOLDER_NOISE = frozenset(("params", "ENV", "self", "to_s", "to_param", "fetch", "current"))


@dataclass(frozen=True, slots=True)
class Stream:
    where: Where
    shown: str  # as written in the source
    template: str  # with {placeholders} for its dynamic parts, as the inventory writes stream templates
    per_user: tuple[str, ...]  # the dynamic parts that belong to one user (or look secret)


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    where: Where
    actions: tuple[tuple[str, Where], ...]
    streams: tuple[Stream, ...]
    callbacks: tuple[Where, ...]  # stream_from with a block: Ruby code run for every broadcast
    commands: tuple[tuple[str, Where], ...]

    @property
    def base(self) -> bool:
        return self.name == CHANNEL_BASE


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription over the Action Cable protocol."""

    channel: str | None  # None when the source does not name it with a literal
    where: Where
    via: str


@dataclass(frozen=True, slots=True)
class AppFacts:
    channels: tuple[Channel, ...]
    connection_auth: tuple[tuple[str, Where], ...]
    subscriptions: tuple[Subscription, ...]  # from code the pages load, and from views
    messages: tuple[tuple[str, Where], ...]  # client-to-server messages over a subscription
    unused_clients: tuple[tuple[str, Where], ...]  # Action Cable client code nothing loads
    unused_packages: tuple[tuple[str, Where], ...]  # client packages listed or pinned, used by no loaded code
    navigator_streams: tuple[Stream, ...]  # the turbo_cable gem's turbo_stream_from: Navigator's protocol
    turbo_cable: Where | None  # where the gem is required
    tokens: tuple[Where, ...]
    redis: tuple[tuple[str, Where], ...]
    cable: tuple[CableEnvironment, ...] | None  # None: the app has no config/cable.yml
    cable_problem: str | None  # why config/cable.yml could not be read
    skipped: tuple[tuple[Where, str], ...]  # files not read, and why

    @property
    def protocols(self) -> tuple[str, ...]:
        """The client protocols the pages speak: `navigator` (Navigator's own) and `action_cable`."""
        return tuple(name for name, used in (("navigator", self.navigator_streams), ("action_cable", self.subscriptions)) if used)


def scan(tree: AppTree) -> AppFacts:
    gems = _gems(tree)
    turbo_cable = gems.get("turbo_cable")
    channels, connection_auth = _channels(tree)
    subscriptions, messages, unused_clients, used_packages = _client_code(tree)
    view_subscriptions, navigator_streams = _views(tree, turbo_cable is not None)
    cable, cable_problem = _cable(tree)
    packages, unreadable = _client_packages(tree)
    tokens = _tokens(tree)
    redis = _redis(tree, gems)
    return AppFacts(
        channels=channels,
        connection_auth=connection_auth,
        subscriptions=subscriptions + view_subscriptions,
        messages=messages,
        unused_clients=unused_clients,
        unused_packages=tuple(item for item in packages if item[0] not in used_packages),
        navigator_streams=navigator_streams,
        turbo_cable=turbo_cable,
        tokens=tokens,
        redis=redis,
        cable=cable,
        cable_problem=cable_problem,
        skipped=unreadable + tuple((Where(path), why) for path, why in tree.skipped.items()),
    )


# --- gems --------------------------------------------------------------------------------


def _gems(tree: AppTree) -> dict[str, Where]:
    """Every gem the Gemfile asks for, then every gem Gemfile.lock resolves, with where it is named."""
    found: dict[str, Where] = {}
    for name, reader in (("Gemfile", gemfile_gems), ("Gemfile.lock", lockfile_gems)):
        text = tree.read(name)
        if text is not None:
            for gem, line in reader(text).items():
                found.setdefault(gem, Where(name, line))
    return found


# --- channels --------------------------------------------------------------------------------


def _channels(tree: AppTree) -> tuple[tuple[Channel, ...], tuple[tuple[str, Where], ...]]:
    classes: list[tuple[str, ruby.ClassDef]] = []
    calls: dict[tuple[str, str | None], list[ruby.Call]] = {}  # (file, class) -> its calls
    wanted = (*_STREAM_CALLS, *_CONNECTION_CALLS, *_COMMAND_CALLS)
    for path in tree.files("app/channels", (".rb",)):
        text = tree.read(path)
        if text is None:
            continue
        outline = ruby.outline(ruby.tokenize(text), wanted)
        classes.extend((path, definition) for definition in outline.classes)
        for call in outline.calls:
            calls.setdefault((path, call.owner), []).append(call)
    ancestry = _Ancestry({definition.name: definition for _, definition in classes})
    channels = []
    connection_auth: list[tuple[str, Where]] = []
    for path, definition in classes:
        own = calls.get((path, definition.name), [])
        if ancestry.descends(definition, _CONNECTION_ROOTS):
            connection_auth.extend(
                (f"{definition.name}#connect", Where(path, method.line))
                for method in definition.methods if method.name == "connect" and not method.singleton
            )
            connection_auth.extend(
                (f"{definition.name}: {call.name}", Where(path, call.line)) for call in own if call.name in _CONNECTION_CALLS
            )
            continue
        if definition.name != CHANNEL_BASE and not ancestry.descends(definition, _CHANNEL_ROOTS):
            continue
        channels.append(Channel(
            name=definition.name,
            where=Where(path, definition.line),
            actions=tuple(
                (method.name, Where(path, method.line)) for method in definition.methods
                if method.public and not method.singleton and method.name not in _NOT_ACTIONS
            ),
            streams=tuple(
                _stream(call.arguments[0], Where(path, call.line), call.name)
                for call in own if call.name in _STREAM_CALLS and call.arguments
            ),
            callbacks=tuple(Where(path, call.line) for call in own if call.name in _STREAM_CALLS and call.block),
            commands=tuple(
                (_command_name(call), Where(path, call.line)) for call in own
                if call.name in _COMMAND_CALLS and call.receiver in _COMMAND_CALLS[call.name]
            ),
        ))
    return tuple(channels), tuple(connection_auth)


class _Ancestry:
    """Which classes of app/channels inherit from which roots, each answer remembered (a chain is walked once)."""

    def __init__(self, by_name: dict[str, ruby.ClassDef]) -> None:
        self.by_name = by_name
        self.parents: dict[str, str | None] = {}  # class -> the superclass as resolved, or None
        self.answers: dict[tuple[str, tuple[str, ...]], bool] = {}

    def parent(self, definition: ruby.ClassDef) -> str | None:
        """The superclass's full name: the app's own class it names, else the name as written."""
        if definition.name not in self.parents:
            resolved = None
            if definition.superclass:
                scopes = range(len(definition.scope), -1, -1)
                candidates = ["::".join((*definition.scope[:depth], definition.superclass)) for depth in scopes]
                resolved = next((name for name in candidates if name in self.by_name), definition.superclass)
            self.parents[definition.name] = resolved
        return self.parents[definition.name]

    def descends(self, definition: ruby.ClassDef, roots: tuple[str, ...]) -> bool:
        walked: dict[str, None] = {}  # in order, and quick to look up
        current: ruby.ClassDef | None = definition
        answer = False
        while current is not None:
            known = self.answers.get((current.name, roots))
            if known is not None:
                answer = known
                break
            if current.name in walked:  # a cycle: no root at the end of it
                break
            walked[current.name] = None
            parent = self.parent(current)
            if parent is None:
                break
            if parent.removeprefix("::") in roots:
                answer = True
                break
            current = self.by_name.get(parent)
        for name in walked:
            self.answers[(name, roots)] = answer
        return answer


def _command_name(call: ruby.Call) -> str:
    if call.name == "`":
        return "`backticks`"
    return f"{call.receiver}.{call.name}" if call.receiver else call.name


# --- streams -------------------------------------------------------------------------------


def _stream(argument: Sequence[ruby.Token], where: Where, call: str) -> Stream:
    """A stream name as written: a string literal (with interpolations) or an expression (a model, an id)."""
    if len(argument) == 1 and argument[0].kind is ruby.Kind.STRING:
        token = argument[0]
        dynamic = token.interpolations
        template = token.pieces[0] + "".join(
            "{" + _placeholder(code) + "}" + piece for code, piece in zip(token.interpolations, token.pieces[1:])
        )
        shown = f'"{token.text}"'
    elif len(argument) == 1 and argument[0].kind is ruby.Kind.SYMBOL:
        dynamic, template, shown = (), argument[0].text, f":{argument[0].text}"
    else:
        code = "".join(token.text for token in argument)
        dynamic, template, shown = (code,), "{" + _placeholder(code) + "}", code
    if call == "stream_for":
        shown = f"stream_for {shown}"
    per_user = tuple(code for code in dynamic if _belongs_to_a_user(code))
    return Stream(where, shown, template, per_user)


def _belongs_to_a_user(code: str) -> bool:
    return any(word in name.lower() for name in ruby.words(code) for word in PER_USER_WORDS)


def _placeholder(code: str) -> str:
    """A placeholder name for an interpolation: `params[:user_id]` -> user_id, `user&.id` -> user_id."""
    parts = [name.lower() for name in ruby.words(code) if name not in _PLACEHOLDER_NOISE and not name.isdigit()]
    return "_".join(parts).lstrip("0123456789") or "value"


# --- client code ----------------------------------------------------------------------------


def _client_code(
    tree: AppTree,
) -> tuple[tuple[Subscription, ...], tuple[tuple[str, Where], ...], tuple[tuple[str, Where], ...], set[str]]:
    """Subscriptions and messages in the JavaScript the pages load; Action Cable code that nothing loads."""
    files: dict[str, javascript.ClientFile] = {}
    for top in ("app/javascript", "app/assets/javascripts"):
        for path in tree.files(top, _CLIENT_SUFFIXES):
            text = tree.read(path)
            if text is not None:
                coffee = path.endswith(".coffee")
                files[path] = javascript.analyse(javascript.tokenize(text, coffee=coffee), coffee)
    pins = _importmap(tree)
    loaded = _loaded(files, pins)
    subscriptions: list[Subscription] = []
    messages: list[tuple[str, Where]] = []
    unused: list[tuple[str, Where]] = []
    used_packages: set[str] = set()
    for path, client in files.items():
        if path not in loaded:
            if client.speaks_action_cable:
                line = min((*client.consumers, *(s.line for s in client.subscriptions), *(m.line for m in client.messages)))
                unused.append((path, Where(path, line)))
            continue
        used_packages.update(name for name in client.imports if name in javascript.ACTION_CABLE_PACKAGES)
        via = _via(path, files, loaded, pins)
        subscriptions.extend(Subscription(s.channel, Where(path, s.line), via) for s in client.subscriptions)
        messages.extend((m.call, Where(path, m.line)) for m in client.messages)
    for path, first_line, script in _inline_scripts(tree):
        client = javascript.analyse(javascript.tokenize(script, first_line))
        subscriptions.extend(Subscription(s.channel, Where(path, s.line), "a script in the page") for s in client.subscriptions)
        messages.extend((m.call, Where(path, m.line)) for m in client.messages)
        used_packages.update(name for name in client.imports if name in javascript.ACTION_CABLE_PACKAGES)
    return tuple(subscriptions), tuple(messages), tuple(unused), used_packages


def _importmap(tree: AppTree) -> Importmap:
    text = tree.read("config/importmap.rb")
    return importmap(text) if text is not None else Importmap({}, {})


def _entry_point(path: str) -> bool:
    """Files a page loads without an import naming them: entry points, Stimulus controllers, Sprockets assets."""
    if path.startswith("app/assets/javascripts/"):
        return True
    inside = path[len("app/javascript/"):]
    return "/" not in inside or inside.startswith(("controllers/", "packs/", "entrypoints/"))


def _loaded(files: dict[str, javascript.ClientFile], pins: Importmap) -> set[str]:
    """Every client file reachable by imports from an entry point (a walk over the import graph)."""
    loaded = {path for path in files if _entry_point(path)}
    todo = deque(loaded)
    while todo:
        path = todo.popleft()
        for specifier in files[path].imports:
            target = _resolve(specifier, path, files, pins)
            if target is not None and target not in loaded:
                loaded.add(target)
                todo.append(target)
    return loaded


def _resolve(specifier: str, importer: str, files: dict[str, javascript.ClientFile], pins: Importmap) -> str | None:
    """The app's file an import names: relative, an importmap `pin_all_from` prefix, or under app/javascript."""
    if specifier.startswith("."):
        base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), specifier))
    else:
        prefix = next((prefix for prefix in pins.directories if specifier == prefix or specifier.startswith(prefix + "/")), None)
        base = pins.directories[prefix] + specifier[len(prefix):] if prefix is not None else f"app/javascript/{specifier}"
    candidates = (base, *(base + suffix for suffix in _CLIENT_SUFFIXES), *(f"{base}/index{suffix}" for suffix in _CLIENT_SUFFIXES))
    return next((candidate for candidate in candidates if candidate in files), None)


def _via(path: str, files: dict[str, javascript.ClientFile], loaded: set[str], pins: Importmap) -> str:
    """Which client a file's subscriptions use: the package behind the consumer it creates or imports."""
    seen = {path}
    todo = deque([path])
    while todo:
        current = todo.popleft()
        client = files[current]
        package = next((name for name in client.imports if name in javascript.ACTION_CABLE_PACKAGES), None)
        if package is not None:
            return f"{package}, through {current}" if current != path else package
        for specifier in client.imports:
            target = _resolve(specifier, current, files, pins)
            if target is not None and target in loaded and target not in seen:
                seen.add(target)
                todo.append(target)
    return "an Action Cable consumer"


def _client_packages(tree: AppTree) -> tuple[list[tuple[str, Where]], tuple[tuple[Where, str], ...]]:
    """The Action Cable client packages package.json lists and the importmap pins; package.json if unreadable."""
    found: list[tuple[str, Where]] = []
    unreadable: tuple[tuple[Where, str], ...] = ()
    text = tree.read("package.json")
    if text is not None:
        try:
            dependencies = package_json_dependencies(text)
        except ValueError as error:
            dependencies, unreadable = {}, ((Where("package.json"), f"cannot be read as JSON: {error}"),)
        found.extend((name, Where("package.json", line)) for name, line in dependencies.items() if name in javascript.ACTION_CABLE_PACKAGES)
    pins = _importmap(tree).pins
    found.extend((name, Where("config/importmap.rb", line)) for name, line in pins.items() if name in javascript.ACTION_CABLE_PACKAGES)
    return found, unreadable


# --- views --------------------------------------------------------------------------------


def _views(tree: AppTree, turbo_cable: bool) -> tuple[tuple[Subscription, ...], tuple[Stream, ...]]:
    """Each turbo_stream_from: over Navigator's protocol with the turbo_cable gem, else turbo-rails' signed stream."""
    subscriptions: list[Subscription] = []
    streams: list[Stream] = []
    for path, call in _turbo_stream_calls(tree):
        where = Where(path, call.line)
        positional = [argument for argument in call.arguments if argument[0].kind is not ruby.Kind.LABEL]
        if turbo_cable:
            # The gem's helper subscribes to each argument as a stream of its own.
            streams.extend(_stream(argument, where, call.name) for argument in positional)
            continue
        channel = next((argument[1].text for argument in call.arguments
                        if argument[0].kind is ruby.Kind.LABEL and argument[0].text == "channel" and len(argument) > 1), None)
        subscriptions.append(Subscription(channel or "Turbo::StreamsChannel", where, "turbo-rails' turbo_stream_from (signed)"))
    return tuple(subscriptions), tuple(streams)


def _turbo_stream_calls(tree: AppTree) -> Iterable[tuple[str, ruby.Call]]:
    for path in tree.files("app", _VIEW_SUFFIXES + (".rb",)):
        text = tree.read(path)
        if text is None or "turbo_stream_from" not in text:
            continue
        for first_line, code in _ruby_in(path, text):
            for call in ruby.outline(ruby.tokenize(code, first_line), ("turbo_stream_from",)).calls:
                yield path, call


def _ruby_in(path: str, text: str) -> Iterable[tuple[int, str]]:
    """The Ruby code of a file with its first line: the whole file, each ERB tag, or each HAML/Slim code line."""
    if path.endswith(".rb"):
        yield 1, text
    elif path.endswith(".erb"):
        position = 0
        while (start := text.find("<%", position)) >= 0:
            end = text.find("%>", start)
            end = len(text) if end < 0 else end
            code = text[start + 2:end].lstrip("=-")
            if not code.startswith("#") and "turbo_stream_from" in code:
                yield text.count("\n", 0, start) + 1, code
            position = end + 2
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if "turbo_stream_from" in line:
                stripped = line.lstrip()
                yield number, stripped.lstrip("=-~ ") if stripped[:1] in ("=", "-", "~") else stripped


def _inline_scripts(tree: AppTree) -> Iterable[tuple[str, int, str]]:
    """`<script>` blocks of ERB views, their ERB tags blanked out, with the line each starts on."""
    for path in tree.files("app/views", (".erb",)):
        text = tree.read(path)
        if text is None:
            continue
        lowered = text.lower()
        position = 0
        while (start := lowered.find("<script", position)) >= 0:
            opened = lowered.find(">", start)
            end = lowered.find("</script", opened)
            if opened < 0 or end < 0:
                break
            yield path, text.count("\n", 0, opened) + 1, _blank_erb(text[opened + 1:end])
            position = end + 8


def _blank_erb(text: str) -> str:
    """ERB tags replaced by `0`, keeping their newlines, so the script around them still reads as JavaScript."""
    parts: list[str] = []
    position = 0
    while (start := text.find("<%", position)) >= 0:
        end = text.find("%>", start)
        end = len(text) if end < 0 else end + 2
        parts.append(text[position:start])
        parts.append("0" + "\n" * text.count("\n", start, end))
        position = end
    parts.append(text[position:])
    return "".join(parts)


# --- leftovers and Redis ------------------------------------------------------------------------


def _ruby_sources(tree: AppTree, markers: Sequence[str]) -> Iterable[tuple[str, list[ruby.Token]]]:
    """The tokens of each Ruby file of app/, lib/ and config/ whose text mentions one of `markers`."""
    for top in _SOURCE_DIRECTORIES:
        for path in tree.files(top, (".rb", ".rake")):
            text = tree.read(path)
            if text is not None and any(marker in text for marker in markers):
                yield path, ruby.tokenize(text)


def _tokens(tree: AppTree) -> tuple[Where, ...]:
    """The token registry of a channel that runs commands: the file itself, and code that names it."""
    found = [Where(path) for path in _TOKEN_FILES if tree.exists(path)]
    for path, tokens in _ruby_sources(tree, _TOKEN_NAMES):
        found.extend(
            Where(path, token.line) for token in tokens
            if token.kind is ruby.Kind.STRING and any(name in token.text for name in _TOKEN_NAMES)
        )
    return tuple(found)


def _redis(tree: AppTree, gems: dict[str, Where]) -> tuple[tuple[str, Where], ...]:
    found: list[tuple[str, Where]] = [(f'gem "{gem}"', gems[gem]) for gem in _REDIS_GEMS if gem in gems and gems[gem].file == "Gemfile"]
    for path, tokens in _ruby_sources(tree, _REDIS_MARKERS):
        seen: set[str] = set()
        for index, token in enumerate(tokens):
            what = _redis_use(tokens, index)
            if what is not None and what not in seen:
                seen.add(what)
                found.append((what, Where(path, token.line)))
    for path in tree.files("config", (".yml", ".yaml")):
        if path == "config/cable.yml":
            continue
        text = tree.read(path)
        if text is None or "REDIS_URL" not in text:
            continue
        line = next((number for number, content in enumerate(text.splitlines(), 1)
                     if "REDIS_URL" in content and not content.lstrip().startswith("#")), None)
        if line is not None:
            found.append(("REDIS_URL", Where(path, line)))
    return tuple(found)


def _redis_use(tokens: Sequence[ruby.Token], index: int) -> str | None:
    token = tokens[index]
    following = tokens[index + 1].text if index + 1 < len(tokens) else ""
    after = tokens[index + 2].text if index + 2 < len(tokens) else ""
    if token.kind is ruby.Kind.CONST and token.text in _REDIS_CONSTANTS:
        if token.text == "Redis":
            return "Redis.new" if (following, after) == (".", "new") else ("Redis" if following in (".", "::") else None)
        return token.text
    if token.kind is ruby.Kind.STRING and "REDIS_URL" in token.text:
        return "REDIS_URL"
    if token.kind is ruby.Kind.SYMBOL and token.text in _REDIS_SYMBOLS:
        return f":{token.text}"
    return None


# --- config/cable.yml ----------------------------------------------------------------------


def _cable(tree: AppTree) -> tuple[tuple[CableEnvironment, ...] | None, str | None]:
    text = tree.read("config/cable.yml")
    if text is None:
        return None, None
    try:
        return read_cable_yml(text, "config/cable.yml"), None
    except InputError as error:
        return (), "; ".join(error.problems)
