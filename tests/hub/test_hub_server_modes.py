"""The running hub in its deployment shapes: standing in for Navigator's cable (navigator_protocol: open),
serving from hub.yml alone behind Navigator, refusing proxied broadcasts, re-checking subscriptions on
reload, and sizing its descriptor limit."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hub import signing
from hub_testkit import assert_closed_with, recv_json, recv_until, subscribe
from tests.polling import wait_for

CABLE = "/showcase/regions/iad/cable"
SECRET = "modes-test-secret"
CHANNELS = """
signing_secret_env: HUB_TEST_SECRET
ping_interval_seconds: 0.2
channels:
  ScoresChannel: {stream: "live-scores-{database}"}
  ConfigUpdateChannel: {stream: "config_update_{database}_{user_id}", signed: true}
"""
NAVIGATOR_OFF = "server: {listen: 9999}\ncable: {enabled: false, path: /showcase/regions/iad/cable, broadcast_path: /_broadcast}\n"


def navigator_client(hub, path: str = CABLE):
    return connect(hub.ws_url(path), open_timeout=10)


def cable_client(hub, path: str = CABLE):
    return connect(hub.ws_url(path), subprotocols=["actioncable-v1-json"], open_timeout=10)


def nav_subscribe(ws, stream: str) -> dict:
    ws.send(json.dumps({"type": "subscribe", "stream": stream}))
    return recv_until(ws, lambda m: m.get("type") == "subscribed")


def next_message(ws) -> dict:
    """The next broadcast delivered, skipping pings (both protocols)."""
    return recv_until(ws, lambda m: m.get("type") not in ("ping", "welcome"))


def reload_with(hub, text: str, count: int) -> None:
    hub.hub_path.write_text(text)
    hub.signal(signal.SIGHUP)
    wait_for(lambda: len([line for line in hub.lines if line["event"] == "reloaded"]) == count, what=f"reload {count}")


# --- navigator_protocol: open ----------------------------------------------------------


def test_open_navigator_protocol_answers_like_navigators_cable(start_hub) -> None:
    hub = start_hub(hub="navigator_protocol: open\n" + CHANNELS, env={"HUB_TEST_SECRET": SECRET})
    assert hub.find("listening")["navigator_protocol"] == "open"
    with navigator_client(hub) as nav, cable_client(hub) as ws:
        recv_json(ws)
        assert nav_subscribe(nav, "config_update_db_7") == {"type": "subscribed", "stream": "config_update_db_7"}
        assert nav_subscribe(nav, "chat:1") == {"type": "subscribed", "stream": "chat:1"}
        assert subscribe(ws, channel="$pubsub", stream_name="chat:1")[1]["type"] == "reject_subscription"
        assert subscribe(ws, channel="ConfigUpdateChannel", database="db", user_id=7)[1]["type"] == "reject_subscription"
        assert hub.request("POST", "/_broadcast", b'{"stream":"chat:1","data":"hi"}') == (200, b"")
        assert next_message(nav) == {"type": "message", "stream": "chat:1", "data": "hi"}
        assert hub.broadcast([{"stream": "chat:1", "data": "x"}]) == 400
        assert hub.metric("hub_failed_broadcasts_total") == 1


def test_open_with_the_cable_disabled_falls_through_like_navigator(start_hub) -> None:
    hub = start_hub(navigator=NAVIGATOR_OFF, hub="navigator_protocol: open\n")
    with pytest.raises(InvalidStatus) as info:
        navigator_client(hub)
    assert info.value.response.status_code == 404
    assert hub.broadcast({"stream": "s", "data": "x"}) == 404
    assert hub.request("GET", "/up") == (200, b"OK")
    policy = start_hub(navigator=NAVIGATOR_OFF, args=("--navigator-protocol", "policy"), hub="navigator_protocol: open\n")
    with pytest.raises(InvalidStatus) as info:
        navigator_client(policy)
    assert info.value.response.status_code == 503


def test_the_flag_overrides_hub_yml(start_hub) -> None:
    hub = start_hub(hub="navigator_protocol: policy\n", args=("--navigator-protocol", "open"))
    with navigator_client(hub) as nav:
        assert nav_subscribe(nav, "chat:1")["stream"] == "chat:1"


# --- never a signed value in the log -------------------------------------------------------


def test_a_rejected_signed_subscription_leaves_no_signed_value_in_the_log(start_hub) -> None:
    hub = start_hub(hub=CHANNELS, env={"HUB_TEST_SECRET": SECRET})
    forged = signing.sign("config_update_db_7", b"not the secret")
    with cable_client(hub) as ws, navigator_client(hub) as nav:
        recv_json(ws)
        params = {"channel": "ConfigUpdateChannel", "database": "db", "user_id": 7, "signed_stream_name": forged}
        assert subscribe(ws, **params)[1]["type"] == "reject_subscription"
        nav.send(json.dumps({"type": "subscribe", "stream": forged}))
        hub.wait_log("subscription_rejected", channel="ConfigUpdateChannel", why="bad signature")
        hub.wait_log("subscription_rejected", why="public streams are off")
    logged = "\n".join(json.dumps(line) for line in hub.lines)
    for part in (forged, *forged.split("--")):
        assert part not in logged


# --- hub.yml alone, behind Navigator ---------------------------------------------------------


SERVED = "server: {listen: 9999, cable_path: /regions/iad/cable, broadcast_path: /_hub_broadcast, health_path: /healthz}\n"


def test_hub_yml_with_a_server_section_is_the_whole_configuration(start_hub) -> None:
    hub = start_hub(navigator=None, hub=SERVED + "public_streams: true\n")
    assert hub.find("listening")["cable_enabled"] is True
    assert hub.request("GET", "/healthz") == (200, b"OK")
    with cable_client(hub, "/regions/iad/cable") as ws:
        recv_json(ws)
        identifier, reply = subscribe(ws, channel="$pubsub", stream_name="news")
        assert reply["type"] == "confirm_subscription"
        assert hub.broadcast({"stream": "news", "data": 1}, path="/_hub_broadcast") == 201
        assert next_message(ws) == {"identifier": identifier, "message": 1}
    reload_with(hub, SERVED.replace("/regions/iad/cable", "/cable2"), 1)
    with navigator_client(hub, "/cable2") as nav:
        assert nav.subprotocol is None
    with pytest.raises(InvalidStatus) as info:
        navigator_client(hub, "/regions/iad/cable")
    assert info.value.response.status_code == 404


def test_hub_yml_without_server_and_without_navigator_yml_exits_2(tmp_path) -> None:
    (tmp_path / "hub.yml").write_text("public_streams: true\n")
    result = subprocess.run(
        [sys.executable, "-m", "hub", "--hub-config", str(tmp_path / "hub.yml")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"cable-hub: {tmp_path}/hub.yml: server: missing" in result.stderr


def test_a_proxied_broadcast_is_refused_from_its_head_without_a_key(start_hub) -> None:
    hub = start_hub(navigator=None, hub=SERVED + "public_streams: true\n")
    with navigator_client(hub, "/regions/iad/cable") as nav:
        nav_subscribe(nav, "news")
        sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
        sock.sendall(b"POST /_hub_broadcast HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.7\r\nContent-Length: 100000\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 403")  # answered without the body ever being sent
        sock.close()
        assert hub.broadcast({"stream": "news", "data": "direct"}, path="/_hub_broadcast") == 201
        assert next_message(nav)["data"] == "direct"
    assert hub.metric("hub_failed_broadcasts_total") == 1
    assert hub.metric("hub_broadcasts_total") == 1


def test_a_malformed_header_line_is_not_logged_with_its_content(start_hub) -> None:
    hub = start_hub()
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    sock.sendall(b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization Bearer s3cret-key\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 400")
    sock.close()
    assert hub.wait_log("bad_request")["error"] == "malformed header line"
    assert "s3cret" not in json.dumps(hub.lines)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("request_head", [
    b"GET /up HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",  # HTTP/1.0 is never kept alive, asked or not
    b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
])  # fmt: skip
def test_a_request_that_may_not_keep_its_connection_is_answered_and_the_connection_closed(start_hub, request_head: bytes) -> None:
    hub = start_hub()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(request_head + b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")  # the second is never answered
        received = read_until_closed(sock)
    assert received.count(b"HTTP/1.1 ") == 1 and b"\r\nconnection: close\r\n" in received.lower()


def test_pipelined_requests_on_a_kept_connection_are_answered_in_order(start_hub) -> None:
    hub = start_hub()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # fmt: skip
        received = read_until_closed(sock)
    statuses = [part[:3] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [b"200", b"200", b"404"]
    assert b"# HELP" not in received  # HEAD: the head only


# --- reload re-checks existing subscriptions -------------------------------------------------


def test_reload_with_public_streams_off_stops_public_subscriptions(start_hub) -> None:
    hub = start_hub(hub="public_streams: true\n" + CHANNELS, env={"HUB_TEST_SECRET": SECRET})
    with navigator_client(hub) as nav, cable_client(hub) as ws:
        recv_json(ws)
        nav_subscribe(nav, "news")
        nav_subscribe(nav, "live-scores-db")
        assert subscribe(ws, channel="$pubsub", stream_name="news")[1]["type"] == "confirm_subscription"
        reload_with(hub, "public_streams: false\n" + CHANNELS, 1)
        disconnect = recv_until(ws, lambda m: m.get("type") == "disconnect")
        assert disconnect == {"type": "disconnect", "reason": "policy_changed", "reconnect": True}
        assert_closed_with(ws, 1001)
        assert hub.broadcast({"stream": "news", "data": "after"}) == 201
        assert hub.broadcast({"stream": "live-scores-db", "data": "still"}) == 201
        # Frames of one connection arrive in order: had "news" been delivered, it would come first.
        assert next_message(nav) == {"type": "message", "stream": "live-scores-db", "data": "still"}
    revoked = hub.wait_log("subscriptions_revoked")
    assert (revoked["navigator_streams"], revoked["cable_connections"]) == (1, 1)


def test_reload_from_open_to_policy_stops_navigator_subscriptions_to_signed_streams(start_hub) -> None:
    hub = start_hub(hub="navigator_protocol: open\n" + CHANNELS, env={"HUB_TEST_SECRET": SECRET})
    signed = signing.sign("config_update_db_7", SECRET.encode())
    with navigator_client(hub) as nav, cable_client(hub) as ws:
        recv_json(ws)
        nav_subscribe(nav, "config_update_db_7")
        nav_subscribe(nav, "live-scores-db")
        params = {"channel": "ConfigUpdateChannel", "database": "db", "user_id": 7, "signed_stream_name": signed}
        identifier, reply = subscribe(ws, **params)
        assert reply["type"] == "confirm_subscription"
        reload_with(hub, "navigator_protocol: policy\n" + CHANNELS, 1)
        assert hub.broadcast({"stream": "config_update_db_7", "data": "secret"}) == 201
        assert hub.broadcast({"stream": "live-scores-db", "data": "still"}) == 201
        assert next_message(nav) == {"type": "message", "stream": "live-scores-db", "data": "still"}
        assert next_message(ws) == {"identifier": identifier, "message": "secret"}  # signed: still allowed


# --- descriptors ---------------------------------------------------------------------------------


def limited(soft: int, hard: int) -> tuple[str, ...]:
    """A launcher that starts the hub under the given RLIMIT_NOFILE."""
    code = (
        f"import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}));"
        " runpy.run_module('hub', run_name='__main__', alter_sys=True)"
    )
    return (sys.executable, "-c", code)


def test_the_soft_descriptor_limit_is_raised_to_what_max_connections_needs(start_hub) -> None:
    # A hard limit of 512 can always be set (lowering it needs no privilege): room for 200 + 64 + 32.
    hub = start_hub(hub="limits: {max_connections: 200}\n", launcher=limited(128, 512))
    limit = hub.find("listening")["descriptor_limit"]
    assert 200 + 64 < limit <= 200 + 64 + 64
    assert int(open(f"/proc/{hub.proc.pid}/limits").read().split("Max open files")[1].split()[0]) == limit
    assert hub.find("descriptors_low") is None


def test_a_hard_descriptor_limit_below_the_need_is_logged(start_hub) -> None:
    hub = start_hub(hub="limits: {max_connections: 1000}\n", launcher=limited(256, 300))
    warning = hub.find("descriptors_low")
    assert warning["level"] == "warn" and warning["limit"] == 300 and warning["needed"] > 1000 + 64
    assert "max_connections" in warning["advice"]
    assert hub.find("listening")["descriptor_limit"] == 300
    assert len([line for line in hub.lines if line["event"] == "descriptors_low"]) == 1
