"""Matching brackets over a token stream, in one pass: what both scanners use to find a call's arguments."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

PAIRS = {"(": ")", "[": "]", "{": "}"}


def matching_brackets(punctuation: Sequence[str | None]) -> dict[int, int]:
    """For each opening bracket (by token index), the index of the bracket that closes it.

    `punctuation` holds each token's punctuation text, or None for any other token.
    A stray closing bracket is skipped; an opening bracket never closed is matched
    with the last token, so a malformed file costs one pass, not one per bracket.
    """
    matches: dict[int, int] = {}
    open_brackets: list[tuple[int, str]] = []
    for index, text in enumerate(punctuation):
        if text in PAIRS:
            open_brackets.append((index, PAIRS[text]))
        elif open_brackets and text == open_brackets[-1][1]:
            matches[open_brackets.pop()[0]] = index
    last = len(punctuation) - 1
    for index, _ in open_brackets:
        matches[index] = last
    return matches


class Cursor(Protocol):
    """A lexer's place in its text: the text, the index of the next character, the line it is on."""

    text: str
    i: int
    line: int


def braced_code(cursor: Cursor, nesting: int, max_nesting: int, skip_string: Callable[[str, int], object]) -> str:
    """The code from the cursor to the brace that closes an interpolation (`#{` or `${` already read),
    stepping over strings inside it with the lexer's own `skip_string(quote, nesting)`; the cursor ends
    after that brace (or at the end of an unclosed text)."""
    text = cursor.text
    start = cursor.i
    depth = 1
    while cursor.i < len(text):
        char = text[cursor.i]
        if char in "\"'`" and nesting < max_nesting:
            cursor.i += 1
            skip_string(char, nesting)
            continue
        if char == "\n":
            cursor.line += 1
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                cursor.i += 1
                return text[start:cursor.i - 1]
        cursor.i += 1
    return text[start:]
