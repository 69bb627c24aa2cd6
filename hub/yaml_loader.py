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
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.cyaml import CParser  # type: ignore[attr-defined]  # absent from the type stubs

from hub.errors import InputError

# A configuration file larger than this is refused: Showcase's navigator.yml for 369 tenants is about 30 KB,
# its inventory about 20 KB.
MAX_FILE_BYTES = 8 * 1024 * 1024

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


# What an alias may cost (a "billion laughs" document of 0.6 KB expands to gigabytes): uses of aliases in
# one document, aliases reached through other aliases, and nodes brought in by expanding aliases, counted
# as every consumer of the data sees them. A document nested deeper than MAX_DEPTH is refused too: its
# consumers (schema checks included) recurse, and libyaml stops only at 1000 levels.
MAX_ALIASES = 100
MAX_ALIAS_NESTING = 4
MAX_ALIAS_NODES = 10000
MAX_DEPTH = 100

TAB_PROBLEM = "a tab character: YAML indents with spaces only"

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
    """A configuration file's text: a regular file only (a FIFO or a device is refused, never waited on or read),
    of at most MAX_FILE_BYTES. Every file the tools read as input comes through here, some of them written by
    someone else (an app's checkout)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _unreadable(path, "not a regular file")
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError([f"{path}: file not found"]) from None
    except OSError as error:
        raise _unreadable(path, error.strerror or str(error)) from None
    try:
        with open(descriptor, encoding="utf-8") as handle:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):  # replaced since it was looked at
                raise _unreadable(path, "not a regular file")
            text = "" if status.st_size > MAX_FILE_BYTES else handle.read(MAX_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as error:
        raise _unreadable(path, str(error)) from None
    if status.st_size > MAX_FILE_BYTES or len(text) > MAX_FILE_BYTES:
        raise _unreadable(path, f"larger than {MAX_FILE_BYTES} bytes")
    return text


def _unreadable(path: str | os.PathLike[str], reason: str) -> InputError:
    return InputError([f"{path}: cannot read: {reason}"])


def parse_yaml_text(text: str, source: str) -> LoadedYaml:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(source, None, {})
        lines, problems, refused = _index(node, source)
        if refused:
            # A list or mapping as a key cannot even be built: say why, with the duplicates found so far.
            raise InputError(refused + problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        tab = error.problem_mark if _is_tab(error, text) else None
        if tab is not None:
            raise InputError([f"{source}:{tab.line + 1}:{tab.column + 1}: {TAB_PROBLEM}"]) from None
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise InputError([f"{where}: not valid YAML: {error.problem or error.context}"]) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise InputError([f"{source}:{line}: not valid YAML: {error.reason} (#x{error.character:04x})"]) from None
    finally:
        loader.dispose()
    return LoadedYaml(source, data, lines, tuple(problems))


def _is_tab(error: yaml.MarkedYAMLError, text: str) -> bool:
    """Whether the scanner stopped at a tab: LibYAML says "found a tab character ..." in some places,
    PyYAML's own scanner "found character '\\t' ...", and LibYAML elsewhere names no character at all."""
    problem, mark = error.problem or "", error.problem_mark
    if mark is None:
        return False
    if "tab character" in problem or "'\\t'" in problem:
        return True
    # LibYAML's index counts characters, not bytes, and not a byte order mark.
    return problem == "found character that cannot start any token" and text.removeprefix("\ufeff")[mark.index:mark.index + 1] == "\t"


def _index(root: yaml.Node, source: str) -> tuple[dict[Path_, int], list[str], list[str]]:
    """Each value's line; duplicate keys (naming both lines); refusals that stop the load.

    Walks the document as its consumers will see it, aliases expanded, without recursion; the
    expansion is bounded before anything grows with it (see MAX_ALIASES). A node is an alias where
    it is referred to after its first reference in document order; a mapping's keys are only checked
    where it is defined, not again at each of its aliases.
    """
    lines: dict[Path_, int] = {}
    problems: list[str] = []
    refused: list[str] = []
    seen: set[int] = set()  # nodes met so far: a later reference to one is an alias
    aliased: dict[tuple[int, int], bool] = {}  # (parent, position) -> whether the reference there is an alias
    aliases = brought = 0

    def refuse(line: int, why: str) -> InputError:
        return InputError([f"{source}:{line}: {why}"])

    # node, its path, where it is referred to from ((parent, position), or None for the root), aliases on the
    # way to it, and the line a refusal names: where it is referred to, or within an alias's expansion, where
    # that alias is (the nodes' own marks are their anchor's)
    stack: list[tuple[yaml.Node, Path_, tuple[int, int] | None, int, int]] = [(root, (), None, 0, root.start_mark.line + 1)]
    while stack:
        node, path, reference, nested, line = stack.pop()
        first = id(node) not in seen
        if reference is not None:
            alias = aliased.get(reference)
            if alias is None:  # the first time this reference is walked: in document order
                alias = aliased[reference] = not first
                if alias:
                    aliases += 1
                    if aliases > MAX_ALIASES:
                        raise refuse(line, f"more than {MAX_ALIASES} aliases in one document")
            if alias:
                nested += 1
                if nested > MAX_ALIAS_NESTING:
                    raise refuse(line, f"aliases nested more than {MAX_ALIAS_NESTING} deep (an alias of a value that holds"
                                       " aliases, and so on, or an alias inside its own anchor)")
            if nested:
                brought += 1
                if brought > MAX_ALIAS_NODES:
                    raise refuse(line, f"aliases expand to more than {MAX_ALIAS_NODES} values")
        if len(path) > MAX_DEPTH:
            raise refuse(line, f"nested more than {MAX_DEPTH} deep")
        seen.add(id(node))
        own_line = node.start_mark.line + 1
        lines[path] = own_line
        children: list[tuple[yaml.Node, Path_, int]] = []
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    if first:
                        refused.append(f"{source}:{key_line}: mapping keys must be plain scalars")
                    continue
                key = key_node.value
                if first and key in first_seen:
                    problems.append(f"{source}:{key_line}: duplicate key '{key}' (first defined on line {first_seen[key]})")
                first_seen.setdefault(key, key_line)
                children.append((value_node, path + (_key_of(key_node),), line if nested else key_line))
        elif isinstance(node, yaml.SequenceNode):
            at = line if nested else own_line
            children = [(item, path + (position,), at) for position, item in enumerate(node.value)]
        for position in range(len(children) - 1, -1, -1):  # pushed last first: popped in document order
            child, child_path, child_line = children[position]
            stack.append((child, child_path, (id(node), position), nested, child_line))
    return lines, problems, refused


def _key_of(key_node: yaml.ScalarNode) -> str | int:
    """The key as the constructed mapping will hold it (integers stay integers)."""
    if key_node.tag == "tag:yaml.org,2002:int":
        return int(key_node.value)
    return key_node.value
