"""The generated Rails settings, run by real Rails 6.1 Action Cable (Debian's ruby-actioncable)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.orchestrator.conftest import SHOWCASE_INVENTORY, copy_showcase

BROADCAST_SCRIPT = Path(__file__).parent / "ruby" / "broadcast.rb"


class BroadcastCatcher(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _CatchHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/_broadcast"


class _CatchHandler(BaseHTTPRequestHandler):
    server: BroadcastCatcher

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def catcher(request) -> Iterator[BroadcastCatcher]:
    server = BroadcastCatcher(getattr(request, "param", 201))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def rendered_rails_dir(orchestrate, tmp_path: Path, inventory: Path = SHOWCASE_INVENTORY) -> Path:
    out = tmp_path / "out"
    assert orchestrate("render", inventory, "--out", out, "--region", "ord", "--mode", "integrated").code == 0
    return out / "production" / "ord" / "rails"


def broadcast(rails_dir: Path, env: dict[str, str], stream: str, message: object) -> subprocess.CompletedProcess[str]:
    """Run one Rails broadcast through the rendered settings; the process must succeed."""
    ruby = shutil.which("ruby")
    assert ruby, "ruby is missing: run scripts/setup-env test (installs ruby-actioncable)"
    result = subprocess.run(
        [ruby, str(BROADCAST_SCRIPT), str(rails_dir), stream, json.dumps(message)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_rails_broadcast_reaches_the_broadcast_path_as_stream_and_data(orchestrate, tmp_path, catcher):
    rails_dir = rendered_rails_dir(orchestrate, tmp_path)
    result = broadcast(rails_dir, {"TURBO_CABLE_BROADCAST_URL": catcher.url}, "current-heat-2025-boston", {"heat": 12})
    assert "adapter=ActionCable::SubscriptionAdapter::HttpBroadcast" in result.stdout
    assert "result=true" in result.stdout
    ((path, headers, body),) = catcher.requests
    assert path == "/_broadcast"
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers
    assert json.loads(body) == {"stream": "current-heat-2025-boston", "data": json.dumps({"heat": 12}, separators=(",", ":"))}


def test_broadcast_key_from_the_named_environment_variable(orchestrate, tmp_path, catcher):
    inventory = copy_showcase(tmp_path)
    inventory.write_text(
        inventory.read_text().replace(
            "  signing_secret_env: CABLE_SIGNING_SECRET\n",
            "  signing_secret_env: CABLE_SIGNING_SECRET\n  broadcast_key_env: CABLE_BROADCAST_KEY\n",
        ),
        encoding="utf-8",
    )
    rails_dir = rendered_rails_dir(orchestrate, tmp_path, inventory)
    env = {"TURBO_CABLE_BROADCAST_URL": catcher.url, "CABLE_BROADCAST_KEY": "k3y-from-env"}
    broadcast(rails_dir, env, "live-scores-2025-boston", "plain text")
    ((_, headers, body),) = catcher.requests
    assert headers["Authorization"] == "Bearer k3y-from-env"
    assert json.loads(body) == {"stream": "live-scores-2025-boston", "data": '"plain text"'}


@pytest.mark.parametrize("catcher", [403], indirect=True)
def test_refused_broadcast_is_logged_not_raised(orchestrate, tmp_path, catcher):
    rails_dir = rendered_rails_dir(orchestrate, tmp_path)
    result = broadcast(rails_dir, {"TURBO_CABLE_BROADCAST_URL": catcher.url}, "s", {"n": 1})
    assert "result=false" in result.stdout
    assert f"[http_broadcast] {catcher.url} answered 403 for stream s" in result.stderr
