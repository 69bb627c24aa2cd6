"""The documentation site builds with `mkdocs build --strict`: every page in the navigation, every link and
anchor resolving, nothing fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_SECONDS = 120


@pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 30)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs is not installed: it comes with the test extras (pip install -e '.[test]')"
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice about its own future, not about this site
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    assert (site / "troubleshooting" / "index.html").is_file()
    assert (site / "search" / "search_index.json").is_file()


def test_every_page_is_in_the_navigation() -> None:
    """mkdocs only reports a page left out of `nav`; this makes it a failure."""
    config = yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.SafeLoader)

    def listed(entries: list) -> set[str]:
        found: set[str] = set()
        for entry in entries:
            for value in entry.values() if isinstance(entry, dict) else [entry]:
                found |= listed(value) if isinstance(value, list) else {value}
        return found

    pages = {str(path.relative_to(REPO / "docs")) for path in (REPO / "docs").rglob("*.md")}
    assert listed(config["nav"]) == pages


def test_nothing_is_fetched_at_build_time() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    assert config["theme"]["font"] is False  # no Google fonts
    assert not {"social", "privacy", "optimize"} & {next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]}
