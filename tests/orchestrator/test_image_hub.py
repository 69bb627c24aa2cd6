"""The hub mode's cable process, started as Navigator would start it from the image: Debian's python3 (with
python3-yaml, as the image installs it), the image's copy of the hub, the rendered hub.yml."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.conftest import region_config, rendered
from tests.orchestrator.dockerfile import parse
from tests.polling import wait_for

SYSTEM_PYTHON = "/usr/bin/python3"
CONFIG_DIR = "/etc/navigator"  # image.config_dir of the example inventory


@pytest.fixture(scope="module")
def hub_image() -> dict[str, str]:
    return rendered(mode="hub")


def test_the_image_installs_what_the_hub_runs_on(hub_image: dict[str, str]) -> None:
    (install,) = [a for k, a, _ in parse(hub_image["Dockerfile"]).final.instructions if k == "RUN" and "apt-get install" in a]
    for package in ("python3", "python3-yaml"):
        assert f" {package} " in install
    assert "h11" not in install  # the hub parses HTTP itself
    assert "navigator/tool/hub/server.py" in hub_image and "navigator/tool/orchestrator/schema/hub.schema.json" in hub_image
    runs = [a for k, a, _ in parse(hub_image["Dockerfile"]).final.instructions if k == "RUN"]
    assert "python3 -m compileall -q /etc/navigator/tool" in runs  # the hub starts without compiling its sources


@pytest.fixture
def started_hub(tmp_path: Path, hub_image: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The image's /etc/navigator laid out under tmp_path, and the region's cable-hub process started from it."""
    root = tmp_path / "navigator"
    for path, text in hub_image.items():
        if path.startswith("navigator/"):
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    (process,) = region_config(hub_image)["managed_processes"]
    relocate = lambda value: value.replace(CONFIG_DIR, str(root))  # noqa: E731
    assert process["command"] == "python3"
    # Navigator's environment (the machine's: Fly secrets) plus the process's own env; no venv on the path.
    env = {"PATH": "/usr/bin:/bin", "CABLE_SIGNING_SECRET": "from-the-machine"}
    env.update({name: relocate(value) for name, value in process["env"].items()})
    # The rendered port is the region's fixed one; the test lets the hub pick a free one instead.
    argv = [SYSTEM_PYTHON, *map(relocate, process["args"]), "--port", "0"]
    log = tmp_path / "hub.log"
    with log.open("w") as output:
        hub = subprocess.Popen(argv, cwd=relocate(process["working_dir"]), env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        port = wait_for(lambda: _listening_port(hub, log), timeout=30, what="the hub to listen")
        yield hub, port
    finally:
        hub.terminate()
        hub.wait(timeout=30)


def _listening_port(hub: subprocess.Popen[bytes], log: Path) -> int | None:
    text = log.read_text()
    if hub.poll() is not None:
        raise AssertionError(f"the hub exited {hub.returncode}: {text}")
    found = re.search(r"event=listening .*?\bport=(\d+)", text)
    return int(found.group(1)) if found else None


def test_the_cable_hub_runs_from_the_image_s_copy_on_debian_s_python(started_hub: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = started_hub
    assert _request(port, "GET", "/up") == (200, b"OK")
    # The rendered paths are the region's: the cable path upgrades, the broadcast path takes broadcasts from loopback...
    assert _request(port, "GET", "/showcase/regions/ord/cable")[0] == 400  # a plain GET is no WebSocket handshake
    body = json.dumps({"stream": "s", "data": 1})
    assert _request(port, "POST", "/_broadcast", body)[0] in (200, 201)
    # ... but not one that came through Navigator's proxy: there is no broadcast key here.
    assert _request(port, "POST", "/_broadcast", body, {"X-Forwarded-For": "203.0.113.9"})[0] == 403


def _request(port: int, method: str, path: str, body: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
