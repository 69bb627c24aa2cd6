"""Who owns navigator.yml at run time: the image's hooks render the region again from the tenant list the app synced.

The scripts run for real, from a rendered image directory, on this project's
Python and on Debian's own python3 with Debian's jinja2, jsonschema and yaml
packages (what the image installs).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main as orchestrate
from tests.orchestrator.conftest import copy_showcase

DEBIAN_PYTHON = Path("/usr/bin/python3")
NEW_EVENT = """\
  chicago:
    :name: Chicago
    :region: ord
    :events:
      winter-gala:
        :name: Winter Gala
        :date: 2026-12-19 - 2026-12-19
"""


@pytest.fixture(params=["project-python", "debian-python"])
def python_dir(request, tmp_path: Path) -> Path:
    """A directory holding the `python3` the refresh script finds first on PATH."""
    directory = tmp_path / "python-bin"
    directory.mkdir()
    if request.param == "debian-python":
        assert DEBIAN_PYTHON.exists(), "Debian's python3 is missing: run scripts/setup-env test"
        target = DEBIAN_PYTHON
    else:
        target = Path(sys.executable)
    (directory / "python3").symlink_to(target)
    return directory


class Image:
    """A rendered environment's navigator/ directory standing in for the image's /etc/navigator."""

    def __init__(self, root: Path, synced: Path, python_dir: Path) -> None:
        self.config_dir = root / "production" / "navigator"
        self.synced = synced
        self.python_dir = python_dir

    @property
    def active(self) -> Path:
        return self.config_dir / "navigator.yml"

    def baked(self, region: str) -> Path:
        return self.config_dir / "regions" / region / "navigator.yml"

    def run(self, script: str, region: str = "ord", **env: str) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": f"{self.python_dir}:/usr/bin:/bin", "FLY_REGION": region, **env}
        return subprocess.run([str(self.config_dir / "bin" / script)], env=environment, capture_output=True,
                              text=True, timeout=120)

    def tenants(self) -> dict[str, dict]:
        config = yaml.safe_load(self.active.read_text())
        return {tenant["path"]: tenant for tenant in config["applications"]["tenants"]}


def make_image(tmp_path: Path, python_dir: Path, *render_arguments: str) -> Image:
    synced = tmp_path / "data" / "db" / "showcases.yml"
    inventory = copy_showcase(tmp_path, ("runtime_file: /data/db/showcases.yml", f"runtime_file: {synced}"))
    out = tmp_path / "out"
    assert orchestrate(["render", str(inventory), "--out", str(out), *render_arguments]) == 0
    return Image(out, synced, python_dir)


def sync(image: Image, text: str) -> None:
    """What the app's own sync does: leave the current tenant list on the volume."""
    image.synced.parent.mkdir(parents=True, exist_ok=True)
    image.synced.write_text(text)


def with_new_event(image: Image) -> str:
    shipped = (image.config_dir / "inventory" / "showcases.yml").read_text()
    assert shipped.startswith("---\n2026:\n")
    return shipped.replace("2026:\n", "2026:\n" + NEW_EVENT, 1)


def test_first_refresh_without_a_synced_list_installs_the_image_s_configuration(tmp_path, python_dir, capsys):
    image = make_image(tmp_path, python_dir)
    result = image.run("refresh")
    assert result.returncode == 0, result.stderr
    assert image.active.read_text() == image.baked("ord").read_text()


def test_a_new_event_in_the_synced_list_appears_after_the_hook_runs(tmp_path, python_dir):
    image = make_image(tmp_path, python_dir)
    assert image.run("refresh").returncode == 0
    sync(image, with_new_event(image))
    result = image.run("refresh")
    assert result.returncode == 0, result.stderr
    tenants = image.tenants()
    assert tenants["/showcase/2026/chicago/winter-gala/"] == {
        "path": "/showcase/2026/chicago/winter-gala/",
        "var": {"database": "2026-chicago-winter-gala"},
        "env": {"RAILS_APP_OWNER": "Chicago", "RAILS_APP_SCOPE": "2026/chicago/winter-gala",
                "SHOWCASE_LOGO": "arthur-murray-logo.gif"},
    }
    assert len(tenants) == 2 + 56 + 1
    assert f"57 tenants from {image.synced}" in result.stdout
    # Another region now replays the new studio to ord.
    assert image.run("refresh", region="iad").returncode == 0
    replays = yaml.safe_load(image.active.read_text())["routes"]["fly"]["replay"]
    assert {"path": "^/showcase/(?:2026)/(?:chicago)/.+$", "region": "ord", "status": 307} in replays


def test_an_unchanged_configuration_is_not_written_again(tmp_path, python_dir):
    """Navigator reloads a hook's reload_config file when it was modified: writing the same text would reload it."""
    image = make_image(tmp_path, python_dir)
    assert image.run("refresh").returncode == 0
    os.utime(image.active, ns=(1_000_000_000, 1_000_000_000))
    result = image.run("refresh")
    assert result.returncode == 0
    assert "is up to date" in result.stdout
    assert image.active.stat().st_mtime_ns == 1_000_000_000


def test_a_broken_synced_list_keeps_the_running_configuration(tmp_path, python_dir):
    image = make_image(tmp_path, python_dir)
    assert image.run("refresh").returncode == 0
    running = image.active.read_text()
    sync(image, "2026:\n  chicago:\n    :name: Chicago\n    :name: Again\n")
    result = image.run("refresh")
    assert result.returncode == 1
    assert f"{image.synced}:4: duplicate key ':name' (first defined on line 3)" in result.stderr
    assert f"keeping {image.active} as it is" in result.stderr
    assert image.active.read_text() == running


def test_a_broken_synced_list_at_boot_installs_the_image_s_configuration(tmp_path, python_dir):
    """At boot nothing runs yet: Navigator must still get a working configuration, and the error must be loud."""
    image = make_image(tmp_path, python_dir)
    sync(image, "not: [valid")
    result = image.run("refresh")
    assert result.returncode == 0
    assert "cannot render region ord" in result.stderr and "not valid YAML" in result.stderr
    assert image.active.read_text() == image.baked("ord").read_text()


def test_the_refresh_keeps_the_switch_the_region_was_rendered_with(tmp_path, python_dir):
    """A region rolled back by render --websocket off must stay off when the hook renders it again."""
    image = make_image(tmp_path, python_dir, "--websocket", "off")
    sync(image, with_new_event(image))
    assert image.run("refresh").returncode == 0
    config = yaml.safe_load(image.active.read_text())
    assert config["cable"]["enabled"] is False
    assert "/showcase/2026/chicago/winter-gala/" in image.tenants()


def app_cgi_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "update_configuration.rb"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_update_config_runs_the_app_s_script_then_renders_again(tmp_path, python_dir):
    image = make_image(tmp_path, python_dir)
    assert image.run("refresh").returncode == 0
    new_list = tmp_path / "pushed.yml"
    new_list.write_text(with_new_event(image))
    script = app_cgi_script(tmp_path, f'cp "{new_list}" "{image.synced}"\nprintf "Content-Type: text/plain\\n\\nupdated\\n"')
    image.synced.parent.mkdir(parents=True, exist_ok=True)
    result = image.run("cgi-refresh", ORCHESTRATE_CGI_SCRIPT=str(script))
    assert result.returncode == 0, result.stderr
    # The HTTP response is the app script's alone; the refresh reports into Navigator's log.
    assert result.stdout == "Content-Type: text/plain\n\nupdated\n"
    assert f"wrote {image.active}" in result.stderr
    assert "/showcase/2026/chicago/winter-gala/" in image.tenants()


def test_a_failing_app_script_does_not_refresh(tmp_path, python_dir):
    image = make_image(tmp_path, python_dir)
    assert image.run("refresh").returncode == 0
    before = image.active.read_text()
    image.synced.parent.mkdir(parents=True, exist_ok=True)
    sync(image, with_new_event(image))
    script = app_cgi_script(tmp_path, 'echo "Status: 500"; exit 3')
    result = image.run("cgi-refresh", ORCHESTRATE_CGI_SCRIPT=str(script))
    assert result.returncode == 3
    assert image.active.read_text() == before


def test_the_hooks_of_the_rendered_configuration_run_these_scripts(tmp_path, python_dir):
    image = make_image(tmp_path, python_dir)
    config = yaml.safe_load(image.baked("ord").read_text())
    boot = yaml.safe_load((image.config_dir / "regions" / "ord" / "boot.yml").read_text())
    refresh = {"command": "/etc/navigator/bin/refresh", "args": [], "timeout": "1m",
               "reload_config": "/etc/navigator/navigator.yml"}
    sync_hook = {"command": "ruby", "args": ["script/nav_initialization.rb"], "timeout": "5m"}
    assert boot["hooks"] == {"server": {"ready": [sync_hook, refresh]}}
    assert boot["maintenance"]["enabled"] is True and "tenants" not in boot.get("applications", {})
    assert config["hooks"]["server"]["resume"] == [sync_hook, refresh]
    (cgi,) = config["server"]["cgi_scripts"]
    assert (cgi["script"], cgi["env"]["ORCHESTRATE_CGI_SCRIPT"], cgi["reload_config"]) == (
        "/etc/navigator/bin/cgi-refresh", "/rails/script/update_configuration.rb", "/etc/navigator/navigator.yml")


def test_the_refresh_needs_only_what_the_image_installs(tmp_path):
    """The image has Debian's python3 with jinja2 and yaml, nothing else: no jsonschema, no httpx, no fabric."""
    image = make_image(tmp_path, tmp_path)
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.refresh import refresh\n"
        f"assert refresh(Path({str(image.config_dir)!r}), 'ord') == 0\n"
        "print(sorted({name.split('.')[0] for name in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(image.config_dir / "tool")},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert {"orchestrator", "jinja2", "yaml"} <= loaded
    assert not loaded & {"jsonschema", "httpx", "fabric", "paramiko", "referencing"}
