"""What one client may hold over all its connections: connections and subscriptions per client.

Subscriptions were bounded per connection only: one client with 1000 connections of 1000 subscriptions
each cost the hub 710 MB. A client is the address it connects from; behind Navigator, every client
connects from 127.0.0.1, and the address Navigator appended to X-Forwarded-For tells them apart.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from hub.config import SCHEMA_PATH, Limits
from hub.server import address_key, client_address
from hub.streams import Client, Clients, StreamRegistry, SubscriptionLimitReached
from hub_testkit import FakeSubscriber, subscribe
from tests.polling import wait_for

XFF = b"x-forwarded-for"


# --- who a client is --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        (("198.51.100.4", 5000), [], "198.51.100.4"),
        (("198.51.100.4", 5000), [(XFF, b"203.0.113.9")], "198.51.100.4"),  # trusted from loopback only
        (("127.0.0.1", 5000), [], "127.0.0.1"),  # a local process
        (("127.0.0.1", 5000), [(XFF, b"203.0.113.9")], "203.0.113.9"),
        (("127.0.0.1", 5000), [(XFF, b"10.0.0.1, 192.0.2.1,203.0.113.9")], "203.0.113.9"),  # the proxy's entry is the last
        (("127.0.0.1", 5000), [(XFF, b"10.0.0.1"), (XFF, b"203.0.113.9")], "203.0.113.9"),  # the last header line too
        (("127.0.0.1", 5000), [(XFF, b"203.0.113.9:41234")], "203.0.113.9"),
        (("127.0.0.1", 5000), [(XFF, b"not an address")], "127.0.0.1"),
        (("127.0.0.1", 5000), [(XFF, b"")], "127.0.0.1"),
        (("::1", 5000, 0, 0), [(XFF, b"2001:db8:1:2:aaaa::1")], "2001:db8:1:2::/64"),
        (("::1", 5000, 0, 0), [(XFF, b"[2001:db8:1:2:bbbb::7]:443")], "2001:db8:1:2::/64"),  # the same /64: one client
        (("::ffff:127.0.0.1", 5000, 0, 0), [(XFF, b"::ffff:203.0.113.9")], "203.0.113.9"),
        (("2001:db8:9::5", 5000, 0, 0), [], "2001:db8:9::/64"),
    ],
)
def test_a_client_is_its_address_and_behind_a_local_proxy_the_one_the_proxy_appended(peer, headers, client) -> None:
    assert client_address(peer, headers, XFF) == client
    assert client_address(peer, [(b"fly-client-ip", b"192.0.2.50"), *headers], b"fly-client-ip") == (
        "192.0.2.50" if peer[0] in ("127.0.0.1", "::1", "::ffff:127.0.0.1") else client
    )


def test_address_keys() -> None:
    assert [address_key(text) for text in ("192.0.2.1", " 192.0.2.1 ", "fe80::1%eth0", "x", "1.2.3", "[::1]")] == [
        "192.0.2.1", "192.0.2.1", "fe80::/64", None, None, "::/64",
    ]  # fmt: skip


# --- the registry and the table of clients -----------------------------------------------------------


def test_subscriptions_are_bounded_per_client_over_all_its_connections() -> None:
    registry = StreamRegistry(max_subscriptions_per_connection=3, max_subscriptions_per_client=4)
    client, other = Client("192.0.2.1"), Client("192.0.2.2")
    first, second, elsewhere = FakeSubscriber("a", client), FakeSubscriber("b", client), FakeSubscriber("c", other)
    for stream in ("s1", "s2", "s3"):
        assert registry.add(stream, "id", first)
    assert registry.add("s1", "id", second)
    with pytest.raises(SubscriptionLimitReached, match="at most 4 subscriptions per client") as refused:
        registry.add("s2", "id", second)
    assert refused.value.limit == 4
    assert registry.add("s1", "id", second) is False  # what it has is not a new subscription
    assert registry.add("s2", "id", elsewhere)  # another client is not affected
    assert (client.subscriptions, other.subscriptions, registry.subscriptions) == (4, 1, 5)
    assert registry.remove("s1", "id", first)
    assert registry.add("s2", "id", second) and client.subscriptions == 4
    registry.max_subscriptions_per_client = 10  # a reload raises it
    assert registry.add("s3", "id", second) and client.subscriptions == 5
    with pytest.raises(ValueError):
        StreamRegistry(max_subscriptions_per_client=0)


def test_the_table_of_clients_counts_connections_and_forgets_a_client_with_none() -> None:
    clients = Clients()
    first = clients.admit("192.0.2.1", 2)
    assert first is not None and clients.admit("192.0.2.1", 2) is first and first.connections == 2
    assert clients.admit("192.0.2.1", 2) is None and first.connections == 2
    assert clients.admit("192.0.2.1", 3) is first  # a reload raised the limit
    for _ in range(3):
        clients.release(first)
    assert len(clients) == 0 and first.connections == 0
    admitted = [clients.admit(f"10.0.{n // 256}.{n % 256}", 1) for n in range(2000)]
    for client in admitted:
        assert client is not None
        clients.release(client)
    assert len(clients) == 0 and clients._by_address == {} and clients._peak == 0  # its memory goes too


def test_the_limits_have_defaults_and_schema_entries() -> None:
    assert (Limits().max_connections_per_client, Limits().max_subscriptions_per_client) == (1000, 10000)
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    limits = schema["properties"]["limits"]["properties"]
    for name in ("max_connections_per_client", "max_subscriptions_per_client"):
        assert limits[name]["type"] == "integer" and limits[name]["minimum"] == 1
    assert schema["properties"]["client_ip_header"]["type"] == "string"


# --- the running hub --------------------------------------------------------------------------------

HUB_YML = """server: {listen: 0}
public_streams: true
limits: {max_connections_per_client: 2, max_subscriptions_per_connection: 5, max_subscriptions_per_client: 6}
"""


def cable(hub, forwarded_for: str | None = None, header: str = "X-Forwarded-For") -> ClientConnection:
    headers = {header: forwarded_for} if forwarded_for is not None else None
    return connect(hub.ws_url("/cable"), subprotocols=["actioncable-v1-json"], additional_headers=headers, open_timeout=10)


def refused_status(hub, forwarded_for: str | None = None, header: str = "X-Forwarded-For") -> int:
    with pytest.raises(InvalidStatus) as refused:
        cable(hub, forwarded_for, header).close()
    return refused.value.response.status_code


def test_one_client_gets_only_so_many_connections_and_subscriptions(start_hub) -> None:
    hub = start_hub(navigator=None, hub=HUB_YML)
    with cable(hub) as first, cable(hub) as second:  # both from 127.0.0.1 without a header: one client
        assert refused_status(hub) == 429
        hub.wait_log("upgrade_refused", why="too many connections from this client", client="127.0.0.1")
        replies = [subscribe(ws, channel="$pubsub", stream_name=f"s{n}")[1]["type"] for ws in (first, second) for n in range(5)]
        assert replies == ["confirm_subscription"] * 6 + ["reject_subscription"] * 4  # 6 for the client in all
        assert hub.metric("hub_subscriptions") == 6
        with cable(hub, "203.0.113.7") as proxied, cable(hub, "10.9.9.9, 203.0.113.7") as forged:
            # Behind Navigator: the entry Navigator appended is the client, whatever came before it.
            assert refused_status(hub, "203.0.113.7") == 429
            assert subscribe(proxied, channel="$pubsub", stream_name="s0")[1]["type"] == "confirm_subscription"
            assert subscribe(forged, channel="$pubsub", stream_name="s0")[1]["type"] == "confirm_subscription"
            assert hub.metric("hub_clients") == 2
        first.close()
        wait_for(lambda: hub.metric("hub_subscriptions") == 1, what="the first connection's subscriptions to go")
        assert subscribe(second, channel="$pubsub", stream_name="s9")[1]["type"] == "confirm_subscription"
        with cable(hub) as again:  # a connection of its two is free again
            assert subscribe(again, channel="$pubsub", stream_name="t")[1]["type"] == "confirm_subscription"
    wait_for(lambda: hub.metric("hub_clients") == 0, what="every client to be forgotten")


def test_behind_flys_proxy_the_header_it_sets_tells_clients_apart(start_hub) -> None:
    hub = start_hub(navigator=None, hub=HUB_YML + "client_ip_header: Fly-Client-IP\n")
    with cable(hub, "192.0.2.1", "Fly-Client-IP"), cable(hub, "192.0.2.1", "Fly-Client-IP"):
        assert refused_status(hub, "192.0.2.1", "Fly-Client-IP") == 429
        with cable(hub, "192.0.2.2", "Fly-Client-IP"), cable(hub, "192.0.2.1, 192.0.2.3"):  # X-Forwarded-For is not read
            assert hub.metric("hub_clients") == 3
