"""A small JavaScript (and CoffeeScript) scanner: tokens in one linear pass, then what the audit asks of a file.

Comments, strings, template literals and regular expressions are told apart so
that `perform(` in a comment or a string is never taken for a call. What a
file tells the audit: the modules it imports, the Action Cable consumers it
creates, the subscriptions it makes (and to which channel), and the messages it
sends to the server over a subscription (`perform`, and `send` on something
that is a subscription).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from orchestrator.preflight.brackets import PAIRS, braced_code, matching_brackets


class Kind(Enum):
    IDENT = "ident"
    STRING = "string"  # quotes and template literals; text is the body as written
    NUMBER = "number"
    REGEX = "regex"
    PUNCT = "punct"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    line: int


_KEYWORDS_BEFORE_EXPRESSION = frozenset((
    "return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "yield", "await",
    "instanceof", "and", "or", "not", "unless", "if", "when", "then",
))
_THREE_CHAR = frozenset(("...", "===", "!==", "**="))
_TWO_CHAR = frozenset(("?.", "=>", "==", "!=", "&&", "||", "??", "+=", "-=", "<=", ">=", "->"))
# Template literals inside template literals: past this depth, inner quotes are read as plain characters.
MAX_NESTING = 8


class _Lexer:
    def __init__(self, text: str, first_line: int, coffee: bool) -> None:
        self.text = text
        self.i = 0
        self.line = first_line
        self.coffee = coffee
        self.tokens: list[Token] = []
        self.no_regex_before = 0  # a regular expression failed to close on this line: none starts before here

    def peek(self, offset: int = 0) -> str:
        index = self.i + offset
        return self.text[index] if index < len(self.text) else ""

    def regex_allowed(self) -> bool:
        if self.i < self.no_regex_before:
            return False
        if not self.tokens:
            return True
        last = self.tokens[-1]
        if last.kind is Kind.IDENT:
            return last.text in _KEYWORDS_BEFORE_EXPRESSION
        return last.kind is Kind.PUNCT and last.text not in (")", "]", "}")

    def run(self) -> list[Token]:
        text = self.text
        while self.i < len(text):
            char = text[self.i]
            if char == "\n":
                self.line += 1
                self.i += 1
            elif char in " \t\r\f":
                self.i += 1
            elif self.coffee and char == "#":
                self.coffee_comment()
            elif char == "/" and self.peek(1) == "/" and not self.coffee:
                while self.i < len(text) and text[self.i] != "\n":
                    self.i += 1
            elif char == "/" and self.peek(1) == "*" and not self.coffee:
                end = text.find("*/", self.i + 2)
                end = len(text) if end < 0 else end + 2
                self.line += text.count("\n", self.i, end)
                self.i = end
            elif char in "\"'`":
                line = self.line
                self.i += 1
                self.tokens.append(Token(Kind.STRING, self.string(char, 0), line))
            elif char == "/" and self.regex_allowed():
                self.regex()
            elif char == "@" and self.coffee:
                # CoffeeScript's @name is this.name
                self.tokens.append(Token(Kind.IDENT, "this", self.line))
                self.tokens.append(Token(Kind.PUNCT, ".", self.line))
                self.i += 1
            elif char.isalpha() or char in "_$" or ord(char) > 127:
                start = self.i
                while self.i < len(text) and (text[self.i].isalnum() or text[self.i] in "_$" or ord(text[self.i]) > 127):
                    self.i += 1
                self.tokens.append(Token(Kind.IDENT, text[start:self.i], self.line))
            elif char.isdigit():
                start = self.i
                while self.i < len(text) and (text[self.i].isalnum() or text[self.i] in "._"):
                    self.i += 1
                self.tokens.append(Token(Kind.NUMBER, text[start:self.i], self.line))
            else:
                for size in (3, 2, 1):
                    piece = text[self.i:self.i + size]
                    if size == 1 or piece in (_THREE_CHAR if size == 3 else _TWO_CHAR):
                        break
                self.tokens.append(Token(Kind.PUNCT, piece, self.line))
                self.i += len(piece)
        return self.tokens

    def coffee_comment(self) -> None:
        text = self.text
        if text.startswith("###", self.i):
            end = text.find("###", self.i + 3)
            end = len(text) if end < 0 else end + 3
            self.line += text.count("\n", self.i, end)
            self.i = end
            return
        while self.i < len(text) and text[self.i] != "\n":
            self.i += 1

    def string(self, quote: str, nesting: int) -> str:
        """The body of a string or template literal; `${...}` (and CoffeeScript's `#{...}`) stepped over whole."""
        text = self.text
        start = self.i
        while self.i < len(text):
            char = text[self.i]
            if char == "\\":
                if self.peek(1) == "\n":
                    self.line += 1
                self.i += 2
                continue
            if char == "\n":
                if quote in "\"'" and not self.coffee:
                    return text[start:self.i]  # an unterminated string ends at the line's end
                self.line += 1
            elif char == quote:
                self.i += 1
                return text[start:self.i - 1]
            elif (char == "$" and quote == "`" or char == "#" and self.coffee and quote == "\"") and self.peek(1) == "{":
                self.i += 2
                braced_code(self, nesting + 1, MAX_NESTING, self.string)
                continue
            self.i += 1
        return text[start:]

    def regex(self) -> None:
        text = self.text
        start = self.i
        self.i += 1
        in_class = False
        while self.i < len(text):
            char = text[self.i]
            if char == "\\":
                self.i += 2
                continue
            if char == "\n":
                # Not a regular expression after all: a division, read again as punctuation; and none of the
                # slashes after it on this line can close one either (which keeps a line of slashes linear).
                self.no_regex_before = self.i
                self.i = start + 1
                self.tokens.append(Token(Kind.PUNCT, "/", self.line))
                return
            self.i += 1
            if char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            elif char == "/" and not in_class:
                break
        while self.i < len(text) and text[self.i].isalpha():
            self.i += 1
        self.tokens.append(Token(Kind.REGEX, text[start:self.i], self.line))


def tokenize(text: str, first_line: int = 1, coffee: bool = False) -> list[Token]:
    return _Lexer(text, first_line, coffee).run()


# --- what a file says ----------------------------------------------------------------------

# The packages whose consumers speak Action Cable's protocol.
ACTION_CABLE_PACKAGES = ("@rails/actioncable", "actioncable", "@anycable/web", "@anycable/core", "@anycable/turbo-stream")
_CONSUMER_FACTORIES = frozenset(("createConsumer", "createCable"))
_SUBSCRIPTION_WORDS = ("subscription", "channel", "consumer")
_CHANNEL_KEY_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Subscription:
    channel: str | None  # None when the channel is not a literal
    line: int


@dataclass(frozen=True, slots=True)
class Message:
    call: str  # as written: this.perform, this.activeSubscription.send
    line: int


@dataclass(frozen=True, slots=True)
class ClientFile:
    imports: tuple[str, ...]
    consumers: tuple[int, ...]  # lines that create an Action Cable consumer
    subscriptions: tuple[Subscription, ...]
    messages: tuple[Message, ...]

    @property
    def speaks_action_cable(self) -> bool:
        return bool(self.consumers or self.subscriptions or self.messages)


def analyse(tokens: Sequence[Token], coffee: bool = False) -> ClientFile:
    """Imports, consumers, subscriptions and client-to-server messages, in one pass over the tokens."""
    imports: list[str] = []
    consumers: list[int] = []
    subscriptions: list[Subscription] = []
    messages: list[Message] = []
    subscription_names: set[str] = set()
    inside_subscription: list[int] = []  # token indexes where the argument lists of subscriptions.create end
    count = len(tokens)
    matches = matching_brackets([token.text if token.kind is Kind.PUNCT else None for token in tokens])

    def text_at(index: int) -> str:
        return tokens[index].text if 0 <= index < count else ""

    def is_punct(index: int, text: str) -> bool:
        return 0 <= index < count and tokens[index].kind is Kind.PUNCT and tokens[index].text == text

    for index, token in enumerate(tokens):
        while inside_subscription and index > inside_subscription[-1]:
            inside_subscription.pop()
        if token.kind is not Kind.IDENT:
            continue
        name = token.text
        following = tokens[index + 1] if index + 1 < count else None
        if name in ("import", "from", "require") and not is_punct(index - 1, "."):
            direct = following is not None and following.kind is Kind.STRING and name != "require"
            in_call = name != "from" and is_punct(index + 1, "(") and index + 2 < count and tokens[index + 2].kind is Kind.STRING
            if direct or in_call:
                imports.append(tokens[index + (1 if direct else 2)].text)
            continue
        parenthesised = is_punct(index + 1, "(")
        called = parenthesised or (coffee and _coffee_call(following))
        if name in _CONSUMER_FACTORIES and called:
            consumers.append(token.line)
        elif name == "create" and called and is_punct(index - 1, ".") and text_at(index - 2) == "subscriptions":
            # Without parentheses (CoffeeScript) the arguments run on to the end of the file, as far as the audit knows.
            end = matches[index + 1] if parenthesised else count - 1
            subscriptions.append(Subscription(_channel_name(tokens, index + (2 if parenthesised else 1), end), token.line))
            inside_subscription.append(end)
            assigned = _assignee(tokens, _chain_start(tokens, index))
            if assigned:
                subscription_names.add(assigned)
        elif name in ("subscribeTo", "streamFrom", "streamFromSigned") and called and is_punct(index - 1, "."):
            # turbo-rails' cable.subscribeTo takes what subscriptions.create does: "Name" or {channel: "Name", ...}
            end = matches[index + 1] if parenthesised else count - 1
            channel = "$pubsub" if name != "subscribeTo" else _channel_name(tokens, index + (2 if parenthesised else 1), end)
            subscriptions.append(Subscription(channel, token.line))
            assigned = _assignee(tokens, _chain_start(tokens, index))
            if assigned:
                subscription_names.add(assigned)
        elif name in ("perform", "send") and is_punct(index - 1, ".") and called:
            receiver = _receiver(tokens, index - 1)
            if name == "perform" or _is_subscription(receiver, subscription_names, bool(inside_subscription)):
                messages.append(Message(f"{receiver}.{name}", token.line))
    return ClientFile(tuple(imports), tuple(consumers), tuple(subscriptions), tuple(messages))


def _channel_name(tokens: Sequence[Token], start: int, end: int) -> str | None:
    """`create("RoomChannel", ...)` or `create({channel: "RoomChannel", ...})`: looked for in the first
    `_CHANNEL_KEY_WINDOW` tokens of the argument list only, so unclosed calls cost no more than that each."""
    if start < len(tokens) and tokens[start].kind is Kind.STRING:
        return tokens[start].text
    depth = 0
    for index in range(start, min(end, start + _CHANNEL_KEY_WINDOW, len(tokens) - 2)):
        token = tokens[index]
        if token.kind is Kind.PUNCT and token.text in PAIRS:
            depth += 1
        elif token.kind is Kind.PUNCT and token.text in PAIRS.values():
            depth -= 1
            if depth <= 0:
                return None
        elif (depth == 1 and token.kind in (Kind.IDENT, Kind.STRING) and token.text == "channel"
              and tokens[index + 1].text == ":" and tokens[index + 2].kind is Kind.STRING):
            return tokens[index + 2].text
    return None


def _chain_start(tokens: Sequence[Token], index: int) -> int:
    """The first token of `a.b.c` ending at `index`."""
    while index >= 2 and tokens[index - 1].kind is Kind.PUNCT and tokens[index - 1].text in (".", "?.") and tokens[index - 2].kind is Kind.IDENT:
        index -= 2
    return index


def _receiver(tokens: Sequence[Token], dot: int) -> str:
    """`this.activeSubscription` in `this.activeSubscription.send(`: the dotted names before the dot."""
    end = dot - 1
    if end < 0 or tokens[end].kind is not Kind.IDENT:
        return "(expression)"
    start = _chain_start(tokens, end)
    return "".join(token.text for token in tokens[start:end + 1])


def _assignee(tokens: Sequence[Token], chain: int) -> str | None:
    """`sub` in `const sub = consumer.subscriptions.create(`, `this.sub` in `this.sub = ...`."""
    if chain < 2 or tokens[chain - 1].kind is not Kind.PUNCT or tokens[chain - 1].text not in ("=", ":"):
        return None
    end = chain - 2
    if tokens[end].kind is not Kind.IDENT:
        return None
    start = _chain_start(tokens, end)
    return "".join(token.text for token in tokens[start:end + 1])


def _is_subscription(receiver: str, names: set[str], in_mixin: bool) -> bool:
    """Whether `receiver.send(...)` goes to the server over a subscription rather than, say, a raw WebSocket."""
    if receiver in names or (receiver == "this" and in_mixin):
        return True
    last = receiver.rsplit(".", 1)[-1].lower()
    return any(word in last for word in _SUBSCRIPTION_WORDS)


def _coffee_call(following: Token | None) -> bool:
    """CoffeeScript calls without parentheses: `@perform 'speak', message: text`."""
    return following is not None and following.kind in (Kind.STRING, Kind.IDENT)
