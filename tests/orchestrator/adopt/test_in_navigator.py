"""The inventory `init` writes from Showcase's ord file, rendered, loads in the real Navigator and routes as the
original does: both files run with the local fleet's rehearsal rewrite (orchestrator/targets/local_navigator.py)
on a free port, and a handful of paths get the same status, redirect and Fly replay from each. Skipped, saying
why, without a Navigator ($NAVIGATOR_BIN, or navigator on PATH)."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hub.yaml_loader import load_yaml_file
from orchestrator.targets import local_navigator
from tests.orchestrator.adopt.files import SHOWCASE_ORD
from tests.orchestrator.conftest import SHOWCASES_FILE
from tests.orchestrator.rollout.fleet import navigator_or_skip
from tests.ports import start_listening

pytestmark = pytest.mark.timeout(120)

REPLAY_TYPE = "application/vnd.fly.replay+json"
# What a path gets: status, Location, and the Fly replay (the fly-replay header, or the replay body Navigator
# v1.2.0 answers with).
Answer = tuple[int, str | None, Any]

# A path each of: the health check, a redirect, the cable path, a public path of a tenant here, a login,
# another region's paths, another region's studio, a studio's public page in another region, the print app.
PATHS = (
    "/up",
    "/",
    "/showcase/demo",
    "/showcase/regions/ord/cable",
    "/showcase/regions/ord/demo/",
    "/showcase/2025/bloomington/barbara-leininger/",
    "/showcase/2025/bloomington/barbara-leininger/public/heats",
    "/showcase/regions/iad/demo/",
    "/showcase/regions/syd/cable",
    "/showcase/2025/raleigh/disney/public/heats",
    "/showcase/2025/boston/april/public/heats",
    "/showcase/2025/raleigh/disney/public/heats.pdf",
)


def answer(port: int, path: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        replay = json.loads(body) if response.getheader("Content-Type") == REPLAY_TYPE else None
        return response.status, response.getheader("Location"), response.getheader("fly-replay") or replay
    finally:
        connection.close()


def healthy(port: int) -> bool:
    try:
        return answer(port, "/up")[0] == 200
    except OSError:
        return False


def start_navigator(navigator: str, source: Path, run_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Navigator on `source` as the local fleet runs it (its rehearsal rewrite), on a free port."""
    config = load_yaml_file(source).data
    run_dir.mkdir()
    local_navigator.make_host_paths(str(run_dir), [])

    def argv(port: int) -> list[str]:
        # Both files run Navigator's own cable: no cable proxy for cable_port to redirect, no managed processes.
        rehearsal = local_navigator.rehearsal_config(config, run_dir=str(run_dir), front_port=port, cable_port=port,
                                                     managed={})
        path = run_dir / "navigator.yml"
        path.write_text(json.dumps(rehearsal, indent=2), encoding="utf-8")
        return [navigator, str(path)]

    return start_listening(argv, healthy, f"Navigator on {source.name}", log=run_dir / "navigator.log", timeout=30,
                           cwd=run_dir, stdin=subprocess.DEVNULL)


def answers(navigator: str, source: Path, run_dir: Path) -> dict[str, Answer]:
    process, port = start_navigator(navigator, source, run_dir)
    try:
        return {path: answer(port, path) for path in PATHS}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_rendered_ord_configuration_routes_in_navigator_as_the_original(orchestrate, tmp_path):
    navigator = navigator_or_skip()
    inventory = tmp_path / "showcase.yml"
    adopted = orchestrate("init", "--navigator", SHOWCASE_ORD, "--tenants-from", SHOWCASES_FILE, "--out", inventory)
    assert adopted.code == 0, adopted.out + adopted.err
    rendered = orchestrate("render", inventory, "--out", tmp_path / "deploy")
    assert rendered.code == 0, rendered.err
    ord_file = tmp_path / "deploy" / "production" / "navigator" / "regions" / "ord" / "navigator.yml"
    assert load_yaml_file(ord_file).data["cable"]["enabled"] is True  # today's mode, integrated, as the original

    original = answers(navigator, SHOWCASE_ORD, tmp_path / "original")
    ours = answers(navigator, ord_file, tmp_path / "rendered")
    assert ours == original
    # And what they both answer is what each path is for (the rehearsal runs no tenant: a local one is a 404).
    assert ours["/up"][0] == 200
    assert ours["/"][:2] == (302, "/showcase/studios/")
    assert ours["/showcase/2025/bloomington/barbara-leininger/"][0] == 401
    assert ours["/showcase/2025/bloomington/barbara-leininger/public/heats"][0] == 404
    assert ours["/showcase/regions/ord/cable"][0] == 400  # Navigator's own cable, asked without an upgrade
    assert ours["/showcase/regions/iad/demo/"][0] == 307
    assert ours["/showcase/regions/iad/demo/"][2]["region"] == "iad,any"
    assert ours["/showcase/2025/boston/april/public/heats"][2]["region"] == "ewr,any"
    assert ours["/showcase/2025/raleigh/disney/public/heats.pdf"][2] == {"app": "smooth-pdf"}
