"""One region of the example inventory as `orchestrate render` writes it, run for real on 127.0.0.1.

- `render_region` runs the command line (`python -m orchestrator render ... --mode M`) and reads
  the region's navigator.yml and hub.yml back;
- `hub_server` runs the hub on those files exactly as the mode runs it: in `integrated` mode the
  hub plays Navigator (`--config navigator.yml --hub-config hub.yml`, `navigator_protocol: open`),
  in `hub` mode it is the process behind Navigator (`--hub-config hub.yml` alone);
- `RailsApp` is a Rails 6.1 application process (tests/e2e/ruby/rails_app.rb) booted on the
  rendered `rails/` files with the environment the region's navigator.yml gives Rails, driven
  one JSON command per line.

Only the ports differ from production: the hub binds a port of its own choosing (`--port 0`)
and the broadcast URL Rails gets is the rendered one with that port put in.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from e2e_support import REPO, Event, NodeClient, ServerProcess, hub_listening_port

SHOWCASE_INVENTORY = REPO / "inventories" / "showcase.yml"
SHOWCASE_TENANTS = REPO / "inventories" / "showcases.yml"
RAILS_APP_SCRIPT = Path(__file__).parent / "ruby" / "rails_app.rb"
ENVIRONMENT = "production"
REGION = "ord"
SIGNING_SECRET_ENV = "CABLE_SIGNING_SECRET"  # the example inventory's websocket.signing_secret_env
SIGNING_SECRET = "e2e-turbo-signing-secret-0123456789abcdef"
BROADCAST_KEY_ENV = "CABLE_BROADCAST_KEY"
ADAPTER = "ActionCable::SubscriptionAdapter::HttpBroadcast"

# What the hub mode needs from an app whose pages subscribe by stream name over Navigator's
# protocol (Showcase's, with the turbo_cable gem): its streams mapped to unsigned named channels
# (README, "What the hub mode is"). Inserted into a copy of the example inventory.
_WEBSOCKET_ANCHOR = "  signing_secret_env: CABLE_SIGNING_SECRET\n"
SHOWCASE_CHANNELS = (
    "  channels:\n"
    "    CurrentHeatChannel: {stream: 'current-heat-{database}'}\n"
    "    ScoresChannel: {stream: 'live-scores-{database}'}\n"
)
WITH_BROADCAST_KEY = f"  broadcast_key_env: {BROADCAST_KEY_ENV}\n"


def showcase_copy(directory: Path, *websocket_lines: str) -> Path:
    """The example inventory and its tenant list copied into `directory`, with lines added to `websocket:`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHOWCASE_TENANTS, directory / SHOWCASE_TENANTS.name)
    text = SHOWCASE_INVENTORY.read_text(encoding="utf-8")
    assert text.count(_WEBSOCKET_ANCHOR) == 1, f"test setup: {_WEBSOCKET_ANCHOR!r} is not in the example inventory"
    text = text.replace(_WEBSOCKET_ANCHOR, _WEBSOCKET_ANCHOR + "".join(websocket_lines))
    target = directory / SHOWCASE_INVENTORY.name
    target.write_text(text, encoding="utf-8")
    return target


@dataclass
class Region:
    """One rendered region: its files, and what its hub and its Rails processes are told."""

    mode: str
    out: Path
    navigator_yml: Path
    hub_yml: Path
    navigator: dict[str, Any]
    hub_config: dict[str, Any]

    @property
    def rails_dir(self) -> Path:
        return self.out / ENVIRONMENT / "rails"

    @property
    def cable_path(self) -> str:
        if self.mode == "integrated":
            return str(self.navigator["cable"]["path"])
        return str(self.hub_config["server"]["cable_path"])

    @property
    def broadcast_path(self) -> str:
        if self.mode == "integrated":
            return str(self.navigator["cable"]["broadcast_path"])
        return str(self.hub_config["server"]["broadcast_path"])

    @property
    def rendered_port(self) -> int:
        """The port the rendered files put the broadcast receiver on: Navigator's, or the hub's behind it."""
        if self.mode == "integrated":
            return int(self.navigator["server"]["listen"])
        return int(self.hub_config["server"]["listen"])

    def tenant(self) -> dict[str, Any]:
        """The region's first event tenant: a year in its path, and a database of its own."""
        for tenant in self.navigator["applications"]["tenants"]:
            if re.search(r"/\d{4}/", tenant["path"]) and "database" in tenant.get("var", {}):
                return tenant
        raise AssertionError("the rendered region has no event tenant")

    @property
    def database(self) -> str:
        return str(self.tenant()["var"]["database"])

    def rails_env(self, hub_port: int) -> dict[str, str]:
        """`applications.env` as Navigator hands it to this tenant's Rails process (`${var}` filled in),
        with the broadcast URL's port changed to where the hub really listens."""
        variables = self.tenant().get("var", {})
        env = {
            name: re.sub(r"\$\{(\w+)\}", lambda m: str(variables.get(m.group(1), m.group(0))), str(value))
            for name, value in self.navigator["applications"]["env"].items()
        }
        url = urlsplit(env["CABLE_URL"])
        assert (url.scheme, url.port, url.path) == ("http", self.rendered_port, self.broadcast_path), (
            f"CABLE_URL {env['CABLE_URL']!r} does not point at the broadcast path of the {self.mode} mode's "
            f"receiver (port {self.rendered_port}, path {self.broadcast_path!r})"
        )
        assert url.hostname in ("localhost", "127.0.0.1"), f"CABLE_URL {env['CABLE_URL']!r} leaves the machine"
        env["CABLE_URL"] = urlunsplit((url.scheme, f"{url.hostname}:{hub_port}", url.path, url.query, url.fragment))
        return env


def render_region(out: Path, mode: str, inventory: Path = SHOWCASE_INVENTORY) -> Region:
    """`orchestrate render INVENTORY --out OUT --mode MODE`, the command line as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "render", str(inventory), "--out", str(out), "--mode", mode],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, f"render failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    region_dir = out / ENVIRONMENT / "navigator" / "regions" / REGION
    assert json.loads((region_dir / "render.json").read_text())["mode"] == mode
    navigator_yml, hub_yml = region_dir / "navigator.yml", region_dir / "hub.yml"
    return Region(
        mode, out, navigator_yml, hub_yml,
        yaml.safe_load(navigator_yml.read_text(encoding="utf-8")),
        yaml.safe_load(hub_yml.read_text(encoding="utf-8")),
    )


def hub_server(region: Region, log_path: Path, env: dict[str, str]) -> ServerProcess:
    """The hub on the region's rendered files, as its mode runs it (not started yet; port 0 first)."""
    files = ["--hub-config", str(region.hub_yml)]
    if region.mode == "integrated":
        # The rehearsal: the hub stands in for Navigator and reads Navigator's own file.
        files = ["--config", str(region.navigator_yml), *files]

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "hub", *files, "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]

    return ServerProcess(command, 0, log_path, {**os.environ, **env}, REPO, reported_port=hub_listening_port)


class RailsApp:
    """A Rails 6.1 process booted on the rendered Rails files (tests/e2e/ruby/rails_app.rb)."""

    def __init__(self, rails_dir: Path, env: dict[str, str]) -> None:
        ruby = shutil.which("ruby")
        assert ruby, "ruby is missing: run scripts/setup-env test (installs ruby-railties and ruby-actioncable)"
        process = subprocess.Popen(
            [ruby, str(RAILS_APP_SCRIPT), str(rails_dir), SIGNING_SECRET_ENV],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", cwd=rails_dir,
            # Nothing from the test's own environment: only what Navigator would give the process.
            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env},
        )
        self.output = NodeClient(process)  # collects JSON lines, whatever the program
        threading.Thread(target=self.output.collect, daemon=True).start()
        threading.Thread(target=self.output.collect_stderr, daemon=True).start()
        self._ids = itertools.count(1)

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.output.process

    def wait_ready(self, timeout: float = 60) -> Event:
        self.output.wait_for(lambda events: any(e["event"] == "ready" for e in events), timeout, "Rails to boot")
        return self.output.named("ready")[0]

    def call(self, op: str, timeout: float = 30, **fields: Any) -> tuple[Event, list[Event]]:
        """Send one command; its answer and the log lines Rails wrote while carrying it out."""
        command_id = next(self._ids)
        start = len(self.output.events)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"id": command_id, "op": op, **fields}) + "\n")
        self.process.stdin.flush()
        self.output.wait_for(
            lambda events: any(e.get("id") == command_id for e in events[start:]), timeout, f"Rails to answer {op}"
        )
        events = self.output.events[start:]
        [answer] = [e for e in events if e.get("id") == command_id]
        assert answer["event"] != "error", f"{op} failed in Rails: {answer['message']}\n{self.output.transcript()}"
        return answer, [e for e in events if e["event"] == "log"]

    def sign(self, *streamables: Any) -> tuple[str, str]:
        """turbo-rails' stream name and signed stream name for `streamables`."""
        answer, _ = self.call("sign", streamables=list(streamables))
        return answer["stream"], answer["signed"]

    def broadcast(self, stream: str, message: Any) -> tuple[Any, list[Event]]:
        """`ActionCable.server.broadcast(stream, message)`: its value and the log lines."""
        answer, logs = self.call("broadcast", stream=stream, message=message)
        return answer["result"], logs

    def turbo_broadcast(self, streamables: list[Any], content: str) -> tuple[Any, list[Event]]:
        """What `Turbo::StreamsChannel.broadcast_stream_to(*streamables, content:)` does."""
        answer, logs = self.call("turbo_broadcast", streamables=streamables, content=content)
        return answer["result"], logs

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the command loop ends at end of input
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def booted(rails: Callable[[Path, dict[str, str]], RailsApp], region: Region, hub: ServerProcess, **env: str) -> RailsApp:
    """A Rails process of the region's first tenant, with Navigator's environment for it plus `env`."""
    rails_env = {**region.rails_env(hub.port), **env}
    app = rails(region.rails_dir, rails_env)
    ready = app.wait_ready()
    assert (ready["env"], ready["adapter"]) == ("production", ADAPTER)
    # Rails' own config_for read the rendered cable.yml, ERB and all.
    assert ready["cable"] == {"adapter": "http_broadcast", "url": rails_env["CABLE_URL"]}
    return app


def errors(logs: list[Event]) -> list[str]:
    return [e["message"] for e in logs if e["severity"] == "ERROR"]


def hub_servers(directory: Path) -> Iterator[Any]:
    """A factory of started hubs on rendered regions for a fixture; every one is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(region: Region, env: dict[str, str]) -> ServerProcess:
        server = hub_server(region, directory / f"hub-{len(started)}.log", env)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            print(f"hub log:\n{server.log()}")  # pytest shows it when the test failed


def rails_apps() -> Iterator[Any]:
    """A factory of RailsApp processes for a fixture; every one is stopped at teardown."""
    started: list[RailsApp] = []

    def start(rails_dir: Path, env: dict[str, str]) -> RailsApp:
        app = RailsApp(rails_dir, env)
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in started:
            app.stop()
            print(f"rails app output:\n{app.output.transcript()}")  # pytest shows it when the test failed
