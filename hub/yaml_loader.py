"""The one YAML loader: strict, YAML-1.2-like scalars, duplicate keys refused, lines kept.

PyYAML resolves scalars the YAML 1.1 way: ``no`` becomes False, ``1:30``
becomes 90 and ``012`` becomes 10, and a repeated key silently wins. Here only
``true``/``false``, plain decimal integers, decimals and ``null`` are typed;
everything else stays a string, so the schema reports it instead of a silently
wrong value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.cyaml import CParser  # type: ignore[attr-defined]  # absent from the type stubs

from hub.errors import InputError

Path_ = tuple[str | int, ...]


class _StrictResolver(yaml.resolver.BaseResolver):
    pass


_StrictResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*))$"), list("-+0123456789")
)
_StrictResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)\.[0-9]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789"),
)
_StrictResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


if not getattr(yaml, "__with_libyaml__", False):
    raise ImportError("PyYAML was built without LibYAML; install a PyYAML wheel that includes it")


class _StrictLoader(CParser, yaml.constructor.SafeConstructor, _StrictResolver):
    """LibYAML's parser (ten times faster than PyYAML's own) with the strict resolver."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        _StrictResolver.__init__(self)


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed document, the line (1-based) where each value starts, and its duplicate keys.

    A document with duplicate keys still has data (the last value wins, as in
    PyYAML), so a caller can report them together with every other problem.
    """

    source: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: tuple[str, ...] = ()

    def where(self, path: Path_) -> str:
        """`file:line` of the nearest value on `path` that has a known line."""
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        if path and not probe:
            return self.source  # nothing on the path is in the file: line 1 would point nowhere useful
        line = self.lines.get(probe)
        return f"{self.source}:{line}" if line is not None else self.source


def load_yaml_file(path: str | os.PathLike[str]) -> LoadedYaml:
    """Parse a file; any problem, a duplicate key included, is an InputError."""
    return _strict(parse_yaml_file(path))


def load_yaml_text(text: str, source: str) -> LoadedYaml:
    """Parse text; any problem, a duplicate key included, is an InputError."""
    return _strict(parse_yaml_text(text, source))


def _strict(loaded: LoadedYaml) -> LoadedYaml:
    if loaded.duplicates:
        raise InputError(list(loaded.duplicates))
    return loaded


def parse_yaml_file(path: str | os.PathLike[str]) -> LoadedYaml:
    """Parse a file, keeping duplicate keys as problems in the result; unreadable or non-YAML text is an InputError."""
    return parse_yaml_text(read_text_file(path), str(path))


def read_text_file(path: str | os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InputError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError([f"{path}: cannot read: {error}"]) from None


def parse_yaml_text(text: str, source: str) -> LoadedYaml:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(source, None, {})
        lines: dict[Path_, int] = {}
        problems: list[str] = []
        refused: list[str] = []
        _index(node, (), lines, problems, refused, source)
        if refused:
            # A list or mapping as a key cannot even be built: say why, with the duplicates found so far.
            raise InputError(refused + problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InputError([f"{where}: not valid YAML: {error.problem or error.context}"]) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise InputError([f"{source}:{line}: not valid YAML: {error.reason} (#x{error.character:04x})"]) from None
    finally:
        loader.dispose()
    return LoadedYaml(source, data, lines, tuple(problems))


def _index(
    node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[str], refused: list[str], source: str
) -> None:
    """Record each value's line and refuse duplicate keys, naming both lines."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                refused.append(f"{source}:{key_node.start_mark.line + 1}: mapping keys must be plain scalars")
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    f"{source}:{line}: duplicate key '{key}' (first defined on line {first_seen[key]})"
                )
            first_seen.setdefault(key, line)
            _index(value_node, path + (_key_of(key_node),), lines, problems, refused, source)
    elif isinstance(node, yaml.SequenceNode):
        for position, item in enumerate(node.value):
            _index(item, path + (position,), lines, problems, refused, source)


def _key_of(key_node: yaml.ScalarNode) -> str | int:
    """The key as the constructed mapping will hold it (integers stay integers)."""
    if key_node.tag == "tag:yaml.org,2002:int":
        return int(key_node.value)
    return key_node.value
