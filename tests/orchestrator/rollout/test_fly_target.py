"""The Fly target's commands as data: per machine, with --config, framed on the machine, read from output.

Whole rollouts against the stand-in `fly` (written from flyctl's source, with
real machines) are in test_fly_rollout.py.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli import main as orchestrate
from orchestrator.inventory import load_inventory
from orchestrator.rollout.model import Command, Gate, GateTiming, Machine, RegionKey, RegionState
from orchestrator.rollout.plan import RegionHistory, build_step, region_state
from orchestrator.targets.fly import (
    FlyTarget,
    build_operations,
    fly_region,
    framed,
    image_label,
    parse_machines,
    parse_version,
    unframe,
)
from orchestrator.targets.onhost import program

ROOT = Path(__file__).resolve().parents[3]
SHOWCASE = ROOT / "inventories" / "showcase.yml"
ORD = RegionKey("production", "ord")
IMAGE = "registry.fly.io/smooth:deployment-1"
CHECKOUT = Path("/srv/showcase")
CONFIG = "/srv/showcase/deploy/production/fly.toml"
STARTED, SUSPENDED = "148e4d55f36278", "3d8d9e0b2c0e89"
MACHINES = {"smooth": {"ord": (Machine(STARTED, "started", f"{IMAGE}@sha256:aa"), Machine(SUSPENDED, "suspended", f"{IMAGE}@sha256:aa"))}}
WRITE_ON = ("mkdir -p /data/cable-orchestrator && printf on > /data/cable-orchestrator/.websocket.orchestrate.tmp && "
            "mv -f /data/cable-orchestrator/.websocket.orchestrate.tmp /data/cable-orchestrator/websocket")
WRITE_OFF = WRITE_ON.replace("printf on", "printf off")
RELOAD = " && FLY_REGION=ord /etc/navigator/bin/refresh && navigator -s reload"
DEPLOY = ("fly", "deploy", "--app", "smooth", "--config", CONFIG, "--regions", "ord", "--image", IMAGE,
          "--strategy", "rolling", "--wait-timeout", "5m")


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(SHOWCASE)


def target(inventory, image: str | None = IMAGE) -> FlyTarget:
    return FlyTarget(inventory, image, CHECKOUT, listed=MACHINES)


def on_machine(machine: str, script: str) -> tuple[str, ...]:
    return ("fly", "ssh", "console", "--app", "smooth", "--machine", machine, "--quiet", "-C", shlex.join(("sh", "-c", script)))


def argvs(operations) -> list[tuple[str, ...]]:
    assert all(isinstance(operation, Command) for operation in operations), "the fly target writes no file"
    return [operation.argv for operation in operations]


def test_a_deploy_sets_the_switch_on_every_machine_then_deploys_the_region_with_its_config(inventory):
    desired = region_state(inventory, ORD)
    operations = target(inventory).operations(ORD, None, desired)
    assert argvs(operations) == [on_machine(STARTED, WRITE_ON), on_machine(SUSPENDED, WRITE_ON), DEPLOY]
    assert [op.machine for op in operations] == [STARTED, SUSPENDED, ""]  # type: ignore[union-attr]
    assert operations[1].display().startswith(f"machine {SUSPENDED} of ord: fly ssh console")


def test_without_an_image_the_desired_state_is_built_once_from_the_checkout_with_its_config(inventory):
    desired = region_state(inventory, ORD)
    label = image_label(desired)
    assert label.startswith("orchestrate-") and len(label) == len("orchestrate-") + 12
    build, *_, deploy = argvs(target(inventory, None).operations(ORD, None, desired))
    # The working directory is the checkout (the build context), the config its rendered fly.toml.
    assert build == ("fly", "deploy", "/srv/showcase", "--app", "smooth", "--config", CONFIG, "--build-only", "--push",
                     "--image-label", label)
    assert deploy == (*DEPLOY[:9], f"registry.fly.io/smooth:{label}", *DEPLOY[10:])


def test_the_quick_switch_runs_on_each_machine_and_needs_no_image(inventory):
    on = region_state(inventory, ORD, "integrated", True)
    off = region_state(inventory, ORD, "integrated", False)
    for image in (None, IMAGE):
        assert argvs(target(inventory, image).operations(ORD, on, off)) == [
            on_machine(STARTED, WRITE_OFF + RELOAD), on_machine(SUSPENDED, WRITE_OFF + RELOAD)]


def test_where_side_processes_change_each_machine_is_restarted_after_its_switch(inventory):
    on = region_state(inventory, ORD, "action_cable", True)
    off = region_state(inventory, ORD, "action_cable", False)
    assert argvs(target(inventory).operations(ORD, on, off)) == [
        on_machine(STARTED, WRITE_OFF + RELOAD), ("fly", "machine", "restart", STARTED, "--app", "smooth"),
        on_machine(SUSPENDED, WRITE_OFF + RELOAD), ("fly", "machine", "restart", SUSPENDED, "--app", "smooth"),
    ]


def test_a_restore_puts_back_each_machine_s_own_image_and_builds_nothing(inventory):
    current = RegionState("integrated", True, region_state(inventory, ORD).files,
                          {STARTED: "registry.fly.io/smooth:new@sha256:bb", SUSPENDED: "registry.fly.io/smooth:old@sha256:aa"})
    previous = RegionState("integrated", False, region_state(inventory, ORD, websocket_enabled=False).files,
                           {STARTED: "registry.fly.io/smooth:old@sha256:aa", SUSPENDED: "registry.fly.io/smooth:old@sha256:aa"})
    for image in (None, IMAGE):
        assert argvs(target(inventory, image).operations(ORD, current, previous)) == [
            on_machine(STARTED, WRITE_OFF),
            ("fly", "machine", "update", STARTED, "--app", "smooth", "--image", "registry.fly.io/smooth:old@sha256:aa", "--yes"),
            on_machine(SUSPENDED, WRITE_OFF + RELOAD),  # already on that image: the switch alone
        ]


def test_the_quick_rollback_of_a_deploy_step_is_the_switch_alone_on_every_machine(inventory):
    step = build_step(inventory, target(inventory), ORD, RegionHistory(), "deploy", region_state(inventory, ORD), "canary")
    assert step.fallback is not None
    assert argvs(step.fallback.operations) == [on_machine(STARTED, WRITE_OFF + RELOAD), on_machine(SUSPENDED, WRITE_OFF + RELOAD)]


def test_machines_not_known_when_planning_are_shown_as_each_machine_and_never_run(inventory):
    unknown = FlyTarget(inventory, IMAGE, CHECKOUT, fly="/nonexistent/fly")
    operations = unknown.operations(ORD, None, region_state(inventory, ORD))
    assert operations[0].display().startswith("each machine of ord: /nonexistent/fly ssh console --app smooth --machine '{machine}'")
    result = unknown.run(ORD, operations[0])  # type: ignore[arg-type]
    assert result.exit_code == 127 and "the machines of production/ord were not known" in result.stderr


def test_probes_run_on_the_machine_through_the_front_on_its_loopback(inventory):
    fly = target(inventory)
    timing = GateTiming(1, 5, 30, 1, 0)
    http = fly.probe_command(ORD, STARTED, Gate("http", "/up", timing), 5)
    assert http.machine == STARTED and http.argv[:8] == on_machine(STARTED, "")[:8]
    assert shlex.split(http.argv[9]) == ["python3", "-c", program(), "http", "http://127.0.0.1:9999/up", "5"]
    cable = inventory.websocket.cable_path_for("ord")
    websocket = fly.probe_command(ORD, SUSPENDED, Gate("websocket", cable, timing, "navigator", True, mode="integrated"), 5)
    assert shlex.split(websocket.argv[9])[3:] == [
        "websocket", f"ws://127.0.0.1:9999{cable}", "navigator", "open", "5", "CABLE_SIGNING_SECRET",
        "http", f"http://127.0.0.1:9999{inventory.websocket.broadcast_path}",
        inventory.websocket.broadcast_key_env or "", "",
    ]
    memory = fly.memory_command(ORD, STARTED)
    assert shlex.split(memory.argv[9]) == ["python3", "-c", program(), "memory", "/tmp/navigator.pid"]
    assert not hasattr(fly, "http_url"), "gates are never observed from here: only the machine knows it answered"


def test_no_secret_value_is_in_any_argv(inventory, monkeypatch):
    names = inventory.secret_env_names()
    assert names
    for index, name in enumerate(names):
        monkeypatch.setenv(name, f"very-secret-value-{index}")
    fly = target(inventory, None)
    on = region_state(inventory, ORD, "action_cable", True)
    off = region_state(inventory, ORD, "action_cable", False)
    timing = GateTiming(1, 5, 30, 1, 0)
    commands = [*fly.operations(ORD, None, on), *fly.operations(ORD, on, off), fly.memory_command(ORD, STARTED),
                fly.probe_command(ORD, STARTED, Gate("websocket", "/cable", timing, "actioncable", True, mode="anycable"), 5)]
    for command in commands:
        assert not any("very-secret-value" in word for word in command.argv), command.display()


# --- reading flyctl ---------------------------------------------------------------------------


def test_a_framed_command_is_read_from_its_frame_whatever_flyctl_prints_around_it(tmp_path):
    """flyctl prints notices on stdout (console.go:370-375) and never passes the remote status on (ssh/io.go)."""
    token = "orchestrate-0123456789abcdef"
    command = framed(shlex.join(("sh", "-c", "printf 'line one\\nno newline'; exit 3")), token)
    done = subprocess.run(["sh", "-c", f"echo 'No machine specified, using x in region ord'; {command}; echo trailer"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "FLY_MACHINE_ID": STARTED})
    assert unframe(done.stdout, token) == ("line one\nno newline", 3, STARTED)
    unnamed = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert unframe(unnamed.stdout, token)[2] == Path("/proc/sys/kernel/hostname").read_text().strip()  # type: ignore[index]
    assert unframe(f"{token} {STARTED}\nstarted but never ended\n", token) is None
    assert unframe("Error: ssh shell: Process exited with status 1\n", token) is None
    assert unframe(f"echo {token} {STARTED}\n{token} 0\n", token) is None  # the first marker must begin a line


def test_an_answer_from_another_machine_is_a_failure(inventory, tmp_path, monkeypatch):
    fly = tmp_path / "fly"
    fly.write_text('#!/bin/sh\nshift 8\nexec env FLY_MACHINE_ID=someone-else sh -c "$1"\n')  # runs -C's value locally
    fly.chmod(0o755)
    command = FlyTarget(inventory, IMAGE, CHECKOUT, fly=str(fly), listed=MACHINES).memory_command(ORD, STARTED)
    result = FlyTarget(inventory, IMAGE, CHECKOUT, fly=str(fly)).run(ORD, command)
    assert result.exit_code == 1 and result.stderr.endswith(f"machine someone-else answered, not {STARTED}")


def test_machine_list_json_by_region_without_destroyed_or_one_off_machines():
    text = json.dumps([
        {"id": STARTED, "region": "ord", "state": "started",
         "image_ref": {"registry": "registry.fly.io", "repository": "smooth", "tag": "deployment-1", "digest": "sha256:ab"}},
        {"id": SUSPENDED, "region": "ord", "state": "suspended",
         "image_ref": {"registry": "registry.fly.io", "repository": "smooth", "digest": "sha256:cd"}},
        {"id": "gone", "region": "ord", "state": "destroyed", "image_ref": {}},
        {"id": "console", "region": "ord", "state": "started", "config": {"metadata": {"fly_process_group": "fly_app_console"}}},
        {"id": "iad1", "region": "iad", "state": "stopped", "image_ref": {}},
    ])
    assert parse_machines(text) == {
        "ord": (Machine(STARTED, "started", "registry.fly.io/smooth:deployment-1@sha256:ab"),
                Machine(SUSPENDED, "suspended", "registry.fly.io/smooth@sha256:cd")),
        "iad": (Machine("iad1", "stopped", ""),),
    }


@pytest.mark.parametrize(("text", "version"), [
    ("0.4.87", (0, 4, 87)), ("v0.4.20-beta-3", (0, 4, 20)), ("2026.8.21", (2026, 8, 21)), ("dev", None), ("", None),
])
def test_flyctl_versions(text, version):
    assert parse_version(text) == version


def test_a_deploy_folder_is_found_in_the_checkout(inventory):
    where = fly_region(inventory, ORD, CHECKOUT)
    assert (where.config_file, where.switch_path) == (CONFIG, "/data/cable-orchestrator/websocket")
    assert build_operations(where, (STARTED,), None, region_state(inventory, ORD), IMAGE)[-1].argv == DEPLOY  # type: ignore[union-attr]


def test_rollout_dry_run_without_fly_shows_config_and_each_machine_and_says_a_real_run_would_not_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no fly here
    code = orchestrate(["rollout", str(SHOWCASE), "--region", "ord", "--target", "fly", "--dry-run", "--image", IMAGE,
                        "--state", str(tmp_path / "state"), "--app", str(tmp_path / "showcase"), "--force", "--reason", "test"])
    captured = capsys.readouterr()
    assert code == 3
    config = tmp_path / "showcase" / "deploy" / "production" / "fly.toml"
    assert f"fly deploy --app smooth --config {config} --regions ord --image {IMAGE}" in captured.out
    machine_lines = [line.strip() for line in captured.out.splitlines() if "ssh console" in line]
    assert machine_lines and all(line.startswith("each machine of ord: fly ssh console") for line in machine_lines)
    assert "the fly target is not ready, nothing was touched:\n  - fly is not on PATH" in captured.err
    assert not (tmp_path / "state").exists()
