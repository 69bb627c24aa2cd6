"""The hub ships alone (an image with only h11 and PyYAML): it must never import the orchestrator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import hub.__main__, hub.server, hub.config, hub.yaml_loader
from hub.__main__ import parse_args
parse_args(["--config", "navigator.yml"])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in
      ("orchestrator", "jinja2", "jsonschema", "fabric", "httpx", "websockets"))))
"""


def test_importing_the_hub_loads_no_orchestrator_module_and_none_of_its_dependencies() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []


def test_the_hub_reads_its_schema_without_the_orchestrator_package() -> None:
    from hub.config import SCHEMA_PATH

    schema = json.loads(Path(SCHEMA_PATH).read_text())
    assert schema["title"].startswith("hub.yml")
