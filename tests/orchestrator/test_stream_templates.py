"""Stream templates as `validate` reads them, held to the hub's own matcher."""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.cable import Templates
from orchestrator.stream_templates import literal_pieces, per_user_placeholders, templates_overlap

# Literals from a two-letter alphabet; a third letter stands for anything else a placeholder may hold.
ALPHABET = "ab"
FRESH = "z"


@st.composite
def templates(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.text(ALPHABET, max_size=1), min_size=1, max_size=3))
    names = iter("pqr")
    return "".join(piece if index == 0 else "{" + next(names) + "}" + piece for index, piece in enumerate(pieces))


def some_name_fits_both(first: str, second: str) -> bool:
    """By enumeration: a shortest common name takes, per character, a literal or a placeholder of one template,
    so none is longer than both templates' literals and placeholders together."""
    longest = sum(len("".join(literal_pieces(t))) + len(literal_pieces(t)) - 1 for t in (first, second))
    a, b = Templates([first]), Templates([second])
    for length in range(longest + 1):
        for letters in product(ALPHABET + FRESH, repeat=length):
            name = "".join(letters)
            if a.match(name) and b.match(name):
                return True
    return False


@settings(max_examples=100, deadline=None)
@given(templates(), templates())
def test_overlap_agrees_with_the_hub_s_matcher_on_every_short_name(first: str, second: str) -> None:
    assert templates_overlap(first, second) == some_name_fits_both(first, second)


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("room_{id}", "room_admin_{n}", True),  # id = admin_7 gives room_admin_7
    ("live-{db}", "live-{db}-admin", True),
    ("a{x}b", "a{y}c", False),
    ("x{a}", "y{b}", False),
    ("{a}_{b}", "x", False),  # a placeholder holds at least one character
    ("{a}_{b}", "x_y", True),
    ("scores", "scores", True),
    ("ab", "abc", False),
])
def test_overlap_examples(first: str, second: str, expected: bool) -> None:
    assert templates_overlap(first, second) is expected
    assert templates_overlap(second, first) is expected


def test_per_user_placeholders_are_found_by_their_names() -> None:
    assert per_user_placeholders("config_update_{database}_{user_id}") == ["user_id"]
    assert per_user_placeholders("inbox-{AccountId}-{session_token}") == ["AccountId", "session_token"]
    assert per_user_placeholders("live-scores-{database}") == []
