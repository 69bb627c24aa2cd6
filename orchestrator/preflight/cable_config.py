"""The app's config/cable.yml: each environment's adapter and other keys, with their lines.

Rails runs the file through ERB before YAML, so each `<% %>` tag is set aside
(replaced by a plain word, put back in the values) and the rest is read with
the project's one YAML loader. `<<: *default` merges are followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.errors import InputError
from hub.yaml_loader import parse_yaml_text

# What the generated config/cable.yml holds (templates/rails/cable.yml.j2).
GENERATED = {"development": ("adapter",), "test": ("adapter",), "production": ("adapter", "url")}
GENERATED_ADAPTERS = {"development": "async", "test": "test"}
_MERGE = "<<"


@dataclass(frozen=True, slots=True)
class Setting:
    value: str  # as written, ERB included
    line: int


@dataclass(frozen=True, slots=True)
class CableEnvironment:
    name: str
    line: int
    settings: dict[str, Setting]

    @property
    def adapter(self) -> str | None:
        setting = self.settings.get("adapter")
        return setting.value if setting else None


def read_cable_yml(text: str, source: str) -> tuple[CableEnvironment, ...]:
    """Every environment in the file; an InputError when it cannot be read as Rails would."""
    tags: list[str] = []
    parts: list[str] = []
    position = 0
    while (start := text.find("<%", position)) >= 0:
        end = text.find("%>", start)
        if end < 0:
            raise InputError([f"{source}: an ERB tag <% is never closed"])
        parts.append(text[position:start])
        tag = text[start:end + 2]
        parts.append(f"__erb{len(tags)}__" + "\n" * tag.count("\n"))
        tags.append(tag)
        position = end + 2
    parts.append(text[position:])
    loaded = parse_yaml_text("".join(parts), source)
    if loaded.duplicates:
        raise InputError(list(loaded.duplicates))
    if not isinstance(loaded.data, dict):
        raise InputError([f"{source}: not a mapping of environments"])

    def restore(value: Any) -> str:
        shown = str(value)
        for number, tag in enumerate(tags):
            shown = shown.replace(f"__erb{number}__", tag)
        return shown

    environments = []
    for name, body in loaded.data.items():
        if not isinstance(body, dict):
            continue
        settings: dict[str, Setting] = {}
        merged = body.get(_MERGE)
        for index, base in enumerate(merged if isinstance(merged, list) else [merged]):
            if isinstance(base, dict):
                path = (name, _MERGE, index) if isinstance(merged, list) else (name, _MERGE)
                for key, value in base.items():
                    settings[str(key)] = Setting(restore(value), loaded.lines.get((*path, key), loaded.lines.get(path, 1)))
        for key, value in body.items():
            if key != _MERGE:
                settings[str(key)] = Setting(restore(value), loaded.lines.get((name, key), 1))
        environments.append(CableEnvironment(str(name), _key_line(text, str(name)), settings))
    return tuple(environments)


def _key_line(text: str, name: str) -> int:
    """The line of a top-level key (the loader keeps the lines of values, which may start further down)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(name) and line[len(name):].lstrip().startswith(":"):
            return number
    return 1
