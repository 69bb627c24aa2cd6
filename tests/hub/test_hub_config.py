"""Configuration: navigator.yml, hub.yml (checked against schema/hub.schema.json), flags."""

from __future__ import annotations

import io
import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.loop import Loop
from hub.cable import Channel
from hub.errors import InputError
from hub.config import SCHEMA_PATH, Overrides, load, parse_channel_flag, parse_listen, schema_errors
from hub.log import Logger
from hub.server import PROXY_HEADERS, Hub, _is_loopback
from hub_testkit import FakeSubscriber, LogRecorder

SCHEMA = json.loads(open(SCHEMA_PATH).read())


def write(tmp_path, navigator: str, hub: str | None = None):
    (tmp_path / "navigator.yml").write_text(navigator)
    if hub is not None:
        (tmp_path / "hub.yml").write_text(hub)
    return str(tmp_path / "navigator.yml")


def problems(path: str, overrides: Overrides = Overrides(), environ: dict | None = None) -> list[str]:
    with pytest.raises(InputError) as info:
        load(path, overrides, environ or {})
    return info.value.problems


def test_defaults_follow_navigator(tmp_path) -> None:
    config = load(write(tmp_path, "server: {}\n"), Overrides(), {})
    assert (config.port, config.health_path) == (3000, "/up")
    assert (config.cable_enabled, config.cable_path, config.broadcast_path) == (True, "/cable", "/_broadcast")
    assert config.hub_path is None and config.limits.max_message_bytes == 65536
    assert config.ping_interval_seconds == 3.0 and not config.public_streams


def test_showcase_files(tmp_path) -> None:
    path = write(
        tmp_path,
        "server: {listen: 9999, health_check: {path: /up}}\n"
        "cable: {enabled: true, path: /showcase/regions/iad/cable, broadcast_path: /_broadcast}\n",
        "public_streams: false\nsigning_secret_env: CABLE_SIGNING_SECRET\n"
        "channels:\n  ConfigUpdateChannel: {stream: 'config_update_{database}_{user_id}', signed: true}\n"
        "limits: {max_message_bytes: 65536, max_connections: 10000}\n",
    )
    config = load(path, Overrides(), {"CABLE_SIGNING_SECRET": "abc"})
    assert config.port == 9999 and config.cable_path == "/showcase/regions/iad/cable"
    assert config.signing_secret == b"abc"
    assert config.channels == {"ConfigUpdateChannel": Channel("config_update_{database}_{user_id}", True)}
    assert config.limits.max_connections == 10000
    assert "abc" not in repr(config)


@pytest.mark.parametrize(("value", "port"), [(9999, 9999), ("9999", 9999), (":9999", 9999), ("0.0.0.0:80", 80), ("x", None), (True, None), (70000, None)])
def test_listen_forms(value, port) -> None:
    assert parse_listen(value) == port


def test_cable_enabled_false_and_null(tmp_path) -> None:
    assert not load(write(tmp_path, "cable: {enabled: false}\n"), Overrides(), {}).cable_enabled
    assert load(write(tmp_path, "cable: {enabled: null}\n"), Overrides(), {}).cable_enabled


def test_errors_name_file_and_key_path_all_at_once(tmp_path) -> None:
    path = write(
        tmp_path,
        "server: {listen: abc, health_check: {path: up}}\ncable: {enabled: 'yes', path: 5}\n",
        "channels: {lowercase: {stream: x}, Good: {stream: ''}, Other: {}}\nlimits: {output_buffer_bytes: 10}\nping_interval_seconds: 0\n",
    )
    found = problems(path)
    hub_yml = str(tmp_path / "hub.yml")
    assert found == sorted(found)
    for expected in [
        f"{path}: server.listen: expected a port number, got \"abc\"",
        f"{path}: server.health_check.path: expected a path starting with /, got \"up\"",
        f"{path}: cable.enabled: expected boolean, got \"yes\"",
        f"{path}: cable.path: expected a path starting with /, got 5",
        f"{hub_yml}: channels.lowercase: invalid name, must match ^[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$",
        f"{hub_yml}: channels.Good.stream: shorter than 1",
        f"{hub_yml}: channels.Other: missing required key 'stream'",
        f"{hub_yml}: limits.output_buffer_bytes: must be >= 4096, got 10",
        f"{hub_yml}: ping_interval_seconds: must be > 0, got 0",
    ]:
        assert expected in found


def test_integral_floats_count_as_integers_and_become_ints(tmp_path) -> None:
    path = write(tmp_path, "{}\n", "limits: {max_connections: 10.0, handshake_timeout_seconds: 2}\n")
    limits = load(path, Overrides(), {}).limits
    assert limits.max_connections == 10 and isinstance(limits.max_connections, int)
    assert limits.handshake_timeout_seconds == 2.0 and isinstance(limits.handshake_timeout_seconds, float)


def test_invalid_yaml_and_missing_files(tmp_path) -> None:
    path = write(tmp_path, "server: [oops\n")
    assert any(p.startswith(f"{path}:2: not valid YAML") for p in problems(path))
    assert problems(str(tmp_path / "absent.yml")) == [f"{tmp_path}/absent.yml: file not found"]
    good = write(tmp_path, "server: {}\n")
    assert problems(good, Overrides(hub_config=str(tmp_path / "nope.yml"))) == [f"{tmp_path}/nope.yml: file not found"]


def test_a_tab_in_hub_yml_or_navigator_yml_is_named_with_its_line_and_column(tmp_path) -> None:
    path = write(tmp_path, "server:\n  listen: 3000\n", "limits:\n\tmax_connections: 5\n")
    assert problems(path) == [f"{tmp_path}/hub.yml:2:1: a tab character: YAML indents with spaces only"]
    path = write(tmp_path, "server:\n  listen: 3000\ncable:\n  \tpath: /cable\n", "{}\n")
    assert problems(path) == [f"{tmp_path}/navigator.yml:4:3: a tab character: YAML indents with spaces only"]


def test_navigator_yml_is_read_strictly(tmp_path) -> None:
    duplicated = write(tmp_path, "cable:\n  enabled: true\n  enabled: false\n")
    assert problems(duplicated) == [f"{duplicated}:3: duplicate key 'enabled' (first defined on line 2)"]
    yaml_1_1 = write(tmp_path, "cable:\n  enabled: no\n")
    assert problems(yaml_1_1) == [f'{yaml_1_1}: cable.enabled: expected boolean, got "no"']


def test_a_missing_schema_is_a_config_error(tmp_path, monkeypatch) -> None:
    import hub.config

    monkeypatch.setattr(hub.config, "SCHEMA_PATH", str(tmp_path / "gone.json"))
    path = write(tmp_path, "{}\n", "public_streams: true\n")
    assert problems(path) == [f"{tmp_path}/gone.json: cannot read the hub.yml schema: No such file or directory"]


def test_secret_env_must_be_set_and_is_never_in_messages(tmp_path) -> None:
    path = write(tmp_path, "{}\n", "signing_secret_env: MY_SECRET\nbroadcast_key_env: MY_KEY\n")
    found = problems(path, environ={"MY_KEY": "super-secret"})
    assert found == [f"{tmp_path}/hub.yml: signing_secret_env: environment variable MY_SECRET is not set"]
    config = load(path, Overrides(), {"MY_SECRET": "s", "MY_KEY": "super-secret"})
    assert config.broadcast_key == b"super-secret" and "super-secret" not in repr(config)


def test_flags_override_files(tmp_path) -> None:
    path = write(tmp_path, "server: {listen: 9999}\n", "public_streams: false\nchannels: {A: {stream: a}}\n")
    overrides = Overrides(host="0.0.0.0", port=0, public_streams=True, channels=(parse_channel_flag("B=b-{x}", True),))
    config = load(path, overrides, {})
    assert (config.host, config.port, config.public_streams) == ("0.0.0.0", 0, True)
    assert config.channels == {"A": Channel("a"), "B": Channel("b-{x}", True)}


@pytest.mark.parametrize("text", ["noequals", "lower=x", "A=", "=x"])
def test_bad_channel_flags(text) -> None:
    with pytest.raises(InputError):
        parse_channel_flag(text, False)


# The hub checks hub.yml with its own small validator; jsonschema is the oracle here.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 100000),
    st.floats(-1, 100, allow_nan=False),
    st.sampled_from([4096.0, 0.5, 65536.0]),
    st.text(max_size=8),
)
channel_specs = st.one_of(
    scalars,
    st.fixed_dictionaries({}, optional={"stream": scalars, "signed": scalars, "extra": scalars}),
)
hub_docs = st.one_of(
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "public_streams": scalars,
            "signing_secret_env": st.one_of(scalars, st.sampled_from(["SECRET", "lower", "A_1"])),
            "broadcast_key_env": scalars,
            "channels": st.one_of(scalars, st.dictionaries(st.sampled_from(["Ok", "Mod::Ok", "bad", "9x", "A::"]), channel_specs, max_size=3)),
            "limits": st.one_of(
                scalars,
                st.dictionaries(
                    st.sampled_from(["max_message_bytes", "max_connections", "handshake_timeout_seconds", "output_buffer_bytes", "nope"]),
                    scalars,
                    max_size=3,
                ),
            ),
            "ping_interval_seconds": scalars,
            "navigator_protocol": st.one_of(scalars, st.sampled_from(["open", "policy", "Open"])),
            "server": st.one_of(
                scalars,
                st.dictionaries(
                    st.sampled_from(["listen", "cable_path", "broadcast_path", "health_path", "nope"]),
                    st.one_of(scalars, st.sampled_from([0, 65535, 65536, "/cable", "cable"])),
                    max_size=4,
                ),
            ),
            "unknown": scalars,
        },
    ),
)


@settings(max_examples=400, deadline=None)
@given(doc=hub_docs)
def test_own_validator_agrees_with_jsonschema(doc) -> None:
    assert (schema_errors(doc, SCHEMA) == []) == jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


def test_loopback_detection() -> None:
    assert _is_loopback(("127.0.0.1", 5)) and _is_loopback(("::1", 5, 0, 0)) and _is_loopback(("::ffff:127.0.0.1", 1, 0, 0))
    assert not _is_loopback(("192.0.2.7", 5)) and not _is_loopback(None) and not _is_loopback(("::ffff:10.0.0.1", 1, 0, 0))


def test_broadcast_auth(tmp_path) -> None:
    loop = Loop()
    try:
        open_config = load(write(tmp_path, "{}\n"), Overrides(), {})
        hub = Hub(open_config, Overrides(), Logger(stream=io.StringIO()), loop)
        assert hub.broadcast_auth([], ("127.0.0.1", 1)) == 0
        assert hub.broadcast_auth([], ("192.0.2.7", 1)) == 403
        keyed = load(write(tmp_path, "{}\n", "broadcast_key_env: K\n"), Overrides(), {"K": "key"})
        hub = Hub(keyed, Overrides(), Logger(stream=io.StringIO()), loop)
        assert hub.broadcast_auth([(b"authorization", b"Bearer key")], ("192.0.2.7", 1)) == 0
        assert hub.broadcast_auth([(b"authorization", b"bearer key")], ("192.0.2.7", 1)) == 0
        assert hub.broadcast_auth([(b"authorization", b"Bearer nope")], ("127.0.0.1", 1)) == 401
        assert hub.broadcast_auth([], ("127.0.0.1", 1)) == 401
    finally:
        loop.close()


# Headers proxies add that the list used to miss, Fly.io's first: a broadcast carrying one came through a proxy.
MISSED_PROXY_HEADERS = [
    "Fly-Client-IP", "Fly-Forwarded-Port", "X-Forwarded-Port", "X-Forwarded-Ssl", "True-Client-IP", "CF-Connecting-IP",
    "X-Client-IP", "X-Original-Forwarded-For", "X-Forwarded-Server", "X-Cluster-Client-IP",
]  # fmt: skip


@pytest.mark.parametrize("header", MISSED_PROXY_HEADERS)
def test_a_broadcast_through_any_common_proxy_is_refused_without_a_key(tmp_path, header: str) -> None:
    loop = Loop()
    try:
        hub = Hub(load(write(tmp_path, "{}\n"), Overrides(), {}), Overrides(), Logger(stream=io.StringIO()), loop)
        assert hub.broadcast_auth([(header.lower().encode(), b"203.0.113.9")], ("127.0.0.1", 1)) == 403
    finally:
        loop.close()


def test_every_proxy_header_is_refused_as_h11_hands_it_over(start_hub) -> None:
    hub = start_hub()
    for name in sorted(PROXY_HEADERS):
        assert hub.broadcast({"stream": "s", "data": 1}, {name.decode(): "203.0.113.9"}) == 403, name
    assert hub.broadcast({"stream": "s", "data": 1}) == 201


def test_a_batch_broadcast_is_logged_as_one_line(tmp_path) -> None:
    """A 1 MiB batch used to write one log line per item (58,000 of them)."""
    log = LogRecorder()
    loop = Loop()
    try:
        hub = Hub(load(write(tmp_path, "{}\n"), Overrides(), {}), Overrides(), log, loop)
        subscriber = FakeSubscriber()
        hub.registry.add("s1", None, subscriber)
        batch = [{"stream": f"s{n % 3}", "data": n} for n in range(5000)]
        assert hub.handle_broadcast(json.dumps(batch).encode()) == (201, b"")
        assert log.events == [("broadcast", {"items": 5000, "streams": 3, "delivered": 1667})]
        assert hub.broadcasts == 5000 and hub.deliveries == 1667 and len(subscriber.frames) == 1667
        assert hub.handle_broadcast(b'{"stream": "s1", "data": 1}') == (201, b"")
        assert log.events[1] == ("broadcast", {"stream": "s1", "delivered": 1})
    finally:
        loop.close()


def test_log_formats() -> None:
    out = io.StringIO()
    Logger("json", out)("listening", host="127.0.0.1", port=5)
    record = json.loads(out.getvalue())
    assert (record["event"], record["level"], record["port"]) == ("listening", "info", 5)
    out = io.StringIO()
    Logger("text", out)("ignored", level="warn", why="malformed JSON", n=1)
    line = out.getvalue()
    assert line.endswith(' level=warn event=ignored why="malformed JSON" n=1\n') and line.count("\n") == 1


class FakeConnection:
    def __init__(self, seen: float) -> None:
        self.seen = seen
        self.number = 1
        self.frames: list[bytes] = []
        self.closed_with: tuple | None = None

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close_websocket(self, *args) -> None:
        self.closed_with = args


def test_one_shared_timer_pings_everyone_and_drops_silent_navigator_clients(tmp_path) -> None:
    loop = Loop()
    try:
        hub = Hub(load(write(tmp_path, "{}\n"), Overrides(), {}), Overrides(), Logger(stream=io.StringIO()), loop)
        now = loop.time()
        cable, alive, silent = FakeConnection(now), FakeConnection(now - 1), FakeConnection(now - 61)
        hub.cable.add(cable)
        hub.navigator.update((alive, silent))
        hub._ping()
        hub._last_navigator_ping -= 31
        hub._ping()
        pings = [json.loads(f[2:]) for f in cable.frames]
        assert [p["type"] for p in pings] == ["ping", "ping"]
        assert pings[1]["message"] > pings[0]["message"]
        assert alive.frames == [b'\x81\x0f{"type":"ping"}'] and alive.closed_with is None
        assert silent.frames == [] and silent.closed_with == (1001, "no pong")
    finally:
        loop.close()


def test_malformed_stream_templates_are_refused(tmp_path) -> None:
    path = write(tmp_path, "server: {}\n", "channels:\n  HeatChannel: {stream: 'heat-{data base}'}\n")
    assert problems(path) == [
        f"{tmp_path}/hub.yml: channels.HeatChannel.stream: 'heat-{{data base}}': placeholders are {{name}} with letters, digits and _"
    ]
    with pytest.raises(InputError) as info:
        parse_channel_flag("HeatChannel=heat-{db", signed=False)
    assert info.value.problems == ["--channel HeatChannel=heat-{db: 'heat-{db': placeholders are {name} with letters, digits and _"]


# --- navigator_protocol, the server section, proxied broadcasts -----------------------------


def test_navigator_protocol_defaults_to_policy_and_a_flag_overrides_hub_yml(tmp_path) -> None:
    assert load(write(tmp_path, "{}\n"), Overrides(), {}).navigator_protocol == "policy"
    path = write(tmp_path, "{}\n", "navigator_protocol: open\n")
    assert load(path, Overrides(), {}).navigator_protocol == "open"
    assert load(path, Overrides(navigator_protocol="policy"), {}).navigator_protocol == "policy"
    assert problems(write(tmp_path, "{}\n", "navigator_protocol: closed\n")) == [
        f'{tmp_path}/hub.yml: navigator_protocol: expected one of "open", "policy", got "closed"'
    ]


def hub_only(tmp_path, text: str) -> Overrides:
    (tmp_path / "hub.yml").write_text(text)
    return Overrides(hub_config=str(tmp_path / "hub.yml"))


def test_a_server_section_makes_hub_yml_the_whole_configuration(tmp_path) -> None:
    overrides = hub_only(tmp_path, "server: {listen: 8765, cable_path: /regions/iad/cable, health_path: /healthz}\n")
    config = load(None, overrides, {})
    assert (config.navigator_path, config.hub_path, config.port) == (None, str(tmp_path / "hub.yml"), 8765)
    assert (config.cable_enabled, config.cable_path, config.broadcast_path, config.health_path) == (
        True, "/regions/iad/cable", "/_broadcast", "/healthz")
    assert load(None, hub_only(tmp_path, "server: {listen: 1}\n"), {}).cable_path == "/cable"


def test_server_section_errors_name_file_and_key(tmp_path) -> None:
    hub_yml = f"{tmp_path}/hub.yml"
    overrides = hub_only(tmp_path, "server: {listen: 70000, cable_path: cable, port: 1}\n")
    assert problems(None, overrides) == [
        f"{hub_yml}: server.cable_path: 'cable' does not match ^/",
        f"{hub_yml}: server.listen: must be <= 65535, got 70000",
        f"{hub_yml}: server.port: unknown key",
    ]
    assert problems(None, hub_only(tmp_path, "server: {cable_path: /c}\n")) == [f"{hub_yml}: server: missing required key 'listen'"]


def test_hub_yml_without_a_server_section_needs_navigator_yml(tmp_path) -> None:
    found = problems(None, hub_only(tmp_path, "public_streams: true\n"))
    assert found == [f"{tmp_path}/hub.yml: server: missing, and no navigator.yml was given (--config) to take the port and paths from"]
    with pytest.raises(InputError) as info:
        load(None, Overrides(), {})
    assert info.value.problems == ["no configuration: give --config NAVIGATOR_YML, --hub-config HUB_YML, or both"]


def test_a_server_section_and_navigator_yml_together_are_refused(tmp_path) -> None:
    path = write(tmp_path, "server: {listen: 9999}\n", "server: {listen: 8765}\n")  # hub.yml found beside navigator.yml
    assert problems(path) == [
        f"{tmp_path}/hub.yml: server: with a server section hub.yml is the whole configuration;"
        f" start the hub with --hub-config {tmp_path}/hub.yml and without --config"
    ]


def test_proxied_broadcasts_are_refused_without_a_key(tmp_path) -> None:
    loop = Loop()
    try:
        hub = Hub(load(write(tmp_path, "{}\n"), Overrides(), {}), Overrides(), Logger(stream=io.StringIO()), loop)
        for name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip", b"via"):
            assert hub.broadcast_auth([(b"content-type", b"application/json"), (name, b"x")], ("127.0.0.1", 1)) == 403
        assert hub.broadcast_auth([(b"content-type", b"application/json")], ("127.0.0.1", 1)) == 0
        keyed = load(write(tmp_path, "{}\n", "broadcast_key_env: K\n"), Overrides(), {"K": "key"})
        hub = Hub(keyed, Overrides(), Logger(stream=io.StringIO()), loop)
        assert hub.broadcast_auth([(b"via", b"1.1 navigator"), (b"authorization", b"Bearer key")], ("127.0.0.1", 1)) == 0
        assert hub.broadcast_auth([(b"via", b"1.1 navigator")], ("127.0.0.1", 1)) == 401
    finally:
        loop.close()
