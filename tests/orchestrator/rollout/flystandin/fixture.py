"""The stand-in `fly` for tests: `FlyStandin` sets up its state and machines, the `fly_standin` fixture installs it.

Tests drive the stand-in through the `fly` on PATH (what the code under test
calls); the methods here set the scene (apps, secrets, images, machines) and
look inside machines for assertions, without going through the logged calls
(`build` runs the real `fly deploy --build-only` with the log sent nowhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import fly, machine

FLY = Path(fly.__file__).resolve()


def namespaces_unavailable() -> str | None:
    """Why the stand-in's machines cannot run here (a reason to skip), or None."""
    return machine.unavailable()


class FlyStandin:
    def __init__(self, root: Path):
        self.root = root
        self.state_root = root / "fly-state"
        self.bin = root / "fly-bin"
        self.log = root / "fly-calls.jsonl"
        self.state_root.mkdir(parents=True, exist_ok=True)
        with fly.transaction(self.state_root):
            pass  # state.json with flyctl's defaults: logged in, version 0.4.87, no apps

    def env(self, log: Path | str | None = None) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "FLY_STANDIN_ROOT": str(self.state_root),
                "FLY_STANDIN_LOG": str(log or self.log)}  # fmt: skip

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A `fly` wrapper on PATH, and the stand-in's root and log in the environment."""
        self.bin.mkdir(exist_ok=True)
        wrapper = self.bin / "fly"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FLY))} "$@"\n')
        wrapper.chmod(0o755)
        for name, value in self.env().items():
            if name in ("PATH", "FLY_STANDIN_ROOT", "FLY_STANDIN_LOG"):
                monkeypatch.setenv(name, value)

    def create_app(self, name: str, secrets: dict[str, str] | None = None) -> None:
        """An app with these secrets (their digests are Fly's server's to compute; here a truncated SHA-256)."""
        created = fly.now()
        with fly.transaction(self.state_root) as state:
            state["apps"][name] = {
                "secrets": {key: {"value": value, "digest": hashlib.sha256(value.encode()).hexdigest()[:16],
                                  "created_at": created, "updated_at": created}
                            for key, value in (secrets or {}).items()},
                "images": {}, "releases": [], "machines": {},
            }  # fmt: skip

    def set_logged_in(self, value: bool) -> None:
        with fly.transaction(self.state_root) as state:
            state["logged_in"] = value

    def set_version(self, version: str) -> None:
        with fly.transaction(self.state_root) as state:
            state["version"] = version

    def build(self, app: str, context: Path, config: Path, label: str) -> str:
        """`fly deploy CONTEXT --app APP --config CONFIG --build-only --push --image-label LABEL`; the image's ref."""
        argv = [sys.executable, str(FLY), "deploy", str(context), "--app", app, "--config", str(config),
                "--build-only", "--push", "--image-label", label]  # fmt: skip
        done = subprocess.run(argv, env=self.env(log=os.devnull), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"build failed ({done.returncode}): {done.stderr}")
        return f"{fly.REGISTRY}/{app}:{label}"

    def create_machine(self, app: str, region: str, image: str, config: Path, state: str = "started") -> str:
        """A machine of `app` in `region` on a pushed `image`, configured from the fly.toml `config`; booted if
        "started", booted then suspended if "suspended", left as it is if "stopped". Its id."""
        if state not in ("started", "stopped", "suspended"):
            raise ValueError(f"a new machine is started, stopped or suspended, not {state!r}")
        with fly.transaction(self.state_root) as current:
            found = fly.find_image(current, image)
            if found is None:
                raise AssertionError(f"no image {image} was pushed")
            app_config = fly.parse_config(str(config.resolve()), config.read_text())
            record = fly.new_machine(current, self.state_root, app, region, *found, app_config)
            if state != "stopped":
                fly.boot_machine(self.state_root, current, app, record)
            if state == "suspended":
                machine.suspend(fly.init_of(record))
                fly.set_state(record, "suspended")
            return record["machine"]["id"]

    def machines(self, app: str) -> list[dict]:
        """What `fly machine list --app APP --json` shows."""
        return fly.machine_objects(self.state_root, app, f"no app {app}")

    def volume(self, machine_id: str) -> Path:
        return fly.layout(self.state_root, machine_id).volume

    def init(self, machine_id: str) -> machine.Init | None:
        """The machine's init on this host (pid and start time), None when the machine is not running."""
        return fly.init_of(self._record(machine_id))

    def run_in(self, machine_id: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """`argv` inside a started machine (its namespaces, root and environment), output captured as text."""
        record = self._record(machine_id)
        init = fly.init_of(record)
        if record["machine"]["state"] != "started" or init is None:
            raise AssertionError(f"machine {machine_id} is {record['machine']['state']}, not started")
        return machine.run_in(init, argv, record["runtime"]["env"], timeout)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def close(self) -> None:
        """Stop every machine (SIGKILL to its init, by pid). Safe to call again."""
        with fly.transaction(self.state_root) as state:
            for app in state["apps"].values():
                for record in app["machines"].values():
                    if fly.init_of(record) is not None:
                        fly.stop_machine(record)

    def _record(self, machine_id: str) -> dict:
        with fly.transaction(self.state_root) as state:
            return fly.find_machine(state, None, machine_id)[1]


@pytest.fixture
def fly_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlyStandin]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    standin = FlyStandin(tmp_path / "fly-standin")
    standin.install(monkeypatch)
    try:
        yield standin
    finally:
        standin.close()
