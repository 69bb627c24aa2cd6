"""Text as it is shown to people: counted nouns, and text this program did not write (file names, an app's source,
a journal row) as it may be shown on a terminal."""

from __future__ import annotations


def plural(number: int, noun: str) -> str:
    """`1 region`, `2 regions`: the nouns here all take an s."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def printable(text: str) -> str:
    """`text` with each character that is not printable (control characters, so terminal escapes and line
    breaks, and invisible formatting such as bidirectional overrides) written as Python writes it in a string
    literal (`\\x1b`, `\\n`, `\\u202e`): it shows on one line and cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
