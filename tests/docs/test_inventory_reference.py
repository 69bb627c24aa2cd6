"""docs/inventory-reference.md is what docs/gen_inventory_reference.py writes from the inventory's schema and
the loader's defaults, so it never drifts from them; and the script leaves nothing out."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "gen_inventory_reference.py"


@pytest.fixture(scope="module")
def generator() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gen_inventory_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def rendered(generator: ModuleType) -> tuple[str, list[str], list[str]]:
    return generator.render()


def test_the_committed_page_is_up_to_date(generator: ModuleType, rendered: tuple[str, list[str], list[str]]) -> None:
    page, _, _ = rendered
    assert generator.PAGE.read_text(encoding="utf-8") == page, (
        "docs/inventory-reference.md is out of date: run .venv/bin/python docs/gen_inventory_reference.py")


def test_every_key_has_a_description_and_an_example(rendered: tuple[str, list[str], list[str]]) -> None:
    _, missing, _ = rendered
    assert not missing, "give these keys a description or examples in schema/inventory.schema.json:\n" + "\n".join(missing)


def test_every_default_of_the_loader_is_placed(rendered: tuple[str, list[str], list[str]]) -> None:
    """A `.get(key, default)` on a value the script cannot place in the schema would be a default the page misses."""
    _, _, unplaced = rendered
    assert not unplaced, "\n".join(unplaced)


def test_every_key_of_the_schema_has_a_row(rendered: tuple[str, list[str], list[str]]) -> None:
    page, _, _ = rendered
    rows = {line.split(" | ")[0].removeprefix("| ").strip("`") for line in page.splitlines() if line.startswith("| `")}
    schema = json.loads((REPO / "schema" / "inventory.schema.json").read_text(encoding="utf-8"))

    def names(node: dict, definitions: dict) -> set[str]:
        if "$ref" in node:
            node = definitions[node["$ref"].removeprefix("#/$defs/")]
        found = set(node.get("properties", {}))
        for child in node.get("properties", {}).values():
            found |= names(child, definitions)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found |= names(node[key], definitions)
        return found

    leaves = {row.rsplit(".", 1)[-1].removesuffix("[]") for row in rows}
    assert names(schema, schema["$defs"]) <= leaves


def test_defaults_come_from_the_loader(rendered: tuple[str, list[str], list[str]]) -> None:
    """A few defaults, checked against the loader by hand, so the script's reading of it stays right."""
    page, _, _ = rendered
    row = {line.split(" | ")[0].removeprefix("| ").strip("`"): line.split(" | ") for line in page.splitlines()
           if line.startswith("| `")}
    assert row["rollout.health_check.deadline_seconds"][2] == "`30`"
    assert row["rollout.target"][2] == "`local`"
    assert row["modes.hub.client_ip_header"][2] == "`Fly-Client-IP`"
    assert row["ssh.known_hosts"][2] == "`~/.ssh/known_hosts`"  # a dataclass default (SshSettings)
    assert row["websocket.cable_path"][2] == "`<app.root_path>/cable`"
    assert row["prefix"][2] == "`cable-hub`"  # a broker's
    assert row["tenants.events[].name"][2] == "the value of `studio`"
    assert "hub 25.0" in row["cable_server"][2]  # DEFAULT_MEMORY_BUDGETS_MB
    assert row["app.name"][2] == "required"
