"""The WebSocket switch on the volume: `<data_dir>/cable-orchestrator/websocket` overrides the region's render.json.

A Fly machine's root file system is reset to the image on every restart; only
the volume persists, so the quick rollback (switch off) lives there and every
refresh (the boot's ready hook included) honours it. The image's scripts run
for real from a rendered image directory, as in test_refresh.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main as orchestrate
from orchestrator.refresh import SWITCH_FILE
from tests.orchestrator.conftest import copy_showcase


class Image:
    def __init__(self, tmp_path: Path, *render_arguments: str) -> None:
        self.data_dir = tmp_path / "data"
        inventory = copy_showcase(
            tmp_path,
            ("runtime_file: /data/db/showcases.yml", f"runtime_file: {self.data_dir / 'db' / 'showcases.yml'}"),
            ("data_dir: /data", f"data_dir: {self.data_dir}"),
        )
        out = tmp_path / "out"
        assert orchestrate(["render", str(inventory), "--out", str(out), *render_arguments]) == 0
        self.config_dir = out / "production" / "navigator"
        self.python_dir = tmp_path / "python-bin"
        self.python_dir.mkdir()
        (self.python_dir / "python3").symlink_to(sys.executable)

    @property
    def active(self) -> Path:
        return self.config_dir / "navigator.yml"

    @property
    def switch(self) -> Path:
        return self.data_dir / SWITCH_FILE

    def flip(self, text: str) -> None:
        self.switch.parent.mkdir(parents=True, exist_ok=True)
        self.switch.write_text(text)

    def refresh(self, region: str = "ord") -> subprocess.CompletedProcess[str]:
        environment = {"PATH": f"{self.python_dir}:/usr/bin:/bin", "FLY_REGION": region}
        return subprocess.run([str(self.config_dir / "bin" / "refresh")], env=environment, capture_output=True,
                              text=True, timeout=120)

    def cable_enabled(self) -> bool:
        return yaml.safe_load(self.active.read_text())["cable"]["enabled"]


def test_without_the_file_the_recorded_switch_decides(tmp_path):
    image = Image(tmp_path)
    result = image.refresh()
    assert result.returncode == 0, result.stderr
    assert image.cable_enabled() is True
    assert SWITCH_FILE not in result.stdout


@pytest.mark.parametrize("written", ["off", "off\n"])
def test_off_on_the_volume_overrides_an_image_rendered_with_the_switch_on(tmp_path, written):
    image = Image(tmp_path)
    assert image.refresh().returncode == 0
    image.flip(written)
    result = image.refresh()
    assert result.returncode == 0, result.stderr
    assert f"websocket off from {image.switch}" in result.stdout
    assert image.cable_enabled() is False
    # Exactly what a render with the switch off gives that region (with the image's tenant list).
    (tmp_path / "off").mkdir()
    off = Image(tmp_path / "off", "--websocket", "off")
    assert off.refresh().returncode == 0
    assert image.active.read_text() == off.active.read_text().replace(str(off.data_dir), str(image.data_dir))


def test_on_on_the_volume_overrides_an_image_rendered_with_the_switch_off(tmp_path):
    image = Image(tmp_path, "--websocket", "off")
    assert image.refresh().returncode == 0
    assert image.cable_enabled() is False
    image.flip("on")
    result = image.refresh()
    assert result.returncode == 0, result.stderr
    assert image.cable_enabled() is True


def test_the_switch_survives_a_restart(tmp_path):
    """A restart resets the root file system to the image (no navigator.yml); the boot's refresh reads the volume."""
    image = Image(tmp_path)
    image.flip("off")
    assert image.refresh().returncode == 0
    image.active.unlink()  # the machine restarted: the image has no active configuration
    result = image.refresh()
    assert result.returncode == 0, result.stderr
    assert image.cable_enabled() is False


def test_anything_else_in_the_file_keeps_the_running_configuration(tmp_path):
    image = Image(tmp_path)
    assert image.refresh().returncode == 0
    running = image.active.read_text()
    image.flip("of")
    result = image.refresh()
    assert result.returncode == 1
    assert f"{image.switch}: holds 'of', not on or off" in result.stderr
    assert f"keeping {image.active} as it is" in result.stderr
    assert image.active.read_text() == running
