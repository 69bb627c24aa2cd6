"""The running hub, as a subprocess on 127.0.0.1: HTTP, WebSocket protocols, limits, signals."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hub.loop import Loop
from hub import server as server_module
from hub import signing
from hub.config import Overrides, load
from hub.log import Logger
from hub.server import Hub
from hub.frames import OP_CONT, OP_TEXT
from hub_testkit import RawClient, assert_closed_with, recv_json, recv_until, subscribe
from tests.polling import wait_for

CABLE = "/showcase/regions/iad/cable"
SHOWCASE_HUB = """
public_streams: false
signing_secret_env: HUB_TEST_SECRET
ping_interval_seconds: 0.2
channels:
  ScoresChannel: {stream: "live-scores-{database}"}
  ConfigUpdateChannel: {stream: "config_update_{database}_{user_id}", signed: true}
limits: {max_message_bytes: 1024, max_broadcast_bytes: 4096}
"""
SECRET = "test-secret-value"


def cable_client(hub, query: str = ""):
    return connect(hub.ws_url(CABLE + query), subprotocols=["actioncable-v1-json", "actioncable-unsupported"], open_timeout=10)


@pytest.fixture
def showcase(start_hub):
    return start_hub(hub=SHOWCASE_HUB, env={"HUB_TEST_SECRET": SECRET})


def test_the_hub_process_never_loads_tls_or_openssl(showcase) -> None:
    maps = open(f"/proc/{showcase.proc.pid}/maps").read()
    assert "_ssl" not in maps and "libssl" not in maps
    assert "_hashlib" not in maps and "libcrypto" not in maps


# --- HTTP -----------------------------------------------------------------------------


def test_health_paths_answer_ok(showcase) -> None:
    assert showcase.request("GET", "/healthz") == (200, b"OK")
    assert showcase.request("GET", "/health") == (200, b"OK")
    assert showcase.request("HEAD", "/health")[0] == 200
    assert showcase.request("GET", "/nope")[0] == 404


def test_broadcast_status_codes_from_loopback(showcase) -> None:
    assert showcase.broadcast({"stream": "s", "data": "x"}) == 201
    assert showcase.broadcast([{"stream": "s", "data": "x"}, {"stream": "t", "data": {"a": 1}}]) == 201
    assert showcase.request("POST", "/_broadcast", b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert showcase.broadcast({"data": "x"}) == 400
    assert showcase.broadcast([{"stream": "s"}, {"stream": ""}]) == 400
    assert showcase.request("GET", "/_broadcast")[0] == 405
    assert showcase.broadcast({"stream": "s", "data": "x" * 5000}) == 413
    assert showcase.metric("hub_broadcasts_total") == 3
    assert showcase.metric("hub_failed_broadcasts_total") == 4


def test_chunked_broadcast_over_the_limit_is_413(showcase) -> None:
    sock = socket.create_connection(("127.0.0.1", showcase.port), timeout=10)
    chunk = b"x" * 3000
    head = b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2)
    assert sock.recv(100).startswith(b"HTTP/1.1 413")
    sock.close()


def test_broadcast_key_is_required_from_anywhere_when_configured(start_hub) -> None:
    hub = start_hub(hub="broadcast_key_env: HUB_TEST_KEY\n", env={"HUB_TEST_KEY": "k3y"})
    assert hub.broadcast({"stream": "s", "data": "x"}) == 401
    assert hub.broadcast({"stream": "s", "data": "x"}, {"Authorization": "Bearer wrong"}) == 401
    assert hub.broadcast({"stream": "s", "data": "x"}, {"Authorization": "Bearer k3y"}) == 201


def test_metrics_count_connections_subscriptions_and_bytes(showcase) -> None:
    with cable_client(showcase, "?database=db") as ws:
        recv_json(ws)
        subscribe(ws, channel="ScoresChannel")
        assert showcase.metric("hub_connections") == 1
        assert showcase.metric("hub_subscriptions") == 1
        assert showcase.metric("hub_streams") == 1
        assert showcase.metric("hub_bytes_sent_total") > 0
    wait_for(lambda: showcase.metric("hub_connections") == 0, what="connection gauge to drop")
    assert showcase.metric("hub_subscriptions") == 0


# --- Action Cable ----------------------------------------------------------------------------


def test_action_cable_welcome_subscribe_broadcast_and_pings(showcase) -> None:
    with cable_client(showcase, "?database=2025-boston") as ws:
        assert ws.subprotocol == "actioncable-v1-json"
        welcome = recv_json(ws)
        assert welcome["type"] == "welcome" and welcome["sid"]
        identifier, reply = subscribe(ws, channel="ScoresChannel")
        assert reply == {"identifier": identifier, "type": "confirm_subscription"}
        assert showcase.broadcast({"stream": "live-scores-2025-boston", "data": {"html": "<b>1</b>"}}) == 201
        message = recv_until(ws, lambda m: "message" in m and m.get("type") != "ping")
        assert message == {"identifier": identifier, "message": {"html": "<b>1</b>"}}
        first = recv_until(ws, lambda m: m.get("type") == "ping")["message"]
        second = recv_until(ws, lambda m: m.get("type") == "ping")["message"]
        assert isinstance(first, int) and second > first


def test_signed_channel_over_the_wire(showcase) -> None:
    rejected = showcase.metric("hub_rejected_subscriptions_total")
    with cable_client(showcase) as ws:
        recv_json(ws)
        params = {"channel": "ConfigUpdateChannel", "database": "db", "user_id": 3}
        assert subscribe(ws, **params)[1]["type"] == "reject_subscription"
        signed = signing.sign("config_update_db_3", SECRET.encode())
        assert subscribe(ws, **params, signed_stream_name=signed)[1]["type"] == "confirm_subscription"
        turbo = signing.sign("chat:1", SECRET.encode())
        assert subscribe(ws, channel="Turbo::StreamsChannel", signed_stream_name=turbo)[1]["type"] == "confirm_subscription"
        assert subscribe(ws, channel="$pubsub", stream_name="chat:1")[1]["type"] == "reject_subscription"
    assert showcase.metric("hub_rejected_subscriptions_total") == rejected + 2


def test_channels_and_public_streams_from_flags(start_hub) -> None:
    hub = start_hub(
        args=("--channel", "ScoresChannel=live-scores-{database}", "--signed-channel", "Private=p-{user}", "--public-streams"),
        env={"HUB_TEST_SECRET": SECRET},
    )
    with cable_client(hub, "?database=x") as ws:
        recv_json(ws)
        assert subscribe(ws, channel="ScoresChannel")[1]["type"] == "confirm_subscription"
        assert subscribe(ws, channel="$pubsub", stream_name="open")[1]["type"] == "confirm_subscription"
        assert subscribe(ws, channel="Private", user="u")[1]["type"] == "reject_subscription"
        assert hub.broadcast({"stream": "live-scores-x", "data": 1}) == 201
        assert recv_until(ws, lambda m: "message" in m and m.get("type") != "ping")["message"] == 1


def test_garbage_commands_do_not_disconnect(showcase) -> None:
    with cable_client(showcase, "?database=d") as ws:
        recv_json(ws)
        ws.send("not json")
        ws.send('{"command":"dance","identifier":"{}"}')
        assert subscribe(ws, channel="ScoresChannel")[1]["type"] == "confirm_subscription"
    showcase.wait_log("ignored", why="malformed JSON")


# --- Navigator protocol ------------------------------------------------------------------------


def test_navigator_protocol_round_trip(showcase) -> None:
    with connect(showcase.ws_url(CABLE), open_timeout=10) as ws:
        assert ws.subprotocol is None
        ws.send(json.dumps({"type": "subscribe", "stream": "chat:1"}))  # not public: ignored
        ws.send(json.dumps({"type": "subscribe", "stream": "live-scores-db"}))
        assert recv_json(ws) == {"type": "subscribed", "stream": "live-scores-db"}
        assert showcase.broadcast({"stream": "live-scores-db", "data": "<turbo-stream/>"}) == 201
        assert recv_json(ws) == {"type": "message", "stream": "live-scores-db", "data": "<turbo-stream/>"}
        showcase.wait_log("subscription_rejected", why="public streams are off")


def test_websocket_only_at_exactly_the_cable_path(showcase) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(showcase.ws_url("/cable"), open_timeout=10)
    assert info.value.response.status_code == 404
    with pytest.raises(InvalidStatus):
        connect(showcase.ws_url(CABLE + "/x"), open_timeout=10)


# --- limits ----------------------------------------------------------------------------------------


def test_message_over_the_limit_closes_with_1009(showcase) -> None:
    client = RawClient(showcase.port, CABLE)
    client.send(OP_TEXT, b"x" * 1025)
    assert client.recv_until_close()[1] == 1009
    wait_for(client.at_eof, what="server to close TCP")


def test_invalid_utf8_across_fragments_closes_with_1007(showcase) -> None:
    client = RawClient(showcase.port, CABLE)
    client.send(OP_TEXT, b'{"type":"\xe2', fin=False)
    client.send(OP_CONT, b"\x28\xa1")
    assert client.recv_until_close()[1] == 1007


def test_ping_is_answered_with_pong_and_close_is_echoed(showcase) -> None:
    client = RawClient(showcase.port, CABLE)
    client.send(0x9, b"hello")
    assert client.recv_frame() == (0xA, b"hello")
    client.send(0x8, b"\x03\xe8bye")
    assert client.recv_frame() == (0x8, b"\x03\xe8")
    wait_for(client.at_eof, what="server to close TCP")


def test_max_connections_refuses_with_503(start_hub) -> None:
    hub = start_hub(hub="limits: {max_connections: 2}\n")
    first, second = RawClient(hub.port, CABLE), RawClient(hub.port, CABLE)
    assert (first.status, second.status) == (101, 101)
    assert RawClient(hub.port, CABLE).status == 503
    assert hub.request("GET", "/health")[0] == 200
    first.close()
    wait_for(lambda: hub.metric("hub_connections") == 1, what="a slot to free up")
    assert RawClient(hub.port, CABLE).status == 101


def test_handshake_timeout_drops_silent_connections(start_hub) -> None:
    hub = start_hub(hub="limits: {handshake_timeout_seconds: 0.2}\n")
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    sock.sendall(b"GET " + CABLE.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    try:
        assert sock.recv(100) == b""
    except ConnectionResetError:
        pass  # an aborted connection may arrive as a reset
    hub.wait_log("handshake_timeout")


def test_slow_client_is_disconnected_while_others_keep_receiving(start_hub) -> None:
    hub = start_hub(hub="public_streams: true\nlimits: {output_buffer_bytes: 65536, max_broadcast_bytes: 1048576}\n")
    slow = RawClient(hub.port, CABLE, rcvbuf=4096)
    slow.send(OP_TEXT, b'{"type":"subscribe","stream":"s"}')
    with connect(hub.ws_url(CABLE), open_timeout=10, max_size=None) as fast:
        fast.send(json.dumps({"type": "subscribe", "stream": "s"}))
        assert recv_json(fast)["type"] == "subscribed"
        wait_for(lambda: hub.metric("hub_subscriptions") == 2, what="both subscriptions")
        data = "y" * 200_000
        sent = 0

        def one_more() -> bool:
            nonlocal sent
            assert hub.broadcast({"stream": "s", "data": data}) == 201
            sent += 1
            assert recv_json(fast)["data"] == data  # the fast client is never held back
            return hub.metric("hub_slow_client_disconnects_total") == 1

        wait_for(one_more, interval=0, what="the slow client to be dropped")
        assert hub.metric("hub_subscriptions") == 1
        assert hub.broadcast({"stream": "s", "data": "after"}) == 201
        assert recv_json(fast)["data"] == "after"
    hub.wait_log("too_slow")
    slow.close()


# --- signals -------------------------------------------------------------------------------------


def test_sighup_with_an_invalid_file_keeps_the_old_config(showcase) -> None:
    showcase.navigator_path.write_text("server: [unclosed\n")
    showcase.signal(signal.SIGHUP)
    failed = showcase.wait_log("reload_failed")
    assert failed["error"] == f"{showcase.navigator_path}:2: not valid YAML: did not find expected ',' or ']'"
    assert showcase.request("GET", "/healthz")[0] == 200
    with cable_client(showcase) as ws:
        assert recv_json(ws)["type"] == "welcome"


def test_sighup_with_an_alias_bomb_keeps_the_old_config_and_the_hub_serving(start_hub) -> None:
    """The bomb used to be expanded by the reload until the hub grew to about 1 GB and died; it runs here under
    a 1 GiB address-space limit, so the old loader fails on memory instead of the machine."""
    launcher = (sys.executable, "-c", "import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
                " runpy.run_module('hub', run_name='__main__', alter_sys=True)")  # fmt: skip
    hub = start_hub(navigator=None, hub="server: {listen: 0}\npublic_streams: true\n", launcher=launcher)
    with connect(hub.ws_url("/cable"), subprotocols=["actioncable-v1-json"], open_timeout=10) as ws:
        identifier, reply = subscribe(ws, channel="$pubsub", stream_name="s")
        assert reply["type"] == "confirm_subscription"
        lines = ["server: {listen: 0}", "l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
        lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, 9)]
        hub.hub_path.write_text("\n".join(lines) + "\n")
        hub.signal(signal.SIGHUP)
        failed = hub.wait_log("reload_failed")
        assert failed["error"] == f"{hub.hub_path}:6: aliases expand to more than 10000 values"
        assert hub.broadcast({"stream": "s", "data": "still here"}) == 201
        assert recv_until(ws, lambda m: m.get("identifier") == identifier and "message" in m)["message"] == "still here"
    assert hub.proc.poll() is None


def test_a_reload_that_fails_in_any_way_keeps_the_old_config(tmp_path, monkeypatch) -> None:
    """MemoryError (or anything else the new files cause) used to escape the reload; it is logged, nothing changes."""
    (tmp_path / "hub.yml").write_text("server: {listen: 0}\npublic_streams: true\n")
    out = io.StringIO()
    loop = Loop()
    try:
        config = load(None, Overrides(hub_config=str(tmp_path / "hub.yml")), {})
        hub = Hub(config, Overrides(hub_config=str(tmp_path / "hub.yml")), Logger("json", out), loop)

        def exhausted(*args) -> None:
            raise MemoryError

        monkeypatch.setattr(server_module, "load", exhausted)
        hub.reload()
        assert hub.config is config and hub.context.policy.public_streams is True
        (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
        assert (line["event"], line["level"], line["error"]) == ("reload_failed", "error", "MemoryError")
    finally:
        loop.close()


def test_sighup_cable_disabled_disconnects_without_reconnect_then_enabled_again(showcase) -> None:
    original = showcase.navigator_path.read_text()
    with cable_client(showcase) as ws, connect(showcase.ws_url(CABLE), open_timeout=10) as nav:
        recv_json(ws)
        showcase.navigator_path.write_text(original.replace("enabled: true", "enabled: false"))
        showcase.signal(signal.SIGHUP)
        disconnect = recv_until(ws, lambda m: m.get("type") == "disconnect")
        assert disconnect["reconnect"] is False
        assert_closed_with(ws, 1001)
        assert_closed_with(nav, 1001)
    with pytest.raises(InvalidStatus) as info:
        cable_client(showcase)
    assert info.value.response.status_code == 503
    assert showcase.request("GET", "/healthz")[0] == 200
    assert showcase.broadcast({"stream": "s", "data": "x"}) == 201

    showcase.navigator_path.write_text(original)
    showcase.signal(signal.SIGHUP)
    wait_for(lambda: len([l for l in showcase.lines if l["event"] == "reloaded"]) == 2, what="second reload")
    with cable_client(showcase) as again:
        assert recv_json(again)["type"] == "welcome"


def test_sigterm_sends_server_restart_and_1001_then_exits(showcase) -> None:
    with cable_client(showcase) as ws, connect(showcase.ws_url(CABLE), open_timeout=10) as nav:
        recv_json(ws)
        showcase.signal(signal.SIGTERM)
        disconnect = recv_until(ws, lambda m: m.get("type") == "disconnect")
        assert disconnect == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
        assert_closed_with(ws, 1001)
        assert_closed_with(nav, 1001)
    assert showcase.proc.wait(30) == 0
    showcase.wait_log("stopped")


def test_sigterm_exit_is_bounded_by_the_shutdown_timeout(start_hub) -> None:
    hub = start_hub(hub="limits: {shutdown_timeout_seconds: 0.3}\n")
    silent = RawClient(hub.port, CABLE, subprotocol="actioncable-v1-json")  # never answers the close frame
    hub.signal(signal.SIGTERM)
    texts, code = silent.recv_until_close()
    assert code == 1001
    assert json.loads(texts[-1]) == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    assert hub.proc.wait(30) == 0
    assert hub.wait_log("shutdown_timeout")["aborted"] == 1
    silent.close()


def test_bad_config_exits_2_naming_file_and_key(tmp_path) -> None:
    (tmp_path / "navigator.yml").write_text("server: {listen: 9999}\ncable: {enabled: 'no'}\n")
    (tmp_path / "hub.yml").write_text("limits: {max_connections: 0}\nbogus: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "hub", "--config", str(tmp_path / "navigator.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{tmp_path}/navigator.yml: cable.enabled: expected boolean" in result.stderr
    assert f"{tmp_path}/hub.yml: limits.max_connections: must be >= 1, got 0" in result.stderr
    assert f"{tmp_path}/hub.yml: bogus: unknown key" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "hub", "--bogus"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--config" in result.stderr
