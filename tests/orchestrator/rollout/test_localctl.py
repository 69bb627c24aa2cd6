"""localctl, the local fleet's process supervisor: real hubs, redis-server and Puma on 127.0.0.1, in front
the real Navigator or the hub standing in for it.

Each test copies a rendered region into its own home; a finaliser kills, by pid,
whatever the home's pid files still name (checked against the recorded start time),
and the processes of their sessions (a Navigator's managed processes).
A test that takes `front` runs on both fronts (tests/orchestrator/rollout/fleet.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from hub.signing import sign
from hub.yaml_loader import load_yaml_file
from orchestrator.cli import main as orchestrate
from orchestrator.rollout.model import RegionKey, RegionState
from orchestrator.targets import local_navigator
from orchestrator.targets.local import LocalTarget, needs_restart
from orchestrator.targets.localctl import STAND_IN, Record, find_navigator, literal_path, session_members
from tests.orchestrator.rollout.fleet import Front, front, navigator  # noqa: F401 (fixtures)
from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[3]
LOCALCTL = (sys.executable, "-m", "orchestrator.targets.localctl")
SECRET = "localctl-test-secret-5b1e"
ENV = {**os.environ, "CABLE_SIGNING_SECRET": SECRET}
CABLE_PATH = "/showcase/regions/ord/cable"
ACTION_CABLE = Subprotocol("actioncable-v1-json")
TEST_ANYCABLE_IMAGE = "anycable/anycable-go:1.5.1@sha256:" + "5e" * 32  # test data, as in tests/orchestrator/conftest.py
# Puma with Action Cable boots in about a second here; the deadline only bounds a hang.
START_TIMEOUT = "60"


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Region ord's config files rendered by `orchestrate render`, one directory per mode."""
    root = tmp_path_factory.mktemp("rendered")
    inventory = REPO / "inventories" / "showcase.yml"
    anycable_inventory = root / "anycable" / "showcase.yml"
    anycable_inventory.parent.mkdir()
    shutil.copy(REPO / "inventories" / "showcases.yml", anycable_inventory.parent)
    text = inventory.read_text(encoding="utf-8")
    assert "  anycable:\n    port: 28080" in text
    anycable_inventory.write_text(
        text.replace("  anycable:\n    port: 28080", f"  anycable:\n    image: {TEST_ANYCABLE_IMAGE}\n    port: 28080", 1),
        encoding="utf-8",
    )
    directories = {}
    for mode, source in (("integrated", inventory), ("action_cable", inventory), ("anycable", anycable_inventory),
                         ("hub", inventory)):
        out = root / mode
        assert orchestrate(["render", str(source), "--out", str(out), "--region", "ord", "--mode", mode]) == 0
        directories[mode] = out / "production" / "navigator" / "regions" / "ord"
    return directories


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def kill_recorded(home: Path) -> None:
    """SIGKILL what the home's pid files name, if each pid still is the process that was recorded, and the
    processes of its session."""
    killed = []
    for pid_file in (home / "run").glob("*.pid"):
        try:
            pid, recorded = (int(word) for word in pid_file.read_text().split()[:2])
        except ValueError:
            continue
        for process in (Record("", pid, recorded), *session_members(Record("", pid, recorded))):
            if start_time(process.pid) == process.start_time:
                os.kill(process.pid, signal.SIGKILL)
                killed.append(process.pid)
    wait_for(lambda: not any(alive(pid) for pid in killed), timeout=10, what="leftover processes to die")


@pytest.fixture
def region_home(tmp_path: Path, rendered: dict[str, Path]) -> Iterator[Callable[[str], Path]]:
    homes: list[Path] = []

    def make(mode: str) -> Path:
        home = tmp_path / f"{mode}-{len(homes)}"
        shutil.copytree(rendered[mode], home / "config")
        (home / "config" / "boot.yml").unlink()  # not a file of the deployed region
        homes.append(home)
        return home

    yield make
    for home in homes:
        kill_recorded(home)


def localctl(home: Path, command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOCALCTL, command, "--home", str(home), *args],
        capture_output=True, text=True, env=ENV if env is None else env, timeout=180,
    )  # fmt: skip


def started(home: Path, front: Front, *args: str) -> dict[str, Any]:
    """Start the region on `front`, and return its status."""
    result = localctl(home, "start", "--timeout", START_TIMEOUT, "--front", front.argument, *args)
    assert result.returncode == 0, result.stderr
    return status(home)


def front_name(front: Front) -> str:
    """What rss calls the front process."""
    return "navigator" if front.navigator else "front"


def cable_port(front: Front, ports: dict[str, int]) -> int:
    """Where the gates open the cable path outside the integrated mode: Navigator proxies it to the cable
    process; the stand-in front proxies nothing."""
    return ports["front" if front.navigator else "cable"]


def status(home: Path) -> dict[str, Any]:
    result = localctl(home, "status")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def pids(state: dict[str, Any]) -> dict[str, int]:
    return {name: process["pid"] for name, process in state["processes"].items()}


def http_status(url: str, data: bytes | None = None, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def answers(url: str) -> bool:
    try:
        return http_status(url) == 200
    except urllib.error.URLError:
        return False


def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping (the hub pings every few seconds)."""
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message.get("type") != "ping":
            return message


def upgrade_refused(url: str) -> bool:
    try:
        with connect(url, open_timeout=10):
            return False
    except InvalidStatus:
        return True


def turbo_identifier(stream: str, secret: bytes) -> str:
    return json.dumps({"channel": "Turbo::StreamsChannel", "signed_stream_name": sign(stream, secret)})


def subscribe(ws: ClientConnection, identifier: str) -> str:
    """Subscribe over Action Cable and return the answer's type (confirm_subscription or reject_subscription)."""
    ws.send(json.dumps({"command": "subscribe", "identifier": identifier}))
    answer = receive(ws)
    assert answer["identifier"] == identifier
    return answer["type"]


def assert_stopped(home: Path, before: dict[str, int]) -> None:
    result = localctl(home, "stop")
    assert result.returncode == 0, result.stderr
    assert not [name for name, pid in before.items() if alive(pid)]
    assert list((home / "run").glob("*.pid")) == []


# --- the integrated mode: the front hub is the cable ---------------------------------------------


def test_integrated_region_serves_navigator_protocol_reloads_and_stops(region_home, front: Front) -> None:
    home = region_home("integrated")
    state = started(home, front)
    assert state["front"]["kind"] == ("navigator" if front.navigator else STAND_IN)
    assert state["front"]["navigator"] == front.navigator
    process = state["processes"]["front"]
    assert set(state["processes"]) == {"front"} and process["running"]
    assert state["front_url"] == f"http://127.0.0.1:{process['port']}"
    assert state["cable_url"] == f"ws://127.0.0.1:{process['port']}{CABLE_PATH}"
    assert state["broadcast_url"] == f"http://127.0.0.1:{process['port']}/_broadcast"
    assert http_status(state["front_url"] + "/up") == 200

    # Navigator's own protocol, unsigned: the integrated front runs with --public-streams.
    with connect(state["cable_url"], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "subscribe", "stream": "probe-integrated"}))
        assert receive(ws) == {"type": "subscribed", "stream": "probe-integrated"}
        published = localctl(home, "publish", "--stream", "probe-integrated", "--data", '{"n": 1, "html": "<p>"}')
        assert published.returncode == 0, published.stderr
        assert receive(ws) == {"type": "message", "stream": "probe-integrated", "data": {"n": 1, "html": "<p>"}}

    rss = json.loads(localctl(home, "rss").stdout)
    assert set(rss) == {front_name(front)}
    assert 1 << 20 < rss[front_name(front)] < 1 << 30  # megabytes, not bytes nor gigabytes

    navigator = home / "config" / "navigator.yml"
    text = navigator.read_text()
    assert "\ncable:\n  enabled: true\n" in text
    navigator.write_text(text.replace("\ncable:\n  enabled: true\n", "\ncable:\n  enabled: false\n", 1))
    reloaded = localctl(home, "reload")  # without --front: the front it runs
    assert reloaded.returncode == 0, reloaded.stderr
    wait_for(lambda: upgrade_refused(state["cable_url"]), timeout=10, what="the cable path to refuse the upgrade")
    assert pids(status(home)) == pids(state)  # a reload, not a restart

    assert_stopped(home, pids(state))
    after = status(home)
    assert after["processes"]["front"] == {"pid": None, "running": False, "port": process["port"]}
    not_running = localctl(home, "reload")
    assert not_running.returncode == 1 and "front is not running" in not_running.stderr
    assert localctl(home, "rss").returncode == 1


def test_restart_reuses_the_ports(region_home, front: Front) -> None:
    home = region_home("integrated")
    first = started(home, front)
    ports = json.loads((home / "run" / "ports.json").read_text())
    assert set(ports) == {"front", "cable", "redis", "broker"}
    assert first["processes"]["front"]["port"] == ports["front"]

    restarted = localctl(home, "restart", "--timeout", START_TIMEOUT, "--front", front.argument)
    assert restarted.returncode == 0, restarted.stderr
    second = status(home)
    assert json.loads((home / "run" / "ports.json").read_text()) == ports
    assert second["front_url"] == first["front_url"]
    assert second["processes"]["front"]["pid"] != first["processes"]["front"]["pid"]
    assert not alive(first["processes"]["front"]["pid"])
    assert http_status(second["front_url"] + "/up") == 200
    assert_stopped(home, pids(second))


# --- the action_cable mode: redis-server + Puma running Action Cable ------------------------------


def test_action_cable_region_runs_redis_and_puma_with_signed_turbo_streams(region_home, front: Front) -> None:
    home = region_home("action_cable")
    state = started(home, front)
    ports = json.loads((home / "run" / "ports.json").read_text())
    processes = state["processes"]
    assert set(processes) == {"front", "redis", "action-cable"}
    assert all(process["running"] for process in processes.values())
    assert (processes["front"]["port"], processes["redis"]["port"], processes["action-cable"]["port"]) == (
        ports["front"], ports["redis"], ports["cable"],
    )  # fmt: skip
    assert state["cable_url"] == f"ws://127.0.0.1:{cable_port(front, ports)}{CABLE_PATH}"
    assert state["broadcast_url"] == f"http://127.0.0.1:{ports['cable']}/_broadcast"  # as Rails posts, via Redis
    assert http_status(state["front_url"] + "/up") == 200
    assert http_status(f"http://127.0.0.1:{ports['cable']}/up") == 200

    html = '<turbo-stream action="replace" target="probe"><template>x</template></turbo-stream>'
    signed = turbo_identifier("probe-x", SECRET.encode())
    with connect(state["cable_url"], subprotocols=[ACTION_CABLE], open_timeout=10) as ws:
        assert receive(ws) == {"type": "welcome"}
        assert subscribe(ws, turbo_identifier("probe-x", b"not the secret")) == "reject_subscription"
        assert subscribe(ws, json.dumps({"channel": "Turbo::StreamsChannel"})) == "reject_subscription"
        assert subscribe(ws, signed) == "confirm_subscription"
        published = localctl(home, "publish", "--stream", "probe-x", "--data", json.dumps(html))
        assert published.returncode == 0, published.stderr
        assert published.stdout.strip() == "200"
        assert receive(ws) == {"identifier": signed, "message": html}  # through redis, data as is

    broadcast = state["broadcast_url"]
    assert http_status(broadcast) == 405
    assert http_status(broadcast, b"{not json", "POST") == 400
    assert http_status(broadcast, b'{"data": 1}', "POST") == 400
    assert http_status(broadcast, b'[{"stream": "s"}]', "POST") == 400

    rss = json.loads(localctl(home, "rss").stdout)
    assert set(rss) == {front_name(front), "redis", "action-cable"} and all(size > 0 for size in rss.values())
    assert_stopped(home, pids(state))


def test_anycable_region_runs_a_second_hub_with_signed_streams_only(region_home, front: Front) -> None:
    home = region_home("anycable")
    state = started(home, front)
    ports = json.loads((home / "run" / "ports.json").read_text())
    assert set(state["processes"]) == {"front", "anycable"}
    assert state["cable_url"] == f"ws://127.0.0.1:{cable_port(front, ports)}{CABLE_PATH}"
    assert (home / "run" / "anycable.yml").exists() and (home / "run" / "anycable-hub.yml").exists()

    signed = turbo_identifier("probe-any", SECRET.encode())
    with connect(state["cable_url"], subprotocols=[ACTION_CABLE], open_timeout=10) as ws:
        assert receive(ws)["type"] == "welcome"
        assert subscribe(ws, turbo_identifier("probe-any", b"forged")) == "reject_subscription"
        unsigned = json.dumps({"channel": "$pubsub", "stream_name": "probe-any"})
        assert subscribe(ws, unsigned) == "reject_subscription"
        assert subscribe(ws, signed) == "confirm_subscription"
        assert localctl(home, "publish", "--stream", "probe-any", "--data", '"<b>hi</b>"').returncode == 0
        assert receive(ws) == {"identifier": signed, "message": "<b>hi</b>"}
    assert_stopped(home, pids(state))


# --- failures ------------------------------------------------------------------------------------


def test_a_process_that_exits_at_boot_fails_the_start_with_its_log_and_stops_the_rest(region_home, front: Front) -> None:
    home = region_home("action_cable")
    env = {key: value for key, value in ENV.items() if key != "LOCALCTL_TEST_UNSET"}
    result = localctl(home, "start", "--timeout", START_TIMEOUT, "--signing-secret-env", "LOCALCTL_TEST_UNSET",
                      "--front", front.argument, env=env)
    assert result.returncode == 1
    assert "action-cable did not start: exited with status 1" in result.stderr
    # Navigator's managed processes write into Navigator's log: their own lines are taken from it.
    log = "action-cable's stderr in" if front.navigator else "action-cable.log"
    assert "last " in result.stderr and log in result.stderr
    assert 'KeyError: key not found: "LOCALCTL_TEST_UNSET"' in result.stderr  # Puma's own words, from the log tail
    assert SECRET not in result.stdout + result.stderr  # environment values are never shown
    ready = [int(line.split("pid ")[1].split(",")[0]) for line in result.stdout.splitlines() if ": ready, pid " in line]
    assert len(ready) == 2  # front and redis were up before Puma failed
    assert not [pid for pid in ready if alive(pid)]
    assert list((home / "run").glob("*.pid")) == []


def test_a_busy_port_fails_the_start_and_leaves_nothing_running(region_home, front: Front) -> None:
    home = region_home("integrated")
    first = started(home, front)
    assert_stopped(home, pids(first))
    port = first["processes"]["front"]["port"]
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = localctl(home, "start", "--timeout", START_TIMEOUT, "--front", front.argument)
    assert result.returncode == 1
    assert f"front did not start: port 127.0.0.1:{port} is already in use" in result.stderr
    assert list((home / "run").glob("*.pid")) == []
    assert not status(home)["processes"]["front"]["running"]


def test_a_hub_that_rejects_its_config_fails_the_start_with_its_log(region_home) -> None:
    """The stand-in front only: in the integrated mode nothing else reads the secret, Navigator least of all."""
    home = region_home("integrated")
    env = {key: value for key, value in ENV.items() if key != "CABLE_SIGNING_SECRET"}
    result = localctl(home, "start", "--timeout", START_TIMEOUT, "--front", STAND_IN, env=env)
    assert result.returncode == 1
    assert "front did not start: exited with status 2" in result.stderr
    assert "environment variable CABLE_SIGNING_SECRET is not set" in result.stderr
    assert list((home / "run").glob("*.pid")) == []


def test_an_unknown_managed_process_is_refused_before_anything_changes(region_home, front: Front) -> None:
    home = region_home("integrated")
    navigator = home / "config" / "navigator.yml"
    original = navigator.read_text()
    assert "managed_processes" not in original
    navigator.write_text(original + "\nmanaged_processes:\n- name: memcached\n  command: memcached\n")
    refused = localctl(home, "start", "--front", front.argument)
    assert refused.returncode == 2
    assert "memcached" in refused.stderr and str(navigator) in refused.stderr
    assert list((home / "run").glob("*.pid")) == []

    # A region already running keeps running: the bad file is refused before the stop.
    navigator.write_text(original)
    state = started(home, front)
    navigator.write_text(original + "\nmanaged_processes:\n- name: memcached\n  command: memcached\n")
    assert localctl(home, "restart").returncode == 2
    assert pids(status(home))["front"] == state["processes"]["front"]["pid"]
    assert alive(state["processes"]["front"]["pid"])
    assert_stopped(home, pids(state))


def test_stop_removes_stale_pid_files_and_never_signals_a_reused_pid(region_home) -> None:
    home = region_home("integrated")
    (home / "run").mkdir()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    (home / "run" / "front.pid").write_text(f"{finished.pid}\n12345\n")
    # A live process that is not the recorded one: same pid, another start time (a reused pid).
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        recorded = start_time(bystander.pid)
        assert recorded is not None
        (home / "run" / "redis.pid").write_text(f"{bystander.pid}\n{recorded + 1}\n")
        result = localctl(home, "stop")
        assert result.returncode == 0, result.stderr
        assert "stale pid file removed" in result.stdout
        assert list((home / "run").glob("*.pid")) == []
        assert bystander.poll() is None
    finally:
        bystander.stdin.close()  # type: ignore[union-attr]
        bystander.wait(timeout=10)


def test_publish_checks_its_input_and_reports_an_unreachable_region(region_home) -> None:
    home = region_home("integrated")
    bad = localctl(home, "publish", "--stream", "s", "--data", "{not json")
    assert bad.returncode == 2 and "--data is not JSON" in bad.stderr
    (home / "run").mkdir()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    (home / "run" / "ports.json").write_text(json.dumps({"front": free, "cable": free, "redis": free}))
    unreachable = localctl(home, "publish", "--stream", "s", "--data", "1")
    assert unreachable.returncode == 1 and f"http://127.0.0.1:{free}/_broadcast" in unreachable.stderr


# --- what only the real Navigator does -------------------------------------------------------------


def assert_turbo_round_trip(home: Path, url: str, stream: str) -> None:
    signed = turbo_identifier(stream, SECRET.encode())
    with connect(url, subprotocols=[ACTION_CABLE], open_timeout=10) as ws:
        assert receive(ws)["type"] == "welcome"
        assert subscribe(ws, signed) == "confirm_subscription"
        published = localctl(home, "publish", "--stream", stream, "--data", '"<b>hi</b>"')
        assert published.returncode == 0, published.stderr
        assert receive(ws) == {"identifier": signed, "message": "<b>hi</b>"}


def test_navigator_starts_the_cable_hub_and_restarts_it_after_a_kill(region_home, navigator: Front) -> None:
    home = region_home("hub")
    state = started(home, navigator)
    hub = state["processes"]["cable-hub"]
    assert hub["running"] and not (home / "run" / "cable-hub.pid").exists()  # Navigator's, not localctl's
    assert_turbo_round_trip(home, state["cable_url"], "probe-before")  # through Navigator's proxy
    os.kill(hub["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        now = status(home)["processes"]["cable-hub"]
        return now if now["running"] and now["pid"] != hub["pid"] else None

    # Navigator restarts a managed process that exits with an error, 5 s later (internal/process/manager.go).
    back = wait_for(restarted, timeout=30, what="Navigator to restart the cable hub")
    assert back["port"] == hub["port"]
    wait_for(lambda: answers(f"http://127.0.0.1:{hub['port']}/up"), timeout=10, what="the hub to answer")
    assert_turbo_round_trip(home, state["cable_url"], "probe-after")
    assert_stopped(home, {**pids(state), "cable-hub": back["pid"]})


def test_stop_ends_what_a_killed_navigator_left_running(region_home, navigator: Front) -> None:
    home = region_home("action_cable")
    state = started(home, navigator)
    os.kill(state["processes"]["front"]["pid"], signal.SIGKILL)  # its managed processes are orphans now
    wait_for(lambda: not alive(state["processes"]["front"]["pid"]), timeout=10, what="Navigator to die")
    result = localctl(home, "stop")
    assert result.returncode == 0, result.stderr
    assert not [name for name, pid in pids(state).items() if alive(pid)]
    assert list((home / "run").glob("*.pid")) == []


def test_a_reload_onto_another_front_is_a_restart(region_home, navigator: Front) -> None:
    home = region_home("integrated")
    before = started(home, Front(None))
    result = localctl(home, "reload", "--front", navigator.argument, "--timeout", START_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "restarting" in result.stdout
    after = status(home)
    assert after["front"]["kind"] == "navigator"
    assert not alive(before["processes"]["front"]["pid"])
    assert http_status(after["front_url"] + "/up") == 200
    assert_stopped(home, pids(after))


# --- pure parts ------------------------------------------------------------------------------------


MISSING = object()


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every leaf of a parsed navigator.yml; a list of mappings by each item's name, else index."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{item.get('name', index)}]")
    else:
        yield path, value


def test_the_rehearsal_rewrites_the_keys_it_lists_and_no_other(rendered: dict[str, Path]) -> None:
    listed = [key for keys in local_navigator.REWRITES for key in keys.split(", ")]
    patterns = {key: re.compile(re.escape(key).replace(r"\[\]", r"\[[^]]*\]") + r"(?:[.\[].*)?") for key in listed}
    originals = [load_yaml_file(rendered[mode] / "navigator.yml").data for mode in ("integrated", "action_cable", "anycable", "hub")]
    originals.append({key: value for key, value in originals[0].items() if key != "logging"})  # a file without json logs
    touched = set()
    for original in originals:
        kept = copy.deepcopy(original)
        managed = {entry["name"]: ([f"/stand-in/{entry['name']}", "--port", "1"], {"STAND_IN": "1"})
                   for entry in original.get("managed_processes") or ()}
        config = local_navigator.rehearsal_config(original, run_dir="/home/run", front_port=1, cable_port=2, managed=managed)
        assert original == kept
        before, after = dict(flatten(original)), dict(flatten(config))
        changed = {path for path in before.keys() | after.keys() if before.get(path, MISSING) != after.get(path, MISSING)}
        assert [path for path in changed if not any(pattern.fullmatch(path) for pattern in patterns.values())] == []
        touched |= {key for key, pattern in patterns.items() if any(pattern.fullmatch(path) for path in changed)}
        assert config["server"]["listen"] == 1
        assert all(proxy["target"] == "http://127.0.0.1:2$1" for proxy in config["routes"].get("reverse_proxies", ())
                   if proxy.get("name") == "cable")
    assert touched == set(listed)  # none is listed in vain


def region_state(directory: Path, mode: str, file: str = "", old: str = "", new: str = "") -> RegionState:
    """A rendered region's state, with `old` replaced by `new` in its `file`."""
    files = {name: (directory / name).read_text() for name in ("navigator.yml", "hub.yml", "render.json")}
    if file:
        assert old in files[file]
        files[file] = files[file].replace(old, new, 1)
    return RegionState(mode, True, files)  # type: ignore[arg-type]


def test_a_changed_managed_process_or_hub_yml_needs_a_restart(rendered: dict[str, Path]) -> None:
    """Navigator's reload keeps a managed process whose entry changed running as it was, and the hub reads its
    hub.yml only when it starts; in the integrated mode hub.yml is only the stand-in front's options."""
    hub = region_state(rendered["hub"], "hub")
    assert not needs_restart(hub, hub)
    env = ("PYTHONDONTWRITEBYTECODE: '1'", "PYTHONDONTWRITEBYTECODE: '0'")
    assert needs_restart(hub, region_state(rendered["hub"], "hub", "navigator.yml", *env))
    limit = ("max_connections: 10000", "max_connections: 9000")
    assert needs_restart(hub, region_state(rendered["hub"], "hub", "hub.yml", *limit))
    integrated = region_state(rendered["integrated"], "integrated")
    assert not needs_restart(integrated, region_state(rendered["integrated"], "integrated", "hub.yml", *limit))


def test_the_local_target_page_lists_every_rewrite() -> None:
    page = (REPO / "docs" / "targets" / "local.md").read_text(encoding="utf-8")
    assert [key for keys in local_navigator.REWRITES for key in keys.split(", ") if f"`{key}`" not in page] == []


def test_navigator_is_found_in_the_inventory_then_the_environment_then_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = tmp_path / "bin" / "navigator"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.delenv("NAVIGATOR_BIN", raising=False)
    assert find_navigator() == str(on_path)
    monkeypatch.setenv("NAVIGATOR_BIN", "/opt/navigator")
    assert find_navigator() == "/opt/navigator"
    assert find_navigator("/srv/navigator") == "/srv/navigator"
    monkeypatch.setenv("NAVIGATOR_BIN", "")
    assert find_navigator() is None  # set and empty: the stand-in, whatever PATH holds


def test_the_local_target_names_the_front_in_its_commands_and_refuses_a_missing_navigator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAVIGATOR_BIN", "")
    key = RegionKey("production", "ord")
    stand_in = LocalTarget(tmp_path, ("CABLE_SIGNING_SECRET",))
    assert stand_in.control_command(key, "restart").argv[-2:] == ("--front", STAND_IN)
    assert "--front" not in stand_in.control_command(key, "stop").argv
    assert stand_in.control_command(key, "restart").label == "restart production/ord"
    missing = str(tmp_path / "no-navigator")
    target = LocalTarget(tmp_path, ("CABLE_SIGNING_SECRET",), navigator=missing)
    assert target.control_command(key, "reload").argv[-2:] == ("--front", missing)
    assert [problem for problem in target.readiness(()) if f"{missing} is not an executable file" in problem]




@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("^(/showcase/regions/ord/cable)$", "/showcase/regions/ord/cable"),
        ("^/a/b\\.c$", "/a/b.c"),
        ("^(/a\\-b\\/c)$", "/a-b/c"),
        ("^(/showcase/regions/.+)$", None),
        ("^/a\\d$", None),
        ("^(/a|/b)$", None),
        ("/no/anchors", None),
        ("^(cable)$", None),
        ("^(/a\\)$", None),
        ("^/a\\$", None),
    ],
)
def test_literal_path_reads_only_regexes_that_match_one_path(pattern: str, path: str | None) -> None:
    assert literal_path(pattern) == path


def test_the_module_imports_no_heavy_libraries() -> None:
    code = "import sys, orchestrator.targets.localctl; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.replace("'", '"'))
    assert not {"httpx", "jinja2", "fabric", "jsonschema", "asyncio"} & set(loaded)


def test_a_region_is_never_given_a_port_another_region_has_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports are handed out before their processes bind them: the kernel may offer one a region beside got."""
    from orchestrator.targets import localctl

    ams, dfw = tmp_path / "fleet" / "production" / "ams", tmp_path / "fleet" / "production" / "dfw"
    (ams / "run").mkdir(parents=True)
    (dfw / "run").mkdir(parents=True)
    (ams / "run" / "ports.json").write_text(json.dumps({"front": 41001, "cable": 41002, "redis": 41003, "broker": 41004}))
    offered = [41001, 41003, 42001, 41002, 42002, 42003, 40999, 41004, 42004]
    monkeypatch.setattr(localctl, "candidate_ports", lambda: iter(offered))
    monkeypatch.setattr(localctl, "port_free", lambda port: port != 40999)  # in use by another process
    assert localctl.ensure_ports(str(dfw)) == {"front": 42001, "cable": 42002, "redis": 42003, "broker": 42004}


def test_fleet_ports_are_tried_below_the_ephemeral_range_first(tmp_path: Path, monkeypatch) -> None:
    """A port from the ephemeral range can become another connection's local port while its region is stopped."""
    from orchestrator.targets import localctl

    (tmp_path / "range").write_text("30000\t60999\n")
    monkeypatch.setattr(localctl, "EPHEMERAL_RANGE", str(tmp_path / "range"))
    candidates = localctl.candidate_ports()
    below = [next(candidates) for _ in range(30000 - localctl.FIRST_FLEET_PORT)]
    assert sorted(below) == list(range(localctl.FIRST_FLEET_PORT, 30000)) and below != sorted(below)
    assert next(candidates) >= 1024  # then what the kernel hands out
    (tmp_path / "range").write_text("1024 60999\n")
    assert next(localctl.candidate_ports()) >= 1024
