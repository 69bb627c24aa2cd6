"""Regions of several machines in the anycable mode: anycable-go's pub/sub from the inventory's broker, or a refusal.

anycable-go v1.5.1 (tag 01a996ed of anycable/anycable-go) shares nothing between processes unless `--pubsub`
names an adapter (config/config.go:38; cli/runner_options.go:108-120), and without `--broker` its legacy broker
hands an HTTP broadcast to the pub/sub only when the receiving process has a subscriber to the stream
(broker/broker.go:146-150): `--broker memory` always publishes (broker/memory.go:236-248).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import RenderError
from orchestrator.inventory import load_inventory
from orchestrator.rollout.model import RegionKey
from orchestrator.rollout.plan import expected_memory
from tests.orchestrator.conftest import (
    MINIMAL_INVENTORY,
    TEST_ANYCABLE_IMAGE,
    region_config,
    rendered,
    showcase_with_anycable_image,
    write_inventory,
)
from tests.orchestrator.dockerfile import parse

ORD_NATS = ("  - {code: ord}\n", "  - {code: ord, machines: 3, broker: {kind: nats, local: {port: 4222}}}\n")
DFW_REDIS = ("  - {code: dfw}\n",
             "  - {code: dfw, machines: 2, broker: {kind: redis, url: 'redis://10.0.0.7:6379/2', user: cable, "
             "password_env: REDIS_PASSWORD}}\n")
IAD_NATS = ("  - {code: iad}\n", "  - {code: iad, machines: 2, broker: {kind: nats, url: 'nats://10.0.0.5:4222'}}\n")
# Showcase installs nats-server for itself; without it here, only a local broker puts it in the image.
NO_NATS_PACKAGE = ("libjemalloc2, nats-server, poppler-utils", "libjemalloc2, poppler-utils")

# Every flag of anycable-go v1.5.1 the generator may write, from cli/options.go: True for a boolean (takes no
# value), False for one that takes the next argument.
ANYCABLE_GO_FLAGS = {
    "--presets": False,  # 1211
    "--host": False,  # 376
    "--port": False,  # 383
    "--path": False,  # 424
    "--broadcast_adapter": False,  # 475
    "--broker": False,  # 481
    "--pubsub": False,  # 487
    "--history_limit": False,  # 506
    "--redis_url": False,  # 529
    "--http_broadcast_port": False,  # 587
    "--http_broadcast_path": False,  # 594
    "--nats_servers": False,  # 619
    "--norpc": True,  # 743
    "--noauth": True,  # 411
    "--public_streams": True,  # 1094
    "--turbo_streams": True,  # 1106
    "--cable_ready": True,  # 1112
}


def anycable_flags(process: dict) -> dict[str, str | None]:
    """The command line as anycable-go's flag parser reads it; an unknown flag or a missing value fails."""
    dash_c, _script, argv0, *argv = process["args"]
    assert (process["command"], dash_c, argv0) == ("/bin/sh", "-c", "anycable-go")
    parsed: dict[str, str | None] = {}
    while argv:
        flag = argv.pop(0)
        assert flag in ANYCABLE_GO_FLAGS, f"anycable-go v1.5.1 has no flag {flag}"
        assert flag not in parsed, f"{flag} given twice"
        parsed[flag] = None if ANYCABLE_GO_FLAGS[flag] else argv.pop(0)
    return parsed


@pytest.fixture(scope="module")
def brokered_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return showcase_with_anycable_image(tmp_path_factory.mktemp("anycable-brokered"), ORD_NATS, DFW_REDIS, IAD_NATS,
                                        NO_NATS_PACKAGE)


@pytest.fixture(scope="module")
def brokered(brokered_inventory: Path) -> dict[str, str]:
    return rendered(brokered_inventory, mode="anycable")


def test_a_region_of_several_machines_without_a_broker_is_refused_in_anycable_mode(orchestrate, tmp_path) -> None:
    inventory = write_inventory(tmp_path, replace=("  - code: ord\n    websocket:\n      enabled: true\n",
                                                   "  - {code: ord, machines: 2, websocket: {mode: anycable}}\n"))
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert (f"regions[3].machines: 2 machines in anycable mode need a broker (the region's broker or "
            f"modes.anycable.broker): anycable-go shares nothing between machines without a pub/sub, so a broadcast "
            f"reaches only the clients of the machine that took it ({inventory}:14)") in result.err.splitlines()
    # The same region as the command line's choice: `render --mode anycable` refuses it too, and writes nothing.
    two = write_inventory(tmp_path, replace=("  - code: ord\n    websocket:\n      enabled: true\n",
                                             "  - {code: ord, machines: 2}\n"))
    result = orchestrate("render", two, "--out", tmp_path / "out", "--mode", "anycable", "--region", "ord")
    assert result.code == 2 and "regions[3].machines: 2 machines in anycable mode need a broker" in result.err
    assert not (tmp_path / "out").exists()


ORD = "  - code: ord\n    websocket:\n      enabled: true\n"


def pinned(tmp_path: Path, ord_line: str, modes: str = "") -> Path:
    """The minimal inventory with ord replaced, anycable-go's image pinned, and more `modes` lines."""
    text = MINIMAL_INVENTORY.replace(ORD, ord_line, 1)
    text += f"modes:\n  anycable:\n    image: {TEST_ANYCABLE_IMAGE}\n{modes}"
    return write_inventory(tmp_path, text)


@pytest.mark.parametrize(("ord_line", "modes", "expected"), [
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}, broker: {kind: nats, local: {}}}\n", "", None),
    ("  - {code: ord, websocket: {mode: anycable}}\n", "", None),  # one machine: nothing to share
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}}\n",
     "    broker: {kind: redis, url: 'redis://10.0.0.7:6379/0'}\n", None),
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}}\n",
     "  hub:\n    broker: {kind: redis, url: 'redis://10.0.0.7:6379/0'}\n",
     "regions[3].machines: 2 machines in anycable mode need a broker"),  # the hubs' broker is theirs only
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}}\n",
     "    broker: {kind: nats, url: 'nats://10.0.0.5:4222', prefix: smooth}\n",
     "modes.anycable.broker.prefix: anycable-go has no pub/sub prefix"),
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}}\n", "    broker: {kind: redis, local: {}}\n",
     "modes.anycable.broker.local: nats only"),
    # anycable-go logs its NATS URL whole (pubsub/nats.go:65), and takes NATS credentials nowhere else.
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}, broker: {kind: nats, local: {}, token_env: T}}\n", "",
     "regions[3].broker.token_env: anycable-go writes its NATS URL to its log, credentials included"),
    ("  - {code: ord, machines: 2, websocket: {mode: anycable}}\n",
     "    broker: {kind: nats, url: 'nats://10.0.0.5:4222', user: cable, password_env: P}\n",
     "modes.anycable.broker.password_env: anycable-go writes its NATS URL to its log"),
    # The same broker for hubs only: fine.
    ("  - {code: ord, machines: 2, websocket: {mode: hub}, broker: {kind: nats, local: {}, token_env: T}}\n", "", None),
])
def test_anycable_broker_settings_are_checked(orchestrate, tmp_path, ord_line, modes, expected) -> None:
    result = orchestrate("validate", pinned(tmp_path, ord_line, modes))
    if expected is None:
        assert result.code == 0, result.err
        return
    assert result.code == 2
    assert any(line.startswith(expected) for line in result.err.splitlines()), result.err


def test_a_local_nats_server_runs_before_anycable_go_which_publishes_through_it(brokered) -> None:
    nats, anycable = region_config(brokered, "ord")["managed_processes"]
    assert (nats["name"], anycable["name"]) == ("nats-server", "anycable")
    assert nats == {"name": "nats-server", "command": "nats-server", "auto_restart": True,
                    "args": ["-a", "127.0.0.1", "-p", "4222", "--cluster_name", "cable-ord", "--cluster",
                             "nats://[::]:6222", "--routes", "nats://ord.smooth.internal:6222"]}
    flags = anycable_flags(anycable)
    assert {flag: flags[flag] for flag in ("--broadcast_adapter", "--broker", "--pubsub", "--nats_servers")} == {
        "--broadcast_adapter": "http", "--broker": "memory", "--pubsub": "nats", "--nats_servers": "nats://127.0.0.1:4222"}
    assert anycable["args"][1] == 'ANYCABLE_SECRET="${CABLE_SIGNING_SECRET:?CABLE_SIGNING_SECRET is not set}" exec anycable-go "$@"'


def test_a_broker_without_a_secret_is_a_flag_and_a_region_of_one_machine_gets_none(brokered) -> None:
    (iad,) = region_config(brokered, "iad")["managed_processes"]
    flags = anycable_flags(iad)
    assert (flags["--broker"], flags["--pubsub"], flags["--nats_servers"]) == ("memory", "nats", "nats://10.0.0.5:4222")
    (ams,) = region_config(brokered, "ams")["managed_processes"]
    assert not {"--broker", "--pubsub", "--nats_servers", "--redis_url"} & set(anycable_flags(ams))


def test_a_redis_password_is_in_anycable_go_s_environment_never_in_a_file(brokered) -> None:
    (dfw,) = region_config(brokered, "dfw")["managed_processes"]
    flags = anycable_flags(dfw)
    assert (flags["--broker"], flags["--pubsub"]) == ("memory", "redis")
    assert "--redis_url" not in flags  # it carries the password: ANYCABLE_REDIS_URL, built by the shell
    assert 'ANYCABLE_REDIS_URL="redis://cable:${REDIS_PASSWORD}@10.0.0.7:6379/2"' in dfw["args"][1]


def fake_anycable_go(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / "anycable-go"
    program.write_text('#!/bin/sh\necho "REDIS=$ANYCABLE_REDIS_URL"\necho "SECRET=$ANYCABLE_SECRET"\necho "ARGS=$*"\n')
    program.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "CABLE_SIGNING_SECRET": "signing"}


def run(process: dict, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([process["command"], *process["args"]], env=env, capture_output=True, text=True, timeout=30)


def test_the_redis_password_reaches_anycable_go_from_the_machine_s_environment(brokered, tmp_path) -> None:
    env = fake_anycable_go(tmp_path)
    (dfw_anycable,) = region_config(brokered, "dfw")["managed_processes"]
    started = run(dfw_anycable, {**env, "REDIS_PASSWORD": "pW-0_9.~x"})
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[:2] == ["REDIS=redis://cable:pW-0_9.~x@10.0.0.7:6379/2", "SECRET=signing"]
    assert "--broker memory --pubsub redis" in started.stdout


@pytest.mark.parametrize("value", [None, "", "a/b", "p@ss", "x#y", "50%", "a,b", "two words"])
def test_a_redis_password_that_is_unset_or_would_change_the_url_stops_the_start(brokered, tmp_path, value) -> None:
    env = fake_anycable_go(tmp_path)
    (dfw_anycable,) = region_config(brokered, "dfw")["managed_processes"]
    refused = run(dfw_anycable, env if value is None else {**env, "REDIS_PASSWORD": value})
    assert refused.returncode != 0 and refused.stdout == ""
    assert "REDIS_PASSWORD" in refused.stderr
    if value:
        assert value not in refused.stderr  # the message names the variable, never its value


def installed(files: dict[str, str]) -> str:
    (install,) = [a for k, a, _ in parse(files["Dockerfile"]).final.instructions if k == "RUN" and "apt-get install" in a]
    return install


def test_the_image_gets_nats_server_and_the_plan_counts_it(brokered, brokered_inventory, tmp_path) -> None:
    install = installed(brokered)
    assert " nats-server " in install
    assert "python3-redis" not in install and "python3-h11" not in install  # anycable-go has its own clients
    assert "nats-server" not in installed(rendered(showcase_with_anycable_image(tmp_path, NO_NATS_PACKAGE), mode="anycable"))
    assert not any(path.startswith("navigator/tool/nats/") for path in brokered)  # nats-py is the hub's
    inventory = load_inventory(brokered_inventory)
    assert expected_memory(inventory, RegionKey("production", "ord"), "anycable", True)["broker"] == 14.0
    assert "broker" not in expected_memory(inventory, RegionKey("production", "dfw"), "anycable", True)
    assert "broker" not in expected_memory(inventory, RegionKey("production", "ord"), "anycable", False)
    # With the WebSocket off there is no anycable-go, and so no broker beside it.
    off = rendered(brokered_inventory, mode="anycable", websocket=False)
    assert "managed_processes" not in region_config(off, "ord")


def test_a_nats_secret_never_reaches_anycable_go_s_command_line(orchestrate, tmp_path) -> None:
    token = ("  - {code: ord}\n", "  - {code: ord, machines: 2, broker: {kind: nats, local: {}, token_env: NATS_TOKEN}}\n")
    inventory = showcase_with_anycable_image(tmp_path, token)
    result = orchestrate("render", inventory, "--out", tmp_path / "out", "--mode", "anycable")
    assert result.code == 2 and "regions[5].broker.token_env: anycable-go writes its NATS URL to its log" in result.err
    assert not (tmp_path / "out").exists()
    with pytest.raises(RenderError, match="anycable-go logs its NATS URL"):
        rendered(inventory, mode="anycable")  # past validation, the renderer refuses it too
    assert orchestrate("render", inventory, "--out", tmp_path / "out", "--mode", "hub").code == 0  # the hubs may
