"""The watcher reaches regions the target's own way: over SSH to a real sshd on loopback, and through the
stand-in `fly` to machines that really run (each sample taken on the machine, a suspended one left asleep)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.orchestrator.rollout.flystandin.fixture import fly_standin  # noqa: F401 (a fixture)
from tests.orchestrator.rollout.test_fly_rollout import Scene, rendered, scene  # noqa: F401 (fixtures)
from tests.orchestrator.rollout.test_ssh_target import SshFleet, sshd  # noqa: F401 (a fixture)
from tests.orchestrator.rollout.test_ssh_target import fleet as ssh_fleet  # noqa: F401 (a fixture)


def recorded(rows: list[tuple[object, ...]]) -> dict[tuple[str, str], dict[str, object]]:
    """The newest sample of each (region, machine)."""
    return {(str(region), str(machine)): json.loads(str(data)) for region, machine, data in rows}


def test_over_ssh_every_region_is_sampled_on_its_host(ssh_fleet: SshFleet) -> None:
    fleet = ssh_fleet
    rollout = fleet.orchestrate("rollout", "--stage", "wave", "--yes")
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    watched = fleet.orchestrate("watch", "--all", "--once")  # the wave's bake is 0s: --all watches it anyway
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "watching production/ams, production/dfw, production/ord" in watched.stdout
    samples = recorded(fleet.query("SELECT region, machine, data FROM samples ORDER BY id"))
    assert {region for region, _ in samples} == set(fleet.regions)
    for (region, _), data in samples.items():
        assert data["state"] == "started" and data["http"]["ok"] is True, data  # type: ignore[index]
        assert data["websocket"]["ok"] is True and data["memory_mb"] > 0, data  # type: ignore[index,operator]
        assert "127.0.0.1" in str(data["http"]["evidence"]), data  # type: ignore[index]  # the host's own loopback


def test_on_fly_each_machine_is_sampled_on_itself_and_a_suspended_one_is_left_asleep(scene: Scene) -> None:
    started = scene.machine("iad", app="smooth-nav")
    run = scene.rollout("--stage", "staging")
    assert run.code == 0, run.out + run.err
    asleep = scene.machine("iad", state="suspended", app="smooth-nav")
    calls_before = len(scene.standin.calls())
    watched = scene.orchestrate("watch", "--once")
    assert watched.code == 0, watched.out + watched.err
    assert "watching staging/iad (bake ends" in watched.out
    samples = recorded(scene.query("SELECT region, machine, data FROM samples ORDER BY id"))
    on_machine = samples[("iad", started)]
    assert on_machine["state"] == "started" and on_machine["http"]["ok"] is True  # type: ignore[index]
    assert on_machine["websocket"]["ok"] is True and on_machine["memory_mb"] > 0  # type: ignore[index,operator]
    assert samples[("iad", asleep)] == {"state": "suspended", "budget_mb": on_machine["budget_mb"]}
    assert scene.machines("smooth-nav")[asleep]["state"] == "suspended"
    # Nothing was started, stopped or changed: the watcher only lists machines and runs probes on them.
    watch_calls = scene.standin.calls()[calls_before:]
    assert {call[0] for call in watch_calls} <= {"machine", "ssh", "version"}
    assert not [call for call in watch_calls if call[0] == "machine" and call[1] not in ("list",)]


def test_the_hub_counters_are_read_on_the_host(tmp_path: Path) -> None:
    """metrics_argv runs the on-host program against a hub's /metrics: the counters come back as numbers."""
    import http.server
    import subprocess
    import sys
    import threading

    from orchestrator.targets.onhost import program

    body = (b"# HELP hub_slow_client_disconnects_total x\n# TYPE hub_slow_client_disconnects_total counter\n"
            b"hub_slow_client_disconnects_total 7\nhub_broker_connected 0\nlabelled{a=\"b\"} 3\nbad NaN\n")

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        done = subprocess.run([sys.executable, "-c", program(), "metrics", url, "5"], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"hub_slow_client_disconnects_total": 7, "hub_broker_connected": 0}
        missing = subprocess.run([sys.executable, "-c", program(), "metrics", url.replace("/metrics", "/nope"), "5"],
                                 capture_output=True, text=True, timeout=30)
        assert missing.returncode == 1 and missing.stderr.strip().endswith("/nope: 404")
    finally:
        server.shutdown()
        server.server_close()
