"""The compiled schema checks, held to the jsonschema package's verdicts (the oracle) on mutated documents."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.schema_check import load_schema, schema_problems
from hub.yaml_loader import load_yaml_text
from tests.orchestrator.conftest import SHOWCASE_INVENTORY, region_config, rendered

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False, allow_infinity=False),
              st.sampled_from(["", "x", "/up", "no", "5m", "^/$", "integrated", "ord", "768M", "v1.2.0", "A_B"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "path", "env"]), inner, max_size=3)),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


def _replace(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def _oracle_paths(schema_name: str, document: Any) -> set[tuple]:
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    found = set()
    for error in validator.iter_errors(document):
        leaves = [error]
        while any(leaf.context for leaf in leaves):
            leaves = [child for leaf in leaves for child in (leaf.context or [leaf])]
        found.update(tuple(leaf.absolute_path) for leaf in leaves)
    return found


def _agree(schema_name: str, document: Any) -> None:
    ours = schema_problems(schema_name, document)
    oracle = _oracle_paths(schema_name, document)
    assert bool(ours) == bool(oracle), (ours, oracle)
    # Every path we name is one jsonschema names, or a key jsonschema refuses at its parent (additionalProperties).
    for path, _message in ours:
        assert path in oracle or path[:-1] in oracle, (path, oracle)
    # And every place jsonschema finds wrong, we report there or above it (a wrong type says it all).
    for path in oracle:
        assert any(path[: len(ours_path)] == ours_path or ours_path[:-1] == path for ours_path, _ in ours), (path, ours)


@pytest.fixture(scope="module")
def documents() -> dict[str, Any]:
    ord_config = region_config(rendered())
    return {
        "inventory.schema.json": load_yaml_text(SHOWCASE_INVENTORY.read_text(), "showcase.yml").data,
        "navigator.schema.json": ord_config,
    }


@pytest.mark.parametrize("schema_name", ["inventory.schema.json", "navigator.schema.json"])
def test_the_example_documents_are_valid_for_both(schema_name, documents):
    assert schema_problems(schema_name, documents[schema_name]) == []
    assert _oracle_paths(schema_name, documents[schema_name]) == set()


@pytest.mark.parametrize("schema_name", ["inventory.schema.json", "navigator.schema.json", "hub.schema.json"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_mutated_document_gets_the_same_verdict_at_the_same_places(schema_name, data, documents):
    base = documents.get(schema_name, {"public_streams": False, "limits": {"max_connections": 10}})
    path = data.draw(st.sampled_from(_paths(base)))
    _agree(schema_name, _replace(base, path, data.draw(json_values)))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"server": {"listen": True}}, [(("server", "listen"), "expected integer or string, got true")]),
        ({"server": {"colour": 1}}, [(("server", "colour"),
          "unknown key (allowed: cgi_scripts, health_check, hostname, idle, listen, root_path, static, trust_proxy)")]),
        ({"logging": {"format": "xml"}}, [(("logging", "format"), "expected one of 'text', 'json', got 'xml'")]),
        ({"server": {"idle": {"timeout": "soon"}}}, [(("server", "idle", "timeout"), "'soon' does not match ^[0-9]+(ms|s|m|h)$")]),
        ({"applications": {"pools": {"max_size": 0}}}, [(("applications", "pools", "max_size"), "0 is out of range (minimum 1)")]),
        ({"routes": {"redirects": [{"from": "^/$"}]}}, [(("routes", "redirects", 0, "to"), "missing required key")]),
        ({"applications": {"track_websockets": False}}, [(("applications", "track_websockets"), "expected one of true, got false")]),
    ],
)
def test_messages_say_what_was_expected(document, expected):
    assert schema_problems("navigator.schema.json", document) == expected
