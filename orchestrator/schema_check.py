"""JSON Schema checks whose messages name the path and say what was expected.

Our schemas (schema/*.json, draft 2020-12) use a small set of keywords; each
schema is compiled once into plain functions that report every problem. It is
twenty times faster than the jsonschema package on a rendered navigator.yml,
which `render` checks eighteen times per run, and it spares the image's
refresh that dependency. tests/orchestrator/test_schema_check.py holds it to
jsonschema's verdicts on mutated documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from orchestrator.resources import data_dir

SCHEMA_DIR = Path(data_dir("schema"))

Path_ = tuple[str | int, ...]
Problems = list[tuple[Path_, str]]
Check = Callable[[Any, Path_, Problems], None]

_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}
_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "examples"}
_RANGE = {
    "minimum": lambda value, limit: value >= limit,
    "maximum": lambda value, limit: value <= limit,
    "exclusiveMinimum": lambda value, limit: value > limit,
    "exclusiveMaximum": lambda value, limit: value < limit,
}


@cache
def load_schema(schema_name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / schema_name).read_text(encoding="utf-8"))


@cache
def _compiled(schema_name: str) -> Check:
    schema = load_schema(schema_name)
    return _Compiler(schema.get("$defs", {})).compile(schema)


def schema_problems(schema_name: str, data: Any) -> list[tuple[Path_, str]]:
    """Every violation as (path, message), sorted by path."""
    found: Problems = []
    _compiled(schema_name)(data, (), found)
    return sorted(set(found), key=lambda item: (_sort_key(item[0]), item[1]))


def format_path(path: Iterable[str | int]) -> str:
    """`regions[3].websocket.enabled` from ('regions', 3, 'websocket', 'enabled')."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _sort_key(path: Sequence[str | int]) -> tuple[tuple[int, str | int], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in path)


class _Compiler:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions

    def compile(self, schema: dict[str, Any]) -> Check:
        reference = schema.get("$ref")
        if reference is not None:
            if not reference.startswith("#/$defs/"):
                raise ValueError(f"unsupported $ref {reference!r}: only local #/$defs/ references")
            referenced = self.compile(self.definitions[reference.removeprefix("#/$defs/")])
            rest = {key: value for key, value in schema.items() if key != "$ref"}
            if set(rest) <= _ANNOTATIONS:
                return referenced
            return _both(referenced, self.compile(rest))
        unknown = set(schema) - _ANNOTATIONS - _KEYWORDS
        if unknown:
            raise ValueError(f"schema keywords {sorted(unknown)} are not supported")
        type_check = _type(schema["type"]) if "type" in schema else None
        checks = [factory(self, schema) for keyword, factory in _FACTORIES.items() if keyword in schema]
        if _BOUNDS & set(schema):
            checks.append(_bounds(schema))

        def check(value: Any, path: Path_, found: Problems) -> None:
            # A value of the wrong type gets that one message, as jsonschema's best error would say.
            if type_check is not None and not type_check(value, path, found):
                return
            for keyword_check in checks:
                keyword_check(value, path, found)

        return check


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list)):
        return _JSON_TYPE_NAMES[type(value)]
    return json.dumps(value)


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    return type(value) is {"boolean": bool, "string": str, "array": list, "object": dict}[kind]


def _type(expected: str | list[str]) -> Callable[[Any, Path_, Problems], bool]:
    kinds = [expected] if isinstance(expected, str) else expected
    text = " or ".join(kinds)

    def check(value: Any, path: Path_, found: Problems) -> bool:
        if any(_is(value, kind) for kind in kinds):
            return True
        found.append((path, f"expected {text}, got {_show(value)}"))
        return False

    return check


def _properties(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    properties = {name: compiler.compile(sub) for name, sub in schema["properties"].items()}

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, dict):
            for name, sub in properties.items():
                if name in value:
                    sub(value[name], path + (name,), found)

    return check


def _additional(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    allowed = set(schema.get("properties", {}))
    extra = schema["additionalProperties"]
    if extra is False:
        hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""

        def refuse(value: Any, path: Path_, found: Problems) -> None:
            if isinstance(value, dict):
                found.extend((path + (str(key),), f"unknown key{hint}") for key in value if key not in allowed)

        return refuse
    sub = compiler.compile(extra) if isinstance(extra, dict) else None

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, dict) and sub is not None:
            for key, item in value.items():
                if key not in allowed:
                    sub(item, path + (key,), found)

    return check


def _required(_: _Compiler, schema: dict[str, Any]) -> Check:
    names = schema["required"]

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, dict):
            found.extend((path + (name,), "missing required key") for name in names if name not in value)

    return check


def _property_names(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    sub = compiler.compile(schema["propertyNames"])

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, dict):
            for key in value:
                sub(key, path, found)

    return check


def _items(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    sub = compiler.compile(schema["items"])

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                sub(item, path + (index,), found)

    return check


def _options(_: _Compiler, schema: dict[str, Any]) -> Check:
    options = schema["enum"] if "enum" in schema else [schema["const"]]
    message = f"expected one of {', '.join(_show(option) for option in options)}, got "

    def check(value: Any, path: Path_, found: Problems) -> None:
        # JSON equality: true is not 1.
        if not any(type(value) is type(option) and value == option for option in options):
            found.append((path, message + _show(value)))

    return check


def _pattern(_: _Compiler, schema: dict[str, Any]) -> Check:
    text = schema["pattern"]
    compiled = re.compile(text)

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, str) and not compiled.search(value):
            found.append((path, f"{_show(value)} does not match {text}"))

    return check


def _bounds(schema: dict[str, Any]) -> Check:
    numeric = [(keyword, schema[keyword], test) for keyword, test in _RANGE.items() if keyword in schema]
    sized = [(keyword, schema[keyword]) for keyword in ("minItems", "minLength") if keyword in schema]

    def check(value: Any, path: Path_, found: Problems) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found.extend((path, f"{_show(value)} is out of range ({keyword} {limit})")
                         for keyword, limit, test in numeric if not test(value, limit))
        if isinstance(value, (list, str)):
            found.extend((path, f"{_show(value)} is out of range ({keyword} {limit})")
                         for keyword, limit in sized if len(value) < limit)

    return check


def _all_of(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    subs = [compiler.compile(sub) for sub in schema["allOf"]]

    def check(value: Any, path: Path_, found: Problems) -> None:
        for sub in subs:
            sub(value, path, found)

    return check


def _if_then(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    condition = compiler.compile(schema["if"])
    then = compiler.compile(schema.get("then", {}))

    def check(value: Any, path: Path_, found: Problems) -> None:
        if _valid(condition, value):
            then(value, path, found)

    return check


def _not(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    sub = compiler.compile(schema["not"])

    def check(value: Any, path: Path_, found: Problems) -> None:
        if _valid(sub, value):
            found.append((path, "has keys that do not belong together here"))

    return check


def _any_of(compiler: _Compiler, schema: dict[str, Any]) -> Check:
    subs = [compiler.compile(sub) for sub in schema["anyOf"]]

    def check(value: Any, path: Path_, found: Problems) -> None:
        problems: Problems = []
        for sub in subs:
            before = len(problems)
            sub(value, path, problems)
            if len(problems) == before:
                return
        found.extend(problems)  # none matched: every alternative's problems, as jsonschema's context has them

    return check


def _both(first: Check, second: Check) -> Check:
    def check(value: Any, path: Path_, found: Problems) -> None:
        first(value, path, found)
        second(value, path, found)

    return check


def _valid(check: Check, value: Any) -> bool:
    problems: Problems = []
    check(value, (), problems)
    return not problems


_FACTORIES: dict[str, Callable[[_Compiler, dict[str, Any]], Check]] = {
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "propertyNames": _property_names,
    "items": _items,
    "enum": _options,
    "const": _options,
    "pattern": _pattern,
    "allOf": _all_of,
    "if": _if_then,
    "not": _not,
    "anyOf": _any_of,
}
_BOUNDS = {*_RANGE, "minItems", "minLength"}
_KEYWORDS = {*_FACTORIES, *_BOUNDS, "type", "then"}


def in_schema_order(data: Any, schema_name: str) -> Any:
    """`data` with every object's keys in the order its schema lists them, and free-form maps sorted.

    So generated files read in the order the consumer documents, and do not
    depend on the order of keys in the inventory.
    """
    schema = load_schema(schema_name)
    return _ordered(data, schema, schema.get("$defs", {}))


def _ordered(data: Any, schema: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(schema, dict) and "$ref" in schema:
        schema = definitions[schema["$ref"].removeprefix("#/$defs/")]
    if not isinstance(schema, dict):
        return data
    if isinstance(data, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        order = {key: position for position, key in enumerate(properties)}
        keys = sorted(data, key=lambda key: (order.get(key, len(order)), str(key)))
        return {key: _ordered(data[key], properties.get(key, extra), definitions) for key in keys}
    if isinstance(data, list):
        return [_ordered(item, schema.get("items"), definitions) for item in data]
    return data
