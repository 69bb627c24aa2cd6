"""Preflight cases no other test held: `public def` after `private`, the hub and signed channels' streams,
@anycable/web's stream subscriptions, and turbo-rails' subscribeTo naming its channel in an object literal."""

from __future__ import annotations

from pathlib import Path

from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory
from orchestrator.preflight import javascript, ruby
from orchestrator.preflight.findings import Severity
from tests.orchestrator.preflight.apps import ACTION_CABLE_APP, TURBO_CABLE_APP, coded, findings, write_files
from tests.orchestrator.rollout.fleet import FLEET_INVENTORY

BLOCKING = Severity.BLOCKING


def inventory(tmp_path: Path, websocket_extra: str) -> Inventory:
    text = FLEET_INVENTORY.replace("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                                   "  signing_secret_env: CABLE_SIGNING_SECRET\n" + websocket_extra)
    path = tmp_path / "inventory.yml"
    path.write_text(text, encoding="utf-8")
    return load_inventory(path)


def subscriptions(source: str) -> list[tuple[str | None, int]]:
    return [(s.channel, s.line) for s in javascript.analyse(javascript.tokenize(source)).subscriptions]


# --- visibility ---------------------------------------------------------------------------------

PUBLIC_AFTER_PRIVATE = """\
class ChatChannel < ApplicationCable::Channel
  def subscribed
    stream_from "chat"
  end

  private

  def helper; end

  public def speak(data)
    ActionCable.server.broadcast("chat", data)
  end

  def still_private; end
end
"""


def test_public_def_after_private_is_public_and_the_section_stays_private() -> None:
    outline = ruby.outline(ruby.tokenize(PUBLIC_AFTER_PRIVATE), ())
    assert [(m.name, m.public) for m in outline.classes[0].methods] == [
        ("subscribed", True), ("helper", False), ("speak", True), ("still_private", False)]


def test_public_def_after_private_is_an_action_a_client_can_perform(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", {**ACTION_CABLE_APP, "app/channels/chat_channel.rb": PUBLIC_AFTER_PRIVATE})
    assert coded(findings(app, "hub"), "channel-action", BLOCKING) == [("app/channels/chat_channel.rb", 10)]


# --- the hub and Navigator's protocol -------------------------------------------------------------


def test_the_hub_refuses_navigator_protocol_pages_a_signed_channels_stream(tmp_path: Path) -> None:
    """Navigator's protocol cannot carry a signature: a stream a signed channel covers is refused over it."""
    app = write_files(tmp_path / "app", TURBO_CABLE_APP)
    signed = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}', signed: true}\n")
    (refused,) = [f for f in findings(app, "hub", signed) if f.code.value == "hub-stream-refused"]
    assert (refused.severity, refused.where.file, refused.where.line) == (BLOCKING, "app/views/scores/index.html.erb", 2)
    unsigned = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n")
    assert coded(findings(app, "hub", unsigned), "hub-stream-refused") == []


# --- JavaScript ---------------------------------------------------------------------------------

ANYCABLE_PAGE = """\
import { createCable } from "@anycable/web"
const cable = createCable()
const room = cable.streamFrom("room/42")
const mine = cable.streamFromSigned(document.body.dataset.signedStream)
room.on("message", (message) => console.log(message))
"""


def test_anycable_web_stream_subscriptions_are_pubsub_subscriptions(tmp_path: Path) -> None:
    assert subscriptions(ANYCABLE_PAGE) == [("$pubsub", 3), ("$pubsub", 4)]
    files = {**ACTION_CABLE_APP, "app/javascript/controllers/room_controller.js": ANYCABLE_PAGE}
    app = write_files(tmp_path / "app", files)
    page = "app/javascript/controllers/room_controller.js"
    assert [place for place in coded(findings(app, "integrated"), "client-protocol", BLOCKING) if place[0] == page] == [
        (page, 3), (page, 4)]
    # $pubsub is what anycable-go and the hub serve without a mapping.
    assert [place for place in coded(findings(app, "anycable"), "channel-unsupported") if place[0] == page] == []
    assert [place for place in coded(findings(app, "hub"), "channel-unmapped") if place[0] == page] == []


PRESENCE_PAGE = """\
import { cable } from "@hotwired/turbo-rails"

export async function join(roomId) {
  return cable.subscribeTo({ channel: "PresenceChannel", room_id: roomId }, {
    received(data) { console.log(data) }
  })
}
"""


def test_subscribe_to_names_the_channel_of_its_object_literal(tmp_path: Path) -> None:
    assert subscriptions(PRESENCE_PAGE) == [("PresenceChannel", 4)]
    assert subscriptions('cable.subscribeTo("ChatChannel", { received() {} })') == [("ChatChannel", 1)]
    assert subscriptions("cable.subscribeTo(params, { received() {} })") == [(None, 1)]
    files = {**ACTION_CABLE_APP, "app/javascript/controllers/presence_controller.js": PRESENCE_PAGE}
    app = write_files(tmp_path / "app", files)
    page = "app/javascript/controllers/presence_controller.js"
    (unmapped,) = [f for f in findings(app, "hub") if f.code.value == "channel-unmapped" and f.where.file == page]
    assert (unmapped.severity, unmapped.where.line) == (BLOCKING, 4)
    assert unmapped.message.startswith("subscribes to PresenceChannel, which websocket.channels does not map")
    mapped = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n"
                                 "    PresenceChannel: {stream: 'presence-{room_id}'}\n")
    assert coded(findings(app, "hub", mapped), "channel-unmapped") == []
