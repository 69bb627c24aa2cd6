"""Every generated file of the example inventory, stored as a reviewable text snapshot.

Update after an intended change with `pytest tests/orchestrator/test_snapshots.py --snapshot-update`
and review the diff like code. The image's copies of the inventory and of this
program (navigator/inventory/, navigator/tool/) are not generated, so not here.
"""

from __future__ import annotations

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from tests.orchestrator.conftest import SHOWCASE_INVENTORY, TEST_ANYCABLE_IMAGE, rendered, showcase_with_anycable_image


class TextFileSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "txt"


@pytest.fixture
def snapshot_file(snapshot):
    return snapshot.use_extension(TextFileSnapshot)


def _generated(path: str) -> bool:
    return not path.startswith(("navigator/tool/", "navigator/inventory/"))


def _cases(environment: str, only: tuple[str, ...] = (), **options) -> pytest.MarkDecorator:
    files = rendered(SHOWCASE_INVENTORY, environment=environment, **options)
    chosen = {path: text for path, text in files.items() if _generated(path) and (not only or path in only)}
    return pytest.mark.parametrize(
        "text", list(chosen.values()), ids=[f"{environment}-{path.replace('/', '-')}" for path in chosen]
    )


ORD = ("Dockerfile", "navigator/regions/ord/navigator.yml", "navigator/regions/ord/boot.yml")


@_cases("production")
def test_integrated_production(text, snapshot_file):
    assert text == snapshot_file


@_cases("staging")
def test_integrated_staging(text, snapshot_file):
    assert text == snapshot_file


@_cases("production", ORD, mode="action_cable")
def test_action_cable_ord(text, snapshot_file):
    assert text == snapshot_file


@_cases("production", ORD + ("navigator/regions/ord/render.json",), websocket=False)
def test_websocket_off_ord(text, snapshot_file):
    assert text == snapshot_file


def test_anycable_ord(tmp_path, snapshot_file):
    """The anycable mode needs a pinned image, which the example does not have: this one uses the tests' own."""
    files = rendered(showcase_with_anycable_image(tmp_path), mode="anycable")
    assert TEST_ANYCABLE_IMAGE in files["Dockerfile"]
    assert "\n\n".join(f"=== {path}\n{files[path]}" for path in ORD) == snapshot_file


def test_anycable_ord_with_a_broker(tmp_path, snapshot_file):
    """Three machines in ord share broadcasts through a local NATS: nats-server, then anycable-go's pub/sub."""
    ord_nats = ("  - {code: ord}\n",
                "  - {code: ord, machines: 3, broker: {kind: nats, local: {port: 4222}}}\n")
    files = rendered(showcase_with_anycable_image(tmp_path, ord_nats), mode="anycable")
    assert files["navigator/regions/ord/navigator.yml"] == snapshot_file


@_cases("production", ORD + ("navigator/regions/ord/hub.yml",), mode="hub")
def test_hub_ord(text, snapshot_file):
    assert text == snapshot_file
