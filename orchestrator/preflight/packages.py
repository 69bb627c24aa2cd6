"""The app's dependency files: Gemfile, Gemfile.lock, package.json and config/importmap.rb.

Each reader returns the names it found with the line each is on; the Ruby
files go through the Ruby scanner, so a commented-out `# gem "kredis"` is not
a dependency.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from orchestrator.preflight.ruby import Kind, Token, tokenize

# package.json is a few levels deep; Python's json module recurses once per level and fails far below 100,000.
MAX_JSON_DEPTH = 64
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


@dataclass(frozen=True, slots=True)
class Importmap:
    pins: dict[str, int]  # pinned name -> line
    directories: dict[str, str]  # pin_all_from: module prefix -> directory in the app


def _statements(tokens: list[Token], word: str) -> list[tuple[Token, list[Token]]]:
    """`word "a", key: "b"` at the start of a line: the word's token and the rest of the line's tokens."""
    found = []
    for index, token in enumerate(tokens):
        if token.kind is not Kind.WORD or token.text != word:
            continue
        if index and tokens[index - 1].kind is not Kind.NEWLINE:
            continue
        rest = []
        for following in tokens[index + 1:]:
            if following.kind is Kind.NEWLINE:
                break
            rest.append(following)
        found.append((token, rest))
    return found


def gemfile_gems(text: str) -> dict[str, int]:
    """`gem "name", ...` -> line, for the gems the Gemfile asks for (in any group)."""
    gems: dict[str, int] = {}
    for token, rest in _statements(tokenize(text), "gem"):
        arguments = [t for t in rest if not (t.kind is Kind.PUNCT and t.text == "(")]
        if arguments and arguments[0].kind is Kind.STRING:
            gems.setdefault(arguments[0].text, token.line)
    return gems


def lockfile_gems(text: str) -> dict[str, int]:
    """Every gem Gemfile.lock resolves (its specs, with what they depend on) and its DEPENDENCIES -> line."""
    gems: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if line and not line.startswith(" "):
            section = line.strip()
            continue
        stripped = line.strip()
        if not stripped or stripped.endswith(":"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        in_specs = section in ("GEM", "GIT", "PATH") and indent == 4
        if in_specs or (section == "DEPENDENCIES" and indent == 2):
            name = stripped.split(" ", 1)[0].rstrip("!")
            gems.setdefault(name, number)
    return gems


def package_json_dependencies(text: str) -> dict[str, int]:
    """The names in dependencies, devDependencies and peerDependencies -> line; ValueError if not JSON, or
    nested deeper than MAX_JSON_DEPTH."""
    _check_depth(text)
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    lines = text.splitlines()
    found: dict[str, int] = {}
    for group in ("dependencies", "devDependencies", "peerDependencies"):
        entries = document.get(group)
        if not isinstance(entries, dict):
            continue
        for name in entries:
            found.setdefault(name, next((number for number, line in enumerate(lines, 1) if _is_key(line, name)), 1))
    return found


def _check_depth(text: str) -> None:
    """ValueError when arrays and objects nest deeper than MAX_JSON_DEPTH (brackets in strings do not count)."""
    depth = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        elif token in ("]", "}"):
            depth -= 1


def _is_key(line: str, name: str) -> bool:
    quoted = json.dumps(name)
    position = line.find(quoted)
    return position >= 0 and line[position + len(quoted):].lstrip().startswith(":")


def importmap(text: str) -> Importmap:
    """`pin "name"` -> line, and `pin_all_from "app/javascript/channels", under: "channels"` prefixes."""
    tokens = tokenize(text)
    pins: dict[str, int] = {}
    for token, rest in _statements(tokens, "pin"):
        if rest and rest[0].kind is Kind.STRING:
            pins.setdefault(rest[0].text, token.line)
    directories: dict[str, str] = {}
    for _, rest in _statements(tokens, "pin_all_from"):
        if not rest or rest[0].kind is not Kind.STRING:
            continue
        directory = rest[0].text.rstrip("/")
        under = next((rest[position + 1].text for position, t in enumerate(rest[:-1])
                      if t.kind is Kind.LABEL and t.text == "under" and rest[position + 1].kind is Kind.STRING), None)
        directories[under if under is not None else directory.rsplit("/", 1)[-1]] = directory
    return Importmap(pins, directories)
