"""`init` on what the example configurations in Navigator's own repository exercise (fixtures written here,
one per group of features; docs/adopting.md's table says which example each stands for, and why the others
do not fit): each fitting one is adopted with nothing left unexplained and passes `validate`; what the
inventory cannot hold is refused with file:line, or written and listed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub.yaml_loader import load_yaml_file
from tests.orchestrator.adopt.files import EXAMPLES, HERE

pytestmark = pytest.mark.timeout(60)

ADOPTING = HERE.parents[2] / "docs" / "adopting.md"
NOT_HELD = EXAMPLES / "not-held"

# Each fitting fixture, and where its features land in the written inventory.
FITTING: dict[str, tuple[str, ...]] = {
    "static-files.yml": ("navigator", "server", "static", "cache_control", "overrides"),
    "hooks.yml": ("navigator", "hooks", "tenant", "stop"),
    "websockets.yml": ("modes", "action_cable", "port"),
    "routing.yml": ("navigator", "routes", "fly", "replay"),
    "auth.yml": ("navigator", "auth", "auth_patterns"),
    "logging-and-processes.yml": ("navigator", "logging", "vector", "socket"),
}


def dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


@pytest.mark.parametrize("fixture", sorted(FITTING))
def test_a_fitting_example_is_adopted_with_nothing_unexplained_and_validates(orchestrate, tmp_path, fixture):
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--regions", f"ord={EXAMPLES / fixture}", "--out", out)
    assert result.code == 0, result.out + result.err
    assert "  ord  the same" in result.out and "!" not in result.out, result.out
    assert "not held" not in result.out, result.out
    assert dig(load_yaml_file(out).data, FITTING[fixture])
    validated = orchestrate("validate", out)
    assert validated.code == 0 and validated.err == "", validated.err


def test_keys_navigator_does_not_read_are_refused_with_their_lines(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    source = NOT_HELD / "frameworks.yml"
    result = orchestrate("init", "--regions", f"ord={source}", "--out", out)
    assert result.code == 2 and not out.exists()
    assert f"{source}:5: defaults: Navigator does not read this key" in result.err
    assert f"{source}:18: applications.tenants[1].command: Navigator does not read this key" in result.err
    assert "init: 2 problems, nothing written" in result.err


def test_an_app_at_the_root_is_refused_with_its_line(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    source = NOT_HELD / "at-the-root.yml"
    result = orchestrate("init", "--regions", f"ord={source}", "--out", out)
    assert result.code == 2 and not out.exists()
    assert (f"{source}:4: server.root_path '/': the inventory holds an app mounted under a path such as /app "
            f"(app.root_path)") in result.err


def test_a_tenant_with_its_own_hooks_is_written_listed_and_shown_missing_by_the_proof(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    source = NOT_HELD / "tenant-hooks.yml"
    result = orchestrate("init", "--regions", f"ord={source}", "--out", out)
    assert result.code == 1 and out.exists(), result.out + result.err
    assert (f"{source}:12: tenant not held: its own hooks, track_websockets, var.city: the inventory's tenants carry "
            f"a path, var.database and an environment") in result.out
    assert "! applications.tenants./studio/2025/lakeside/: original {'path': '/studio/2025/lakeside/'" in result.out
    assert "rendered nothing" in result.out


def test_the_adopting_page_names_every_example_fixture() -> None:
    page = ADOPTING.read_text(encoding="utf-8")
    table = page[page.index("## Navigator's own examples"):]
    named = set(re.findall(r"`(?:not-held/)?([a-z-]+\.yml)`", table))
    fixtures = {path.name for path in EXAMPLES.rglob("*.yml")}
    assert len(fixtures) == len(FITTING) + 3  # the fitting ones and not-held/'s three: the glob found them
    assert fixtures <= named, sorted(fixtures - named)
