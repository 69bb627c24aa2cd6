"""Fixtures for the hub tests."""

from __future__ import annotations

import os
import sys

import pytest

from hub_testkit import HubProcess, LogRecorder

NAVIGATOR_YML = """
server: {listen: 9999, health_check: {path: /healthz, response: {status: 200, body: OK}}}
cable: {enabled: true, path: /showcase/regions/iad/cable, broadcast_path: /_broadcast}
"""


@pytest.fixture
def log() -> LogRecorder:
    return LogRecorder()


@pytest.fixture
def secret() -> bytes:
    return os.urandom(16).hex().encode()


@pytest.fixture
def start_hub(tmp_path):
    """Start hub subprocesses for a test; each is killed at teardown if still running."""
    started: list[HubProcess] = []

    def start(
        navigator: str | None = NAVIGATOR_YML,
        hub: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (sys.executable, "-m", "hub"),
    ) -> HubProcess:
        directory = tmp_path / f"hub{len(started)}"
        directory.mkdir()
        process = HubProcess(directory, navigator, hub, args, env, launcher)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
