"""YAML written for other programs: block style, no anchors, every string read back as the same string.

Generated configurations are plain data (mappings, lists, strings, integers,
booleans). This writer lays them out in the style PyYAML uses, ten times
faster than PyYAML's own representer; tests/orchestrator/test_yaml_out.py
proves that PyYAML and the project's strict reader both read back exactly the
data written.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml

_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
# Characters that are safe anywhere in a plain scalar (others send it to quotes).
_PLAIN_SAFE = re.compile(r"[A-Za-z0-9 _./$^\\()\[\]{}|?+*<>=~%@!&,;:'\"`#-]*")
_RESOLVER = yaml.resolver.Resolver()


def dump_sections(config: dict[str, Any]) -> str:
    """Each top-level key as its own block, separated by a blank line, in the dict's order."""
    return "\n".join(dump({key: value}) for key, value in config.items())


def dump(data: dict[str, Any]) -> str:
    lines: list[str] = []
    _mapping(data, 0, lines)
    return "\n".join(lines) + "\n"


def _mapping(data: dict[str, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, value in data.items():
        head = f"{pad}{scalar(key)}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            _mapping(value, indent + 2, lines)
        elif isinstance(value, list) and value:
            lines.append(head)
            _sequence(value, indent, lines)  # PyYAML's style: a list sits at its key's indentation
        else:
            lines.append(f"{head} {_inline(value)}")


def _sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            nested: list[str] = []
            _mapping(item, indent + 2, nested)
            lines.append(f"{pad}- {nested[0][indent + 2:]}")
            lines.extend(nested[1:])
        elif isinstance(item, list) and item:
            nested = []
            _sequence(item, indent + 2, nested)
            lines.append(f"{pad}- {nested[0][indent + 2:]}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as YAML")


@lru_cache(maxsize=4096)
def _string(text: str) -> str:
    if not text.isprintable():
        return '"' + "".join(_escaped(character) for character in text) + '"'
    if _plain(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _escaped(character: str) -> str:
    """One character of a double-quoted scalar, in YAML's own escapes (which, unlike JSON's, cover astral code points)."""
    code = ord(character)
    if character in '"\\':
        return "\\" + character
    if 0x20 <= code < 0x7F:
        return character
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _plain(text: str) -> bool:
    if not text or text != text.strip() or not _PLAIN_SAFE.fullmatch(text):
        return False
    # `-`, `?` and `:` may start a plain scalar when a non-space follows (`--port`); the other indicators may not.
    if text[0] in _INDICATORS and not (text[0] in "-?:" and len(text) > 1 and text[1] != " "):
        return False
    if ": " in text or " #" in text or text.endswith(":"):
        return False
    # Anything YAML 1.1 would read as another type (yes, 012, 1:30, 2025-06-20, ~) stays quoted.
    return _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"
