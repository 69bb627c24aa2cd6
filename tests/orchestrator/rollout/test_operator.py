"""An operator's first hour, replayed through the command line: refusals before damage, a status that tells the
truth, one grammar, interrupts and pipes, the local fleet's own start and stop."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import EXIT_STATUS, build_parser
from tests.orchestrator.rollout.fleet import REPO, Fleet, make_fleet
from tests.polling import wait_for

FAILING_HEALTH = (("  health_check:\n", "  health_check:\n    path: /not-the-health-path\n"),
                  ("failure_limit: 1", "failure_limit: 100000"), ("deadline_seconds: 20", "deadline_seconds: 3600"))


@pytest.fixture
def fleet(tmp_path: Path):
    made = make_fleet(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in names}


def test_a_missing_secret_is_refused_before_anything_is_touched(fleet: Fleet) -> None:
    fleet.env = without(fleet.env, "CABLE_SIGNING_SECRET")
    result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
    assert result.code == 3
    assert "rollout not started: the local target is not ready, nothing was touched:" in result.err
    assert "CABLE_SIGNING_SECRET is not set: the local fleet's processes and the gates read it" in result.err
    assert "export CABLE_SIGNING_SECRET=" in result.err
    assert not (fleet.state / "fleet").exists()
    assert fleet.query("SELECT count(*) FROM runs") == [(0,)] and fleet.query("SELECT count(*) FROM lock") == [(0,)]


def test_a_first_deployment_that_never_ran_fails_once_without_a_rollback(fleet: Fleet) -> None:
    fleet.home("staging/iad").parent.mkdir(parents=True)
    fleet.home("staging/iad").write_text("not a directory\n")  # the region's files cannot be written
    result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
    assert result.code == 1
    assert "staging/iad: failed; write" in result.err
    assert "not switched back: the region never ran" in fleet.query("SELECT detail FROM steps")[0][0]  # type: ignore[operator]
    assert "the rollback failed too" not in result.text
    status = fleet.orchestrate("status")
    assert status.code == 1  # the truth: the region's last step failed
    lines = status.out.splitlines()
    assert lines[0].split() == ["REGION", "MODE", "WEBSOCKET", "MEMORY", "HEALTH", "LAST", "STEP", "AT"]
    iad = next(line for line in lines if line.startswith("staging/iad"))
    assert " failed " in iad
    assert any("not switched back: the region never ran" in line for line in lines)


def test_status_exits_1_when_a_region_is_down_and_0_when_all_are_up(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    up = fleet.orchestrate("status", "--region", "staging/iad")
    assert up.code == 0 and [line.split()[0] for line in up.out.splitlines()] == ["REGION", "staging/iad", "front"]
    assert up.out.splitlines()[-1] == "front of 1 region: the hub standing in for Navigator"  # the fleet's default
    fleet.stop_all()
    down = fleet.orchestrate("status", "--region", "iad")
    assert down.code == 1 and "DOWN" in down.out and "health: GET http://127.0.0.1:" in down.out


def test_without_a_journal_status_and_history_say_which_they_looked_for(fleet: Fleet) -> None:
    for command in ("status", "history"):
        result = fleet.orchestrate(command)
        assert result.code == 0
        assert f"no journal at {fleet.state / 'journal.sqlite3'}: nothing has been rolled out with this state" in result.err


def test_every_command_finds_its_inventory_the_same_way_and_says_where_it_looked(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path)
    env = {**fleet.env, "ORCHESTRATE_INVENTORY": str(fleet.inventory)}
    app = tmp_path / "app"
    (app / "config").mkdir(parents=True)
    (app / "config" / "application.rb").write_text("module Demo\n  class Application < Rails::Application\n  end\nend\n")
    for argv in (["validate"], ["render", "--out", str(tmp_path / "out")], ["plan"], ["status"], ["history"],
                 ["lock", "status"], ["preflight", "--app", str(app)]):
        done = subprocess.run([sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)
        assert "no inventory" not in done.stderr, (argv, done.stderr)
        assert done.returncode in (0, 1), (argv, done.stderr)
    lost = subprocess.run([sys.executable, "-m", "orchestrator", "plan"], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in env.items() if k != "ORCHESTRATE_INVENTORY"}, timeout=60)
    assert lost.returncode == 2
    assert f"no inventory: no INVENTORY argument, no --inventory FILE, $ORCHESTRATE_INVENTORY is not set, and there " \
           f"is no {tmp_path / 'orchestrate.yml'}: name one" in lost.stderr
    at_repo = subprocess.run([sys.executable, "-m", "orchestrator", "plan"], capture_output=True, text=True, cwd=REPO,
                             env={k: v for k, v in env.items() if k != "ORCHESTRATE_INVENTORY"}, timeout=60)
    assert "the example is inventories/showcase.yml" in at_repo.stderr
    assert fleet.orchestrate("lock", "status").out.startswith("no lock")


def test_every_option_has_help_and_every_command_its_exit_status() -> None:
    def parsers(parser: argparse.ArgumentParser, name: str = "orchestrate") -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(name, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    if child_name != "hub":  # `orchestrate hub` hands its arguments to cable-hub, which has its own help
                        found += parsers(child, f"{name} {child_name}")
        return found

    for name, parser in parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings or action.dest not in ("command", "lock_action", "fleet_action"):
                assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        if name.count(" ") >= 1 and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            assert parser.epilog and parser.epilog.startswith("exit status: "), name
    assert set(EXIT_STATUS) >= {"validate", "render", "plan", "rollout", "rollback", "status", "history", "lock", "fleet"}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_rollout_releases_its_lock_says_so_and_resume_finishes_it(
    tmp_path: Path, signum: int, code: int
) -> None:
    fleet = make_fleet(tmp_path, *FAILING_HEALTH)
    try:
        process = fleet.start("rollout", "--stage", "staging", "--yes")
        try:
            wait_for(lambda: gating(fleet), timeout=120, what="the step to be gated")
            os.kill(process.pid, signum)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == code, output
        assert "Traceback" not in output
        assert f"rollout interrupted by {signal.Signals(signum).name}" in output and "`rollout --resume` finishes it" in output
        assert fleet.query("SELECT count(*) FROM lock") == [(0,)]
        assert fleet.query("SELECT state FROM steps") == [("gating",)]  # left where it was, not rolled back
        actions = [action for (action,) in fleet.query("SELECT action FROM audit ORDER BY id")]
        assert "rollout interrupted" in actions and actions[-1] == "lock released"
        fleet.inventory.write_text(fleet.inventory.read_text().replace("    path: /not-the-health-path\n", ""))
        resumed = fleet.orchestrate("rollout", "--resume")
        assert resumed.code == 0, resumed.text
        assert fleet.query("SELECT state FROM steps") == [("passed",)]
    finally:
        fleet.stop_all()


def gating(fleet: Fleet) -> bool:
    try:
        return bool(fleet.query("SELECT 1 FROM steps WHERE state = 'gating'"))
    except sqlite3.OperationalError:  # no journal yet, or its tables are being made
        return False


def test_a_closed_pipe_ends_quietly(fleet: Fleet) -> None:
    """`orchestrate history | head -1`: the reader goes away; no BrokenPipeError traceback."""
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    command = " ".join(fleet.command("history")) + " | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, env=fleet.env,
                          cwd=REPO, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.stdout.count("\n") == 1


def test_the_local_fleet_stops_and_starts_by_name(fleet: Fleet) -> None:
    assert fleet.orchestrate("rollout", "--stage", "staging", "--yes").code == 0
    stopped = fleet.orchestrate("fleet", "stop")
    assert stopped.code == 0 and "staging/iad: done" in stopped.out
    assert not any(fleet.home("staging/iad").joinpath("run").glob("*.pid"))
    started = fleet.orchestrate("fleet", "start")
    assert started.code == 0, started.text
    assert "staging/iad: done" in started.out and "production/ord: nothing deployed here" in started.out
    assert fleet.orchestrate("status", "--region", "staging/iad").code == 0


def test_counted_nouns_and_the_plan_s_headings(fleet: Fleet) -> None:
    valid = subprocess.run([sys.executable, "-m", "orchestrator", "validate", str(fleet.inventory)], capture_output=True,
                           text=True, env=fleet.env, timeout=60)
    assert valid.returncode == 0 and "(demo-staging: 1 region)" in valid.stdout and "1 regions" not in valid.stdout
    plan = fleet.orchestrate("plan")
    assert "staging/iad  (deploy, stage staging)" in plan.out and "staging:staging/iad" not in plan.out
    assert "action_cable*: nothing recorded for the region yet" in plan.out
