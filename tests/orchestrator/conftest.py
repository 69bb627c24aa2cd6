from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli import main

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


def copy_showcase(directory: Path) -> Path:
    """The example inventory and its tenant file, copied where a test may change them."""
    shutil.copy(SHOWCASES_FILE, directory / "showcases.yml")
    target = directory / "showcase.yml"
    shutil.copy(SHOWCASE_INVENTORY, target)
    return target


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
