"""What `validate` can tell from stream templates alone: names two templates share, and per-user streams.

A template is literal text with {placeholders}; the hub fills each placeholder
with one or more characters of any kind (hub/cable.py).
"""

from __future__ import annotations

from collections import deque

from hub.cable import placeholders

# Placeholder names that make a stream one user's (or carry something secret): whoever
# guesses the name reads the stream where nothing checks who subscribes.
PER_USER_WORDS = ("user", "person", "account", "member", "owner", "session", "token", "email", "secret")

_ANY = "any"  # exactly one character of any kind
_STAR = "star"  # zero or more characters of any kind


def literal_pieces(template: str) -> list[str]:
    """The literal text around the placeholders: one more piece than there are placeholders."""
    pieces = []
    rest = template
    for name in placeholders(template):
        before, _, rest = rest.partition("{" + name + "}")
        pieces.append(before)
    pieces.append(rest)
    return pieces


def _items(template: str) -> list[str | tuple[str]]:
    """Characters, and for each placeholder one character of any kind followed by any more."""
    items: list[str | tuple[str]] = []
    pieces = literal_pieces(template)
    for index, piece in enumerate(pieces):
        items.extend(piece)
        if index < len(pieces) - 1:
            items.extend(((_ANY,), (_STAR,)))
    return items


def templates_overlap(first: str, second: str) -> bool:
    """Whether some stream name fits both templates.

    A walk over pairs of positions in the two templates, each step taking the
    same character in both: at most (len(first) + 1) * (len(second) + 1) states.
    """
    a, b = _items(first), _items(second)
    seen = {(0, 0)}
    todo = deque([(0, 0)])
    while todo:
        i, j = todo.popleft()
        if i == len(a) and j == len(b):
            return True
        moves = []
        if i < len(a) and a[i] == (_STAR,):
            moves.append((i + 1, j))
        if j < len(b) and b[j] == (_STAR,):
            moves.append((i, j + 1))
        if i < len(a) and j < len(b):
            literal_clash = isinstance(a[i], str) and isinstance(b[j], str) and a[i] != b[j]
            if not literal_clash:
                moves.append((i if a[i] == (_STAR,) else i + 1, j if b[j] == (_STAR,) else j + 1))
        for state in moves:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


def per_user_placeholders(template: str) -> list[str]:
    """The placeholders whose names say the stream belongs to one user (user_id, account, token, ...)."""
    return [name for name in placeholders(template) if any(word in name.lower() for word in PER_USER_WORDS)]
