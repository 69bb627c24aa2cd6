"""Matching brackets over a token stream, in one pass: what both scanners use to find a call's arguments."""

from __future__ import annotations

from collections.abc import Sequence

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
