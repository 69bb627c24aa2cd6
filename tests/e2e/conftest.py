"""Fixtures for end-to-end tests: the hub (or Rails Action Cable) as a real
subprocess on 127.0.0.1, driven by real Node clients from tests/node.

    npm ci --prefix tests/node && .venv/bin/python -m pytest tests/e2e

Needs node + npm, and for the Rails baseline the Debian packages puma and
ruby-actioncable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from browser import Chromium
from e2e_support import (
    INSTALL_HINT,
    NODE_DIR,
    RAILS_CONFIG_RU,
    REPO,
    SECRET,
    SECRET_ENV,
    Hub,
    NodeClient,
    ServerProcess,
    hub_listening_port,
    hub_options,
    navigator_config,
)
from tests.ports import start_on_free_port


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    if not (REPO / "hub" / "__main__.py").exists():
        pytest.fail("the hub is missing: hub/__main__.py does not exist")
    # Port 0: the hub binds a port of its own and logs it, so no other process can take it first.
    navigator = navigator_config(0)
    navigator_yml = tmp_path / "navigator.yml"
    navigator_yml.write_text(yaml.safe_dump(navigator))
    hub_yml = tmp_path / "hub.yml"
    hub_yml.write_text(yaml.safe_dump(hub_options()))

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "hub",
            "--config", str(navigator_yml), "--hub-config", str(hub_yml),
            "--host", "127.0.0.1", "--port", str(port), "--log-format", "json",
        ]

    env = {**os.environ, SECRET_ENV: SECRET}
    server = ServerProcess(command, 0, tmp_path / "hub.log", env, REPO, reported_port=hub_listening_port)
    server.start()
    try:
        yield Hub(server, navigator_yml, navigator)
    finally:
        server.stop()
        print(f"hub log:\n{server.log()}")  # pytest shows it when the test failed


@pytest.fixture
def rails_cable(tmp_path: Path) -> Iterator[ServerProcess]:
    puma = shutil.which("puma")
    if puma is None:
        pytest.fail("puma is missing: install the Debian packages puma and ruby-actioncable")

    def command(port: int) -> list[str]:
        return [puma, "-b", f"tcp://127.0.0.1:{port}", "-t", "4:4", str(RAILS_CONFIG_RU)]

    def start(port: int) -> ServerProcess:
        server = ServerProcess(command, port, tmp_path / "puma.log", dict(os.environ), tmp_path)
        server.start()
        return server

    # Puma cannot report a port it chose: another one is tried when this one was taken meanwhile.
    server = start_on_free_port(start)
    try:
        yield server
    finally:
        server.stop()
        print(f"puma log:\n{server.log()}")  # pytest shows it when the test failed


def _require_node_modules() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: install nodejs and npm, then {INSTALL_HINT}")
    for package in ("@rails/actioncable", "@anycable/web", "@anycable/core", "ws"):
        if not (NODE_DIR / "node_modules" / package / "package.json").exists():
            pytest.fail(f"tests/node/node_modules/{package} is missing: {INSTALL_HINT}")
    return node


@pytest.fixture
def node_client() -> Iterator[Callable[[str, dict[str, Any]], NodeClient]]:
    node = _require_node_modules()
    started: list[NodeClient] = []

    def start(script: str, config: dict[str, Any]) -> NodeClient:
        process = subprocess.Popen(
            [node, str(NODE_DIR / script), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
        )
        client = NodeClient(process)
        threading.Thread(target=client.collect, daemon=True).start()
        threading.Thread(target=client.collect_stderr, daemon=True).start()
        started.append(client)
        return client

    yield start
    for client in started:
        if client.process.poll() is None:
            os.kill(client.process.pid, signal.SIGKILL)
            client.process.wait(timeout=5)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    """Headless Chromium with a profile of its own, stopped at the end."""
    browser = Chromium(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        browser.start()
        yield browser
    finally:
        browser.stop()
