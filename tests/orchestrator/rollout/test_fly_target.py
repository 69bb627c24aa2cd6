"""The Fly target: the flyctl commands it builds for every step, as data, and the target run against a stand-in `fly`.

There is no Fly account here. `fly_standin.py` (a STAND-IN for flyctl, put on
PATH as `fly`) records its arguments and answers with JSON in flyctl's shape.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main as orchestrate
from orchestrator.inventory import load_inventory
from orchestrator.rollout.model import Command, RegionKey
from orchestrator.rollout.plan import region_state
from orchestrator.targets.fly import FlyTarget, image_label, parse_machines
from orchestrator.targets.ssh import MEMORY_SCRIPT, PUBLISH_SCRIPT
from tests.orchestrator.conftest import copy_showcase

ROOT = Path(__file__).resolve().parents[3]
SHOWCASE = ROOT / "inventories" / "showcase.yml"
ORD = RegionKey("production", "ord")
IMAGE = "registry.fly.io/smooth:deployment-1"
SWITCH_OFF = (
    "sh -c 'mkdir -p /data/cable-orchestrator && printf off > /data/cable-orchestrator/.websocket.orchestrate.tmp && "
    "mv -f /data/cable-orchestrator/.websocket.orchestrate.tmp /data/cable-orchestrator/websocket && "
    "FLY_REGION=ord /etc/navigator/bin/refresh && navigator -s reload'"
)
SET_ON = (
    "sh -c 'mkdir -p /data/cable-orchestrator && printf on > /data/cable-orchestrator/.websocket.orchestrate.tmp && "
    "mv -f /data/cable-orchestrator/.websocket.orchestrate.tmp /data/cable-orchestrator/websocket'"
)
DEPLOY = ("fly", "deploy", "--app", "smooth", "--regions", "ord", "--image", IMAGE, "--strategy", "rolling",
          "--wait-timeout", "5m")


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(SHOWCASE)


def ssh(command: str) -> tuple[str, ...]:
    return ("fly", "ssh", "console", "--app", "smooth", "--region", "ord", "-C", command)


def argvs(operations) -> list[tuple[str, ...]]:
    assert all(isinstance(operation, Command) for operation in operations), "the fly target writes no file"
    return [operation.argv for operation in operations]


def test_a_first_deploy_with_an_image_sets_the_switch_then_deploys_the_region_only(inventory):
    desired = region_state(inventory, ORD)
    assert argvs(FlyTarget(inventory, IMAGE).operations(ORD, None, desired)) == [ssh(SET_ON), DEPLOY]


def test_without_an_image_the_desired_state_is_built_once_then_deployed(inventory):
    desired = region_state(inventory, ORD)
    label = image_label(desired)
    assert label.startswith("orchestrate-") and len(label) == len("orchestrate-") + 12
    assert argvs(FlyTarget(inventory, None).operations(ORD, None, desired)) == [
        ("fly", "deploy", "--app", "smooth", "--build-only", "--push", "--image-label", label,
         "--config", "deploy/production/fly.toml", "--dockerfile", "deploy/production/Dockerfile"),
        ssh(SET_ON),
        (*DEPLOY[:7], f"registry.fly.io/smooth:{label}", *DEPLOY[8:]),
    ]


def test_the_quick_switch_off_needs_no_image(inventory):
    on = region_state(inventory, ORD, "integrated", True)
    off = region_state(inventory, ORD, "integrated", False)
    for image in (None, IMAGE):
        assert argvs(FlyTarget(inventory, image).operations(ORD, on, off)) == [ssh(SWITCH_OFF)]
    back_on = argvs(FlyTarget(inventory, None).operations(ORD, off, on))
    assert back_on == [ssh(SWITCH_OFF.replace("printf off", "printf on"))]


def test_where_side_processes_change_the_reload_is_followed_by_a_restart_of_the_region_s_machines(inventory):
    on = region_state(inventory, ORD, "action_cable", True)
    off = region_state(inventory, ORD, "action_cable", False)
    assert argvs(FlyTarget(inventory, None).operations(ORD, on, off)) == [
        ssh(SWITCH_OFF), ("fly", "machine", "restart", "{machines:ord}", "--app", "smooth"),
    ]


def test_the_quick_rollback_of_a_deploy_step_is_the_switch_alone(inventory):
    """The quick rollback carried by a deploy step is the switch alone, whatever the deploy's image."""
    from orchestrator.rollout.plan import RegionHistory, build_step

    step = build_step(inventory, FlyTarget(inventory, IMAGE), ORD, RegionHistory(), "deploy",
                      region_state(inventory, ORD), "canary")
    assert step.fallback is not None
    assert argvs(step.fallback.operations) == [ssh(SWITCH_OFF)]


def test_probes_and_live_files_run_on_the_region_s_machine(inventory, monkeypatch):
    target = FlyTarget(inventory, IMAGE)
    memory = target.memory_command(ORD)
    assert memory.argv[:8] == ssh("")[:8]
    assert shlex.split(memory.argv[8]) == ["python3", "-c", MEMORY_SCRIPT, "/tmp/navigator.pid"]
    monkeypatch.setattr(target, "_mode", lambda key: "integrated")
    publish = target.publish_command(ORD, "probe-1", '{"n": 1}')
    words = shlex.split(publish.argv[8])
    assert publish.argv[:8] == ssh("")[:8]
    assert words[:3] == ["python3", "-c", PUBLISH_SCRIPT]
    assert words[3:7] == ["http", f"http://127.0.0.1:{inventory.app.listen}{inventory.websocket.broadcast_path}",
                          "probe-1", '{"n": 1}']
    assert publish.env_names == ()  # the machine's Fly secrets provide them; nothing is sent
    assert target.http_url(ORD, "/up") == "https://smooth.fly.dev/up"
    # Fly's proxy would answer from the nearest region; the gates pin the step's.
    assert target.request_headers(ORD) == {"fly-prefer-region": "ord"}
    assert target.cable_url(ORD, "/cable") == "wss://smooth.fly.dev/cable"


def test_no_secret_value_is_in_any_argv(inventory, monkeypatch):
    websocket = inventory.websocket
    names = [name for name in (websocket.signing_secret_env, websocket.broadcast_key_env) if name]
    assert names
    for index, name in enumerate(names):
        monkeypatch.setenv(name, f"very-secret-value-{index}")
    target = FlyTarget(inventory, None)
    monkeypatch.setattr(target, "_mode", lambda key: "anycable")
    on = region_state(inventory, ORD, "action_cable", True)
    off = region_state(inventory, ORD, "action_cable", False)
    commands = [*target.operations(ORD, None, on), *target.operations(ORD, on, off),
                target.memory_command(ORD), target.publish_command(ORD, "s", "{}")]
    for command in commands:
        assert not any("very-secret-value" in word for word in command.argv), command.display()


def test_rollout_dry_run_prints_the_exact_commands(tmp_path, capsys):
    code = orchestrate(["rollout", str(SHOWCASE), "--region", "ord", "--target", "fly", "--dry-run", "--image", IMAGE,
                        "--state", str(tmp_path), "--force", "--reason", "test"])
    out = capsys.readouterr().out
    assert code == 0
    assert "target     fly" in out
    assert f"      {shlex.join(ssh(SET_ON))}\n      {shlex.join(DEPLOY)}\n" in out
    assert f"        {shlex.join(ssh(SWITCH_OFF))}\n" in out  # the quick rollback
    assert "write /" not in out


# --- against the stand-in ---------------------------------------------------------------------


@pytest.fixture
def standin(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fly = bin_dir / "fly"
    fly.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).with_name("fly_standin.py")))} "$@"\n')
    fly.chmod(0o755)
    root = tmp_path / "fly"
    root.mkdir()
    log = tmp_path / "fly.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FLY_STANDIN_ROOT", str(root))
    monkeypatch.setenv("FLY_STANDIN_LOG", str(log))
    (root / "machines.json").write_text(json.dumps([
        {"id": "148e4d55f36278", "region": "ord", "state": "started",
         "image_ref": {"registry": "registry.fly.io", "repository": "smooth", "tag": "deployment-1", "digest": "sha256:ab"},
         "checks": [{"name": "servicecheck-00-http-9999", "status": "passing", "output": "Success"}]},
        {"id": "9080e6d3b76387", "region": "iad", "state": "started",
         "image_ref": {"registry": "registry.fly.io", "repository": "smooth", "tag": "deployment-1"}, "checks": []},
    ]))
    (root / "releases.json").write_text(json.dumps([
        {"Version": 7, "Status": "complete", "ImageRef": "registry.fly.io/smooth:deployment-2"},
        {"Version": 6, "Status": "complete", "ImageRef": "registry.fly.io/smooth:deployment-2"},
        {"Version": 5, "Status": "failed", "ImageRef": "registry.fly.io/smooth:broken"},
        {"Version": 4, "Status": "complete", "ImageRef": "registry.fly.io/smooth:deployment-1"},
    ]))

    class Standin:
        def calls(self) -> list[list[str]]:
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    Standin.root = root
    return Standin()


def test_machines_and_previous_image_come_from_flyctl_s_json(inventory, standin):
    target = FlyTarget(inventory, None)
    (ord_machine, iad) = target.machines("production")
    assert (ord_machine.id, ord_machine.region, ord_machine.state) == ("148e4d55f36278", "ord", "started")
    assert ord_machine.image_ref == "registry.fly.io/smooth:deployment-1"
    assert [(check.name, check.status) for check in ord_machine.checks] == [("servicecheck-00-http-9999", "passing")]
    assert target.previous_image("production") == "registry.fly.io/smooth:deployment-1"
    assert standin.calls() == [["machine", "list", "--app", "smooth", "--json"], ["releases", "--app", "smooth", "--json"]]
    assert parse_machines('[{"id": "x", "region": "ord", "state": "stopped", "image_ref": "r:t"}]')[0].image_ref == "r:t"


def test_the_restart_names_the_region_s_machines_and_a_build_runs_once(inventory, standin):
    target = FlyTarget(inventory, None)
    on = region_state(inventory, ORD, "action_cable", True)
    off = region_state(inventory, ORD, "action_cable", False)
    restart = target.operations(ORD, on, off)[-1]
    assert target.run(ORD, restart).ok
    build = target.operations(ORD, None, on)[0]
    assert target.run(ORD, build).ok and target.run(ORD, build).ok
    calls = standin.calls()
    assert calls[:2] == [["machine", "list", "--app", "smooth", "--json"],
                         ["machine", "restart", "148e4d55f36278", "--app", "smooth"]]
    assert [call for call in calls if "--build-only" in call] == [list(build.argv[1:])]


def test_the_quick_switch_end_to_end_writes_the_volume_and_live_files_read_the_machine(tmp_path, standin):
    """The switch command runs (through the stand-in's ssh console) against a directory laid out like the machine."""
    data, config = tmp_path / "data", tmp_path / "etc-navigator"
    inventory = load_inventory(copy_showcase(tmp_path, ("data_dir: /data", f"data_dir: {data}"),
                                             ("config_dir: /etc/navigator", f"config_dir: {config}")))
    (config / "bin").mkdir(parents=True)
    (config / "regions" / "ord").mkdir(parents=True)
    refresh = config / "bin" / "refresh"
    refresh.write_text('#!/bin/sh\necho "refresh $FLY_REGION $(cat ' + shlex.quote(str(data)) +
                       '/cable-orchestrator/websocket)" >> "$FLY_STANDIN_ROOT/ran"\n')
    refresh.chmod(0o755)
    navigator = tmp_path / "bin" / "navigator"
    navigator.write_text('#!/bin/sh\necho "navigator $*" >> "$FLY_STANDIN_ROOT/ran"\n')
    navigator.chmod(0o755)
    (config / "regions" / "ord" / "render.json").write_text('{"mode": "integrated"}\n')
    target = FlyTarget(inventory, None)
    on = region_state(inventory, ORD, "integrated", True)
    off = region_state(inventory, ORD, "integrated", False)
    (switch,) = target.operations(ORD, on, off)
    result = target.run(ORD, switch)
    assert result.ok, result.stderr
    assert (data / "cable-orchestrator" / "websocket").read_text() == "off"
    assert (standin.root / "ran").read_text() == "refresh ord off\nnavigator -s reload\n"
    assert target.live_files(ORD, ("render.json", "navigator.yml")) == {"render.json": '{"mode": "integrated"}\n',
                                                                        "navigator.yml": None}
