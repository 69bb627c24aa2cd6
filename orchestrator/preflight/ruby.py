"""A small Ruby scanner: tokens in one linear pass, then the outline the audit needs.

Not a parser. It knows enough of Ruby's lexical rules (strings with
interpolation, heredocs, %-literals, regular expressions, comments, symbols,
labels) that a keyword inside a string or a comment is never taken for code,
and enough of its block structure (`class`, `def`, `do`, `if` at the start of a
statement, `end`) to say which public methods a class defines and in which
class and method a call is made. Every character is looked at a bounded number
of times: no regular expression runs over the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from orchestrator.preflight.brackets import PAIRS, braced_code, matching_brackets


class Kind(Enum):
    WORD = "word"  # an identifier or keyword; @ivar, @@cvar and $gvar keep their sigil
    CONST = "const"
    STRING = "string"
    COMMAND = "command"  # `backticks` and %x(): a shell command
    SYMBOL = "symbol"
    LABEL = "label"  # `key:` in a hash or keyword argument
    NUMBER = "number"
    REGEX = "regex"
    PUNCT = "punct"
    NEWLINE = "newline"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # the name, the punctuation, or a string's literal text with #{...} as written
    line: int
    start: int  # offset in the text, to tell `def name=(v)` from `def name = v`
    pieces: tuple[str, ...] = ()  # a string's literal pieces around its interpolations
    interpolations: tuple[str, ...] = ()  # a string's #{...} code, in order


KEYWORDS = frozenset((
    "alias", "and", "begin", "break", "case", "class", "def", "defined?", "do", "else", "elsif", "end", "ensure",
    "for", "if", "in", "module", "next", "not", "or", "redo", "rescue", "retry", "return", "super", "then",
    "undef", "unless", "until", "when", "while", "yield",
))
_VALUE_WORDS = frozenset(("self", "nil", "true", "false", "__FILE__", "__LINE__", "__dir__"))
_PERCENT_PAIRS = {**PAIRS, "<": ">"}  # the delimiters of %w[...], %q<...> and the like
_TWO_CHAR = frozenset(("::", "&.", "->", "=>", "==", "!=", "<<", "||", "&&", "**", "=~", "<=", ">=", "+=", "-="))
_PERCENT_KINDS = "qQwWiIxrs"
_MAX_TERMINATOR = 100  # a quoted heredoc terminator is looked for this far, no further
# Strings inside interpolations inside strings: past this depth, inner quotes are read as plain characters.
MAX_NESTING = 8
_NO_INTERPOLATION = "qwis"
# Classes and modules nested deeper than this are not outlined (their `end`s still balance): real code nests a
# handful, and every class keeps its enclosing names, so a file nesting thousands would take quadratic time.
MAX_SCOPE_DEPTH = 32


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or ord(char) > 127


class _Lexer:
    def __init__(self, text: str, first_line: int) -> None:
        self.text = text
        self.i = 0
        self.line = first_line
        self.tokens: list[Token] = []
        self.heredocs: list[tuple[int, str, bool]] = []  # (token index, terminator, indented terminator)

    # --- helpers ---

    def peek(self, offset: int = 0) -> str:
        index = self.i + offset
        return self.text[index] if index < len(self.text) else ""

    def previous(self) -> Token | None:
        return self.tokens[-1] if self.tokens else None

    def after_value(self) -> bool:
        """Whether the previous token ends a value: then `/`, `%`, `?` and `<<` are operators."""
        token = self.previous()
        if token is None:
            return False
        if token.kind in (Kind.CONST, Kind.STRING, Kind.COMMAND, Kind.SYMBOL, Kind.NUMBER, Kind.REGEX):
            return True
        if token.kind is Kind.WORD:
            return token.text not in KEYWORDS or token.text in _VALUE_WORDS
        return token.kind is Kind.PUNCT and token.text in PAIRS.values()

    def spaced_argument(self) -> bool:
        """`split /,/` or `puts <<~EOS`: a method name, a space, and a literal right after the operator."""
        token = self.previous()
        return (
            token is not None and token.kind is Kind.WORD and token.text not in KEYWORDS
            and self.i > 0 and self.text[self.i - 1] in " \t" and self.peek(1) not in (" ", "\t", "=", "")
        )

    def add(self, kind: Kind, text: str, start: int, line: int, pieces: tuple[str, ...] = (),
            interpolations: tuple[str, ...] = ()) -> None:
        self.tokens.append(Token(kind, text, line, start, pieces, interpolations))

    # --- the pass ---

    def run(self) -> list[Token]:
        text = self.text
        at_line_start = True
        while self.i < len(text):
            char = text[self.i]
            if at_line_start:
                at_line_start = False
                if text.startswith("=begin", self.i):
                    self.skip_block_comment()
                    continue
                if text.startswith("__END__", self.i) and text[self.i + 7:self.i + 8] in ("\n", "\r", ""):
                    break
            if char == "\n":
                self.newline()
                at_line_start = True
            elif char in " \t\r\f":
                self.i += 1
            elif char == "\\" and self.peek(1) == "\n":
                self.i += 2
                self.line += 1
            elif char == "#":
                while self.i < len(text) and text[self.i] != "\n":
                    self.i += 1
            elif char in "\"`":
                start, line = self.i, self.line
                self.i += 1
                pieces, interpolations = self.delimited(char, char, True)
                self.add(Kind.COMMAND if char == "`" else Kind.STRING, _joined(pieces, interpolations), start, line,
                         pieces, interpolations)
            elif char == "'":
                start, line = self.i, self.line
                self.i += 1
                pieces, _ = self.delimited("'", "'", False)
                self.add(Kind.STRING, pieces[0], start, line, pieces)
            elif char == "%" and self.percent_literal():
                continue
            elif char == "/" and (not self.after_value() or self.spaced_argument()):
                start, line = self.i, self.line
                self.i += 1
                pieces, interpolations = self.delimited("/", "/", True)
                while self.i < len(text) and text[self.i].isalpha():
                    self.i += 1
                self.add(Kind.REGEX, _joined(pieces, interpolations), start, line)
            elif char == "<" and self.heredoc():
                continue
            elif char == "?" and self.char_literal():
                continue
            elif char == ":":
                self.colon()
            elif char in "@$":
                self.variable()
            elif char.isalpha() or char == "_" or ord(char) > 127:
                self.word()
            elif char.isdigit():
                start = self.i
                while self.i < len(text) and (_word_char(text[self.i]) or (text[self.i] == "." and self.peek(1).isdigit())):
                    self.i += 1
                self.add(Kind.NUMBER, text[start:self.i], start, self.line)
            else:
                pair = text[self.i:self.i + 2]
                size = 2 if pair in _TWO_CHAR else 1
                self.add(Kind.PUNCT, text[self.i:self.i + size], self.i, self.line)
                self.i += size
        return self.tokens

    def newline(self) -> None:
        self.add(Kind.NEWLINE, "\n", self.i, self.line)
        self.i += 1
        self.line += 1
        if self.heredocs:
            pending, self.heredocs = self.heredocs, []
            for index, terminator, indented in pending:
                self.heredoc_body(index, terminator, indented)

    def skip_block_comment(self) -> None:
        """From `=begin` to the line that starts with `=end`, inclusive."""
        text = self.text
        while self.i < len(text):
            end = text.find("\n", self.i)
            if end < 0:
                self.i = len(text)
                return
            closing = text.startswith("=end", self.i)
            self.i = end + 1
            self.line += 1
            if closing:
                return

    def delimited(
        self, opening: str, closing: str, interpolate: bool, nesting: int = 0
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The body of a literal up to its closing delimiter (nesting paired ones), split at its interpolations."""
        text = self.text
        pieces: list[str] = []
        interpolations: list[str] = []
        current: list[str] = []
        depth = 1
        while self.i < len(text):
            char = text[self.i]
            if char == "\\":
                current.append(text[self.i:self.i + 2])
                if self.peek(1) == "\n":
                    self.line += 1
                self.i += 2
                continue
            if char == "\n":
                self.line += 1
            if interpolate and char == "#" and self.peek(1) == "{":
                self.i += 2
                pieces.append("".join(current))
                current = []
                interpolations.append(braced_code(self, nesting + 1, MAX_NESTING, self._quoted))
                continue
            self.i += 1
            if char == closing and opening != closing:
                depth -= 1
                if depth == 0:
                    break
            elif char == closing:
                break
            elif char == opening:
                depth += 1
            current.append(char)
        pieces.append("".join(current))
        return tuple(pieces), tuple(interpolations)

    def _quoted(self, quote: str, nesting: int) -> object:
        """A string opened by `quote` (already read): interpolating unless single-quoted."""
        return self.delimited(quote, quote, quote != "'", nesting)

    def percent_literal(self) -> bool:
        kind = self.peek(1)
        if kind and kind in _PERCENT_KINDS and self.peek(2) and not _word_char(self.peek(2)) and self.peek(2) not in " \n":
            opening = self.peek(2)
            width = 3
        elif kind and kind in "([{<|!/" and (not self.after_value() or self.spaced_argument()):
            opening, kind = kind, "Q"
            width = 2
        else:
            return False
        start, line = self.i, self.line
        self.i += width
        pieces, interpolations = self.delimited(opening, _PERCENT_PAIRS.get(opening, opening), kind not in _NO_INTERPOLATION)
        literal = _joined(pieces, interpolations)
        if kind == "x":
            self.add(Kind.COMMAND, literal, start, line, pieces, interpolations)
        elif kind == "r":
            self.add(Kind.REGEX, literal, start, line)
        elif kind == "s":
            self.add(Kind.SYMBOL, literal, start, line)
        else:
            self.add(Kind.STRING, literal, start, line, pieces, interpolations)
        return True

    def heredoc(self) -> bool:
        """`<<~EOS`, `<<-EOS`, `<<EOS`, with quoted terminators too; the body is read at the next newline."""
        text = self.text
        if self.peek(1) != "<":
            return False
        position = self.i + 2
        indented = position < len(text) and text[position] in "~-"
        if indented:
            position += 1
        if position >= len(text):
            return False
        quote = text[position] if text[position] in "\"'`" else ""
        if not quote and not (text[position].isalpha() or text[position] == "_"):
            return False
        if not indented and not quote and not text[position].isupper():
            return False
        if not indented and self.after_value() and not self.spaced_argument():
            return False
        if quote:
            end = text.find(quote, position + 1, position + _MAX_TERMINATOR)
            if end < 0 or "\n" in text[position:end]:
                return False
            terminator = text[position + 1:end]
            after = end + 1
        else:
            after = position
            while after < len(text) and _word_char(text[after]):
                after += 1
            terminator = text[position:after]
        self.heredocs.append((len(self.tokens), terminator, indented))
        self.add(Kind.STRING, "", self.i, self.line)
        self.i = after
        return True

    def heredoc_body(self, index: int, terminator: str, indented: bool) -> None:
        text = self.text
        lines: list[str] = []
        while self.i < len(text):
            end = text.find("\n", self.i)
            end = len(text) if end < 0 else end
            content = text[self.i:end]
            self.i = min(end + 1, len(text))
            self.line += 1
            if (content.strip() if indented else content.rstrip("\r")) == terminator:
                break
            lines.append(content)
        body = "\n".join(lines)
        token = self.tokens[index]
        self.tokens[index] = Token(Kind.STRING, body, token.line, token.start, (body,))

    def char_literal(self) -> bool:
        """`?a` is a one-character string unless it follows a value (then `?` is the ternary operator)."""
        following = self.peek(1)
        if self.after_value() or not following or following in " \t\n":
            return False
        width = 3 if following == "\\" else 2
        if _word_char(self.peek(width)):
            return False
        self.add(Kind.STRING, self.text[self.i + 1:self.i + width], self.i, self.line, (self.text[self.i + 1:self.i + width],))
        self.i += width
        return True

    def colon(self) -> None:
        start = self.i
        following = self.peek(1)
        if following == ":":
            self.add(Kind.PUNCT, "::", start, self.line)
            self.i += 2
        elif following in ("\"", "'"):
            self.i += 2
            pieces, interpolations = self.delimited(following, following, following == "\"")
            self.add(Kind.SYMBOL, _joined(pieces, interpolations), start, self.line)
        elif following and (following.isalpha() or following == "_" or following in "@$"):
            self.i += 1
            while self.i < len(self.text) and (_word_char(self.text[self.i]) or self.text[self.i] in "@$"):
                self.i += 1
            if self.peek() in "?!=" and self.peek() and self.peek(1) not in ("=", "~", ">"):
                self.i += 1
            self.add(Kind.SYMBOL, self.text[start + 1:self.i], start, self.line)
        else:
            self.add(Kind.PUNCT, ":", start, self.line)
            self.i += 1

    def variable(self) -> None:
        start = self.i
        while self.peek() in ("@", "$") and self.peek():
            self.i += 1
        while self.i < len(self.text) and _word_char(self.text[self.i]):
            self.i += 1
        self.add(Kind.WORD, self.text[start:self.i], start, self.line)

    def word(self) -> None:
        text = self.text
        start = self.i
        while self.i < len(text) and _word_char(text[self.i]):
            self.i += 1
        if self.peek() in ("?", "!") and self.peek() and self.peek(1) != "=" and not (self.peek() == "?" and self.peek(1) == ":"):
            self.i += 1
        name = text[start:self.i]
        after_dot = (previous := self.previous()) is not None and previous.kind is Kind.PUNCT and previous.text in (".", "&.")
        if self.peek() == ":" and self.peek(1) != ":" and not after_dot:
            self.i += 1
            self.add(Kind.LABEL, name, start, self.line)
        elif name[0].isupper():
            self.add(Kind.CONST, name, start, self.line)
        else:
            self.add(Kind.WORD, name, start, self.line)


def _joined(pieces: Sequence[str], interpolations: Sequence[str]) -> str:
    out = [pieces[0]]
    for code, piece in zip(interpolations, pieces[1:]):
        out.append("#{" + code + "}")
        out.append(piece)
    return "".join(out)


def tokenize(text: str, first_line: int = 1) -> list[Token]:
    """The tokens of Ruby source, comments and `=begin` blocks left out, line numbers from `first_line`."""
    return _Lexer(text, first_line).run()


# --- the outline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    line: int
    public: bool
    singleton: bool  # def self.x, or inside class << self: never a channel action


@dataclass(frozen=True, slots=True)
class ClassDef:
    name: str  # with its enclosing modules: ApplicationCable::Channel
    superclass: str | None  # as written
    scope: tuple[str, ...]  # the enclosing modules, to resolve the superclass's name
    line: int
    methods: tuple[Method, ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    receiver: str | None  # `Open3` in Open3.capture2; None for a call without one
    line: int
    arguments: tuple[tuple[Token, ...], ...]  # split at top-level commas
    block: bool  # a do/{} block or a lambda is passed: code that runs later
    owner: str | None  # the enclosing class, with its modules
    method: str | None  # the enclosing def


@dataclass(frozen=True, slots=True)
class Outline:
    classes: tuple[ClassDef, ...]
    calls: tuple[Call, ...]


@dataclass
class _Frame:
    kind: str  # class, module, sclass, def, block
    name: str = ""
    superclass: str | None = None
    scope: tuple[str, ...] = ()
    line: int = 0
    private_default: bool = False
    methods: list[Method] = field(default_factory=list)
    visibility: dict[str, bool] = field(default_factory=dict)  # `private :name` after the def: name -> public


_STATEMENT_PUNCT = frozenset(("(", "[", "{", "=", ",", ";", "||", "&&", "!", "?", ":", "=>", "|", "+=", "-=", "<<", "->"))
_STATEMENT_WORDS = frozenset(("and", "or", "not", "then", "else", "elsif", "do", "begin", "when", "ensure", "rescue"))
_PRIVATE_BY_RUBY = frozenset(("initialize", "initialize_copy", "initialize_clone", "initialize_dup", "respond_to_missing?"))


def _statement_start(previous: Token | None) -> bool:
    if previous is None or previous.kind is Kind.NEWLINE:
        return True
    if previous.kind is Kind.PUNCT:
        return previous.text in _STATEMENT_PUNCT
    return previous.kind is Kind.WORD and previous.text in _STATEMENT_WORDS


def _after_dot(previous: Token | None) -> bool:
    return previous is not None and previous.kind is Kind.PUNCT and previous.text in (".", "&.", "::")


def outline(tokens: Sequence[Token], calls: Iterable[str]) -> Outline:
    """The classes (with their methods and visibility) and the calls to any of `calls`, in one pass."""
    wanted = frozenset(calls)
    walker = _Walker(tokens, wanted)
    walker.run()
    return Outline(tuple(walker.classes), tuple(walker.calls))


class _Walker:
    def __init__(self, tokens: Sequence[Token], wanted: frozenset[str]) -> None:
        self.tokens = tokens
        self.wanted = wanted
        self.matches = matching_brackets([token.text if token.kind is Kind.PUNCT else None for token in tokens])
        self.stack: list[_Frame] = []
        self.classes: list[ClassDef] = []
        self.calls: list[Call] = []
        self.loop_open = False  # `while x do`: the do belongs to the loop, one end closes both
        self.inline_private: bool | None = None  # `private def x`
        self.scope_depth = 0  # class and module frames on the stack

    def token(self, index: int) -> Token | None:
        return self.tokens[index] if index < len(self.tokens) else None

    def is_punct(self, index: int, text: str) -> bool:
        token = self.token(index)
        return token is not None and token.kind is Kind.PUNCT and token.text == text

    def innermost(self, *kinds: str) -> _Frame | None:
        return next((frame for frame in reversed(self.stack) if frame.kind in kinds), None)

    def run(self) -> None:
        index = 0
        while index < len(self.tokens):
            index = self.step(index)
        while self.stack:  # an unbalanced file: keep what was found
            self.close()

    def step(self, index: int) -> int:
        token = self.tokens[index]
        previous = self.tokens[index - 1] if index else None
        if token.kind is Kind.NEWLINE or (token.kind is Kind.PUNCT and token.text == ";"):
            self.loop_open = False
            return index + 1
        if token.kind not in (Kind.WORD, Kind.COMMAND) or _after_dot(previous):
            if token.kind is Kind.WORD and token.text in self.wanted and _after_dot(previous):
                return self.call(index)
            return index + 1
        if token.kind is Kind.COMMAND:
            if "`" in self.wanted:
                self.record("`", None, index, (), False)
            return index + 1
        word = token.text
        if word == "class":
            return self.open_class(index)
        if word == "module":
            name, after = self.constant_path(index + 1)
            self.open_scope(lambda: _Frame("module", name, line=token.line))
            return after
        if word == "def":
            return self.define(index)
        if word in ("begin", "case"):
            self.stack.append(_Frame("block"))
        elif word in ("if", "unless", "while", "until", "for") and _statement_start(previous):
            self.stack.append(_Frame("block"))
            self.loop_open = word in ("while", "until", "for")
        elif word == "do":
            if self.loop_open:
                self.loop_open = False
            else:
                self.stack.append(_Frame("block"))
        elif word == "end":
            if self.stack:
                self.close()
        elif word in ("private", "protected", "public") and _statement_start(previous):
            return self.visibility(index)
        elif word in self.wanted:
            return self.call(index)
        return index + 1

    def constant_path(self, index: int) -> tuple[str, int]:
        """`Foo::Bar` (or `::Foo`) starting at `index`, and the index after it."""
        parts: list[str] = []
        while True:
            token = self.token(index)
            if token is None:
                break
            if token.kind is Kind.CONST:
                parts.append(token.text)
                index += 1
                if self.is_punct(index, "::"):
                    index += 1
                    continue
            elif token.kind is Kind.PUNCT and token.text == "::" and not parts:
                index += 1
                continue
            break
        return "::".join(parts), index

    def scope(self) -> tuple[str, ...]:
        return tuple(frame.name for frame in self.stack if frame.kind in ("module", "class"))

    def open_class(self, index: int) -> int:
        token = self.tokens[index]
        if self.is_punct(index + 1, "<<"):
            self.stack.append(_Frame("sclass"))
            return index + 2
        name, after = self.constant_path(index + 1)
        superclass = None
        if self.is_punct(after, "<"):
            superclass, after = self.constant_path(after + 1)
        self.open_scope(lambda: _Frame("class", name, superclass or None, self.scope(), token.line))
        return after

    def open_scope(self, frame: Callable[[], _Frame]) -> None:
        if self.scope_depth >= MAX_SCOPE_DEPTH:
            self.stack.append(_Frame("block"))  # too deep to outline; its `end` still closes it
            return
        self.scope_depth += 1
        self.stack.append(frame())

    def define(self, index: int) -> int:
        token = self.tokens[index]
        position = index + 1
        singleton = False
        first, second = self.token(position), self.token(position + 1)
        if first is not None and second is not None and second.kind is Kind.PUNCT and second.text == "." and (
            first.text == "self" or first.kind is Kind.CONST
        ):
            singleton = True
            position += 2
        name_token = self.token(position)
        if name_token is None:
            return position
        name = name_token.text
        position += 1
        after_name = self.token(position)
        if (after_name is not None and after_name.kind is Kind.PUNCT and after_name.text == "="
                and after_name.start == name_token.start + len(name)):
            name += "="  # a setter: def name=(value)
            position += 1
        if self.is_punct(position, "("):
            position = self.matching(position) + 1
        endless = self.is_punct(position, "=")
        owner = self.stack[-1] if self.stack else None
        if owner is not None and owner.kind in ("class", "sclass"):
            private = owner.private_default if self.inline_private is None else self.inline_private
            owner.methods.append(Method(name, token.line, not private and name not in _PRIVATE_BY_RUBY,
                                        singleton or owner.kind == "sclass"))
        self.inline_private = None
        if not endless:
            self.stack.append(_Frame("def", name, line=token.line))
        return position

    def visibility(self, index: int) -> int:
        frame = self.stack[-1] if self.stack else None
        word = self.tokens[index].text
        following = self.token(index + 1)
        if frame is None or frame.kind not in ("class", "sclass"):
            return index + 1
        public = word == "public"
        if following is None or following.kind is Kind.NEWLINE or (following.kind is Kind.PUNCT and following.text == ";"):
            frame.private_default = not public
            return index + 1
        if following.kind is Kind.WORD and following.text == "def":
            self.inline_private = not public
            return index + 1
        position = index + 1
        while (current := self.token(position)) is not None and current.kind is not Kind.NEWLINE:
            if current.kind in (Kind.SYMBOL, Kind.STRING):
                frame.visibility[current.text] = public
            position += 1
        return position

    def matching(self, index: int) -> int:
        """The index of the bracket that closes the one at `index` (or the last token)."""
        return self.matches[index]

    def call(self, index: int) -> int:
        token = self.tokens[index]
        previous = self.tokens[index - 1] if index else None
        receiver = None
        if _after_dot(previous) and index >= 2:
            receiver = self.tokens[index - 2].text
        position = index + 1
        following = self.token(position)
        if following is not None and following.kind is Kind.PUNCT and following.text in ("=", ".", "&.", "+=", "-=", "::"):
            return position  # an assignment or a method of the result, not this call's arguments
        arguments: list[list[Token]] = [[]]
        block = False
        if following is not None and following.kind is Kind.PUNCT and following.text == "(" and following.start == token.start + len(token.text):
            end = self.matching(position)
            self.split_arguments(position + 1, end, arguments)
            position = end + 1
            after = self.token(position)
            block = after is not None and ((after.kind is Kind.PUNCT and after.text == "{") or (after.kind is Kind.WORD and after.text == "do"))
        else:
            position, block = self.bare_arguments(position, arguments)
        parts = tuple(tuple(argument) for argument in arguments if argument)
        block = block or any(_is_callable(argument) for argument in parts)
        self.record(token.text, receiver, index, parts, block)
        return position

    def split_arguments(self, start: int, end: int, arguments: list[list[Token]]) -> None:
        depth = 0
        for position in range(start, end):
            token = self.tokens[position]
            if token.kind is Kind.NEWLINE:
                continue
            if token.kind is Kind.PUNCT and token.text in PAIRS:
                depth += 1
            elif token.kind is Kind.PUNCT and token.text in PAIRS.values():
                depth -= 1
            if depth == 0 and token.kind is Kind.PUNCT and token.text == ",":
                arguments.append([])
                continue
            arguments[-1].append(token)

    def bare_arguments(self, position: int, arguments: list[list[Token]]) -> tuple[int, bool]:
        """Arguments without parentheses: to the end of the statement, a `do` block or a modifier `if`."""
        depth = 0
        while (token := self.token(position)) is not None:
            if depth == 0:
                if token.kind is Kind.NEWLINE:
                    last = arguments[-1][-1] if arguments[-1] else None
                    if not (last is not None and last.kind is Kind.PUNCT and last.text in (",", "\\")):
                        return position, False
                    position += 1
                    continue
                if token.kind is Kind.WORD and token.text == "do":
                    return position, True
                if token.kind is Kind.WORD and token.text in ("if", "unless", "while", "until", "and", "or", "then", "end"):
                    return position, False
                if token.kind is Kind.PUNCT and token.text in (";", ")", "]", "}"):
                    return position, False
                if token.kind is Kind.PUNCT and token.text == ",":
                    arguments.append([])
                    position += 1
                    continue
            if token.kind is Kind.PUNCT and token.text in PAIRS:
                depth += 1
            elif token.kind is Kind.PUNCT and token.text in PAIRS.values():
                depth -= 1
            if token.kind is not Kind.NEWLINE:
                arguments[-1].append(token)
            position += 1
        return position, False

    def record(self, name: str, receiver: str | None, index: int, arguments: tuple[tuple[Token, ...], ...], block: bool) -> None:
        owner = self.innermost("class")
        method = self.innermost("def")
        self.calls.append(Call(name, receiver, self.tokens[index].line, arguments, block,
                               _full_name(owner) if owner else None, method.name if method else None))

    def close(self) -> None:
        frame = self.stack.pop()
        if frame.kind in ("class", "module"):
            self.scope_depth -= 1
        if frame.kind == "sclass":
            owner = self.innermost("class")
            if owner is not None:
                owner.methods.extend(frame.methods)
        elif frame.kind == "class":
            methods = tuple(
                Method(method.name, method.line, frame.visibility.get(method.name, method.public), method.singleton)
                if not method.singleton else method
                for method in frame.methods
            )
            self.classes.append(ClassDef(_full_name(frame), frame.superclass, frame.scope, frame.line, methods))


def _full_name(frame: _Frame) -> str:
    return "::".join((*frame.scope, frame.name))


def _is_callable(argument: Sequence[Token]) -> bool:
    """A lambda, proc or method object passed as an argument: code the call runs later."""
    first = argument[0]
    if first.kind is Kind.PUNCT and first.text == "->":
        return True
    return first.kind is Kind.WORD and first.text in ("lambda", "proc", "method")


def words(code: str) -> list[str]:
    """The identifiers in a piece of code (sigils and punctuation dropped), in order."""
    found: list[str] = []
    current: list[str] = []
    for char in code:
        if _word_char(char):
            current.append(char)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found
