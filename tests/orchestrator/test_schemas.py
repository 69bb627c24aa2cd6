from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from orchestrator.schema_check import SCHEMA_DIR


@pytest.mark.parametrize("name", ["inventory.schema.json", "navigator.schema.json", "hub.schema.json"])
def test_schema_is_valid_draft_2020_12(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _objects(node, path="#"):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{path}/{index}")


# Objects checked by a second schema instead: the inventory's `navigator` block is a part of navigator.yml,
# checked against navigator.schema.json with its paths prefixed (orchestrator/inventory.py).
CHECKED_ELSEWHERE = {("inventory.schema.json", "#/properties/navigator")}


@pytest.mark.parametrize("name", ["inventory.schema.json", "navigator.schema.json", "hub.schema.json"])
def test_every_object_closes_its_keys(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    open_objects = [
        path for path, node in _objects(schema)
        if "additionalProperties" not in node and "allOf" not in path and (name, path) not in CHECKED_ELSEWHERE
    ]
    assert open_objects == []
