"""The app side, end to end: Rails 6.1 (Debian's railties and actioncable) booted on the files
`orchestrate render` wrote for a region of the example inventory broadcasts with
`ActionCable.server.broadcast`, and the message reaches, through the real hub started on that
region's rendered configuration, the official `@rails/actioncable` client and a client of
Navigator's own protocol, as exactly the value Rails broadcast.

Both modes whose Rails side is the generated `http_broadcast` adapter: `integrated` (the hub
plays Navigator, `navigator_protocol: open`, as in a rehearsal) and `hub` (the hub behind
Navigator, on its own `hub.yml`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_support import NodeClient, ServerProcess
from rails_region import (
    BROADCAST_KEY_ENV,
    SHOWCASE_CHANNELS,
    SHOWCASE_INVENTORY,
    SIGNING_SECRET,
    SIGNING_SECRET_ENV,
    WITH_BROADCAST_KEY,
    booted,
    RailsApp,
    Region,
    errors,
    hub_servers,
    rails_apps,
    render_region,
    showcase_copy,
)

StartClient = Callable[[str, dict[str, Any]], NodeClient]

# An object with what JSON can carry (text outside ASCII, markup, false, null), and a Turbo
# Stream as turbo-rails renders one: the HTML string is the whole message.
HEAT = {"heat": 12, "couples": ["Zoë & Åsa", "Jürgen <b>"], "number": 12.5, "final": False, "judge": None}
TURBO_STREAM = (
    '<turbo-stream action="replace" target="heat_12"><template>'
    '<div id="heat_12">Heat 12 — Zoë &amp; Åsa "live"</div></template></turbo-stream>'
)


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[Callable[[Region, dict[str, str]], ServerProcess]]:
    yield from hub_servers(tmp_path)


@pytest.fixture
def rails() -> Iterator[Callable[[Path, dict[str, str]], RailsApp]]:
    yield from rails_apps()


def inventory_for(mode: str, directory: Path, *more: str) -> Path:
    """The example inventory; for the hub mode with its pages' streams mapped to named channels.

    As it is, the example has `public_streams: false` and no channels, so in the hub mode
    (`navigator_protocol: policy`) the hub refuses every Navigator-protocol subscription, and its
    pages, which use that protocol, would receive nothing; `validate` does not warn about it."""
    if mode == "integrated" and not more:
        return SHOWCASE_INVENTORY
    return showcase_copy(directory, *((SHOWCASE_CHANNELS,) if mode == "hub" else ()), *more)


def identifier(params: dict[str, Any]) -> str:
    return json.dumps(params, separators=(",", ":"))  # JSON.stringify(params), as the client sends it


def received_by(client: NodeClient, params: dict[str, Any]) -> list[Any]:
    return [event["data"] for event in client.named("received") if event["identifier"] == identifier(params)]


def navigator_received(client: NodeClient) -> list[tuple[str, Any]]:
    return [(event["stream"], event["data"]) for event in client.named("received")]


class Clients:
    """The official Action Cable client (Turbo's signed streams) and a Navigator-protocol client
    (stream names), both subscribed to the same streams of the region's first tenant."""

    def __init__(self, node_client: StartClient, region: Region, hub: ServerProcess, app: RailsApp, expect: int) -> None:
        database = region.database
        # turbo_stream_from "current-heat-#{database}" and "live-scores-#{database}", signed by Rails.
        self.heat, heat_signed = app.sign(f"current-heat-{database}")
        self.scores, scores_signed = app.sign(f"live-scores-{database}")
        self.heat_params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": heat_signed}
        self.scores_params = {"channel": "Turbo::StreamsChannel", "signed_stream_name": scores_signed}
        url = f"ws://127.0.0.1:{hub.port}{region.cable_path}"
        self.cable = node_client(
            "actioncable-client.cjs",
            {"url": url, "subscriptions": [self.heat_params, self.scores_params], "expect": expect, "deadline": 60},
        )
        self.navigator = node_client(
            "navigator-client.cjs", {"url": url, "streams": [self.heat, self.scores], "expect": expect, "deadline": 60}
        )
        self.cable.wait_count("subscribed", 2, timeout=30)
        assert self.cable.named("rejected") == []
        self.navigator.wait_count("subscribed", 2, timeout=30)

    def wait_done(self) -> None:
        assert self.cable.wait_exit(timeout=30)["reason"] == "done"
        assert self.navigator.wait_exit(timeout=30)["reason"] == "done"


@pytest.mark.parametrize("mode", ["integrated", "hub"])
def test_rails_broadcasts_arrive_at_both_clients_as_sent_and_a_stopped_hub_is_logged(
    mode: str, tmp_path: Path, hubs, rails, node_client: StartClient
) -> None:
    region = render_region(tmp_path / "out", mode, inventory_for(mode, tmp_path / "inventory"))
    hub = hubs(region, {SIGNING_SECRET_ENV: SIGNING_SECRET})
    app = booted(rails, region, hub, **{SIGNING_SECRET_ENV: SIGNING_SECRET})
    clients = Clients(node_client, region, hub, app, expect=2)

    result, logs = app.broadcast(clients.heat, HEAT)
    assert (result, errors(logs)) == (True, [])
    result, logs = app.turbo_broadcast([clients.scores], TURBO_STREAM)
    assert (result, errors(logs)) == (True, [])

    clients.wait_done()
    # The value Rails broadcast, decoded once: an object stays that object, the HTML a string.
    assert received_by(clients.cable, clients.heat_params) == [HEAT]
    assert received_by(clients.cable, clients.scores_params) == [TURBO_STREAM]
    assert navigator_received(clients.navigator) == [(clients.heat, HEAT), (clients.scores, TURBO_STREAM)]

    # The hub (Navigator, in the integrated mode) gone: Rails' call returns false and logs, not raises.
    hub.stop()
    cable_url = app.output.named("ready")[0]["cable"]["url"]
    result, logs = app.broadcast(clients.heat, {"heat": 13})
    assert result is False
    [error] = errors(logs)
    assert error.startswith(f"[http_broadcast] {cable_url}: Errno::ECONNREFUSED"), error

    # Back on the same port, the same Rails process broadcasts again.
    hub.start()
    result, logs = app.broadcast(clients.heat, {"heat": 14})
    assert (result, errors(logs)) == (True, [])


def test_a_broadcast_string_that_is_json_text_stays_a_string(tmp_path: Path, hubs, rails, node_client: StartClient) -> None:
    # Apps that predate Turbo often broadcast `record.to_json`: Action Cable delivers that
    # string to the client, whose code then parses it.
    region = render_region(tmp_path / "out", "hub", inventory_for("hub", tmp_path / "inventory"))
    hub = hubs(region, {SIGNING_SECRET_ENV: SIGNING_SECRET})
    app = booted(rails, region, hub, **{SIGNING_SECRET_ENV: SIGNING_SECRET})
    clients = Clients(node_client, region, hub, app, expect=2)
    json_text = json.dumps(HEAT)

    assert app.broadcast(clients.heat, json_text)[0] is True
    assert app.broadcast(clients.scores, "42")[0] is True

    clients.wait_done()
    assert navigator_received(clients.navigator) == [(clients.heat, json_text), (clients.scores, "42")]
    assert received_by(clients.cable, clients.heat_params) == [json_text]
    assert received_by(clients.cable, clients.scores_params) == ["42"]


def test_with_a_broadcast_key_only_rails_holding_it_is_delivered(tmp_path: Path, hubs, rails, node_client: StartClient) -> None:
    region = render_region(tmp_path / "out", "hub", inventory_for("hub", tmp_path / "inventory", WITH_BROADCAST_KEY))
    assert region.hub_config["broadcast_key_env"] == BROADCAST_KEY_ENV
    secrets = {SIGNING_SECRET_ENV: SIGNING_SECRET}
    hub = hubs(region, {**secrets, BROADCAST_KEY_ENV: "the-broadcast-key"})
    # Three processes of the app: the key set as on the hub, a wrong key, and the variable unset.
    keyed = booted(rails, region, hub, **secrets, **{BROADCAST_KEY_ENV: "the-broadcast-key"})
    wrong = booted(rails, region, hub, **secrets, **{BROADCAST_KEY_ENV: "not-the-broadcast-key"})
    unset = booted(rails, region, hub, **secrets)
    clients = Clients(node_client, region, hub, keyed, expect=1)
    cable_url = keyed.output.named("ready")[0]["cable"]["url"]

    for app, label in ((wrong, "wrong"), (unset, "unset")):
        result, logs = app.broadcast(clients.heat, {"forged": label})
        assert result is False, label
        assert errors(logs) == [f"[http_broadcast] {cable_url} answered 401 for stream {clients.heat}"], label
    result, logs = keyed.broadcast(clients.heat, HEAT)
    assert (result, errors(logs)) == (True, [])

    clients.wait_done()
    # The refused broadcasts were sent first: had either been delivered, it would have come first.
    assert received_by(clients.cable, clients.heat_params) == [HEAT]
    assert navigator_received(clients.navigator) == [(clients.heat, HEAT)]
