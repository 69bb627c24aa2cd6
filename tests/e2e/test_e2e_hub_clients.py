"""Real clients against the hub: the official @rails/actioncable consumer,
@anycable/web, and a Navigator-protocol client, all under Node with ws."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

from e2e_support import SECRET, Hub, NodeClient, broadcast, http_request

from hub.signing import sign


PUBLIC = {"channel": "$pubsub", "stream_name": "announcements"}
HEAT = {"channel": "CurrentHeatChannel", "database": "2025-boston-spring"}
StartClient = Callable[[str, dict[str, Any]], NodeClient]


def identifier(params: dict[str, Any]) -> str:
    # What the Rails client sends and gets back: JSON.stringify(params).
    return json.dumps(params, separators=(",", ":"))


def received_by(client: NodeClient, params: dict[str, Any]) -> list[Any]:
    return [event["data"] for event in client.named("received") if event["identifier"] == identifier(params)]


def rails_client(start: StartClient, hub: Hub, **config: Any) -> NodeClient:
    return start("actioncable-client.cjs", {"url": hub.cable_url, "deadline": 60, **config})


def test_official_client_receives_public_and_channel_broadcasts(hub: Hub, node_client: StartClient) -> None:
    client = rails_client(node_client, hub, subscriptions=[PUBLIC, HEAT], expect=4)
    client.wait_count("subscribed", 2, timeout=15)
    assert client.named("handshake")[0]["protocol"] == "actioncable-v1-json"

    # The message as posted, as the generated Rails adapter posts it: a value, or a string that
    # stays a string even when it reads as JSON (what Rails sends for broadcast(stream, string)).
    broadcast(hub.port, "announcements", {"text": "doors open", "n": 1})
    broadcast(hub.port, "current-heat-2025-boston-spring", {"heat": 42})
    broadcast(hub.port, "announcements", "plain text, not JSON")
    broadcast(hub.port, "announcements", '{"a string": "of JSON"}')

    assert client.wait_exit(timeout=15)["reason"] == "done"
    assert received_by(client, PUBLIC) == [{"text": "doors open", "n": 1}, "plain text, not JSON", '{"a string": "of JSON"}']
    assert received_by(client, HEAT) == [{"heat": 42}]


def test_official_client_resubscribes_after_hub_restart(hub: Hub, node_client: StartClient) -> None:
    client = rails_client(node_client, hub, subscriptions=[HEAT], expect=2, deadline=90)
    client.wait_count("subscribed", 1, timeout=15)
    broadcast(hub.port, "current-heat-2025-boston-spring", {"heat": 1})
    client.wait_count("received", 1, timeout=10)

    hub.server.signal(signal.SIGTERM)
    assert hub.server.wait_exit(timeout=15) == 0
    client.wait_for(
        lambda events: any(e["event"] == "disconnected" and e["will_attempt_reconnect"] for e in events),
        timeout=10,
        what="a disconnect that will reconnect",
    )
    closes = client.named("socket_closed")
    assert closes and closes[0]["code"] == 1001, closes

    hub.server.start()
    # The consumer notices the stale connection on its own schedule (6 s
    # threshold, polled with backoff), reopens, and resubscribes on welcome.
    client.wait_count("subscribed", 2, timeout=45)
    broadcast(hub.port, "current-heat-2025-boston-spring", {"heat": 2})

    assert client.wait_exit(timeout=15)["reason"] == "done"
    assert received_by(client, HEAT) == [{"heat": 1}, {"heat": 2}]
    assert len(client.named("socket_open_attempt")) >= 2


def test_official_client_stops_on_reconnect_false(hub: Hub, node_client: StartClient) -> None:
    client = rails_client(node_client, hub, subscriptions=[PUBLIC], linger=8)
    client.wait_count("subscribed", 1, timeout=15)

    hub.rewrite_navigator(enabled=False)
    hub.server.signal(signal.SIGHUP)

    client.wait_for(
        lambda events: any(e["event"] == "disconnected" and not e["will_attempt_reconnect"] for e in events),
        timeout=10,
        what="a disconnect without reconnect",
    )
    assert client.wait_exit(timeout=20)["reason"] == "no_reconnect"
    [linger] = client.named("linger_done")
    assert linger["attempts_after_stop"] == 0
    assert linger["monitor_running"] is False
    # Health and broadcasts keep working with the cable switched off.
    assert http_request(hub.port, "/up") == 200
    broadcast(hub.port, "announcements", {"after": "reload"})


def test_anycable_client_signed_stream(hub: Hub, node_client: StartClient) -> None:
    streams = [
        {"label": "good", "signed": sign("private-stream", SECRET.encode())},
        {"label": "wrong-secret", "signed": sign("other-stream", b"not-the-secret")},
        {"label": "tampered", "signed": sign("private-stream", SECRET.encode()).replace("--", "X--", 1)},
    ]
    client = node_client("anycable-client.mjs", {"url": hub.cable_url, "streams": streams, "expect": 1, "deadline": 30})
    client.wait_for(
        lambda events: sum(e["event"] in ("subscribed", "rejected") for e in events) == len(streams),
        timeout=15,
        what="every stream confirmed or rejected",
    )
    assert [e["label"] for e in client.named("subscribed")] == ["good"]
    assert sorted(e["label"] for e in client.named("rejected")) == ["tampered", "wrong-secret"]

    broadcast(hub.port, "other-stream", {"leak": True})
    broadcast(hub.port, "private-stream", {"secret": "ok"})

    assert client.wait_exit(timeout=15)["reason"] == "done"
    assert [(e["label"], e["data"]) for e in client.named("received")] == [("good", {"secret": "ok"})]


def test_navigator_protocol_round_trip(hub: Hub, node_client: StartClient) -> None:
    client = node_client(
        "navigator-client.cjs", {"url": hub.cable_url, "streams": ["live-scores-2025-boston"], "expect": 1}
    )
    client.wait_count("subscribed", 1, timeout=10)
    assert client.named("handshake")[0]["protocol"] is None
    assert client.named("subscribed")[0]["stream"] == "live-scores-2025-boston"

    broadcast(hub.port, "live-scores-2025-boston", "scores updated")

    assert client.wait_exit(timeout=10)["reason"] == "done"
    [received] = client.named("received")
    assert received["stream"] == "live-scores-2025-boston"
    assert received["data"] == "scores updated"


def test_official_client_showcase_channels(hub: Hub, node_client: StartClient) -> None:
    playlist = "offline_playlist_2025-boston_7"
    turbo = {"channel": "Turbo::StreamsChannel", "signed_stream_name": sign("heats:2025-boston", SECRET.encode())}
    scores = {"channel": "ScoresChannel"}
    signed_playlist = {
        "channel": "OfflinePlaylistChannel", "database": "2025-boston", "user": 7,
        "signed_stream_name": sign(playlist, SECRET.encode()),
    }
    unsigned_playlist = {"channel": "OfflinePlaylistChannel", "database": "2025-boston", "user": 8}
    unknown = {"channel": "NoSuchChannel"}
    client = rails_client(
        node_client, hub, url=hub.cable_url + "?database=2025-boston",
        subscriptions=[turbo, scores, signed_playlist, unsigned_playlist, unknown], expect=3,
    )
    client.wait_for(
        lambda events: sum(e["event"] in ("subscribed", "rejected") for e in events) == 5,
        timeout=15,
        what="all five subscriptions answered",
    )
    assert {e["identifier"] for e in client.named("subscribed")} == {
        identifier(turbo), identifier(scores), identifier(signed_playlist)
    }
    assert {e["identifier"] for e in client.named("rejected")} == {identifier(unsigned_playlist), identifier(unknown)}

    broadcast(hub.port, "heats:2025-boston", '<turbo-stream action="replace" target="heat"></turbo-stream>')
    broadcast(hub.port, "live-scores-2025-boston", {"scores": [1, 2]})
    broadcast(hub.port, "offline_playlist_2025-boston_8", {"leak": True})
    broadcast(hub.port, playlist, {"playlist": "ready"})

    assert client.wait_exit(timeout=15)["reason"] == "done"
    assert received_by(client, turbo) == ['<turbo-stream action="replace" target="heat"></turbo-stream>']
    assert received_by(client, scores) == [{"scores": [1, 2]}]
    assert received_by(client, signed_playlist) == [{"playlist": "ready"}]
    assert len(client.named("received")) == 3


# The consumer reopens a connection that was silent for 6 s (its stale threshold). The hub pings
# every 3 s, so five pings on the first socket span 12 s: two such thresholds.
PINGS_ON_ONE_SOCKET = 5
RECONNECTING = ("socket_closed", "disconnected")


def test_official_client_stays_connected_on_pings(hub: Hub, node_client: StartClient) -> None:
    # No fixed window: however late the client connects, wait for the pings it needs, or for the
    # first sign of a reconnect, whichever comes first.
    client = rails_client(node_client, hub, subscriptions=[PUBLIC], deadline=120)
    client.wait_for(
        lambda events: sum(e["event"] == "ping" for e in events) >= PINGS_ON_ONE_SOCKET
        or any(e["event"] in RECONNECTING for e in events)
        or sum(e["event"] == "socket_open_attempt" for e in events) > 1,
        timeout=90,
        what=f"{PINGS_ON_ONE_SOCKET} pings, or a reconnect",
    )
    assert len(client.named("socket_open_attempt")) == 1
    assert [e for name in RECONNECTING for e in client.named(name)] == []
    [welcome] = client.named("welcome")
    assert welcome["sid"], "welcome carries a session id"
    pings = [event["message"] for event in client.named("ping")]
    assert len(pings) >= PINGS_ON_ONE_SOCKET
    assert all(earlier < later for earlier, later in zip(pings, pings[1:])), pings
