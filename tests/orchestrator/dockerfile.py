"""A Dockerfile read the way BuildKit reads it, as far as the tests need: instructions, stages, and what each defines.

No Docker engine runs here, so the generated Dockerfile is checked by parsing:
which stages exist, which ARG/ENV names each stage can see, what it copies
from where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Stage:
    name: str | None
    base: str
    defined: set[str] = field(default_factory=set)
    # (KEYWORD, arguments, the ARG/ENV names defined before it in this stage or its parents)
    instructions: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: set[str]
    stages: list[Stage]

    def stage(self, name: str | None) -> Stage:
        (found,) = [stage for stage in self.stages if stage.name == name]
        return found

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(entry.split(None, 1)[0].upper(), entry.split(None, 1)[1] if " " in entry.strip() else "") for entry in logical]


def parse(text: str) -> Dockerfile:
    global_args: set[str] = set()
    stages: list[Stage] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            parent = next((stage for stage in stages if stage.name == words[0]), None)
            stages.append(Stage(name, words[0], set(parent.defined) if parent else set()))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            global_args.add(arguments.split("=", 1)[0])
        else:
            stage = stages[-1]
            stage.instructions.append((keyword, arguments, frozenset(stage.defined)))
            if keyword == "ARG":
                stage.defined.add(arguments.split("=", 1)[0])
            elif keyword == "ENV":
                stage.defined.update(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", arguments))
    return Dockerfile(global_args, stages)
