"""Every generated file of the example inventory, stored as a reviewable text snapshot.

Update after an intended change with `pytest tests/orchestrator/test_snapshots.py --snapshot-update`
and review the diff like code.
"""

from __future__ import annotations

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from orchestrator.inventory import load_inventory
from orchestrator.render import render_region, select_regions
from tests.orchestrator.conftest import SHOWCASE_INVENTORY


class TextFileSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "txt"


@pytest.fixture
def snapshot_file(snapshot):
    return snapshot.use_extension(TextFileSnapshot)


def _cases(mode: str | None, websocket_enabled: bool | None, regions: list[str] | None) -> list[tuple[str, str]]:
    inventory = load_inventory(SHOWCASE_INVENTORY)
    cases = []
    for settings in select_regions(inventory, regions, mode, websocket_enabled):
        for name, text in render_region(inventory, settings).files.items():
            cases.append((f"{settings.environment.name}-{settings.region.code}-{name.replace('/', '-')}", text))
    return cases


def _parametrize(mode: str | None, websocket_enabled: bool | None, regions: list[str] | None):
    cases = _cases(mode, websocket_enabled, regions)
    return pytest.mark.parametrize("text", [text for _, text in cases], ids=[case_id for case_id, _ in cases])


@_parametrize(None, None, None)
def test_integrated_every_region(text, snapshot_file):
    assert text == snapshot_file


@_parametrize("action_cable", None, ["ord"])
def test_action_cable_one_region(text, snapshot_file):
    assert text == snapshot_file


@_parametrize("anycable", None, ["ord"])
def test_anycable_one_region(text, snapshot_file):
    assert text == snapshot_file


@_parametrize(None, False, ["ord"])
def test_websocket_off_one_region(text, snapshot_file):
    assert text == snapshot_file
