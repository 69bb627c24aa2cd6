"""The stand-in `fly` (tests/orchestrator/rollout/flystandin) held to flyctl's own behaviour.

Each assertion is one flyctl makes true (file:line in the stand-in's comments),
so a stand-in that drifted from flyctl fails here before a test of the Fly
target could lean on the drift. Machines really run (namespaces on this host);
every wait polls a condition with a deadline and every `fly` call has a timeout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli import main as orchestrate
from tests.orchestrator.conftest import copy_showcase
from tests.orchestrator.rollout.flystandin import machine
from tests.orchestrator.rollout.flystandin.fixture import FlyStandin, fly_standin  # noqa: F401 (a fixture)
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[3]
NO_SESSION = "Error: no access token available. Please login with 'flyctl auth login'\n"
RELEASE_FIELDS = ["ID", "Version", "Stable", "InProgress", "Reason", "Description", "Status", "DeploymentStrategy",
                  "Metadata", "User", "EvaluationID", "CreatedAt", "ImageRef"]  # fly-go types.go:625-639 # fmt: skip
TINY_TOML = """\
app = "tiny"
primary_region = "ord"

[build]
  dockerfile = "Dockerfile"

[env]
  GREETING = "{greeting}"

[[mounts]]
  source = "data"
  destination = "/data"
"""


def fly(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["fly", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def tiny_context(directory: Path, greeting: str = "from-context") -> Path:
    """A small build context: fly.toml, and a Dockerfile whose image is /srv with its CMD, a main process that
    writes the environment it was started with to /tmp/boot-env, then sleeps."""
    (directory / "srv").mkdir(parents=True)
    (directory / "srv" / "run").write_text('#!/bin/sh\nenv > /tmp/boot-env\nexec sleep 600\n')
    (directory / "srv" / "run").chmod(0o755)
    (directory / "notes.txt").write_text("not in the image: a relative destination\n")
    dockerfile = 'FROM debian:bookworm-slim\nCOPY srv/ /srv/\nCOPY notes.txt ./\nCMD ["/srv/run"]\n'
    (directory / "Dockerfile").write_text(dockerfile)
    (directory / "fly.toml").write_text(TINY_TOML.format(greeting=greeting))
    return directory / "fly.toml"


def stopped_message(machine_id: str) -> str:
    return f"Sending kill signal to machine {machine_id}...\n{machine_id} has been successfully stopped\n"


def by_id(standin: FlyStandin, app: str) -> dict[str, dict]:
    return {m["id"]: m for m in standin.machines(app)}


def greeting_of(standin: FlyStandin, machine_id: str) -> str:
    """GREETING as the machine's main process got it."""
    lines = wait_for(lambda: standin.run_in(machine_id, ["cat", "/tmp/boot-env"]).stdout.splitlines(), 10, "boot-env")
    return next(line.removeprefix("GREETING=") for line in lines if line.startswith("GREETING="))


# --- the command line, no machine needed --------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlyStandin:
    standin = FlyStandin(tmp_path / "fly-standin")
    standin.install(monkeypatch)
    return standin


def test_version_is_buildinfo_info_and_needs_no_login(cli):
    cli.set_logged_in(False)
    done = fly("version", "--json")
    assert done.returncode == 0 and done.stdout.count("\n") == 1
    info = json.loads(done.stdout)
    assert list(info) == ["Name", "Version", "Commit", "BranchName", "BuildDate", "OS", "Architecture", "Environment"]
    assert info["Version"] == "0.4.87"
    cli.set_version("0.5.2")
    assert json.loads(fly("version", "-j").stdout)["Version"] == "0.5.2"
    assert cli.calls() == [["version", "--json"], ["version", "-j"]]


def test_logged_out_every_command_but_version_fails(cli):
    cli.create_app("smooth")
    cli.set_logged_in(False)
    for args in (["machine", "list", "--app", "smooth", "--json"], ["releases", "--app", "smooth", "--json"],
                 ["ssh", "console", "--app", "smooth", "-C", "true"], ["secrets", "list", "-a", "smooth", "--json"]):
        done = fly(*args)
        assert (done.returncode, done.stdout, done.stderr) == (1, "", NO_SESSION), args


def test_unknown_flags_commands_and_apps_are_flyctl_s_errors(cli):
    cli.create_app("smooth")
    done = fly("machine", "list", "--app", "smooth", "--bogus")
    assert (done.returncode, done.stderr) == (1, "Error: unknown flag: --bogus\n")
    done = fly("machine", "list", "-a", "smooth", "-x")
    assert (done.returncode, done.stderr) == (1, "Error: unknown shorthand flag: 'x' in -x\n")
    done = fly("frobnicate")
    assert (done.returncode, done.stderr) == (1, 'Error: unknown command "frobnicate" for "flyctl"\n')
    assert done.stdout == "Run 'flyctl --help' for usage.\n\n"
    done = fly("machine", "stop", "abc", "--app", "smooth", "--wait-timeout", "60")
    assert done.stderr == ('Error: invalid argument "60" for "-w, --wait-timeout" flag: '
                           'time: missing unit in duration "60"\n')
    done = fly("machine", "list", "--app=nope", "--json")
    assert (done.returncode, done.stderr) == (1, "Error: failed to list VMs: Could not find App\n")
    assert fly("machine", "list", "--app=smooth", "--json").stdout == "[]\n"


def test_secrets_list_shows_names_and_digests_never_values(cli):
    cli.create_app("smooth", {"CABLE_SIGNING_SECRET": "very-secret-value", "OTHER": "x"})
    done = fly("secrets", "list", "--app", "smooth", "--json")
    assert done.returncode == 0 and "very-secret-value" not in done.stdout
    rows = json.loads(done.stdout)
    assert [list(row) for row in rows] == [["name", "digest", "status"]] * 2
    assert [row["name"] for row in rows] == ["CABLE_SIGNING_SECRET", "OTHER"]
    assert rows[0]["status"] == "Staged"  # no machine has it yet (secrets/list.go:306-309)


# --- machines ------------------------------------------------------------------------------------------


def test_ssh_console_takes_only_started_machines(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    image = fly_standin.build("tiny", tmp_path / "ctx", config, "v1")
    stopped_iad = fly_standin.create_machine("tiny", "iad", image, config, state="stopped")
    done = fly("ssh", "console", "--app", "tiny", "-C", "true")
    assert done.returncode == 1
    assert done.stderr == ("Error: app tiny has no started VMs.\nIt may be unhealthy or not have been deployed yet.\n"
                           "Try the following command to verify:\n\nfly status\n")  # fmt: skip
    first = fly_standin.create_machine("tiny", "ord", image, config)
    second = fly_standin.create_machine("tiny", "ord", image, config)
    done = fly("ssh", "console", "--app", "tiny", "--region", "iad", "-C", "true")
    assert (done.returncode, done.stderr) == (1, "Error: app tiny has no VMs in region iad\n")
    done = fly("ssh", "console", "--app", "tiny", "--machine", stopped_iad, "-C", "true")
    assert (done.returncode, done.stderr) == (1, f'Error: --machine="{stopped_iad}" not found/started\n')
    done = fly("ssh", "console", "--app", "tiny", "--region", "ord", "--quiet", "-C", "hostname")
    assert done.returncode == 0
    assert done.stdout == f"No machine specified, using {first} in region ord\n{first}\n"  # on stdout
    done = fly("ssh", "console", "--app", "tiny", "--machine", second, "--quiet", "-C", "hostname")
    assert (done.returncode, done.stdout) == (0, f"{second}\n")
    assert fly("machine", "stop", second, "--app", "tiny").returncode == 0
    done = fly("ssh", "console", "--app", "tiny", "--quiet", "-C", "hostname")
    assert done.stdout == f"{first}\n"  # one candidate left: no notice


def test_the_remote_exit_status_becomes_flyctl_s_exit_1(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx", greeting="hello there")
    image = fly_standin.build("tiny", tmp_path / "ctx", config, "v1")
    machine_id = fly_standin.create_machine("tiny", "ord", image, config)
    done = fly("ssh", "console", "--app", "tiny", "-C", "sh -c 'echo out; echo err >&2; exit 3'")
    assert done.returncode == 1 and done.stdout == "out\n"
    address = by_id(fly_standin, "tiny")[machine_id]["private_ip"]
    assert done.stderr == f"Connecting to {address}...\nerr\nError: ssh shell: Process exited with status 3\n"
    words = "sh -c 'printf \"%s|%s\" \"$GREETING\" \"$FLY_REGION\"'"  # split as a shell would, run with the env
    done = fly("ssh", "console", "--app", "tiny", "--quiet", "-C", words)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello there|ord", "")
    done = fly("ssh", "console", "--app", "tiny", "--quiet", "-C", "sh -c 'kill -KILL $$'")
    assert (done.returncode, done.stderr) == (1, "Error: ssh shell: Process exited with status 137 from signal KILL\n")


def test_deploy_config_comes_from_config_then_working_directory_then_the_app(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    image = fly_standin.build("tiny", tmp_path / "ctx", config, "v1")
    machine_id = fly_standin.create_machine("tiny", "ord", image, config)
    chosen = tmp_path / "chosen" / "fly.toml"
    chosen.parent.mkdir()
    chosen.write_text(TINY_TOML.format(greeting="from --config"))
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    (decoy_dir / "fly.toml").write_text(TINY_TOML.format(greeting="from the working directory"))
    deploy = ("deploy", "--app", "tiny", "--regions", "ord", "--image", image, "--strategy", "rolling",
              "--wait-timeout", "5m")  # fmt: skip

    def deployed_config() -> tuple[str, str]:
        metadata = by_id(fly_standin, "tiny")[machine_id]["config"]["metadata"]
        return metadata["fly_standin_config"], greeting_of(fly_standin, machine_id)

    assert fly(*deploy, "--config", str(chosen), cwd=decoy_dir).returncode == 0
    assert deployed_config() == (str(chosen), "from --config")
    assert fly(*deploy, cwd=decoy_dir).returncode == 0
    assert deployed_config() == (str(decoy_dir / "fly.toml"), "from the working directory")
    assert fly("deploy", str(chosen.parent), *deploy[1:], cwd=tmp_path).returncode == 0  # [WORKING_DIRECTORY]
    assert deployed_config() == (str(chosen), "from --config")
    assert fly(*deploy, cwd=tmp_path).returncode == 0  # no fly.toml here: the app's, from its last deploy
    assert deployed_config() == ("remote", "from --config")
    done = fly(*deploy, "--config", "missing.toml", cwd=tmp_path)
    assert done.stderr == ("Error: config file not found at specified path: missing.toml "
                           "(also tried: missing.toml/fly.toml)\n")


def test_releases_are_the_last_25_newest_first_and_an_unpushed_image_fails(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    images = [fly_standin.build("tiny", tmp_path / "ctx", config, label) for label in ("v1", "v2")]
    fly_standin.create_machine("tiny", "ord", images[0], config, state="stopped")
    assert json.loads(fly("releases", "-a", "tiny", "--json").stdout) == []  # builds create no release
    for number in range(27):
        done = fly("deploy", "--app", "tiny", "-c", str(config), "--image", images[number % 2], "--regions", "ord")
        assert done.returncode == 0, done.stderr
    releases = json.loads(fly("releases", "--app", "tiny", "--json").stdout)
    assert [r["Version"] for r in releases] == list(range(27, 2, -1))
    assert all(list(r) == RELEASE_FIELDS and r["Status"] == "complete" for r in releases)
    assert [r["ImageRef"] for r in releases[:2]] == [images[0], images[1]]
    done = fly("deploy", "--app", "tiny", "--config", str(config), "--image", "registry.fly.io/tiny:never-pushed")
    assert done.returncode == 1
    assert done.stderr.endswith('Error: failed to fetch an image or build from source: '
                                'could not find image "registry.fly.io/tiny:never-pushed"\n')
    assert json.loads(fly("releases", "--app", "tiny", "--json").stdout)[0]["Version"] == 27


def test_concurrent_calls_share_the_state_safely(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    image = fly_standin.build("tiny", tmp_path / "ctx", config, "v1")
    fly_standin.create_machine("tiny", "ord", image, config, state="stopped")
    argv = ["fly", "deploy", "--app", "tiny", "--config", str(config), "--image", image]
    running = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outcomes = [(process.communicate(timeout=120)[1], process.returncode) for process in running]
    assert [stderr for stderr, code in outcomes if code != 0] == []
    releases = json.loads(fly("releases", "--app", "tiny", "--json").stdout)
    assert sorted(r["Version"] for r in releases) == list(range(1, 9))
    assert {r["Status"] for r in releases} == {"complete"}


def test_build_only_pushes_the_label_and_the_config_s_dockerfile_wins(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    (tmp_path / "ctx" / "decoy").mkdir()
    (tmp_path / "ctx" / "Dockerfile.decoy").write_text('COPY decoy/ /decoy/\nCMD ["/bin/false"]\n')
    done = fly("deploy", str(tmp_path / "ctx"), "--app", "tiny", "--config", "fly.toml",  # relative to the context
               "--dockerfile", "Dockerfile.decoy", "--build-only", "--push", "--image-label", "v1")
    assert done.returncode == 0, done.stderr
    assert json.loads(fly("releases", "--app", "tiny", "--json").stdout) == []  # deploy.go:388-390
    machine_id = fly_standin.create_machine("tiny", "ord", "registry.fly.io/tiny:v1", config)
    assert fly_standin.run_in(machine_id, ["test", "-x", "/srv/run"]).returncode == 0
    assert fly_standin.run_in(machine_id, ["test", "-e", "/decoy"]).returncode == 1
    assert fly_standin.run_in(machine_id, ["test", "-e", "/notes.txt"]).returncode == 1
    old_digest = by_id(fly_standin, "tiny")[machine_id]["image_ref"]["digest"]
    (tmp_path / "ctx" / "srv" / "added").write_text("second build\n")
    fly_standin.build("tiny", tmp_path / "ctx", config, "v1")  # the same label again: it moves to the new image
    moved = fly_standin.create_machine("tiny", "ord", "registry.fly.io/tiny:v1", config)
    assert by_id(fly_standin, "tiny")[moved]["image_ref"]["digest"] != old_digest
    assert fly_standin.run_in(moved, ["cat", "/srv/added"]).stdout == "second build\n"


def test_regions_deploy_updates_only_that_region_s_existing_machines(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    v1, v2 = (fly_standin.build("tiny", tmp_path / "ctx", config, label) for label in ("v1", "v2"))
    ord_started = fly_standin.create_machine("tiny", "ord", v1, config)
    ord_stopped = fly_standin.create_machine("tiny", "ord", v1, config, state="stopped")
    ord_suspended = fly_standin.create_machine("tiny", "ord", v1, config, state="suspended")
    iad = fly_standin.create_machine("tiny", "iad", v1, config)
    for machine_id in (ord_started, iad):
        fly_standin.run_in(machine_id, ["touch", "/srv/not-rebooted"])
    suspended_init = fly_standin.init(ord_suspended)
    done = fly("deploy", "--app", "tiny", "--config", str(config), "--regions", "ord", "--image", v2, "--strategy",
               "rolling", "--wait-timeout", "5m")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--regions filter applied, deploying to 3/4 machines\n" in done.stderr
    machines = by_id(fly_standin, "tiny")
    assert set(machines) == {ord_started, ord_stopped, ord_suspended, iad}  # none created
    states = {mid: (m["state"], m["image_ref"]["tag"]) for mid, m in machines.items()}
    assert states == {ord_started: ("started", "v2"), ord_stopped: ("stopped", "v2"), ord_suspended: ("stopped", "v2"),
                      iad: ("started", "v1")}  # fmt: skip
    assert not machine.alive(suspended_init)
    assert fly_standin.run_in(ord_started, ["test", "-e", "/srv/not-rebooted"]).returncode == 1  # a fresh boot
    assert fly_standin.run_in(iad, ["test", "-e", "/srv/not-rebooted"]).returncode == 0
    done = fly("deploy", "--app", "tiny", "--config", str(config), "--regions", "syd", "--image", v2)
    assert done.returncode == 1  # machines.go:654-661: a new machine would need a spare volume
    assert done.stderr.endswith("Error: creating a new machine in group 'app' requires an unattached 'data' volume. "
                                "Create it with `fly volume create data`\n")  # fmt: skip
    assert len(json.loads(fly("releases", "--app", "tiny", "--json").stdout)) == 1
    assert set(by_id(fly_standin, "tiny")) == set(machines)


def test_a_deploy_waits_for_the_new_machine_s_health_checks(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    image = fly_standin.build("tiny", tmp_path / "ctx", config, "v1")
    machine_id = fly_standin.create_machine("tiny", "ord", image, config)
    checked = tmp_path / "checked.toml"  # the same app, now with a check nothing in the image answers
    checked.write_text(config.read_text() + '\n[http_service]\n  internal_port = 8080\n\n'
                       '  [[http_service.checks]]\n    path = "/up"\n    timeout = "1s"\n')
    done = fly("deploy", "--app", "tiny", "--config", str(checked), "--image", image, "--wait-timeout", "2s")
    assert done.returncode == 1
    assert done.stderr.endswith(f"Error: timeout reached waiting for health checks to pass for machine {machine_id}: "
                                f"failed to get VM {machine_id}: context deadline exceeded\n")  # fmt: skip
    (release,) = json.loads(fly("releases", "--app", "tiny", "--json").stdout)
    assert (release["Status"], release["Version"]) == ("failed", 1)
    assert "timeout reached" in release["Metadata"]["post_deployment_info"]["error"]
    (listed,) = fly_standin.machines("tiny")
    assert listed["state"] == "started" and [c["status"] for c in listed["checks"]] == ["critical"]


def test_machine_commands_print_flyctl_s_messages(fly_standin, tmp_path):
    fly_standin.create_app("tiny")
    config = tiny_context(tmp_path / "ctx")
    v1, v2 = (fly_standin.build("tiny", tmp_path / "ctx", config, label) for label in ("v1", "v2"))
    machine_id = fly_standin.create_machine("tiny", "ord", v1, config)
    done = fly("machine", "wait", machine_id, "--app", "tiny", "--state", "started", "--wait-timeout", "60s")
    assert done.stdout == (f'Waiting up to 1m0s for machine {machine_id} to reach "started"...\n'
                           f'Machine {machine_id} reached state "started"\n')  # fmt: skip
    done = fly("machine", "wait", machine_id, "--app", "tiny", "--state", "stopped", "-w", "1s")
    assert (done.returncode, done.stderr) == (1, f'Error: machine {machine_id} did not reach "stopped" within 1s\n')
    done = fly("machine", "restart", machine_id, "--app", "tiny")
    assert done.stdout == f"Restarting machine {machine_id}\nMachine {machine_id} restarted successfully!\n"
    done = fly("machine", "update", machine_id, "--app", "tiny", "--image", v2, "--yes", "--skip-start")
    assert done.returncode == 0 and done.stdout.startswith(f"Updating machine {machine_id}\n")
    assert [(m["state"], m["config"]["image"]) for m in fly_standin.machines("tiny")] == [("stopped", v2)]
    done = fly("machine", "start", machine_id, "--app", "tiny")
    assert (done.returncode, done.stdout) == (0, f"{machine_id} has been started\n")
    done = fly("machine", "suspend", machine_id, "--app", "tiny", "--wait-timeout", "60s")
    assert (done.returncode, done.stdout) == (0, f"{machine_id} has been suspended\n")
    done = fly("machine", "stop", machine_id, "nosuchmachine", "--app", "tiny")  # every ID is looked up first
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "Error: machine nosuchmachine was not found in app 'tiny'\n"
    done = fly("machine", "stop", machine_id, "--app", "tiny")
    assert done.stdout == stopped_message(machine_id)


# --- machines from a real rendered deploy folder ----------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's checkout as `fly deploy` sees it: deploy/ rendered from the example inventory, sync emptied
    (Showcase's sync runs its Rails app, which the image here does not hold), the modes left integrated."""
    directory = tmp_path_factory.mktemp("showcase")
    showcase_sync = "    - {command: ruby, args: [script/nav_initialization.rb], timeout: 5m}\n"
    inventory = copy_showcase(directory, (showcase_sync, ""), ("  sync:\n", "  sync: []\n"))
    checkout = directory / "checkout"
    assert orchestrate(["render", str(inventory), "--out", str(checkout / "deploy")]) == 0
    return checkout


def health(standin: FlyStandin, machine_id: str, path: str = "/up") -> str:
    script = ("import sys, urllib.request\nurl = 'http://127.0.0.1:9999' + sys.argv[1]\n"
              "try:\n    print(urllib.request.urlopen(url, timeout=2).read().decode())\n"
              "except OSError as error:\n    print('no answer:', error)\n")  # fmt: skip
    return standin.run_in(machine_id, ["python3", "-c", script, path]).stdout.strip()


def front_pid(standin: FlyStandin, machine_id: str) -> str:
    return standin.run_in(machine_id, ["cat", "/tmp/navigator.pid"]).stdout.strip()


def smooth_machine(standin: FlyStandin, rendered: Path, region: str = "ord") -> str:
    config = rendered / "deploy" / "production" / "fly.toml"
    image = standin.build("smooth", rendered, config, "orchestrate-test")
    machine_id = standin.create_machine("smooth", region, image, config)
    wait_for(lambda: health(standin, machine_id) == "OK", 30, f"/up on machine {machine_id}", interval=0.1)
    return machine_id


def test_a_machine_from_the_rendered_image_serves_health_and_has_its_own_data(fly_standin, rendered):
    fly_standin.create_app("smooth", {"CABLE_SIGNING_SECRET": "signing-secret"})
    first = smooth_machine(fly_standin, rendered)
    second = fly_standin.create_machine("smooth", "ord", "registry.fly.io/smooth:orchestrate-test",
                                        rendered / "deploy" / "production" / "fly.toml")  # fmt: skip
    wait_for(lambda: health(fly_standin, second) == "OK", 30, "/up on the second machine", interval=0.1)
    for machine_id in (first, second):  # both listen on 127.0.0.1:9999, each its own /data
        assert fly_standin.run_in(machine_id, ["sh", "-c", "echo $FLY_MACHINE_ID > /data/who"]).returncode == 0
    assert [fly_standin.run_in(m, ["cat", "/data/who"]).stdout for m in (first, second)] == [f"{first}\n",
                                                                                           f"{second}\n"]
    assert (fly_standin.volume(first) / "who").read_text() == f"{first}\n"
    assert fly_standin.run_in(first, ["test", "-e", str(REPO / ".venv")]).returncode == 1  # only Debian and the image
    assert fly_standin.run_in(first, ["printenv", "CABLE_SIGNING_SECRET"]).stdout == "signing-secret\n"
    # The ready hook (bin/refresh) rendered the full configuration and Navigator reloaded it: cable on.
    wait_for(lambda: fly_standin.run_in(first, ["readlink", "/tmp/navigator/navigator.yml"]).stdout
             == "/etc/navigator/navigator.yml\n", 30, "the reload after the ready hook")  # fmt: skip
    post = ("import urllib.request\nrequest = urllib.request.Request('http://127.0.0.1:9999/_broadcast', "
            "data=b'{\"stream\": \"s\", \"data\": 1}', method='POST')\nprint(urllib.request.urlopen(request).status)\n")
    assert wait_for(lambda: fly_standin.run_in(first, ["python3", "-c", post]).stdout == "200\n", 10, "a broadcast")
    checks = by_id(fly_standin, "smooth")[first]["checks"]
    assert [(c["name"], c["status"]) for c in checks] == [("servicecheck-00-http-9999", "passing")]


def test_suspend_then_start_keeps_the_processes(fly_standin, rendered):
    fly_standin.create_app("smooth")
    machine_id = smooth_machine(fly_standin, rendered)
    pid = front_pid(fly_standin, machine_id)
    init = fly_standin.init(machine_id)
    done = fly("machine", "suspend", machine_id, "--app", "smooth")
    assert (done.returncode, done.stdout) == (0, f"{machine_id} is being suspended\n")
    assert by_id(fly_standin, "smooth")[machine_id]["state"] == "suspended"
    # Every process stopped; a child that ended just before (its parent stopped before reaping it) is a zombie.
    assert {machine.stat_fields(p)[0] for p in machine.processes(init)} <= {"T", "t", "Z"}
    assert fly("ssh", "console", "--app", "smooth", "-C", "true").returncode == 1  # not started: not a candidate
    done = fly("machine", "start", machine_id, "--app", "smooth")
    assert (done.returncode, done.stdout) == (0, f"{machine_id} has been started\n")
    assert machine.alive(init) and front_pid(fly_standin, machine_id) == pid
    assert health(fly_standin, machine_id) == "OK"


def test_stop_then_start_boots_a_fresh_root_on_the_same_volume(fly_standin, rendered):
    fly_standin.create_app("smooth")
    machine_id = smooth_machine(fly_standin, rendered)
    fly_standin.run_in(machine_id, ["sh", "-c", "echo kept > /data/kept; echo lost > /etc/navigator/lost"])
    init = fly_standin.init(machine_id)
    done = fly("machine", "stop", machine_id, "--app", "smooth")
    assert done.stdout == stopped_message(machine_id)
    assert not machine.alive(init) and not machine.processes(init)
    assert by_id(fly_standin, "smooth")[machine_id]["state"] == "stopped"
    assert (fly_standin.volume(machine_id) / "kept").read_text() == "kept\n"
    assert fly("machine", "start", machine_id, "--app", "smooth").returncode == 0
    wait_for(lambda: health(fly_standin, machine_id) == "OK", 30, "/up after the reboot", interval=0.1)
    assert fly_standin.run_in(machine_id, ["cat", "/data/kept"]).stdout == "kept\n"
    assert fly_standin.run_in(machine_id, ["test", "-e", "/etc/navigator/lost"]).returncode == 1
