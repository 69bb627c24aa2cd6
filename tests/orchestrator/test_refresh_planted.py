"""bin/refresh cases no other test held: the switch on the volume keeps the region's mode, in every mode, and a
write that fails half way leaves the running navigator.yml whole. The image's scripts run for real, as in
test_refresh.py and test_refresh_switch.py."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main as orchestrate
from orchestrator.refresh import SWITCH_FILE
from tests.orchestrator.conftest import showcase_with_anycable_image

MODES = ("action_cable", "anycable", "integrated", "hub")


class Image:
    """A rendered production image of the example inventory, its volume in the test's directory."""

    def __init__(self, directory: Path, *render_arguments: str) -> None:
        directory.mkdir(exist_ok=True)
        self.data_dir = directory / "data"
        inventory = showcase_with_anycable_image(
            directory,
            ("runtime_file: /data/db/showcases.yml", f"runtime_file: {self.data_dir / 'db' / 'showcases.yml'}"),
            ("data_dir: /data", f"data_dir: {self.data_dir}"),
        )
        assert orchestrate(["render", str(inventory), "--out", str(directory / "out"), *render_arguments]) == 0
        self.config_dir = directory / "out" / "production" / "navigator"
        self.python_dir = directory / "python-bin"
        self.python_dir.mkdir()
        (self.python_dir / "python3").symlink_to(sys.executable)

    @property
    def active(self) -> Path:
        return self.config_dir / "navigator.yml"

    def flip(self, text: str) -> None:
        switch = self.data_dir / SWITCH_FILE
        switch.parent.mkdir(parents=True, exist_ok=True)
        switch.write_text(text)

    def refresh(self, file_size_limit: int | None = None) -> subprocess.CompletedProcess[str]:
        def limit() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        environment = {"PATH": f"{self.python_dir}:/usr/bin:/bin", "FLY_REGION": "ord"}
        return subprocess.run([str(self.config_dir / "bin" / "refresh")], env=environment, capture_output=True,
                              text=True, timeout=120, preexec_fn=limit)

    def configuration(self) -> str:
        """The active navigator.yml, with this image's own directories taken out (so two images compare)."""
        return self.active.read_text().replace(str(self.data_dir), "<data>")


@pytest.mark.parametrize("mode", MODES)
def test_the_switch_on_the_volume_keeps_the_recorded_mode(tmp_path: Path, mode: str) -> None:
    """Off on the volume gives what a render with the switch off gives; on gives what a render with it on
    gives: the region's mode stays the one it was rendered with, whatever the inventory's default."""
    on = Image(tmp_path / "on", "--mode", mode)
    off = Image(tmp_path / "off", "--mode", mode, "--websocket", "off")
    for image in (on, off):
        assert image.refresh().returncode == 0
    rendered_on, rendered_off = on.configuration(), off.configuration()
    assert rendered_on != rendered_off
    on.flip("off")
    off.flip("on")
    for image in (on, off):
        result = image.refresh()
        assert result.returncode == 0, result.stderr
    assert (on.configuration(), off.configuration()) == (rendered_off, rendered_on)
    cable = yaml.safe_load(off.active.read_text())["cable"]
    assert cable["enabled"] is (mode == "integrated")  # the other modes answer the cable path themselves


def test_a_write_that_fails_half_way_leaves_the_running_configuration_whole(tmp_path: Path) -> None:
    """A refresh whose new navigator.yml cannot be written whole (here: a file size limit, as a full disk would)
    must leave the one Navigator runs as it was, not a truncated one."""
    image = Image(tmp_path)
    assert image.refresh().returncode == 0
    running = image.active.read_bytes()
    image.flip("off")  # the next refresh has a different configuration to write
    result = image.refresh(file_size_limit=len(running) // 4)
    assert result.returncode != 0
    assert "File too large" in result.stderr
    assert image.active.read_bytes() == running
    assert sorted(path.name for path in image.config_dir.glob("*.yml*")) == ["navigator.yml"]
