"""`validate` cases no other test held: each check of inventory.py refuses what it exists to refuse.

Ports that clash (every managed port against app.listen, anycable-go's two
ports against each other), a region listed twice, and a demo or cable path that
other regions would not replay because it is outside app.region_paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.orchestrator.conftest import CliResult, copy_showcase, write_inventory

Orchestrate = Callable[..., CliResult]

SHOWCASE_PREFIX = "'/showcase/regions/{region}/'"


def problems(result: CliResult) -> list[str]:
    """The problem lines of a failed validate, without the file and line each ends with."""
    assert result.code == 2, result.err
    return [line.rsplit(" (", 1)[0] for line in result.err.splitlines()[:-1]]


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        ("  action_cable: {port: 9999}\n", ["modes.action_cable.port: port 9999 is already app.listen"]),
        ("  anycable: {port: 9999}\n", ["modes.anycable.port: port 9999 is already app.listen"]),
        ("  anycable: {broadcast_port: 9999}\n", ["modes.anycable.broadcast_port: port 9999 is already app.listen"]),
        ("  hub: {port: 9999}\n", ["modes.hub.port: port 9999 is already app.listen"]),
        ("  anycable: {port: 28090, broadcast_port: 28090}\n",
         ["modes.anycable.broadcast_port: port 28090 is already modes.anycable.port"]),
        # anycable-go's defaults are 28080 and 28081: setting one onto the other clashes too.
        ("  anycable: {broadcast_port: 28080}\n", ["modes.anycable.broadcast_port: port 28080 is already modes.anycable.port"]),
    ],
)
def test_port_clashes_are_refused(orchestrate: Orchestrate, tmp_path: Path, modes: str, expected: list[str]) -> None:
    inventory = write_inventory(tmp_path, replace=("rollout:\n", f"modes:\n{modes}rollout:\n"))
    assert problems(orchestrate("validate", inventory)) == expected


def test_app_listen_on_the_default_cable_port_clashes_with_every_process_that_defaults_to_it(orchestrate: Orchestrate, tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, replace=("listen: 9999", "listen: 28080"))
    assert problems(orchestrate("validate", inventory)) == [
        "modes.action_cable.port: port 28080 is already app.listen",
        "modes.anycable.port: port 28080 is already app.listen",
        "modes.hub.port: port 28080 is already app.listen",
    ]


def test_ports_apart_are_accepted(orchestrate: Orchestrate, tmp_path: Path) -> None:
    modes = "modes:\n  anycable: {port: 28090, broadcast_port: 28091}\n  hub: {port: 28092}\n"
    result = orchestrate("validate", write_inventory(tmp_path, replace=("rollout:\n", modes + "rollout:\n")))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("regions: [ams, dfw, iad, ord]", "regions: [ams, dfw, iad, ord, ams]",
         "environments.production.regions[4]: region 'ams' is listed twice"),
        ("regions: [ord], bake: 1h", "regions: [ord, ord], bake: 1h",
         "rollout.stages[0].regions[1]: region 'ord' is listed twice"),
    ],
)
def test_a_region_listed_twice_is_refused(orchestrate: Orchestrate, tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert problems(orchestrate("validate", write_inventory(tmp_path, replace=(old, new)))) == [expected]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    path: /showcase/regions/{region}/demo/", "    path: /showcase/demo/{region}/",
         f"tenants.demo.path: '/showcase/demo/{{region}}/' is not under app.region_paths {SHOWCASE_PREFIX}, "
         "so other regions would serve it locally"),
        ("  cable_path: /showcase/regions/{region}/cable", "  cable_path: /showcase/cable/{region}",
         f"websocket.cable_path: '/showcase/cable/{{region}}' is not under app.region_paths {SHOWCASE_PREFIX}, "
         "so other regions would serve it locally"),
    ],
)
def test_a_regions_path_outside_region_paths_is_refused(orchestrate: Orchestrate, tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert problems(orchestrate("validate", copy_showcase(tmp_path, (old, new)))) == [expected]


def test_paths_under_region_paths_are_accepted(orchestrate: Orchestrate, tmp_path: Path) -> None:
    result = orchestrate("validate", copy_showcase(tmp_path))
    assert result.code == 0, result.err
