"""A small local fleet for the rollout's end-to-end tests: an inventory, a state directory, the CLI as a process;
and the `front` fixture, which runs a test on each front a region can have."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.targets.localctl import NAVIGATOR_ENV, STAND_IN, find_navigator, navigator_problem

REPO = Path(__file__).resolve().parents[3]
ORCHESTRATE = (sys.executable, "-m", "orchestrator")
SIGNING_SECRET = "planted-signing-secret-3f9a1c77e2"
BROADCAST_KEY = "planted-broadcast-key-b81d0e55aa"

FLEET_INVENTORY = """\
app:
  name: demo
  root_path: /demo
  listen: 9999
  primary_region: iad
environments:
  staging:
    fly_app: demo-staging
    regions: [iad]
  production:
    fly_app: demo
    regions: [ams, dfw, ord, sjc]
regions:
  - code: ams
  - code: dfw
  - code: iad
  - code: ord
  - code: sjc
tenants:
  source: inline
  events:
    - {year: 2025, studio: boston, event: spring, region: iad}
    - {year: 2025, studio: raleigh, region: ord}
    - {year: 2025, studio: paris, region: ams}
websocket:
  enabled: true
  mode: integrated
  cable_path: /demo/regions/{region}/cable
  signing_secret_env: CABLE_SIGNING_SECRET
rollout:
  health_check:
    interval_seconds: 0.2
    timeout_seconds: 5
    deadline_seconds: 20
    failure_limit: 1
  parallel: 3
  stages:
    - {name: staging, environment: staging, regions: [iad], bake: 0s}
    - {name: canary, environment: production, regions: [ord], bake: 1h}
    - {name: wave, environment: production, regions: [ams, dfw, sjc], bake: 0s}
"""


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Fleet:
    directory: Path
    inventory: Path
    state: Path
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *arguments: str) -> list[str]:
        return [*ORCHESTRATE, *arguments, "--inventory", str(self.inventory), "--state", str(self.state)]

    def orchestrate(self, *arguments: str, timeout: float = 180) -> Run:
        done = subprocess.run(
            self.command(*arguments), capture_output=True, text=True, env=self.env, cwd=REPO, timeout=timeout
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def start(self, *arguments: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*arguments), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=REPO
        )

    def home(self, key: str) -> Path:
        environment, region = key.split("/")
        return self.state / "fleet" / environment / region

    def query(self, sql: str, *parameters: object) -> list[tuple[object, ...]]:
        """Read the journal as any SQLite client would, without the journal module."""
        connection = sqlite3.connect(f"file:{self.state / 'journal.sqlite3'}?mode=ro", uri=True)
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    def stop_all(self) -> None:
        for home in sorted((self.state / "fleet").glob("*/*")):
            subprocess.run([sys.executable, "-m", "orchestrator.targets.localctl", "stop", "--home", str(home)],
                           capture_output=True, env=self.env, cwd=REPO, timeout=60)


@dataclass(frozen=True)
class Front:
    """The front a test's regions run: the real Navigator at `navigator`, or (None) the hub standing in for it."""

    navigator: str | None

    @property
    def argument(self) -> str:
        """localctl's --front."""
        return self.navigator or STAND_IN


def navigator_or_skip() -> str:
    """The real Navigator, found as the local target finds it ($NAVIGATOR_BIN, else navigator on PATH); without
    one the test is skipped, saying why."""
    navigator = find_navigator()
    if navigator is None:
        pytest.skip(f"no Navigator here: set {NAVIGATOR_ENV} or put navigator on PATH (docs/targets/local.md)")
    problem = navigator_problem(navigator)
    if problem is not None:
        pytest.skip(f"{NAVIGATOR_ENV}: {problem}")
    return navigator


@pytest.fixture(params=[STAND_IN, "navigator"])
def front(request: pytest.FixtureRequest) -> Front:
    """A test that takes it runs on the stand-in and on the real Navigator (skipped, saying why, without one)."""
    return Front(None if request.param == STAND_IN else navigator_or_skip())


@pytest.fixture
def navigator() -> Front:
    """For a test of what only the real Navigator does."""
    return Front(navigator_or_skip())


# Navigator answers the gates' health path itself only where navigator.yml says so (elsewhere it hands the
# path to the app, which the local fleet does not run); the stand-in answers it either way.
HEALTH_CHECK = "navigator:\n  server:\n    health_check: {path: /up, response: {status: 200, body: OK}}\n"


def make_fleet(directory: Path, *replacements: tuple[str, str], front: Front | None = None) -> Fleet:
    """The fleet; its regions run `front`, with the health check Navigator needs, or without one the stand-in
    (whatever Navigator this machine has)."""
    text = FLEET_INVENTORY
    for old, new in replacements:
        assert old in text, f"test setup: {old!r} is not in the fleet inventory"
        text = text.replace(old, new, 1)
    inventory = directory / "fleet.yml"
    inventory.write_text(text + (HEALTH_CHECK if front else ""), encoding="utf-8")
    env = {
        **os.environ,
        "CABLE_SIGNING_SECRET": SIGNING_SECRET,
        "CABLE_BROADCAST_KEY": BROADCAST_KEY,
        "PYTHONPATH": str(REPO),
        NAVIGATOR_ENV: (front.navigator if front else None) or "",
    }
    env.pop("ORCHESTRATE_INVENTORY", None)
    return Fleet(directory, inventory, directory / "state", env)
