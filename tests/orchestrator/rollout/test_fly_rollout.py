"""Whole Fly rollouts through the command line, every gate included, against the stand-in `fly`.

The stand-in (tests/orchestrator/rollout/flystandin/) is written from flyctl's
source and its machines really run: each its own network, volume and root file
system, booting the rendered image's own bin/start, so the switch, the refresh,
the reload and every probe run where they run on Fly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.cli import main as orchestrate_main
from tests.orchestrator.conftest import copy_showcase
from tests.orchestrator.rollout.flystandin.fixture import FlyStandin, fly_standin  # noqa: F401 (a fixture)
from tests.polling import wait_for

ORCHESTRATE = (sys.executable, "-m", "orchestrator")
SIGNING_SECRET = "planted-fly-signing-secret-5c1e0a"
SHOWCASE_SYNC = "    - {command: ruby, args: [script/nav_initialization.rb], timeout: 5m}\n"
FAST = (("    interval_seconds: 1\n", "    interval_seconds: 0.2\n"), (SHOWCASE_SYNC, ""), ("  sync:\n", "  sync: []\n"))
TIGHT = ("  - {code: ord}\n", "  - {code: ord, memory_budgets_mb: {integrated: {navigator: 1}}}\n")
SWITCH = Path("cable-orchestrator/websocket")


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Scene:
    """A Showcase checkout rendered for Fly, its apps at the stand-in, a state directory."""

    standin: FlyStandin
    root: Path
    checkout: Path
    inventory: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    def config(self, environment: str = "production") -> Path:
        return self.checkout / "deploy" / environment / "fly.toml"

    def orchestrate(self, *arguments: str, inventory: Path | None = None, timeout: float = 600) -> Run:
        command = [*ORCHESTRATE, arguments[0], str(inventory or self.inventory), *arguments[1:], "--target", "fly",
                   "--state", str(self.state)]
        # From a directory with a fly.toml of its own: flyctl would take it without --config.
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root / "elsewhere",
                              stdin=subprocess.DEVNULL)
        return Run(done.returncode, done.stdout, done.stderr)

    def rollout(self, *arguments: str, inventory: Path | None = None) -> Run:
        return self.orchestrate("rollout", "--yes", "--app", str(self.checkout), *arguments, inventory=inventory)

    def machine(self, region: str, state: str = "started", app: str = "smooth", image: str = "") -> str:
        environment = "staging" if app == "smooth-nav" else "production"
        return self.standin.create_machine(app, region, image or f"registry.fly.io/{app}:deployment-1",
                                           self.config(environment), state)

    def machines(self, app: str = "smooth") -> dict[str, dict]:
        return {machine["id"]: machine for machine in self.standin.machines(app)}

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.state / "journal.sqlite3") as db:
            return db.execute(sql).fetchall()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The example inventory (sync emptied: Showcase's runs its Rails app, not in the image here) rendered into a
    checkout, and a copy of it whose ord has a memory budget no machine can meet."""
    directory = tmp_path_factory.mktemp("showcase")
    inventory = copy_showcase(directory, *FAST)
    tight = directory / "tight.yml"
    tight.write_text(inventory.read_text().replace(*TIGHT))
    checkout = directory / "checkout"
    assert orchestrate_main(["render", str(inventory), "--out", str(checkout / "deploy")]) == 0
    # The app itself, as much of it as `rollout --app` audits (orchestrate preflight) before the first stage.
    (checkout / "config").mkdir()
    (checkout / "config" / "application.rb").write_text("module Showcase\n  class Application < Rails::Application\n  end\nend\n")
    return inventory, tight, checkout


@pytest.fixture
def scene(fly_standin: FlyStandin, rendered: tuple[Path, Path, Path], tmp_path: Path) -> Scene:
    inventory, _, checkout = rendered
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "fly.toml").write_text('app = "smooth"\n[env]\n  DECOY = "the working directory\'s fly.toml"\n')
    for app, environment in (("smooth", "production"), ("smooth-nav", "staging")):
        fly_standin.create_app(app, {"CABLE_SIGNING_SECRET": SIGNING_SECRET})
        fly_standin.build(app, checkout, checkout / "deploy" / environment / "fly.toml", "deployment-1")
    return Scene(fly_standin, tmp_path, checkout, inventory)


def switch_of(scene: Scene, machine: str) -> str:
    return (scene.standin.volume(machine) / SWITCH).read_text()


def cable_answer(scene: Scene, machine: str, region: str = "ord") -> str:
    """What the machine's own cable path answers a WebSocket upgrade now (101, or the refusal's status)."""
    script = ("import http.client, sys\nc = http.client.HTTPConnection('127.0.0.1', 9999, timeout=5)\n"
              "c.request('GET', sys.argv[1], headers={'Upgrade': 'websocket', 'Connection': 'Upgrade',"
              " 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13'})\n"
              "print(c.getresponse().status)\n")
    return scene.standin.run_in(machine, ["python3", "-c", script, f"/showcase/regions/{region}/cable"]).stdout.strip()


def gates(scene: Scene, region: str = "ord") -> list[tuple]:
    return scene.query("SELECT g.machine, g.gate, g.ok FROM gates g JOIN steps s ON s.row = g.step_row "
                       f"WHERE s.region = '{region}' ORDER BY g.id")


def test_a_stage_builds_from_the_checkout_deploys_with_its_config_and_gates_each_machine(scene: Scene) -> None:
    machine = scene.machine("iad", app="smooth-nav")
    run = scene.rollout("--stage", "staging")
    assert run.code == 0, run.out + run.err
    calls = scene.standin.calls()
    build = next(call for call in calls if "--build-only" in call)
    assert build[:6] == ["deploy", str(scene.checkout), "--app", "smooth-nav", "--config", str(scene.config("staging"))]
    deploys = [call for call in calls if call[0] == "deploy"]
    assert all(call[call.index("--config") + 1] == str(scene.config("staging")) for call in deploys)
    image = f"registry.fly.io/smooth-nav:{build[build.index('--image-label') + 1]}"
    listed = scene.machines("smooth-nav")[machine]
    assert f"{listed['image_ref']['registry']}/{listed['image_ref']['repository']}:{listed['image_ref']['tag']}" == image
    assert listed["config"]["metadata"]["fly_standin_config"] == str(scene.config("staging"))  # not the decoy
    assert gates(scene, "iad") == [(machine, "http", 1), (machine, "websocket", 1), (machine, "memory", 1)]
    recorded = scene.query("SELECT machine, image FROM deployed_machines")
    assert recorded == [(machine, f"{image}@{listed['image_ref']['digest']}")]
    assert switch_of(scene, machine) == "on" and cable_answer(scene, machine, "iad") == "101"
    assert f"staging/iad gating: {machine}: websocket ok: probe received over ws://127.0.0.1:9999" in run.out
    assert all(SIGNING_SECRET not in " ".join(call) for call in calls)
    status = scene.orchestrate("status", "--json")
    assert status.code == 0, status.out + status.err
    (row,) = [row for row in json.loads(status.out)["regions"] if row["region"] == "staging/iad"]
    (listed_status,) = row["machines"]
    assert (listed_status["id"], listed_status["state"], listed_status["health"]["ok"]) == (machine, "started", True)
    assert listed_status["image"] == recorded[0][1] and row["drift"] == [] and listed_status["memory_mb"] > 0


def test_a_failing_gate_switches_every_machine_off_the_suspended_one_too(scene: Scene, rendered) -> None:
    _, tight, _ = rendered
    started, suspended = scene.machine("ord"), scene.machine("ord")
    off = scene.rollout("--region", "ord", "--websocket", "off", "--image", "registry.fly.io/smooth:deployment-1")
    assert off.code == 0, off.out + off.err
    assert scene.standin.run_in(suspended, ["true"]).returncode == 0
    assert subprocess.run(["fly", "machine", "suspend", suspended, "--app", "smooth"], capture_output=True,
                          timeout=60).returncode == 0
    # Switching on again is the quick switch; ord's memory budget cannot be met, so it is switched back off.
    run = scene.rollout("--region", "ord", "--websocket", "on", inventory=tight)
    assert run.code == 1, run.out + run.err
    assert "production/ord: rolled_back; memory gate failed:" in run.err and "> budget 1 MB" in run.err
    machines = scene.machines()
    assert (machines[started]["state"], machines[suspended]["state"]) == ("started", "suspended")
    assert switch_of(scene, started) == "off" == switch_of(scene, suspended)
    assert cable_answer(scene, started) != "101"
    # The suspended machine was woken to be switched on, to be switched off again, and for the fallback's gates
    # (its own gates never ran: the started machine failed first), and put back each time.
    woken = [call for call in scene.standin.calls() if call[:3] == ["machine", "start", suspended]]
    suspended_again = [call for call in scene.standin.calls() if call[:3] == ["machine", "suspend", suspended]]
    assert len(woken) == 3 and len(suspended_again) == 4  # the first suspension was this test's
    status = json.loads(scene.orchestrate("status", "--json").out)
    (row,) = [row for row in status["regions"] if row["region"] == "production/ord"]
    assert {entry["id"]: ("health" in entry, entry["state"]) for entry in row["machines"]} == {
        started: (True, "started"), suspended: (False, "suspended")}  # status starts no machine to look
    assert row["health"] == {"ok": True, "evidence": "1 of 2 machines up, 1 not running"}
    assert subprocess.run(["fly", "machine", "start", suspended, "--app", "smooth"], capture_output=True,
                          timeout=60).returncode == 0
    assert cable_answer(scene, suspended) != "101"
    rolled = scene.query("SELECT state FROM steps ORDER BY row DESC LIMIT 1")
    assert rolled == [("rolled_back",)]
    fallback_gates = gates(scene)[-4:]
    assert sorted(fallback_gates) == sorted([(started, "http", 1), (started, "websocket", 1),
                                             (suspended, "http", 1), (suspended, "websocket", 1)])


def test_to_previous_puts_back_each_machine_s_own_image_and_builds_nothing(scene: Scene, tmp_path: Path) -> None:
    def image(label: str, marker: str) -> str:
        copy = tmp_path / f"checkout-{label}"
        shutil.copytree(scene.checkout, copy)
        (copy / "deploy" / "production" / "navigator" / marker).write_text(f"{label}\n")
        return scene.standin.build("smooth", copy, copy / "deploy" / "production" / "fly.toml", label)

    hotfix, later = image("hotfix", "hotfix.txt"), image("later", "later.txt")
    first, second = scene.machine("ord"), scene.machine("ord")
    # The image is built from the checkout, rendered for what this step deploys: ord with the switch off.
    checkout = tmp_path / "checkout-off"
    shutil.copytree(scene.checkout, checkout)
    assert orchestrate_main(["render", str(scene.inventory), "--out", str(checkout / "deploy"), "--region", "ord",
                             "--websocket", "off"]) == 0
    off = scene.orchestrate("rollout", "--yes", "--app", str(checkout), "--region", "ord", "--websocket", "off")
    assert off.code == 0, off.out + off.err
    built = {machine["image_ref"]["tag"] for machine in scene.machines().values()}
    assert len(built) == 1 and built.pop().startswith("orchestrate-")
    # Out of band, the second machine gets a hotfix image; the next deployment records it.
    assert subprocess.run(["fly", "machine", "update", second, "--app", "smooth", "--image", hotfix, "--yes"],
                          capture_output=True, timeout=120).returncode == 0
    assert scene.rollout("--region", "ord", "--websocket", "on").code == 0
    before = {machine_id: machine["image_ref"] for machine_id, machine in scene.machines().items()}
    assert scene.rollout("--region", "ord", "--image", later, "--force", "--reason", "test").code == 0
    assert {machine["image_ref"]["tag"] for machine in scene.machines().values()} == {"later"}
    calls_before = len(scene.standin.calls())
    run = scene.orchestrate("rollback", "--region", "ord", "--to-previous", "--yes")
    assert run.code == 0, run.out + run.err
    after = {machine_id: machine["image_ref"] for machine_id, machine in scene.machines().items()}
    assert after == before
    assert after[second]["tag"] == "hotfix" and after[first]["tag"].startswith("orchestrate-")
    assert scene.standin.run_in(second, ["cat", "/etc/navigator/hotfix.txt"]).stdout == "hotfix\n"
    assert scene.standin.run_in(first, ["test", "-e", "/etc/navigator/hotfix.txt"]).returncode == 1
    rollback_calls = scene.standin.calls()[calls_before:]
    assert not [call for call in rollback_calls if "--build-only" in call or call[0] in ("releases", "deploy")]
    assert [call[:3] for call in rollback_calls if call[:2] == ["machine", "update"]] == [
        ["machine", "update", machine] for machine in sorted((first, second))]


def test_killed_mid_stage_then_resumed(scene: Scene) -> None:
    machines = scene.machine("ord"), scene.machine("ord", "suspended")
    command = [*ORCHESTRATE, "rollout", str(scene.inventory), "--target", "fly", "--state", str(scene.state),
               "--yes", "--app", str(scene.checkout), "--region", "ord", "--force", "--reason", "test"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=scene.root / "elsewhere",
                               start_new_session=True)
    def gating() -> list[tuple] | None:
        try:
            return scene.query("SELECT 1 FROM steps WHERE state = 'gating'")
        except sqlite3.OperationalError as error:  # the journal's file exists before its tables do
            if "no such table" in str(error):
                return None
            raise

    try:
        wait_for(lambda: (scene.state / "journal.sqlite3").exists() and gating(), timeout=300,
                 what="the step to reach its gates", interval=0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # orchestrate and the fly it was running
        process.wait(30)
    run = scene.orchestrate("rollout", "--resume", "--yes", "--app", str(scene.checkout))
    assert run.code == 0, run.out + run.err
    assert scene.query("SELECT state FROM steps") == [("passed",)]
    for machine in machines:
        assert switch_of(scene, machine) == "on"
    assert {row[0] for row in gates(scene) if row[2]} == set(machines)
    audit = [action for (action,) in scene.query("SELECT action FROM audit ORDER BY id")]
    assert "lock released by force" in audit and audit[-1] == "lock released"


def test_everything_missing_is_listed_before_the_first_operation_and_nothing_is_touched(scene: Scene, rendered) -> None:
    inventory, _, _ = rendered
    scene.standin.create_app("smooth", {})  # the app again, without its secrets
    scene.standin.build("smooth", scene.checkout, scene.config(), "deployment-1")
    scene.machine("ord")
    stale = scene.root / "stale"
    shutil.copytree(scene.checkout, stale)
    (stale / "deploy" / "production" / "navigator" / "regions" / "ord" / "navigator.yml").write_text("# edited\n")
    run = scene.orchestrate("rollout", "--yes", "--app", str(stale), "--region", "ord", "--region", "ewr", "--force", "--reason", "test")
    assert run.code == 3, run.out + run.err
    assert "rollout not started: the fly target is not ready, nothing was touched:" in run.err
    assert "smooth has no secret CABLE_SIGNING_SECRET" in run.err
    assert f"{stale}/deploy/production/navigator/regions/ord/navigator.yml differ from what this step deploys" in run.err
    assert "production/ewr: smooth has no machine in ewr" in run.err
    read_only = {("version",), ("machine", "list"), ("secrets", "list")}
    assert {tuple(call[:2]) if call[0] != "version" else ("version",) for call in scene.standin.calls()} <= read_only
    scene.standin.set_version("0.4.19")
    run = scene.orchestrate("rollout", "--yes", "--app", str(scene.checkout), "--region", "ord", "--force", "--reason", "t")
    assert run.code == 3 and "flyctl 0.4.19 is too old: this target needs 0.4.20 or later" in run.err
    scene.standin.set_version("0.4.87")
    scene.standin.set_logged_in(False)
    run = scene.orchestrate("rollout", "--yes", "--app", str(scene.checkout), "--region", "ord", "--force", "--reason", "t")
    assert run.code == 3 and "no access token available" in run.err and "is fly logged in" in run.err
    assert scene.query("SELECT count(*) FROM steps") == [(0,)]


def test_the_dry_run_names_every_machine_and_the_config(scene: Scene) -> None:
    first, second = scene.machine("ord"), scene.machine("ord", "stopped")
    run = scene.orchestrate("rollout", "--region", "ord", "--dry-run", "--app", str(scene.checkout),
                            "--image", "registry.fly.io/smooth:deployment-1")
    assert run.code == 3  # staging has not passed: a real run would be refused
    assert f"--config {scene.config()} --regions ord --image registry.fly.io/smooth:deployment-1" in run.out
    lines = [line.strip() for line in run.out.splitlines() if "ssh console" in line]
    assert {line.split(":")[0] for line in lines} == {f"machine {first} of ord", f"machine {second} of ord"}
    assert not (scene.state / "journal.sqlite3").exists()
    assert json.dumps(scene.standin.calls()).count('"deploy"') == 0
