"""Regions of several machines in the hub mode: the broker settings the inventory gives, rendered and checked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.inventory import load_inventory
from orchestrator.rollout.model import RegionKey
from orchestrator.rollout.plan import expected_memory
from tests.orchestrator.conftest import copy_showcase, region_config, rendered, write_inventory
from tests.orchestrator.dockerfile import parse

ORD_NATS = ("  - {code: ord}\n",
            "  - {code: ord, machines: 3, broker: {kind: nats, local: {port: 4222}, token_env: NATS_TOKEN}}\n")
DFW_REDIS = ("  - {code: dfw}\n",
             "  - {code: dfw, machines: 2, broker: {kind: redis, url: 'redis://10.0.0.7:6379/2', password_env: REDIS_PASSWORD}}\n")


@pytest.fixture(scope="module")
def brokered_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_showcase(tmp_path_factory.mktemp("brokered"), ORD_NATS, DFW_REDIS)


@pytest.fixture(scope="module")
def brokered(brokered_inventory: Path) -> tuple[Path, dict[str, str]]:
    return brokered_inventory, rendered(brokered_inventory, mode="hub")


def test_hub_yml_names_the_region_s_broker_and_never_a_secret(brokered) -> None:
    _, files = brokered
    ord_hub = region_config(files, "ord", "hub.yml")
    assert ord_hub["broker"] == {"kind": "nats", "url": "nats://127.0.0.1:4222", "prefix": "cable-hub", "token_env": "NATS_TOKEN"}
    dfw_hub = region_config(files, "dfw", "hub.yml")
    assert dfw_hub["broker"] == {"kind": "redis", "url": "redis://10.0.0.7:6379/2", "prefix": "cable-hub",
                                 "password_env": "REDIS_PASSWORD"}
    assert "broker" not in region_config(files, "ams", "hub.yml")  # one machine, no broker: local delivery


def test_a_local_nats_server_runs_before_the_hub_and_clusters_the_region_s_machines(brokered) -> None:
    _, files = brokered
    nats, hub = region_config(files, "ord")["managed_processes"]
    assert (nats["name"], hub["name"]) == ("nats-server", "cable-hub")
    flags = nats["args"][3:]
    assert flags == ["-a", "127.0.0.1", "-p", "4222", "--cluster_name", "cable-ord", "--cluster", "nats://[::]:6222",
                     "--routes", "nats://ord.smooth.internal:6222"]
    assert [p["name"] for p in region_config(files, "dfw")["managed_processes"]] == ["cable-hub"]  # redis is elsewhere


def test_the_nats_token_comes_from_the_machine_s_environment_and_is_required(brokered, tmp_path) -> None:
    _, files = brokered
    (nats, _) = region_config(files, "ord")["managed_processes"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nats-server").write_text('#!/bin/sh\necho "nats-server $*"\n')
    (bin_dir / "nats-server").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    started = subprocess.run([nats["command"], *nats["args"]], env={**env, "NATS_TOKEN": "from-fly-secrets"},
                             capture_output=True, text=True, timeout=30)
    assert started.stdout.strip().endswith("--auth from-fly-secrets")
    refused = subprocess.run([nats["command"], *nats["args"]], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "NATS_TOKEN is not set" in refused.stderr and refused.stdout == ""


def test_the_image_carries_the_broker_clients(brokered) -> None:
    _, files = brokered
    (install,) = [a for k, a, _ in parse(files["Dockerfile"]).final.instructions if k == "RUN" and "apt-get install" in a]
    for package in ("nats-server", "python3-redis"):
        assert f" {package} " in install
    assert "navigator/tool/nats/aio/client.py" in files  # nats-py: not packaged by Debian
    assert not any(path.startswith("navigator/tool/nats/") for path in rendered(mode="hub"))


def test_the_plan_counts_the_local_broker_in_the_region_s_memory(brokered_inventory: Path) -> None:
    inventory = load_inventory(brokered_inventory)
    ord_memory = expected_memory(inventory, RegionKey("production", "ord"), "hub", True)
    assert ord_memory["broker"] == 14.0
    assert "broker" not in expected_memory(inventory, RegionKey("production", "dfw"), "hub", True)
    assert "broker" not in expected_memory(inventory, RegionKey("production", "ord"), "hub", False)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  - code: ord\n    websocket:\n      enabled: true\n", "  - {code: ord, machines: 2}\n",
     "regions[3].machines: 2 machines in integrated mode: Navigator's cable delivers a broadcast only to the clients "
     "of the machine that took it; use the hub mode with a broker"),
    ("  mode: integrated\n  cable_path", "  mode: hub\n  cable_path",
     None),  # one machine per region: no broker needed
    ("  - code: ord\n    websocket:\n      enabled: true\n", "  - {code: ord, machines: 2, websocket: {mode: hub}}\n",
     "regions[3].machines: 2 machines in hub mode need a broker"),
    ("  - code: ord\n    websocket:\n      enabled: true\n",
     "  - {code: ord, broker: {kind: redis, local: {port: 4222}}}\n",
     "regions[3].broker.local: nats only: a redis broker has no local server and no token"),
    ("  - code: ord\n    websocket:\n      enabled: true\n",
     "  - {code: ord, broker: {kind: nats, url: 'redis://10.0.0.1:6379'}}\n",
     "regions[3].broker.url: 'redis://10.0.0.1:6379' is not a nats:// URL"),
    ("  - code: ord\n    websocket:\n      enabled: true\n",
     "  - {code: ord, broker: {kind: nats, url: 'nats://10.0.0.1:4222', user: cable, token_env: T}}\n",
     "regions[3].broker.token_env: a NATS token or a user and password, not both"),
])
def test_broker_and_machine_problems_name_the_region(orchestrate, tmp_path, old, new, expected) -> None:
    result = orchestrate("validate", write_inventory(tmp_path, replace=(old, new)))
    if expected is None:
        assert result.code == 0, result.err
        return
    assert result.code == 2
    assert any(line.startswith(expected) for line in result.err.splitlines()), result.err
