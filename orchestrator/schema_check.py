"""JSON Schema checks whose messages name the path and say what was expected."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from orchestrator.resources import data_dir

SCHEMA_DIR = Path(data_dir("schema"))

_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


@cache
def validator(schema_name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / schema_name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def format_path(path: Iterable[str | int]) -> str:
    """`regions[3].websocket.enabled` from ('regions', 3, 'websocket', 'enabled')."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def schema_problems(schema_name: str, data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every violation as (path, message), sorted by path."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for error in validator(schema_name).iter_errors(data):
        for leaf in _leaves(error):
            found.extend(_describe(leaf))
    return sorted(set(found), key=lambda item: (_sort_key(item[0]), item[1]))


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The specific errors under an if/then or allOf wrapper, not the wrapper."""
    if error.context:
        return [leaf for child in error.context for leaf in _leaves(child)]
    return [error]


def _sort_key(path: Sequence[str | int]) -> tuple[tuple[int, str | int], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in path)


def _describe(error: jsonschema.ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "type":
        expected = error.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        return [(path, f"expected {expected_text}, got {_show(error.instance)}")]
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return [(path + (str(key),), f"unknown key{hint}") for key in unknown]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        return [(path + (missing,), "missing required key")]
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        return [(path, f"expected one of {', '.join(_show(o) for o in options)}, got {_show(error.instance)}")]
    if kind == "pattern":
        return [(path, f"{_show(error.instance)} does not match {error.validator_value}")]
    if kind == "not":
        return [(path, "has keys that do not belong together here")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "minLength"):
        return [(path, f"{_show(error.instance)} is out of range ({kind} {error.validator_value})")]
    return [(path, error.message)]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list)):
        return f"{_JSON_TYPE_NAMES[type(value)]}"
    return json.dumps(value)
