"""The generated Rails settings, run by real Rails 6.1 Action Cable (Debian's ruby-actioncable).

One image serves every region and mode: config/cable.yml picks the adapter from
CABLE_ADAPTER and CABLE_URL, which each region's navigator.yml sets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from orchestrator.inventory import load_inventory
from orchestrator.render.files import RAILS_TEMPLATES, rails_context
from orchestrator.templates import render_template
from tests.orchestrator.conftest import SHOWCASE_INVENTORY
from tests.ports import redis_answers_ping, start_listening, unused_port

BROADCAST_SCRIPT = Path(__file__).parent / "ruby" / "broadcast.rb"

ADAPTER_CLASSES = {
    "http_broadcast": "ActionCable::SubscriptionAdapter::HttpBroadcast",
    "any_cable_http": "ActionCable::SubscriptionAdapter::AnyCableHttp",
    "redis": "ActionCable::SubscriptionAdapter::Redis",
}
HTTP_ADAPTERS = ["http_broadcast", "any_cable_http"]
SECRET = "s3cret-from-env"
TURBO_STREAM = '<turbo-stream action="replace" target="heat"><template>12 &amp; 13</template></turbo-stream>'


def rails_dir(tmp_path: Path, **context_overrides: object) -> Path:
    """The example inventory's Rails files as `orchestrate render` makes them (tmp_path/rails), with `context_overrides`."""
    context = {**rails_context(load_inventory(SHOWCASE_INVENTORY)), **context_overrides}
    for output, template in RAILS_TEMPLATES.items():
        path = tmp_path / output
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(template, context), encoding="utf-8")
    return tmp_path / "rails"


def broadcast(
    rails: Path, env: dict[str, str], stream: str, message: object, *, raw: bool = False, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one Rails broadcast through the rendered settings; with `check`, the process must succeed."""
    ruby = shutil.which("ruby")
    assert ruby, "ruby is missing: run scripts/setup-env test (installs ruby-actioncable)"
    arguments = [ruby, str(BROADCAST_SCRIPT), str(rails), stream, json.dumps(message)] + (["raw"] if raw else [])
    # The timeout is only a deadline for a hung test; the adapter's own timeouts end slow calls.
    result = subprocess.run(
        arguments, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


class BroadcastCatcher(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _CatchHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/_broadcast"

    def only_request(self) -> tuple[dict[str, str], object]:
        """Headers and decoded body of the one request that must have arrived at the broadcast path."""
        ((path, headers, body),) = self.requests
        assert path == "/_broadcast"
        return headers, json.loads(body)


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


class RedisServer:
    """Debian's redis-server in the foreground on a free loopback port, nothing persisted."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is missing: run scripts/setup-env test"
        self.process, self.port = start_listening(
            lambda port: [executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
                          "--save", "", "--appendonly", "no", "--daemonize", "no"],
            redis_answers_ping,
            "redis-server",
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def derived_broadcast_key(secret: str) -> str:
    """The key anycable-go derives from its secret."""
    return hmac.new(secret.encode(), b"broadcast-cable", hashlib.sha256).hexdigest()


def http_env(adapter: str, url: str) -> dict[str, str]:
    """What a region's navigator.yml gives Rails for an HTTP adapter; any_cable_http also needs the secret."""
    env = {"CABLE_ADAPTER": adapter, "CABLE_URL": url}
    if adapter == "any_cable_http":
        env["CABLE_SIGNING_SECRET"] = SECRET
    return env


# config/cable.yml


def test_cable_yml_parses_with_erb_in_place_and_keeps_only_adapter_and_url_in_production(tmp_path):
    settings = yaml.safe_load((rails_dir(tmp_path) / "config" / "cable.yml").read_text(encoding="utf-8"))
    assert settings["development"] == {"adapter": "async"}
    assert settings["test"] == {"adapter": "test"}
    assert settings["production"] == {
        "adapter": '<%= ENV.fetch("CABLE_ADAPTER", "http_broadcast") %>',
        "url": '<%= ENV.fetch("CABLE_URL", "http://localhost:9999/_broadcast") %>',
    }


@pytest.mark.parametrize("adapter", sorted(ADAPTER_CLASSES))
def test_cable_adapter_selects_the_adapter_class(tmp_path, catcher, request, adapter):
    url = request.getfixturevalue("redis_server").url if adapter == "redis" else catcher.url
    result = broadcast(rails_dir(tmp_path), http_env(adapter, url), "s", {"n": 1})
    assert f"adapter={ADAPTER_CLASSES[adapter]}\n" in result.stdout
    assert "result=false" not in result.stdout


def test_without_cable_variables_the_defaults_apply(tmp_path, catcher):
    rails = rails_dir(tmp_path, default_broadcast_url=catcher.url)
    result = broadcast(rails, {}, "current-heat-2025-boston", {"heat": 12})
    assert f"adapter={ADAPTER_CLASSES['http_broadcast']}\n" in result.stdout
    assert "result=true" in result.stdout
    assert catcher.only_request()[1] == {"stream": "current-heat-2025-boston", "data": {"heat": 12}}


# http_broadcast: Navigator's format


def test_http_broadcast_sends_an_object_message_as_the_data_value(tmp_path, catcher):
    env = http_env("http_broadcast", catcher.url)
    result = broadcast(rails_dir(tmp_path), env, "current-heat-2025-boston", {"heat": 12})
    assert "result=true" in result.stdout
    headers, body = catcher.only_request()
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers
    assert body == {"stream": "current-heat-2025-boston", "data": {"heat": 12}}


def test_http_broadcast_sends_a_turbo_stream_as_the_html_string(tmp_path, catcher):
    broadcast(rails_dir(tmp_path), http_env("http_broadcast", catcher.url), "live-scores-2025-boston", TURBO_STREAM)
    assert catcher.only_request()[1] == {"stream": "live-scores-2025-boston", "data": TURBO_STREAM}


def test_http_broadcast_sends_a_payload_that_is_not_json_as_that_string(tmp_path, catcher):
    broadcast(rails_dir(tmp_path), http_env("http_broadcast", catcher.url), "s", "plain <b>text</b>", raw=True)
    assert catcher.only_request()[1] == {"stream": "s", "data": "plain <b>text</b>"}


@pytest.mark.parametrize(("value", "authorization"), [("k3y-from-env", "Bearer k3y-from-env"), ("", None)])
def test_http_broadcast_key_from_the_named_environment_variable(tmp_path, catcher, value, authorization):
    env = {**http_env("http_broadcast", catcher.url), "CABLE_BROADCAST_KEY": value}
    broadcast(rails_dir(tmp_path, broadcast_key_env="CABLE_BROADCAST_KEY"), env, "s", {"n": 1})
    assert catcher.only_request()[0].get("Authorization") == authorization


# any_cable_http: anycable-go's format


def test_any_cable_http_sends_the_payload_as_action_cable_encoded_it(tmp_path, catcher):
    env = http_env("any_cable_http", catcher.url)
    result = broadcast(rails_dir(tmp_path), env, "current-heat-2025-boston", {"heat": 12})
    assert "result=true" in result.stdout
    headers, body = catcher.only_request()
    assert headers["Content-Type"] == "application/json"
    assert body == {"stream": "current-heat-2025-boston", "data": '{"heat":12}'}


@pytest.mark.parametrize(
    ("broadcast_key_env", "key_value", "authorization"),
    [
        (None, None, f"Bearer {derived_broadcast_key(SECRET)}"),
        ("CABLE_BROADCAST_KEY", "k3y-from-env", "Bearer k3y-from-env"),
        ("CABLE_BROADCAST_KEY", "", f"Bearer {derived_broadcast_key(SECRET)}"),
    ],
    ids=["derived-from-secret", "explicit-key", "empty-key-falls-back-to-secret"],
)
def test_any_cable_http_authorization(tmp_path, catcher, broadcast_key_env, key_value, authorization):
    env = http_env("any_cable_http", catcher.url)
    if key_value is not None:
        env["CABLE_BROADCAST_KEY"] = key_value
    broadcast(rails_dir(tmp_path, broadcast_key_env=broadcast_key_env), env, "s", {"n": 1})
    assert catcher.only_request()[0]["Authorization"] == authorization


@pytest.mark.parametrize("broadcast_key_env", [None, "CABLE_BROADCAST_KEY"])
def test_any_cable_http_without_key_or_secret_sends_nothing(tmp_path, catcher, broadcast_key_env):
    env = {"CABLE_ADAPTER": "any_cable_http", "CABLE_URL": catcher.url}
    result = broadcast(rails_dir(tmp_path, broadcast_key_env=broadcast_key_env), env, "s", {"n": 1})
    assert "result=false" in result.stdout
    assert "[any_cable_http]" in result.stderr and "KeyError: no broadcast key" in result.stderr
    assert catcher.requests == []


# The WebSocket side switched off: a broadcast is logged, never raised (except Redis's own adapter).


@pytest.mark.parametrize("catcher", [404], indirect=True)
@pytest.mark.parametrize("adapter", HTTP_ADAPTERS)
def test_navigator_with_cable_disabled_answers_404_and_the_broadcast_is_logged(tmp_path, catcher, adapter):
    result = broadcast(rails_dir(tmp_path), http_env(adapter, catcher.url), "s", {"n": 1})
    assert "result=false" in result.stdout
    assert f"[{adapter}] {catcher.url} answered 404 for stream s" in result.stderr


@pytest.mark.parametrize("adapter", HTTP_ADAPTERS)
def test_nothing_listening_refuses_and_the_broadcast_is_logged(tmp_path, adapter):
    url = f"http://127.0.0.1:{unused_port()}/_broadcast"
    result = broadcast(rails_dir(tmp_path), http_env(adapter, url), "s", {"n": 1})
    assert "result=false" in result.stdout
    assert f"[{adapter}] {url}: Errno::ECONNREFUSED" in result.stderr


@pytest.mark.parametrize("adapter", HTTP_ADAPTERS)
def test_a_server_that_never_answers_ends_at_the_adapters_read_timeout(tmp_path, adapter):
    # The kernel completes the handshake for a listening socket; nobody reads or answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/_broadcast"
        result = broadcast(rails_dir(tmp_path), http_env(adapter, url), "s", {"n": 1})
    assert "result=false" in result.stdout
    assert f"[{adapter}] {url}: Net::ReadTimeout" in result.stderr


def test_action_cable_mode_switched_off_keeps_redis_so_broadcasts_still_succeed(tmp_path, redis_server):
    result = broadcast(rails_dir(tmp_path), {"CABLE_ADAPTER": "redis", "CABLE_URL": redis_server.url}, "s", {"n": 1})
    assert f"adapter={ADAPTER_CLASSES['redis']}\n" in result.stdout
    assert "result=0" in result.stdout  # PUBLISH answers the number of subscribers


def test_with_redis_stopped_the_redis_adapter_raises(tmp_path, redis_server):
    redis_server.stop()
    env = {"CABLE_ADAPTER": "redis", "CABLE_URL": redis_server.url}
    result = broadcast(rails_dir(tmp_path), env, "s", {"n": 1}, check=False)
    assert result.returncode != 0
    assert "Redis::CannotConnectError" in result.stderr
