"""Errors that carry every problem found, each naming where it is."""

from __future__ import annotations

import re

EXIT_RENDER_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_ROLLOUT_FAILED = 1  # a region failed its gates (and was rolled back, or could not be)
EXIT_REFUSED = 3  # not started: the lock is held, a stage may not be promoted yet, or the question was declined


class InputError(Exception):
    """Bad input: one or more messages, each starting with a path or `file:line`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = sorted(problems, key=_natural_order)
        super().__init__("\n".join(self.problems))


class RenderError(Exception):
    """A rendered file failed its own check (a template bug, never user input)."""


def _natural_order(text: str) -> list[tuple[int, int | str]]:
    """Sort `f.yml:9` before `f.yml:10` and `regions[2]` before `regions[10]`."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]
