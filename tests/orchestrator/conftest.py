from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.inventory import load_inventory
from orchestrator.render.files import render_environment, select_settings
from hub.yaml_loader import load_yaml_text

REPO = Path(__file__).resolve().parents[2]
SHOWCASE_INVENTORY = REPO / "inventories" / "showcase.yml"
SHOWCASES_FILE = REPO / "inventories" / "showcases.yml"

# A small valid inventory. Tests change one line of it to make it invalid, so
# the line numbers in their expected messages are stable.
MINIMAL_INVENTORY = """\
app:
  name: demo
  root_path: /demo
  listen: 9999
  primary_region: iad
environments:
  production:
    fly_app: demo
    regions: [ams, dfw, iad, ord]
regions:
  - code: ams
  - code: dfw
  - code: iad
  - code: ord
    websocket:
      enabled: true
tenants:
  source: inline
  events:
    - {year: 2025, studio: boston, event: spring, region: iad}
    - {year: 2025, studio: raleigh, region: ord}
websocket:
  enabled: true
  mode: integrated
  cable_path: /demo/regions/{region}/cable
rollout:
  health_check:
    interval_seconds: 1
  stages:
    - {name: canary, environment: production, regions: [ord], bake: 1h}
"""


def write_inventory(directory: Path, text: str = MINIMAL_INVENTORY, *, replace: tuple[str, str] | None = None) -> Path:
    """Write an inventory (optionally with one exact substring replaced) into `directory`."""
    if replace is not None:
        old, new = replace
        assert old in text, f"test setup: {old!r} is not in the inventory"
        text = text.replace(old, new, 1)
    path = directory / "inventory.yml"
    path.write_text(text, encoding="utf-8")
    return path


# Test data only: the example inventory pins no anycable-go image (Showcase does not run that mode).
TEST_ANYCABLE_IMAGE = "anycable/anycable-go:1.5.1@sha256:" + "5e" * 32


def copy_showcase(directory: Path, *replacements: tuple[str, str]) -> Path:
    """The example inventory and its tenant file, copied where a test may change them (exact substrings replaced)."""
    shutil.copy(SHOWCASES_FILE, directory / "showcases.yml")
    target = directory / "showcase.yml"
    text = SHOWCASE_INVENTORY.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"test setup: {old!r} is not in the example inventory"
        text = text.replace(old, new, 1)
    target.write_text(text, encoding="utf-8")
    return target


def showcase_with_anycable_image(directory: Path, *replacements: tuple[str, str]) -> Path:
    return copy_showcase(
        directory, ("  anycable:\n    port: 28080", f"  anycable:\n    image: {TEST_ANYCABLE_IMAGE}\n    port: 28080"),
        *replacements,
    )


def rendered(
    inventory_path: Path = SHOWCASE_INVENTORY,
    *,
    mode: str | None = None,
    websocket: bool | None = None,
    regions: list[str] | None = None,
    environment: str = "production",
) -> dict[str, str]:
    """Every file of one environment's image, as `orchestrate render` would write it (relative path -> text)."""
    inventory = load_inventory(inventory_path)
    settings = select_settings(inventory, regions, mode, websocket)[environment]  # type: ignore[arg-type]
    return {path: file.text for path, file in render_environment(inventory, settings).files.items()}


def parsed(files: dict[str, str], path: str) -> Any:
    return load_yaml_text(files[path], path).data


def region_config(files: dict[str, str], region: str = "ord", name: str = "navigator.yml") -> dict[str, Any]:
    return parsed(files, f"navigator/regions/{region}/{name}")


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def orchestrate(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*arguments: str | Path) -> CliResult:
        code = main([str(argument) for argument in arguments])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
