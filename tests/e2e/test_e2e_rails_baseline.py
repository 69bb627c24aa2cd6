"""The Node client script against the real Rails 6.1 Action Cable server
(Puma from Debian): proves the script behaves like the official consumer does
in a browser, so its results against the hub mean something."""

from e2e_support import NodeClient, ServerProcess, broadcast


def test_official_client_against_rails_action_cable(rails_cable: ServerProcess, node_client) -> None:
    params = {"channel": "StreamChannel", "stream": "baseline"}
    client: NodeClient = node_client(
        "actioncable-client.cjs",
        {"url": f"ws://127.0.0.1:{rails_cable.port}/cable", "subscriptions": [params], "expect": 1, "deadline": 30},
    )
    client.wait_count("subscribed", 1, timeout=20)
    assert client.named("handshake")[0]["protocol"] == "actioncable-v1-json"

    broadcast(rails_cable.port, "baseline", {"heat": 7})

    assert client.wait_exit(timeout=20)["reason"] == "done"
    [received] = client.named("received")
    assert received["data"] == {"heat": 7}


def test_official_client_stops_after_rails_refuses_reconnect(rails_cable: ServerProcess, node_client) -> None:
    client: NodeClient = node_client(
        "actioncable-client.cjs",
        {
            "url": f"ws://127.0.0.1:{rails_cable.port}/cable?reject=1",
            "subscriptions": [{"channel": "StreamChannel", "stream": "baseline"}],
            "linger": 8,
            "deadline": 30,
        },
    )
    assert client.wait_exit(timeout=25)["reason"] == "no_reconnect"
    [disconnected] = client.named("disconnected")
    assert disconnected["will_attempt_reconnect"] is False
    [linger] = client.named("linger_done")
    assert linger["attempts_after_stop"] == 0
    assert linger["monitor_running"] is False
