"""Fixtures for the hub tests."""

from __future__ import annotations

import os

import pytest

from hub_testkit import LogRecorder


@pytest.fixture
def log() -> LogRecorder:
    return LogRecorder()


@pytest.fixture
def secret() -> bytes:
    return os.urandom(16).hex().encode()
