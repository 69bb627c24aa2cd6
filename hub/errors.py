"""The error every input problem becomes: a list of messages, each naming where it is.

It lives in the hub, the bottom layer, so that the hub and the orchestrator
report bad input the same way without the hub importing the orchestrator.
"""

from __future__ import annotations

import re


class InputError(Exception):
    """Bad input: one or more messages, each starting with a path or `file:line`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = sorted(problems, key=_natural_order)
        super().__init__("\n".join(self.problems))


def _natural_order(text: str) -> list[tuple[int, int | str]]:
    """Sort `f.yml:9` before `f.yml:10` and `regions[2]` before `regions[10]`."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]
