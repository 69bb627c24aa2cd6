"""What `validate` (and `render`) warn about: it works, but the operator should know. Exit 0, on stderr."""

from __future__ import annotations

from tests.orchestrator.conftest import write_inventory

CABLE_PATH = "  cable_path: /demo/regions/{region}/cable\n"
PER_USER_STREAM = CABLE_PATH + "  streams: ['live-{database}', 'config_update_{database}_{user_id}']\n"


def hub_inventory(tmp_path, websocket_lines: str):
    """The minimal inventory in hub mode, with a broadcast key and these lines added to `websocket`."""
    text = write_inventory(tmp_path, replace=(CABLE_PATH, CABLE_PATH + websocket_lines)).read_text()
    return write_inventory(tmp_path, text, replace=("  mode: integrated\n", "  mode: hub\n  broadcast_key_env: K\n"))


def warnings(err: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]


def test_integrated_mode_warns_that_a_per_user_stream_is_readable_by_anyone(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=(CABLE_PATH, PER_USER_STREAM))
    result = orchestrate("validate", inventory)
    assert result.code == 0, result.err
    assert warnings(result.err) == [
        "websocket.streams[1]: 'config_update_{database}_{user_id}' is one user's stream (user_id), yet Navigator's "
        "built-in cable authorizes no stream: anyone who can guess the name can read it; use the hub mode with a "
        f"signed channel (regions in integrated mode: ams, dfw, iad, ord) ({inventory}:26)"
    ]
    assert warnings(orchestrate("validate", write_inventory(tmp_path)).err) == []


def test_the_hub_mode_without_a_broadcast_key_explains_why_loopback_is_trusted(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("  mode: integrated\n", "  mode: hub\n"))
    result = orchestrate("validate", inventory)
    assert result.code == 0, result.err
    (note,) = warnings(result.err)
    assert note.startswith("websocket.broadcast_key_env: not set, so the hub takes broadcasts from loopback without a key.")
    assert "listens on 127.0.0.1:28080 only" in note and "refused" in note and "Set it to require a key" in note
    keyed = write_inventory(tmp_path, replace=("  mode: integrated\n", "  mode: hub\n  broadcast_key_env: CABLE_KEY\n"))
    assert warnings(orchestrate("validate", keyed).err) == []


def test_the_hub_mode_warns_about_a_per_user_stream_on_an_unsigned_channel(orchestrate, tmp_path):
    inventory = hub_inventory(tmp_path, "  channels:\n"
                                        "    InboxChannel: {stream: 'inbox_{user_id}'}\n"
                                        "    ScoresChannel: {stream: 'scores_{database}'}\n")
    result = orchestrate("validate", inventory)
    assert result.code == 0, result.err
    assert warnings(result.err) == [
        "websocket.channels.InboxChannel: 'inbox_{user_id}' is one user's stream (user_id) on an unsigned channel: "
        "any client can subscribe with another user's id; make the channel signed "
        f"(regions in hub mode: ams, dfw, iad, ord) ({inventory}:28)"
    ]
    signed = write_inventory(tmp_path, inventory.read_text().replace("'inbox_{user_id}'}", "'inbox_{user_id}', signed: true}"))
    assert warnings(orchestrate("validate", signed).err) == []


def test_an_unsigned_channel_that_can_produce_a_signed_channel_s_stream_is_reported(orchestrate, tmp_path):
    inventory = hub_inventory(tmp_path, "  channels:\n"
                                        "    RoomChannel: {stream: 'room_{id}'}\n"
                                        "    AdminChannel: {stream: 'room_admin_{n}', signed: true}\n")
    result = orchestrate("render", inventory, "--out", tmp_path / "out")
    assert warnings(result.err) == [
        "websocket.channels.RoomChannel.stream: 'room_{id}' can produce names of the signed channel AdminChannel "
        "('room_admin_{n}'); the hub refuses those subscriptions, so give the two channels distinct prefixes "
        f"({inventory}:28)"
    ]
    distinct = write_inventory(tmp_path, inventory.read_text().replace("'room_admin_{n}'", "'admin_room_{n}'"))
    assert warnings(orchestrate("validate", distinct).err) == []


def test_the_hub_mode_warns_about_named_streams_no_channel_reaches(orchestrate, tmp_path):
    inventory = hub_inventory(tmp_path, PER_USER_STREAM.removeprefix(CABLE_PATH)
                              + "  channels:\n    LiveChannel: {stream: 'live-{database}'}\n")
    result = orchestrate("validate", inventory)
    assert result.code == 0, result.err
    assert warnings(result.err) == [
        "websocket.streams[1]: pages that subscribe to 'config_update_{database}_{user_id}' by name get nothing in hub "
        "mode: no unsigned channel maps to it and public_streams is off; map it in websocket.channels "
        f"(regions in hub mode: ams, dfw, iad, ord) ({inventory}:27)"
    ]
