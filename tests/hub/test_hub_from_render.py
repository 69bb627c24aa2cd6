"""The hub started by `orchestrate hub` on the files `orchestrate render` writes for a region."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from websockets.sync.client import connect

from hub.signing import sign
from orchestrator.cli import main as orchestrate

REPO = Path(__file__).resolve().parents[2]
SECRET = "rendered-config-secret"


def test_orchestrate_hub_serves_the_rendered_region(tmp_path, start_hub, capsys) -> None:
    out = tmp_path / "out"
    assert orchestrate(["render", str(REPO / "inventories" / "showcase.yml"), "--out", str(out), "--region", "ord"]) == 0
    capsys.readouterr()
    region = out / "production" / "navigator" / "regions" / "ord"
    hub = start_hub(
        navigator=(region / "navigator.yml").read_text(),
        hub=(region / "hub.yml").read_text(),
        env={"CABLE_SIGNING_SECRET": SECRET},
        launcher=(sys.executable, "-m", "orchestrator", "hub"),
    )
    maps = open(f"/proc/{hub.proc.pid}/maps").read()
    assert "libssl" not in maps and "libcrypto" not in maps
    assert hub.request("GET", "/up") == (200, b"OK")

    identifier = json.dumps({"channel": "$pubsub",
                             "signed_stream_name": sign("config_update_2025-boston_7", SECRET.encode())})
    with connect(hub.ws_url("/showcase/regions/ord/cable"), subprotocols=["actioncable-v1-json"], open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"command": "subscribe", "identifier": identifier}))
        assert json.loads(ws.recv(timeout=10)) == {"identifier": identifier, "type": "confirm_subscription"}
        # The region is in integrated mode: the hub stands in for Navigator's cable, which answers 200.
        assert hub.broadcast({"stream": "config_update_2025-boston_7", "data": {"reload": True}}) == 200
        message = json.loads(ws.recv(timeout=10))
        while message.get("type") == "ping":
            message = json.loads(ws.recv(timeout=10))
        assert message == {"identifier": identifier, "message": {"reload": True}}
