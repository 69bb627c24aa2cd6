"""The ssh target: pure command builders as data, and rollouts over a real OpenSSH server on 127.0.0.1.

Each region's "host" is a directory tmp/hosts/<region>/ of this machine reached
over SSH; its processes are the local fleet's (localctl, a real hub in front),
started by the reload and restart commands the inventory names.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.cli import main as orchestrate_main
from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory
from orchestrator.rollout.model import Command, RegionKey, WriteFile
from orchestrator.rollout.plan import region_state
from orchestrator.targets.base import CommandResult
from orchestrator.targets.host_probes import publish_argv
from orchestrator.targets.onhost import program
from orchestrator.targets.ssh import ConnectionPool, SshTarget, with_secrets_on_stdin
from tests.orchestrator.rollout.fleet import BROADCAST_KEY, SIGNING_SECRET
from tests.orchestrator.rollout.sshd import Sshd, keygen, missing_programs, start_sshd
from tests.polling import wait_for
from tests.ports import redis_answers_ping, start_listening, unused_port

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
ORCHESTRATE = (PYTHON, "-m", "orchestrator")
ORD = RegionKey("production", "ord")

INVENTORY = """\
app:
  name: demo
  root_path: /demo
  listen: 9999
  primary_region: ord
environments:
  production:
    fly_app: demo
    regions: [ams, dfw, ord]
    ssh:
{ssh}
regions:
  - code: ams
  - code: dfw
  - code: ord
tenants:
  source: inline
  events:
    - {{year: 2025, studio: raleigh, region: ord}}
    - {{year: 2025, studio: paris, region: ams}}
websocket:
  enabled: true
  mode: integrated
  cable_path: /demo/regions/{{region}}/cable
  signing_secret_env: CABLE_SIGNING_SECRET
  broadcast_key_env: CABLE_BROADCAST_KEY
rollout:
  health_check:
    interval_seconds: 0.2
    timeout_seconds: 5
    deadline_seconds: 30
    failure_limit: 1
  parallel: 3
  max_failures: 3
  stages:
    - {{name: wave, environment: production, regions: [{stage}], bake: 0s}}
"""


def localctl(action: str, home: str) -> str:
    """The command a host runs to reload or restart a region: the local fleet's supervisor, as a program."""
    extra = " --timeout 60" if action == "restart" else ""
    return f"env PYTHONPATH={REPO} {PYTHON} -m orchestrator.targets.localctl {action} --home {home}{extra}"


@dataclass
class SshFleet:
    directory: Path
    sshd: Sshd
    regions: tuple[str, ...]
    inventory: Path = field(init=False)
    state: Path = field(init=False)
    hosts: Path = field(init=False)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = self.directory / "inventory.yml"
        self.state = self.directory / "state"
        self.hosts = self.directory / "hosts"
        self.env = {**os.environ, "CABLE_SIGNING_SECRET": SIGNING_SECRET, "CABLE_BROADCAST_KEY": BROADCAST_KEY,
                    "PYTHONPATH": str(REPO)}
        self.env.pop("ORCHESTRATE_INVENTORY", None)

    def write_inventory(self, *, hosts: dict[str, str] | None = None, known_hosts: Path | None = None,
                        stage: tuple[str, ...] | None = None, **overrides: object) -> None:
        """The inventory, every region's host on the sshd, each in tmp/hosts/<region>/ with its own front port."""
        ports = {}
        for region in self.regions:
            run = self.hosts / region / "run"
            run.mkdir(parents=True, exist_ok=True)
            ports_file = run / "ports.json"
            if not ports_file.exists():
                ports_file.write_text(json.dumps({"front": unused_port()}))  # bound later, by the front the rollout starts
            ports[region] = json.loads(ports_file.read_text())["front"]
        home = f"{self.hosts}/{{region}}"
        ssh: dict[str, object] = {
            "hosts": hosts or {region: "127.0.0.1" for region in self.regions},
            "user": "root" if os.geteuid() == 0 else os.environ.get("USER", "root"),
            "port": self.sshd.port,
            "key_file": str(self.sshd.client_key),
            "known_hosts": str(known_hosts or self.sshd.known_hosts),
            "config_path": f"{home}/config/navigator.yml",
            "state_dir": f"{home}/state",
            "pid_file": f"{home}/run/front.pid",
            "reload_command": localctl("reload", home),
            "restart_command": localctl("restart", home),
            "front_ports": ports,
            "connect_timeout_seconds": 10,
            "command_timeout_seconds": 90,
        }
        ssh.update(overrides)
        lines = "\n".join(f"      {name}: {json.dumps(value)}" for name, value in ssh.items())
        self.inventory.write_text(INVENTORY.format(ssh=lines, stage=", ".join(stage or self.regions)))

    def command(self, *arguments: str) -> list[str]:
        return [*ORCHESTRATE, *arguments, "--inventory", str(self.inventory), "--state", str(self.state),
                "--target", "ssh"]

    def orchestrate(self, *arguments: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*arguments), capture_output=True, text=True, env=self.env, cwd=REPO,
                              timeout=timeout)

    def start(self, *arguments: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*arguments), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env, cwd=REPO)

    def query(self, sql: str, *parameters: object) -> list[tuple[object, ...]]:
        connection = sqlite3.connect(f"file:{self.state / 'journal.sqlite3'}?mode=ro", uri=True)
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    def states(self) -> dict[str, str]:
        if not (self.state / "journal.sqlite3").exists():
            return {}
        return {str(region): str(state) for region, state in self.query("SELECT region, state FROM steps ORDER BY row")}

    def journal_files(self, region: str) -> dict[str, str]:
        rows = self.query(
            "SELECT f.name, b.text FROM deployed_files f JOIN blobs b ON b.hash = f.hash WHERE f.deployed_id = "
            "(SELECT max(id) FROM deployed WHERE environment = 'production' AND region = ?)", region)
        return {str(name): str(text) for name, text in rows}

    def host_files(self, region: str) -> dict[str, str]:
        config = self.hosts / region / "config"
        return {path.name: path.read_text() for path in config.iterdir() if not path.name.startswith(".")}

    def temporaries(self, region: str) -> list[str]:
        found = []
        for directory in (self.hosts / region / "config", self.hosts / region / "state" / "previous"):
            if directory.is_dir():
                found += sorted(path.name for path in directory.iterdir() if ".orchestrate-" in path.name)
        return found

    def stop_all(self) -> None:
        for region in self.regions:
            home = self.hosts / region
            if home.is_dir():
                subprocess.run([PYTHON, "-m", "orchestrator.targets.localctl", "stop", "--home", str(home)],
                               capture_output=True, env=self.env, cwd=REPO, timeout=60)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    missing = missing_programs()
    assert not missing, f"the ssh target's tests need {', '.join(missing)}: run scripts/setup-env test"
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def fleet(tmp_path: Path, sshd: Sshd) -> Iterator[SshFleet]:
    made = SshFleet(tmp_path, sshd, ("ams", "dfw", "ord"))
    made.write_inventory()
    yield made
    made.stop_all()


def text_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# --- end to end through the CLI ------------------------------------------------------------------


def test_a_stage_rolls_out_over_ssh_and_every_gate_passes(fleet: SshFleet) -> None:
    result = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert result.returncode == 0, text_of(result)
    assert "3 passed" in result.stdout
    gates = fleet.query("SELECT s.region, g.gate, g.ok FROM gates g JOIN steps s ON s.row = g.step_row")
    assert sorted(gates) == sorted((region, gate, 1) for region in fleet.regions for gate in ("http", "websocket", "memory"))
    for region in fleet.regions:
        assert fleet.host_files(region) == fleet.journal_files(region)
        assert set(fleet.host_files(region)) == {"navigator.yml", "render.json", "hub.yml"}
        assert fleet.temporaries(region) == []
        # A first deployment replaced nothing: nothing to keep.
        assert not (fleet.hosts / region / "state" / "previous").exists()

    status = fleet.orchestrate("status", "--json")
    assert status.returncode == 0, text_of(status)
    rows = {row["region"]: row for row in json.loads(status.stdout)["regions"]}
    for region in fleet.regions:
        row = rows[f"production/{region}"]
        assert row["drift"] == [] and row["health"]["ok"] is True, row
        assert row["memory_mb"] > 0

    # The quick switch-off of one region: a reload; the files it replaced are kept on the host.
    first = fleet.host_files("ord")
    switched = fleet.orchestrate("rollout", "--region", "ord", "--websocket", "off", "--yes")
    assert switched.returncode == 0, text_of(switched)
    assert "reload production/ord on 127.0.0.1" in switched.stdout
    assert fleet.host_files("ord") == fleet.journal_files("ord") != first
    previous = fleet.hosts / "ord" / "state" / "previous"
    assert {path.name: path.read_text() for path in previous.iterdir()} == {
        name: text for name, text in first.items() if fleet.host_files("ord")[name] != text}
    assert fleet.temporaries("ord") == []

    # Neither secret is written anywhere on the hosts or in the journal.
    for path in [*fleet.hosts.rglob("*"), *fleet.state.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert SIGNING_SECRET.encode() not in data and BROADCAST_KEY.encode() not in data, path
    assert SIGNING_SECRET not in text_of(result) + text_of(switched) + status.stdout


def test_an_unreachable_host_fails_only_its_own_region(fleet: SshFleet) -> None:
    # sshd listens on 127.0.0.1 only: 127.0.0.2 refuses the connection.
    fleet.write_inventory(hosts={"ams": "127.0.0.1", "dfw": "127.0.0.2", "ord": "127.0.0.1"})
    result = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert result.returncode == 1, text_of(result)
    assert fleet.states() == {"ams": "passed", "dfw": "failed", "ord": "passed"}
    line = next(line for line in result.stderr.splitlines() if "production/dfw" in line)
    assert f"cannot connect to root@127.0.0.2 port {fleet.sshd.port}: connection refused" in line
    detail = fleet.query("SELECT t.detail FROM transitions t JOIN steps s ON s.row = t.step_row "
                         "WHERE s.region = 'dfw' AND t.state = 'failed'")
    assert "127.0.0.2" in str(detail[0][0])
    for region in ("ams", "ord"):
        assert fleet.host_files(region) == fleet.journal_files(region)


def test_a_command_that_hangs_past_its_timeout_fails_with_a_timeout(fleet: SshFleet) -> None:
    fleet.write_inventory(stage=("ord",), reload_command="sleep 30", restart_command="sleep 30",
                          command_timeout_seconds=1)
    result = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert result.returncode == 1, text_of(result)
    assert fleet.states() == {"ord": "failed"}
    line = next(line for line in result.stderr.splitlines() if "production/ord" in line)
    assert "restart production/ord on 127.0.0.1 failed: exit 124" in line
    assert "no answer from 127.0.0.1 within 1 s" in line


@pytest.mark.parametrize("known", ["changed", "unknown"])
def test_a_host_key_that_is_not_the_known_one_is_refused_and_nothing_is_written(fleet: SshFleet, known: str) -> None:
    known_hosts = fleet.directory / "known_hosts"
    if known == "changed":
        other = keygen(fleet.directory / "other_host_key")
        known_hosts.write_text(fleet.sshd.known_hosts_line(other))
    else:
        known_hosts.write_text(f"[127.0.0.1]:{unused_port()} {fleet.sshd.host_public_key}\n")  # another port's
    fleet.write_inventory(stage=("ord",), known_hosts=known_hosts)
    result = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert result.returncode == 1, text_of(result)
    assert fleet.states() == {"ord": "failed"}
    line = next(line for line in result.stderr.splitlines() if "production/ord" in line)
    if known == "changed":
        assert f"host key of 127.0.0.1 port {fleet.sshd.port} has CHANGED" in line
    else:
        assert f"host key of 127.0.0.1 port {fleet.sshd.port} is unknown" in line
    assert str(known_hosts) in line and "refusing to connect" in line
    assert not (fleet.hosts / "ord" / "config").exists()
    assert known_hosts.read_text().count("\n") == 1  # nothing was added to it


def test_kill_9_in_the_middle_of_an_upload_then_resume_finishes_with_the_journals_files(tmp_path: Path) -> None:
    marker = tmp_path / "hold-upload"
    holding = start_sshd(tmp_path / "sshd", subsystem=f"{PYTHON} {REPO}/tests/orchestrator/rollout/sshd.py hold-sftp {marker}")
    fleet = SshFleet(tmp_path, holding, ("ord",))
    try:
        fleet.write_inventory()
        config = fleet.hosts / "ord" / "config"
        marker.write_text(f"{config}/.navigator.yml")  # hold the upload of navigator.yml once it has begun
        process = fleet.start("rollout", "--stage", "wave", "--yes")
        try:
            wait_for(lambda: list(config.glob(".navigator.yml.orchestrate-*.tmp")) and fleet.states().get("ord") == "deploying",
                     timeout=60, what="ord's navigator.yml upload under way")
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        left = fleet.temporaries("ord")
        assert len(left) == 1 and (config / left[0]).stat().st_size == 0
        assert not (config / "navigator.yml").exists()  # never a half-written file in place
        marker.unlink()

        resumed = fleet.orchestrate("rollout", "--resume")
        assert resumed.returncode == 0, text_of(resumed)
        assert fleet.states() == {"ord": "passed"}
        assert fleet.host_files("ord") == fleet.journal_files("ord")
        assert fleet.temporaries("ord") == []  # the one left by the killed upload was removed by the next write
        status = json.loads(fleet.orchestrate("status", "--json").stdout)
        ord_row = next(row for row in status["regions"] if row["region"] == "production/ord")
        assert ord_row["drift"] == [] and ord_row["health"]["ok"] is True
    finally:
        fleet.stop_all()
        holding.stop()


# --- the target's API on the real server, without the CLI ----------------------------------------


def test_run_sends_secrets_on_stdin_and_reports_exit_codes_and_unreachable_hosts(fleet: SshFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.delenv("CABLE_BROADCAST_KEY", raising=False)
    probe = "printf '%s|' \"$CABLE_SIGNING_SECRET\" \"${CABLE_BROADCAST_KEY-unset}\"; tr '\\0' ' ' </proc/$$/cmdline; exit 3"
    with SshTarget(load_inventory(fleet.inventory), fleet.state) as target:
        result = target.run(ORD, Command(("sh", "-c", probe), "probe", env_names=("CABLE_SIGNING_SECRET", "CABLE_BROADCAST_KEY")))
        assert result.exit_code == 3
        value, unset, command_line = result.stdout.split("|", 2)
        # The value reached the process's environment; a variable not set here is not sent at all.
        assert (value, unset) == (SIGNING_SECRET, "unset")
        assert SIGNING_SECRET not in command_line and "CABLE_SIGNING_SECRET" in command_line
        assert target.live_files(ORD, ("navigator.yml",)) == {"navigator.yml": None}
    fleet.write_inventory(hosts={"ams": "127.0.0.1", "dfw": "127.0.0.1", "ord": "127.0.0.2"})
    with SshTarget(load_inventory(fleet.inventory), fleet.state) as target:
        result = target.run(ORD, Command(("true",), "true"))
        assert result.exit_code == 255
        assert f"production/ord: cannot connect to root@127.0.0.2 port {fleet.sshd.port}" in result.stderr


def test_the_server_receives_the_secret_on_stdin_never_in_the_exec_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the SSH server itself was asked to run (each exec request, as sshd hands it to ForceCommand)."""
    requests = tmp_path / "exec-requests.log"
    recorder = tmp_path / "record"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$SSH_ORIGINAL_COMMAND" >> {requests}\nexec sh -c "$SSH_ORIGINAL_COMMAND"\n')
    recorder.chmod(0o755)
    server = start_sshd(tmp_path / "sshd", force_command=str(recorder))
    try:
        fleet = SshFleet(tmp_path / "fleet", server, ("ord",))
        fleet.write_inventory()
        monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
        with SshTarget(load_inventory(fleet.inventory), fleet.state) as target:
            result = target.run(ORD, Command(("sh", "-c", 'printf %s "$CABLE_SIGNING_SECRET"'), "probe",
                                             env_names=("CABLE_SIGNING_SECRET",)))
        assert (result.exit_code, result.stdout) == (0, SIGNING_SECRET)  # it arrived, on standard input
        received = requests.read_text()
        assert "IFS= read -r CABLE_SIGNING_SECRET" in received and SIGNING_SECRET not in received
    finally:
        server.stop()


def test_write_is_atomic_keeps_the_previous_file_and_creates_directories(fleet: SshFleet) -> None:
    config = fleet.hosts / "ord" / "config"
    with SshTarget(load_inventory(fleet.inventory), fleet.state) as target:
        target.write(ORD, WriteFile(f"{config}/navigator.yml", "first\n"))
        (config / "navigator.yml").chmod(0o600)
        target.write(ORD, WriteFile(f"{config}/navigator.yml", "second\n"))
        target.write(ORD, WriteFile(f"{config}/navigator.yml", "second\n"))  # again, as a resumed step does
    assert (config / "navigator.yml").read_text() == "second\n"
    assert (config / "navigator.yml").stat().st_mode & 0o777 == 0o600  # the replaced file's mode is kept
    assert (fleet.hosts / "ord" / "state" / "previous" / "navigator.yml").read_text() == "first\n"
    assert fleet.temporaries("ord") == []


def test_connections_in_use_never_exceed_the_limit() -> None:
    opened: list[int] = []
    current = [0]
    lock = threading.Lock()

    class Fake:
        def close(self) -> None:
            with lock:
                current[0] -= 1

    def connect() -> Fake:
        with lock:
            current[0] += 1
            opened.append(current[0])
        return Fake()

    pool = ConnectionPool(2)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for turn in range(30):
                with pool.use(f"host{(number + turn) % 5}", connect):
                    assert pool.open_count() <= 2
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert max(opened) <= 2 and len(opened) > 5
    pool.close()
    assert current[0] == 0


# --- pure command builders, as data -----------------------------------------------------------------


HOST_INVENTORY_SSH = """\
      hosts: {ams: ams.example.net, ord: 10.0.0.5}
      user: deploy
      key_file: /keys/id_ed25519
      known_hosts: /keys/known_hosts
      config_path: /srv/{region}/navigator.yml
      state_dir: /var/lib/orchestrate/{region}
      reload_command: "navigator -s reload # {region}"
      restart_command: "systemctl restart navigator@{region}"
      front_port: 3000
      front_ports: {ams: 3001}
      command_timeout_seconds: 45"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SshTarget]:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY.format(ssh=HOST_INVENTORY_SSH, stage="ams, ord"))
    with SshTarget(load_inventory(path), tmp_path / "state") as made:
        yield made


def test_a_first_deployment_writes_each_file_beside_config_path_then_restarts(target: SshTarget) -> None:
    desired = region_state(target.inventory, ORD)
    operations = target.operations(ORD, None, desired)
    assert [op.label for op in operations] == [
        "write /srv/ord/hub.yml", "write /srv/ord/navigator.yml", "write /srv/ord/render.json",
        "restart production/ord on 10.0.0.5",
    ]
    control = operations[-1]
    assert isinstance(control, Command)
    assert control.argv == ("sh", "-c", "systemctl restart navigator@ord")
    assert control.env_names == ("CABLE_SIGNING_SECRET", "CABLE_BROADCAST_KEY")
    assert control.timeout_seconds == 45
    assert [op.text for op in operations if isinstance(op, WriteFile)] == [desired.files[name] for name in sorted(desired.files)]


def test_the_switch_off_reloads_and_a_change_of_mode_removes_old_files_and_restarts(target: SshTarget) -> None:
    on = region_state(target.inventory, ORD)
    off = region_state(target.inventory, ORD, websocket_enabled=False)
    assert [op.label for op in target.operations(ORD, on, off)][-1] == "reload production/ord on 10.0.0.5"
    assert target.operations(ORD, on, off)[-1].argv == ("sh", "-c", "navigator -s reload # ord")  # type: ignore[union-attr]
    baseline = region_state(target.inventory, ORD, mode="action_cable")
    operations = target.operations(ORD, on, baseline)
    removed = sorted(set(on.files) - set(baseline.files))
    assert removed, "test setup: action_cable should deploy fewer files than integrated"
    assert [op.label for op in operations][-2:] == [
        f"remove {', '.join(removed)} of the old mode on 10.0.0.5", "restart production/ord on 10.0.0.5"]
    assert operations[-2].argv == ("rm", "-f", "--", *(f"/srv/ord/{name}" for name in removed))  # type: ignore[union-attr]


def test_probes_run_on_the_host_against_its_loopback(target: SshTarget) -> None:
    ams = RegionKey("production", "ams")
    inventory = target.inventory
    # The mode is the one the region's render.json names (publish_command reads it from the host).
    argv, env_names = publish_argv(inventory, target.where(ORD).front_port, "integrated", "s1", '{"probe": 1}')
    assert argv[:3] == ("python3", "-c", program())
    assert argv[3:] == ("publish", "http", "http://127.0.0.1:3000/_broadcast", "s1", '{"probe": 1}', "CABLE_BROADCAST_KEY", "", "15")
    assert env_names == ("CABLE_BROADCAST_KEY",)
    argv, env_names = publish_argv(inventory, target.where(ams).front_port, "anycable", "s1", "{}")
    assert argv[4:6] == ("anycable", f"http://localhost:{inventory.anycable.broadcast_port}/_broadcast")
    assert env_names == ("CABLE_BROADCAST_KEY", "CABLE_SIGNING_SECRET")
    argv, env_names = publish_argv(inventory, target.where(ORD).front_port, "action_cable", "s1", "{}")
    assert argv[4:6] == ("redis", inventory.action_cable.redis_url) and env_names == ()
    memory = target.memory_command(ams)
    assert memory.argv == ("python3", "-c", program(), "memory", "/tmp/navigator.pid")
    assert memory.label == "read memory of production/ams on ams.example.net"


def test_rollout_dry_run_of_showcase_prints_each_operation_with_its_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = orchestrate_main(["rollout", str(REPO / "inventories" / "showcase.yml"), "--region", "ord", "--target", "ssh",
                             "--dry-run", "--state", str(tmp_path), "--force", "--reason", "test"])
    out, err = capsys.readouterr()
    assert code == 3  # example hosts: no known host key for them here, and no signing secret for the gates
    assert "a real run would not start: the ssh target is not ready, nothing was touched:" in err
    assert "deploy@ord.showcase.example port 22: the known hosts file" in err or "CABLE_SIGNING_SECRET" in err
    assert "target     ssh" in out
    host = "deploy@ord.showcase.example port 22"
    for name in ("hub.yml", "navigator.yml", "render.json"):
        assert f"      {host}: write /etc/navigator/{name} (sha256 " in out
    assert f"      {host}: sh -c 'sudo systemctl restart navigator'  (reads CABLE_SIGNING_SECRET from the environment)\n" in out
    assert f"        {host}: sh -c 'navigator -s reload'" in out  # the quick rollback reloads: same side processes
    assert not list(tmp_path.iterdir()), "a dry run writes nothing, not even the journal"


def test_the_hub_mode_needs_the_hub_yml_where_the_rendered_process_reads_it(target: SshTarget, tmp_path: Path) -> None:
    hub = region_state(target.inventory, ORD, mode="hub")
    with pytest.raises(InputError) as raised:
        target.operations(ORD, None, hub)
    (problem,) = raised.value.problems
    assert problem.startswith("environments.production.ssh.config_path: the hub mode's cable-hub process reads "
                              "/etc/navigator/regions/ord/hub.yml, but this host would get it at /srv/ord/hub.yml; "
                              "set config_path to /etc/navigator/regions/{region}/navigator.yml (")
    path = tmp_path / "image-layout.yml"
    path.write_text(INVENTORY.format(ssh=HOST_INVENTORY_SSH.replace("/srv/{region}/navigator.yml",
                                                                    "/etc/navigator/regions/{region}/navigator.yml"),
                                     stage="ord"))
    operations = SshTarget(load_inventory(path), tmp_path).operations(ORD, None, hub)
    assert "write /etc/navigator/regions/ord/hub.yml" in [op.label for op in operations]
    # The probe is published where the Rails processes publish in this mode: the hub's own port.
    argv, _ = publish_argv(target.inventory, target.where(ORD).front_port, "hub", "s1", "{}")
    assert argv[4:6] == ("http", "http://localhost:28080/_broadcast")


def test_the_front_port_is_per_region_then_per_environment_then_app_listen(target: SshTarget, tmp_path: Path) -> None:
    assert target.where(RegionKey("production", "ams")).front_port == 3001
    assert target.where(ORD).front_port == 3000
    path = tmp_path / "plain.yml"
    path.write_text(INVENTORY.format(ssh="      hosts: {ord: 10.0.0.5}", stage="ord"))
    plain = SshTarget(load_inventory(path), tmp_path)
    where = plain.where(ORD)
    assert (where.front_port, where.config_path, where.endpoint.port) == (9999, "/etc/navigator/navigator.yml", 22)


def test_a_region_without_a_host_is_an_error_naming_the_inventory_path(target: SshTarget, tmp_path: Path) -> None:
    dfw = RegionKey("production", "dfw")
    with pytest.raises(InputError) as raised:
        target.operations(dfw, None, region_state(target.inventory, dfw))
    assert raised.value.problems[0].startswith("environments.production.ssh.hosts: no host for dfw (")
    path = tmp_path / "no-ssh.yml"
    path.write_text(INVENTORY.format(ssh="", stage="ord").replace("    ssh:\n\n", ""))
    with pytest.raises(InputError) as raised:
        SshTarget(load_inventory(path), tmp_path).operations(ORD, None, region_state(target.inventory, ORD))
    assert raised.value.problems[0].startswith("environments.production.ssh: missing: the ssh target needs it for production/ord")


def test_no_secret_value_is_ever_in_a_command_line(target: SshTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("CABLE_BROADCAST_KEY", BROADCAST_KEY)
    commands: list[Command] = []
    on = region_state(target.inventory, ORD)
    for desired in (on, region_state(target.inventory, ORD, websocket_enabled=False), region_state(target.inventory, ORD, mode="action_cable")):
        commands += [op for op in target.operations(ORD, on, desired) if isinstance(op, Command)]
    for mode in ("integrated", "anycable", "action_cable"):
        argv, env_names = publish_argv(target.inventory, target.where(ORD).front_port, mode, "stream", '{"probe": "x"}')
        commands.append(Command(argv, "publish", env_names=env_names))
    commands.append(target.memory_command(ORD))
    assert any(command.env_names for command in commands)
    for command in commands:
        sent = with_secrets_on_stdin(command.env_names, command.argv)  # what run() hands to the host
        for word in (*command.argv, *sent, command.display(), command.label):
            assert SIGNING_SECRET not in word and BROADCAST_KEY not in word
    assert with_secrets_on_stdin(("A", "B"), ("cmd", "x y"))[:3] == (
        "sh", "-c", 'IFS= read -r A || exit 125; IFS= read -r B || exit 125; export A B; exec "$@"')


# --- the host-side scripts, run here (this machine is a host like any other) ------------------------


def test_the_memory_script_reads_the_front_and_its_cable_and_redis_children(tmp_path: Path) -> None:
    for name in ("redis-server", "puma"):
        (tmp_path / name).symlink_to("/bin/sleep")
    (tmp_path / "hub").mkdir()  # what the hub mode's cable-hub runs: python3 -m hub ...
    (tmp_path / "hub" / "__main__.py").write_text("import time\ntime.sleep(60)\n")
    front = subprocess.Popen(["sh", "-c", f"{tmp_path}/redis-server 60 & {tmp_path}/puma 60 & "
                              f"python3 -m hub --hub-config hub.yml & sleep 60 & wait"],
                             cwd=tmp_path, start_new_session=True)
    try:
        pid_file = tmp_path / "navigator.pid"
        pid_file.write_text(f"{front.pid}\n")

        def reading() -> dict[str, int] | None:
            done = subprocess.run(["python3", "-c", program(), "memory", str(pid_file)], capture_output=True, text=True, check=True)
            sizes = json.loads(done.stdout)
            return sizes if set(sizes) == {"front", "redis-server", "puma", "cable-hub"} else None

        sizes = wait_for(reading, timeout=10, what="the children to start") or {}
        assert all(isinstance(size, int) and size > 0 for size in sizes.values())
    finally:
        os.killpg(front.pid, signal.SIGKILL)  # the shell and its children: a group of their own
        front.wait()
    missing = subprocess.run(["python3", "-c", program(), "memory", str(tmp_path / "none.pid")], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot read the front's pid" in missing.stderr


def test_the_publish_script_publishes_on_redis_as_action_cables_adapter_does(tmp_path: Path) -> None:
    redis, port = start_listening(
        lambda port: ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        redis_answers_ping, "redis-server", timeout=10,
    )
    try:
        subscriber = _connect(port)
        assert subscriber is not None
        with subscriber:
            subscriber.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nprobe1\r\n")
            replies = subscriber.makefile("rb")
            assert [replies.readline() for _ in range(6)][-1] == b":1\r\n"  # subscribed
            done = subprocess.run(["python3", "-c", program(), "publish", "redis", f"redis://127.0.0.1:{port}/1", "probe1",
                                   '{"probe": "abc"}', "", "", "5"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "published to 1 subscribers"
            message = [replies.readline() for _ in range(7)]
            assert message[-1] == b'{"probe": "abc"}\r\n'
    finally:
        redis.kill()
        redis.wait()


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None


# --- host keys, credentials and secrets in this process (mutants: bench/results/mutation.md) -------------------------


def fingerprint(public_key_file: Path) -> str:
    """`ssh-ed25519 SHA256:...` as OpenSSH's own ssh-keygen computes it."""
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(public_key_file)], capture_output=True, text=True, check=True)
    return f"ssh-ed25519 {listed.stdout.split()[1]}"


def run_on_ord(fleet: SshFleet, argv: tuple[str, ...], env_names: tuple[str, ...] = (), label: str = "probe"):
    with SshTarget(load_inventory(fleet.inventory), fleet.state) as target:
        return target.run(ORD, Command(argv, label, env_names=env_names))


@pytest.mark.parametrize("known", ["changed", "unknown", "missing", "unreadable"])
def test_a_host_whose_key_is_not_the_known_one_is_refused_before_any_command(fleet: SshFleet, known: str) -> None:
    known_hosts = fleet.directory / "known_hosts"
    port = fleet.sshd.port
    presented = fingerprint(fleet.sshd.directory / "host_key.pub")
    if known == "changed":
        known_hosts.write_text(fleet.sshd.known_hosts_line(keygen(fleet.directory / "other_host_key")))
        why = (f"has CHANGED: it presented {presented}, but {known_hosts} has {fingerprint(fleet.directory / 'other_host_key.pub')} "
               f"for it; refusing to connect (if the change is expected, replace that line of {known_hosts})")
    elif known == "unknown":
        known_hosts.write_text(f"[127.0.0.1]:{unused_port()} {fleet.sshd.host_public_key}\n")  # another port's
        why = f"is unknown: {known_hosts} has no key for [127.0.0.1]:{port} (it presented {presented}); refusing to connect"
    elif known == "missing":
        why = (f"is unknown: {known_hosts} (the file does not exist) has no key for [127.0.0.1]:{port} "
               f"(it presented {presented}); refusing to connect")
    else:
        known_hosts.mkdir()
    fleet.write_inventory(known_hosts=known_hosts)
    marker = fleet.directory / "ran"
    result = run_on_ord(fleet, ("touch", str(marker)))
    if known == "unreadable":
        assert result == CommandResult(255, "", f"production/ord: cannot read known hosts file {known_hosts}: Is a directory")
    else:
        assert result == CommandResult(255, "", f"production/ord: host key of 127.0.0.1 port {port} {why}")
    assert not marker.exists()
    if known in ("changed", "unknown"):
        assert known_hosts.read_text().count("\n") == 1  # nothing was added to it
    else:
        assert known_hosts.is_dir() or not known_hosts.exists()


@pytest.fixture
def home_with_the_right_key(fleet: SshFleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home whose ~/.ssh/config sends every host elsewhere, whose ~/.ssh/id_ed25519 and ssh-agent hold the key the
    server accepts: none of it may be used, the inventory says everything about a connection."""
    home = fleet.directory / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  HostName 127.0.0.2\n  Port 1\n")
    accepted = (home / ".ssh" / "id_ed25519")
    accepted.write_bytes(fleet.sshd.client_key.read_bytes())
    accepted.chmod(0o600)
    started = subprocess.run(["ssh-agent", "-s", "-a", str(fleet.directory / "agent.sock")], capture_output=True, text=True,
                             check=True, timeout=30)
    agent_pid = int(started.stdout.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("SSH_AUTH_SOCK", str(fleet.directory / "agent.sock"))
        subprocess.run(["ssh-add", str(accepted)], capture_output=True, check=True, timeout=30)
        yield home
    finally:
        os.kill(agent_pid, signal.SIGTERM)


def test_only_the_inventory_s_key_and_address_are_used(fleet: SshFleet, home_with_the_right_key: Path) -> None:
    refused_key = fleet.directory / "refused_key"
    keygen(refused_key)
    fleet.write_inventory(key_file=str(refused_key))
    result = run_on_ord(fleet, ("true",))
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    assert (result.exit_code, result.stdout) == (255, "")
    assert result.stderr.startswith(f"production/ord: {user}@127.0.0.1 port {fleet.sshd.port}: authentication failed: ")
    fleet.write_inventory()  # the accepted key, named by the inventory: ~/.ssh/config's HostName and Port are not read
    assert run_on_ord(fleet, ("sh", "-c", "echo out; echo err >&2; exit 4")) == CommandResult(4, "out\n", "err\n")


@pytest.mark.parametrize("value", ["first\nsecond", "carriage\rreturn"], ids=["newline", "carriage return"])
def test_a_secret_with_a_line_break_is_not_sent_and_nothing_runs(fleet: SshFleet, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", value)
    marker = fleet.directory / "ran"
    result = run_on_ord(fleet, ("touch", str(marker)), ("CABLE_SIGNING_SECRET",), label="reload production/ord")
    assert result == CommandResult(125, "", "reload production/ord: CABLE_SIGNING_SECRET holds a line break; it cannot be sent")
    assert not marker.exists()


def test_several_secrets_arrive_each_whole_and_nothing_is_echoed_here(
    fleet: SshFleet, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CABLE_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("CABLE_BROADCAST_KEY", BROADCAST_KEY)
    shown = 'printf "%s|%s" "$CABLE_SIGNING_SECRET" "$CABLE_BROADCAST_KEY"; echo " on stderr" >&2'
    result = run_on_ord(fleet, ("sh", "-c", shown), ("CABLE_SIGNING_SECRET", "CABLE_BROADCAST_KEY"))
    assert result == CommandResult(0, f"{SIGNING_SECRET}|{BROADCAST_KEY}", " on stderr\n")
    out, err = capfd.readouterr()
    assert SIGNING_SECRET not in out + err and BROADCAST_KEY not in out + err and "on stderr" not in out + err


def test_with_secrets_on_stdin_refuses_a_name_that_is_not_one() -> None:
    assert with_secrets_on_stdin((), ("true",)) == ("true",)
    with pytest.raises(ValueError, match=r"^not an environment variable name: 'A-B'$"):
        with_secrets_on_stdin(("A-B",), ("true",))


def test_a_command_past_its_timeout_is_exit_124_naming_the_host(fleet: SshFleet) -> None:
    fleet.write_inventory(command_timeout_seconds=1)
    pid_file = fleet.directory / "sleeper.pid"
    try:
        result = run_on_ord(fleet, ("sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"), label="reload production/ord")
        assert result == CommandResult(124, "", "reload production/ord: no answer from 127.0.0.1 within 1 s "
                                                "(the command may still be running there)")
    finally:
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True, timeout=30)


def test_a_session_that_ends_without_an_exit_status_is_exit_255(fleet: SshFleet) -> None:
    """The command kills the sshd process serving its session: no exit status ever arrives."""
    result = run_on_ord(fleet, ("sh", "-c", "kill -9 $PPID; exec cat"), label="reload production/ord")
    assert (result.exit_code, result.stdout) == (255, "")


def test_a_server_that_never_answers_is_unreachable_within_the_connect_timeout(fleet: SshFleet) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        port = silent.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):  # fills the accept queue: the next SYN is dropped
            fleet.write_inventory(port=port, connect_timeout_seconds=0.5)
            result = run_on_ord(fleet, ("true",))
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    assert result == CommandResult(255, "", f"production/ord: cannot connect to {user}@127.0.0.1 port {port}: no answer within 0.5 s")


def test_a_server_that_never_sends_its_banner_fails_the_ssh_handshake(fleet: SshFleet) -> None:
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)  # accepted by the kernel, never answered
        port = mute.getsockname()[1]
        fleet.write_inventory(port=port, connect_timeout_seconds=0.5)
        result = run_on_ord(fleet, ("true",))
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    # paramiko reports the banner it never read, or the session that then never existed, depending on when it looks.
    assert result.stderr in {f"production/ord: SSH to {user}@127.0.0.1 port {port} failed: {why}"
                             for why in ("Error reading SSH protocol banner", "No existing session")}
    assert (result.exit_code, result.stdout) == (255, "")


def test_unreachable_hosts_say_why(fleet: SshFleet) -> None:
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    fleet.write_inventory(hosts={"ams": "127.0.0.1", "dfw": "127.0.0.1", "ord": "127.0.0.2"})
    assert run_on_ord(fleet, ("true",)) == CommandResult(
        255, "", f"production/ord: cannot connect to {user}@127.0.0.2 port {fleet.sshd.port}: connection refused")
    fleet.write_inventory(hosts={"ams": "127.0.0.1", "dfw": "127.0.0.1", "ord": "no-such-host.invalid"})
    assert run_on_ord(fleet, ("true",)) == CommandResult(
        255, "", f"production/ord: cannot connect to {user}@no-such-host.invalid port {fleet.sshd.port}: Name or service not known")


@pytest.mark.skipif(os.geteuid() != 0, reason="only an sshd run as root logs in as another user")
def test_the_inventory_s_user_is_the_one_logged_in(fleet: SshFleet) -> None:
    """sshd reads nobody's authorized keys as nobody, who may not read this test's files: the login as nobody fails,
    where one as the user running the tests would succeed."""
    fleet.write_inventory(user="nobody")
    assert run_on_ord(fleet, ("id", "-un")) == CommandResult(
        255, "", f"production/ord: nobody@127.0.0.1 port {fleet.sshd.port}: authentication failed: Authentication failed.")


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), EOFError()], ids=["reset", "eof"])
def test_a_connection_that_fails_during_a_command_is_exit_255_naming_it(
    fleet: SshFleet, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """What invoke and paramiko raise when the connection breaks under a command (injected: it cannot be timed here)."""
    from fabric import Connection

    def broken(self: Connection, command: str, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Connection, "run", broken)
    why = "Connection reset by peer" if isinstance(error, OSError) else "EOFError"
    assert run_on_ord(fleet, ("true",), label="reload production/ord") == CommandResult(
        255, "", f"production/ord: reload production/ord: connection to root@127.0.0.1 port {fleet.sshd.port} lost: {why}")


def test_a_server_that_hangs_up_after_its_banner_is_named_by_what_failed(fleet: SshFleet) -> None:
    """paramiko raises an EOFError without a message here: the evidence names the error rather than saying nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with client:
                client.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                # Hang up with a FIN, and read what the client sends until it closes too: closing with its
                # banner unread would reset the connection instead, and the client would see a reset, not EOF.
                client.shutdown(socket.SHUT_WR)
                client.settimeout(10)
                try:
                    while client.recv(65536):
                        pass
                except OSError:
                    pass

    server = threading.Thread(target=hang_up, daemon=True)
    server.start()
    try:
        fleet.write_inventory(port=port)
        result = run_on_ord(fleet, ("true",))
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        server.join(10)
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    assert result == CommandResult(255, "", f"production/ord: SSH to {user}@127.0.0.1 port {port} failed: EOFError")
