"""Hubs sharing broadcasts through a real nats-server or redis-server (Debian's), all on 127.0.0.1.

Every hub is a subprocess; clients are real WebSocket clients. "Exactly once" is checked with end
markers: each hub's last broadcast is an `end`, and the broker keeps one publisher's order, so once
a client has every hub's `end`, anything a hub would deliver twice has arrived before it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from hub_testkit import HubProcess, subscribe
from tests.brokers import KINDS, Broker, brokers, start_broker_on  # noqa: F401  (fixture)
from tests.polling import wait_for
from tests.ports import unused_port

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"
STREAM = "scores"


def hub_yml(broker_url: str, kind: str, extra: str = "", top: str = "") -> str:
    return f"server: {{listen: 0}}\npublic_streams: true\n{top}broker:\n  kind: {kind}\n  url: '{broker_url}'\n{extra}"


def shared_hub(start_hub, broker: Broker, extra: str = "", env: dict[str, str] | None = None, top: str = "", **kwargs) -> HubProcess:
    hub = start_hub(navigator=None, hub=hub_yml(broker.url, broker.kind, extra, top), env=env, **kwargs)
    wait_for(lambda: hub.metric("hub_broker_connected") == 1, 20, "the hub to connect to its broker")
    return hub


def client(hub: HubProcess, stream: str = STREAM) -> ClientConnection:
    ws = connect(hub.ws_url("/cable"), subprotocols=["actioncable-v1-json"], open_timeout=10)
    _, reply = subscribe(ws, channel="$pubsub", stream_name=stream)
    assert reply["type"] == "confirm_subscription"
    return ws


def messages_until(ws: ClientConnection, done: Callable[[list[dict]], bool], timeout: float = 30.0) -> list[dict]:
    """The broadcasts a client receives (pings skipped) until `done(received)`; fails after `timeout` s."""
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.001)))
        if "message" in message and "type" not in message:  # not a ping
            received.append(message["message"])
    return received


def ends_from(*names: int) -> Callable[[list[dict]], bool]:
    return lambda received: {m["end"] for m in received if "end" in m} >= set(names)


def numbers(received: list[dict]) -> list[tuple[int, int]]:
    return [(m["hub"], m["n"]) for m in received if "n" in m]


def post_ends(hubs: list[HubProcess]) -> None:
    for index, hub in enumerate(hubs):
        assert hub.broadcast({"stream": STREAM, "data": {"end": index}}) == 201


def metrics(hub: HubProcess) -> str:
    status, body = hub.request("GET", "/metrics")
    assert status == 200
    return body.decode()


# --- sharing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_three_hubs_deliver_every_broadcast_to_every_client_exactly_once(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hubs = [shared_hub(start_hub, broker) for _ in range(3)]
    clients = [client(hub) for hub in hubs for _ in range(2)]
    others = client(hubs[2], "other")
    for index, hub in enumerate(hubs):
        for n in range(5):
            assert hub.broadcast({"stream": STREAM, "data": {"hub": index, "n": n}}) == 201
        batch = [{"stream": STREAM, "data": {"hub": index, "n": 5}}, {"stream": "other", "data": {"hub": index}},
                 {"stream": STREAM, "data": {"hub": index, "n": 6}}]  # fmt: skip
        assert hub.broadcast(batch) == 201
    post_ends(hubs)
    expected = sorted((index, n) for index in range(3) for n in range(7))
    for ws in clients:
        assert sorted(numbers(messages_until(ws, ends_from(0, 1, 2)))) == expected
    assert sorted(m["hub"] for m in messages_until(others, lambda r: len(r) == 3)) == [0, 1, 2]
    for hub in hubs:
        assert hub.metric("hub_broker_published_total") == 7  # one message per request
        assert hub.metric("hub_broker_received_total") == 21
        assert hub.metric("hub_broadcasts_unshared_total") == 0
        assert hub.metric("hub_broadcasts_total") == 9
        assert hub.request("GET", "/up") == (200, b"OK")
        # The client library was imported without TLS: the hub process still maps no OpenSSL.
        maps = Path(f"/proc/{hub.proc.pid}/maps").read_text()
        assert "libssl" not in maps and "libcrypto" not in maps


@pytest.mark.parametrize("kind", KINDS)
def test_each_publishers_order_is_kept_at_clients_of_every_hub(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hubs = [shared_hub(start_hub, broker) for _ in range(3)]
    clients = [client(hub) for hub in hubs]
    # Hub 0's publisher pipelines its 200 requests on one connection: the hub takes them in one go and
    # hands the broker's client library large batches. Hub 1's posts one request per connection.
    assert pipelined_posts(hubs[0], [{"stream": STREAM, "data": {"hub": 0, "n": n}} for n in range(200)]) == [201] * 200
    for n in range(200):
        assert hubs[1].broadcast({"stream": STREAM, "data": {"hub": 1, "n": n}}) == 201
    post_ends(hubs[:2])
    for ws in clients:
        received = numbers(messages_until(ws, ends_from(0, 1)))
        for index in (0, 1):
            assert [n for hub, n in received if hub == index] == list(range(200))


def pipelined_posts(hub: HubProcess, broadcasts: list[dict]) -> list[int]:
    """Every request written at once on one keep-alive connection; the status of each answer, in order."""
    wire = b""
    for broadcast in broadcasts:
        body = json.dumps(broadcast).encode()
        wire += b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as sock:
        sock.sendall(wire)
        received = b""
        deadline = time.monotonic() + 30
        while received.count(b"HTTP/1.1 ") < len(broadcasts) or not received.endswith(b"\r\n\r\n"):
            assert time.monotonic() < deadline, "answers missing"
            received += sock.recv(65536)
    return [int(part[:3]) for part in received.split(b"HTTP/1.1 ")[1:]]


@pytest.mark.parametrize("kind", KINDS)
def test_messages_from_the_broker_that_are_not_broadcasts_are_dropped_and_counted(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hub = shared_hub(start_hub, broker, top="limits: {max_broadcast_bytes: 2048}\n")
    ws = client(hub)
    foreign = b"0123456789abcdef:1\n"
    publish_raw(broker, [
        b"no envelope at all",
        foreign + b"{not json",
        foreign + json.dumps({"stream": STREAM, "data": "x" * 4096}).encode(),  # over max_broadcast_bytes
        foreign + json.dumps([{"stream": STREAM}, {"data": 1}]).encode(),
        b"0123456789abcdef:2\n" + json.dumps({"stream": STREAM, "data": {"hub": 9, "n": 1}}).encode(),
    ])  # fmt: skip
    assert messages_until(ws, lambda r: len(r) == 1) == [{"hub": 9, "n": 1}]
    assert hub.broadcast({"stream": STREAM, "data": {"end": 0}}) == 201
    assert messages_until(ws, ends_from(0)) == [{"end": 0}]  # nothing of the dropped ones came through
    assert hub.metric("hub_broker_dropped_total") == 4
    assert hub.metric("hub_broker_received_total") == 6


@pytest.mark.parametrize("kind", KINDS)
def test_json_nested_too_deep_never_reaches_the_broker_and_what_the_broker_passes_on_is_dropped(kind, tmp_path, start_hub, brokers) -> None:
    """976 levels pass json.loads but used to fail when encoded for subscribers: with Redis every hub then
    dropped its connection to the broker; with NATS the broadcast was answered 201 and lost."""
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hubs = [shared_hub(start_hub, broker) for _ in range(2)]
    clients = [client(hub) for hub in hubs]
    deep = ('{"stream":"' + STREAM + '","data":' + "[" * 976 + "1" + "]" * 976 + "}").encode()
    assert hubs[1].request("POST", "/_broadcast", deep, {"Content-Type": "application/json"}) == (400, b"JSON nested more than 100 deep\n")
    assert hubs[1].metric("hub_broker_published_total") == 0
    publish_raw(broker, [b"0123456789abcdef:%d\n%s" % (n, deep) for n in (1, 2, 3)])  # as a hub of another version could
    for hub in hubs:
        wait_for(lambda: hub.metric("hub_broker_dropped_total") == 3, what="the messages to be dropped")
    assert hubs[1].broadcast({"stream": STREAM, "data": {"hub": 1, "n": 1}}) == 201
    for ws in clients:
        assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(1, 1)]
    for hub in hubs:
        assert hub.metric("hub_broker_connected") == 1 and hub.metric("hub_broker_reconnects_total") == 0
        hub.wait_log("broker_message_dropped", dropped=2)
        dropped = [line for line in hub.lines if line["event"] == "broker_message_dropped"]
        assert [(line["dropped"], line["why"]) for line in dropped] == [(n, "JSON nested more than 100 deep") for n in (1, 2)]


def publish_raw(broker: Broker, messages: list[bytes]) -> None:
    """Publish to the hubs' subject as any other client of the broker could (its own wire protocol)."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        if broker.kind == "nats":
            sock.recv(4096)  # INFO
            wire = b'CONNECT {"verbose":false}\r\n'
            for message in messages:
                wire += b"PUB cable-hub.broadcast %d\r\n%s\r\n" % (len(message), message)
            sock.sendall(wire + b"PING\r\n")
            wait_for(lambda: b"PONG" in sock.recv(4096), what="the server to take the messages")
        else:
            for message in messages:
                sock.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$19\r\ncable-hub.broadcast\r\n$%d\r\n%s\r\n" % (len(message), message))
                assert sock.recv(64).startswith(b":")


# --- the broker goes away ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_broker_leaves_local_delivery_and_its_restart_brings_sharing_back(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hubs = [shared_hub(start_hub, broker) for _ in range(2)]
    clients = [client(hub) for hub in hubs]
    broker.stop()
    for hub in hubs:
        wait_for(lambda: hub.metric("hub_broker_connected") == 0, what="the hub to notice the broker is gone")
        assert hub.request("GET", "/up") == (200, b"degraded: broker unreachable")
        assert hub.request("GET", "/health") == (200, b"degraded: broker unreachable")
    for index, hub in enumerate(hubs):  # delivered at once to the hub's own clients, counted as not shared
        assert hub.broadcast({"stream": STREAM, "data": {"hub": index, "n": 1}}) == 201
        assert numbers(messages_until(clients[index], lambda r: len(r) == 1)) == [(index, 1)]
        assert hub.metric("hub_broadcasts_unshared_total") == 1
    broker.restart()
    for hub in hubs:
        wait_for(lambda: hub.metric("hub_broker_connected") == 1, 20, "the hub to connect again")
        assert hub.metric("hub_broker_reconnects_total") == 1
        assert hub.request("GET", "/up") == (200, b"OK")
    for index, hub in enumerate(hubs):
        assert hub.broadcast({"stream": STREAM, "data": {"hub": index, "n": 2}}) == 201
    post_ends(hubs)
    for ws in clients:  # the broadcasts delivered locally while the broker was away were never published later
        assert sorted(numbers(messages_until(ws, ends_from(0, 1)))) == [(0, 2), (1, 2)]
    for hub in hubs:
        assert hub.metric("hub_broadcasts_unshared_total") == 1
        assert hub.metric("hub_broker_published_total") == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_hub_started_while_its_broker_is_down_serves_then_connects_when_it_comes_up(kind, tmp_path, start_hub, brokers) -> None:
    port = unused_port()  # only passed on: the broker binds it later (tests/ports.py)
    url = f"nats://127.0.0.1:{port}" if kind == "nats" else f"redis://127.0.0.1:{port}/0"
    hub = start_hub(navigator=None, hub=hub_yml(url, kind))
    wait_for(lambda: hub.metric("hub_broker_connect_failures_total") >= 2, what="the hub to try again")
    assert hub.metric("hub_broker_connected") == 0
    assert hub.request("GET", "/up") == (200, b"degraded: broker unreachable")
    assert hub.find("broker_unreachable", attempts=1, url=url)["level"] == "warn"
    ws = client(hub)
    assert hub.broadcast({"stream": STREAM, "data": {"hub": 0, "n": 1}}) == 201
    assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(0, 1)]
    brokers.append(broker := start_broker_on(kind, tmp_path / "broker", port))
    wait_for(lambda: hub.metric("hub_broker_connected") == 1, 20, "the hub to connect once the broker is up")
    assert hub.request("GET", "/up") == (200, b"OK")
    assert hub.metric("hub_broker_reconnects_total") == 0  # the first connection
    other = shared_hub(start_hub, broker)
    assert other.broadcast({"stream": STREAM, "data": {"hub": 1, "n": 2}}) == 201
    post_ends([hub, other])
    assert numbers(messages_until(ws, ends_from(0, 1))) == [(1, 2)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_stalled_broker_is_given_up_and_what_was_on_its_way_is_delivered_once(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    hub = shared_hub(start_hub, broker, extra="  stall_timeout_seconds: 0.3\n")
    ws = client(hub)
    broker.pause()  # takes the connection but never answers
    assert hub.broadcast({"stream": STREAM, "data": {"hub": 0, "n": 1}}) == 201
    assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(0, 1)]
    assert hub.metric("hub_broker_stalls_total") == 1
    assert hub.metric("hub_broadcasts_unshared_total") == 1
    assert hub.metric("hub_broker_lost_total") == 1
    assert hub.metric("hub_broker_connected") == 0
    # It does not wait for the frozen broker to answer what it was handed: it tries a new connection.
    wait_for(lambda: hub.metric("hub_broker_connect_failures_total") >= 1, 40, "an attempt to connect again")
    broker.resume()  # the server may still pass on the message it had: the hub must not deliver it again
    wait_for(lambda: hub.metric("hub_broker_connected") == 1, 20, "the hub to connect again")
    assert hub.broadcast({"stream": STREAM, "data": {"end": 0}}) == 201
    assert messages_until(ws, ends_from(0)) == [{"end": 0}]


# --- hubs come and go -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_restarted_hub_shares_again_and_a_stopped_one_closes_its_connection(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(broker := Broker(kind, tmp_path / "broker"))
    first, second = shared_hub(start_hub, broker), shared_hub(start_hub, broker)
    second.signal(signal.SIGTERM)
    assert second.proc.wait(30) == 0
    names = [line["event"] for line in second.lines]
    assert names.index("broker_closed") < names.index("stopped")
    restarted = shared_hub(start_hub, broker)
    clients = [client(first), client(restarted)]
    for index, hub in enumerate((first, restarted)):
        assert hub.broadcast({"stream": STREAM, "data": {"hub": index, "n": 1}}) == 201
    post_ends([first, restarted])
    for ws in clients:
        assert sorted(numbers(messages_until(ws, ends_from(0, 1)))) == [(0, 1), (1, 1)]
    first.proc.kill()  # a crash: the other hub goes on, and so does its sharing
    first.proc.wait(10)
    again = shared_hub(start_hub, broker)
    ws = client(again)
    assert restarted.broadcast({"stream": STREAM, "data": {"hub": 1, "n": 2}}) == 201
    assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(1, 2)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_reload_that_changes_the_broker_reconnects_and_one_that_removes_it_goes_local(kind, tmp_path, start_hub, brokers) -> None:
    brokers.append(old := Broker(kind, tmp_path / "old"))
    brokers.append(new := Broker(kind, tmp_path / "new"))
    hub = shared_hub(start_hub, old)
    peer = shared_hub(start_hub, new, extra="  prefix: region-x\n")
    ws = client(hub)
    hub.hub_path.write_text(hub_yml(new.url, kind, "  prefix: region-x\n"))
    hub.signal(signal.SIGHUP)
    hub.wait_log("broker_connected", url=new.url, subject="region-x.broadcast")
    wait_for(lambda: hub.metric("hub_broker_connected") == 1, what="the new connection")
    assert hub.find("broker_closed", url=old.url) is not None
    assert peer.broadcast({"stream": STREAM, "data": {"hub": 1, "n": 1}}) == 201
    post_ends([hub, peer])
    assert numbers(messages_until(ws, ends_from(0, 1))) == [(1, 1)]
    hub.hub_path.write_text("server: {listen: 0}\npublic_streams: true\n")
    hub.signal(signal.SIGHUP)
    wait_for(lambda: "hub_broker_connected" not in metrics(hub), what="the broker to be dropped")
    assert hub.request("GET", "/up") == (200, b"OK")
    assert hub.broadcast({"stream": STREAM, "data": {"hub": 0, "n": 2}}) == 201
    assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(0, 2)]


# --- secrets ----------------------------------------------------------------------------------

AUTH_CASES = [("nats", "password"), ("nats", "token"), ("redis", "password"), ("redis", "user")]


@pytest.mark.parametrize(("kind", "auth"), AUTH_CASES)
def test_broker_secrets_come_from_the_environment_and_are_never_shown(kind, auth, tmp_path, start_hub, brokers) -> None:
    secret, wrong = "s3cret-" + os.urandom(6).hex(), "wr0ng-" + os.urandom(6).hex()
    user = "hubuser" if auth in ("password", "user") and (kind == "nats" or auth == "user") else None
    brokers.append(broker := Broker(kind, tmp_path / "broker", password=None if auth == "token" else secret,
                                    user=user, token=secret if auth == "token" else None))  # fmt: skip
    keys = f"  user: {user}\n" if user else ""
    keys += "  token_env: HUB_BROKER_SECRET\n" if auth == "token" else "  password_env: HUB_BROKER_SECRET\n"
    good = [shared_hub(start_hub, broker, keys, env={"HUB_BROKER_SECRET": secret}) for _ in range(2)]
    ws = client(good[1])
    assert good[0].broadcast({"stream": STREAM, "data": {"hub": 0, "n": 1}}) == 201
    assert numbers(messages_until(ws, lambda r: len(r) == 1)) == [(0, 1)]
    refused = start_hub(navigator=None, hub=hub_yml(broker.url, kind, keys), env={"HUB_BROKER_SECRET": wrong})
    line = refused.wait_log("broker_unreachable", attempts=1)
    assert line["error"]  # the broker's refusal is logged...
    assert refused.metric("hub_broker_connected") == 0
    for hub in (*good, refused):
        shown = [hub.request("GET", "/metrics")[1].decode(), hub.request("GET", "/up")[1].decode()]
        hub.signal(signal.SIGTERM)
        assert hub.proc.wait(30) == 0
        shown += [json.dumps(line) for line in hub.lines] + [hub.proc.stderr.read()]
        text = "\n".join(shown)
        assert secret not in text and wrong not in text  # ...but never a secret


def test_a_url_with_credentials_is_refused_without_showing_them(tmp_path) -> None:
    (tmp_path / "hub.yml").write_text("server: {listen: 0}\nbroker: {kind: redis, url: 'redis://hub:pa55word@127.0.0.1:6379/0'}\n")
    done = subprocess.run([sys.executable, "-m", "hub", "--hub-config", str(tmp_path / "hub.yml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "broker.url: credentials do not belong in the URL" in done.stderr
    assert "pa55word" not in done.stderr + done.stdout
    done = subprocess.run([sys.executable, "-m", "hub", "--hub-config", str(tmp_path / "hub.yml"), "--broker", "nats",
                           "--broker-url", "nats://hub:pa55word@127.0.0.1:4222"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "--broker-url: credentials do not belong in the URL" in done.stderr
    assert "pa55word" not in done.stderr + done.stdout


# --- Debian's redis-py ------------------------------------------------------------------------


def test_a_hub_on_debians_python3_redis_shares_with_one_on_current_redis_py(tmp_path, start_hub, brokers) -> None:
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import redis; print(redis.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail("Debian's python3-redis is missing: ./scripts/setup-env test installs it")
    brokers.append(broker := Broker("redis", tmp_path / "broker"))
    debian = shared_hub(start_hub, broker, env={"PYTHONPATH": str(REPO)}, launcher=(DEBIAN_PYTHON, "-m", "hub"))
    current = shared_hub(start_hub, broker)
    clients = [client(debian), client(current)]
    for index, hub in enumerate((debian, current)):
        assert hub.broadcast({"stream": STREAM, "data": {"hub": index, "n": 1}}) == 201
    post_ends([debian, current])
    for ws in clients:
        assert sorted(numbers(messages_until(ws, ends_from(0, 1)))) == [(0, 1), (1, 1)]
    broker.restart()
    wait_for(lambda: debian.metric("hub_broker_reconnects_total") == 1, 20, "Debian's hub to connect again")
    debian.signal(signal.SIGTERM)
    assert debian.proc.wait(30) == 0
    assert debian.find("broker_closed") and not debian.find("broker_close_failed")
