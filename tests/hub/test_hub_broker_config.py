"""hub.yml's broker section, its schema entry, and the --broker flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.__main__ import parse_args
from hub.config import SCHEMA_PATH, BrokerSettings, Overrides, broker_url_problem, load, schema_errors
from hub.errors import InputError
from tests.polling import wait_for

SCHEMA = json.loads(open(SCHEMA_PATH).read())
SECRET = "pa55-w0rd-value"


def load_hub(tmp_path, text: str, environ: dict[str, str] | None = None, **overrides):
    path = tmp_path / "hub.yml"
    path.write_text("server: {listen: 0}\n" + text)
    return load(None, Overrides(hub_config=str(path), **overrides), environ or {})


def problems(tmp_path, text: str, environ: dict[str, str] | None = None, **overrides) -> str:
    with pytest.raises(InputError) as refused:
        load_hub(tmp_path, text, environ, **overrides)
    return str(refused.value)


def test_without_a_broker_section_there_is_no_broker(tmp_path) -> None:
    assert load_hub(tmp_path, "").broker is None


def test_a_broker_section_with_defaults_and_secrets_from_the_environment(tmp_path) -> None:
    config = load_hub(tmp_path, "broker: {kind: nats, url: 'nats://10.0.0.5', user: hub, password_env: BROKER_PASSWORD}\n",
                      {"BROKER_PASSWORD": SECRET})  # fmt: skip
    assert config.broker == BrokerSettings("nats", "nats://10.0.0.5", "cable-hub", "hub", SECRET, None, 10.0)
    assert config.broker.address() == ("10.0.0.5", 4222, 0)
    assert SECRET not in repr(config)
    redis = load_hub(tmp_path, "broker: {kind: redis, url: 'redis://[::1]:6380/3', prefix: region.iad, password_env: P, stall_timeout_seconds: 2}\n",
                     {"P": SECRET}).broker  # fmt: skip
    assert (redis.prefix, redis.password, redis.user, redis.stall_timeout_seconds) == ("region.iad", SECRET, None, 2.0)
    assert redis.address() == ("::1", 6380, 3)
    assert load_hub(tmp_path, "broker: {kind: nats, url: 'nats://h:1', token_env: T}\n", {"T": SECRET}).broker.token == SECRET


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{kind: redis, url: 'redis://hub:" + SECRET + "@10.0.0.5:6379/0'}", "broker.url: credentials do not belong in the URL"),
        ("{kind: redis, url: 'redis://:" + SECRET + "@10.0.0.5'}", "broker.url: credentials do not belong in the URL"),
        ("{kind: nats, url: 'nats://" + SECRET + "@10.0.0.5'}", "broker.url: credentials do not belong in the URL"),
        ("{kind: nats, url: 'redis://10.0.0.5'}", "broker.url: a nats broker's URL starts with nats://, got redis://"),
        ("{kind: redis, url: 'rediss://10.0.0.5'}", "broker.url: rediss:// is not supported"),
        ("{kind: nats, url: 'tls://10.0.0.5'}", "broker.url: tls:// is not supported"),
        ("{kind: nats, url: '10.0.0.5:4222'}", "broker.url: expected nats://HOST:PORT"),
        ("{kind: nats, url: 'nats://10.0.0.5:99999'}", "broker.url: expected HOST or HOST:PORT"),
        ("{kind: nats, url: 'nats://10.0.0.5/x'}", "broker.url: a nats:// URL has no path"),
        ("{kind: redis, url: 'redis://10.0.0.5/zero'}", "broker.url: the path of a redis:// URL is the database number"),
        ("{kind: redis, url: 'redis://10.0.0.5/0?password=x'}", "broker.url: a query or fragment is not read"),
        ("{kind: redis, url: 'redis://h', token_env: T}", "broker.token_env: only a nats broker takes a token"),
        ("{kind: nats, url: 'nats://h', token_env: T, user: u}", "broker.token_env: give either a token or a user"),
        ("{kind: nats, url: 'nats://h', password_env: P}", "broker.password_env: a nats password needs broker.user"),
        ("{kind: nats, url: 'nats://h', user: u, password_env: UNSET}", "broker.password_env: environment variable UNSET is not set"),
        ("{kind: nats, url: 'nats://h', token_env: UNSET}", "broker.token_env: environment variable UNSET is not set"),
        ("{kind: kafka, url: 'nats://h'}", 'broker.kind: expected one of "nats", "redis"'),
        ("{kind: nats}", "broker: missing required key 'url'"),
        ("{kind: nats, url: 'nats://h', prefix: 'a..b'}", "broker.prefix: 'a..b' does not match"),
        ("{kind: nats, url: 'nats://h', prefix: 'a b'}", "broker.prefix: 'a b' does not match"),
        ("{kind: nats, url: 'nats://h', password: x}", "broker.password: unknown key"),
        ("{kind: nats, url: 'nats://h', stall_timeout_seconds: 0}", "broker.stall_timeout_seconds: must be > 0"),
    ],
)
def test_a_bad_broker_section_is_refused_naming_file_and_key(tmp_path, section: str, expected: str) -> None:
    text = problems(tmp_path, f"broker: {section}\n", {"T": "t", "P": "p"})
    assert f"{tmp_path / 'hub.yml'}: {expected}" in text
    assert SECRET not in text


def test_flags_override_the_section(tmp_path) -> None:
    section = "broker: {kind: nats, url: 'nats://10.0.0.5', prefix: from-file}\n"
    assert load_hub(tmp_path, section, broker="none").broker is None
    assert load_hub(tmp_path, section, broker="none", broker_url="redis://x").broker is None
    broker = load_hub(tmp_path, section, broker="redis", broker_url="redis://10.0.0.6/1", broker_prefix="from.flag").broker
    assert (broker.kind, broker.url, broker.prefix) == ("redis", "redis://10.0.0.6/1", "from.flag")
    only_flags = load_hub(tmp_path, "", broker="nats", broker_url="nats://127.0.0.1:4222").broker
    assert only_flags == BrokerSettings("nats", "nats://127.0.0.1:4222")


@pytest.mark.parametrize(
    ("section", "overrides", "expected"),
    [
        ("", {"broker_url": "nats://h"}, "--broker-url: no broker is configured"),
        ("", {"broker_prefix": "p"}, "--broker-prefix: no broker is configured"),
        ("", {"broker": "nats"}, "--broker nats: no URL"),
        ("", {"broker": "nats", "broker_url": "nats://u:" + SECRET + "@h"}, "--broker-url: credentials do not belong in the URL"),
        ("", {"broker": "nats", "broker_url": "nats://h", "broker_prefix": "bad prefix"}, "--broker-prefix: 'bad prefix' does not match"),
        ("broker: {kind: nats, url: 'nats://h'}\n", {"broker": "redis"}, "broker.url: a redis broker's URL starts with redis://"),
        ("broker: {kind: nats, url: 'nats://h', token_env: T}\n", {"broker": "redis", "broker_url": "redis://h"}, "broker.token_env: only a nats broker"),
    ],
)
def test_bad_flags_are_refused_naming_the_flag_or_key(tmp_path, section: str, overrides: dict, expected: str) -> None:
    text = problems(tmp_path, section, {"T": "t"}, **overrides)
    assert expected in text and SECRET not in text


def test_the_cli_takes_the_broker_flags() -> None:
    args = parse_args(["--hub-config", "h.yml", "--broker", "redis", "--broker-url", "redis://h/0", "--broker-prefix", "x"])
    assert (args.broker, args.broker_url, args.broker_prefix) == ("redis", "redis://h/0", "x")
    with pytest.raises(SystemExit):
        parse_args(["--hub-config", "h.yml", "--broker", "kafka"])


def test_the_schema_documents_every_broker_key_and_the_prefix_pattern_is_the_checkers() -> None:
    from hub.config import BROKER_PREFIX

    section = SCHEMA["properties"]["broker"]
    assert section["additionalProperties"] is False and section["required"] == ["kind", "url"]
    assert all(entry.get("description") for entry in section["properties"].values())
    assert set(section["properties"]) == {"kind", "url", "prefix", "user", "password_env", "token_env", "stall_timeout_seconds"}
    assert section["properties"]["prefix"]["pattern"] == BROKER_PREFIX.pattern
    assert "pattern" not in section["properties"]["url"]  # a pattern's error would quote a URL holding a password


@pytest.mark.parametrize("url", ["nats://h", "nats://10.0.0.5:4222", "nats://[fd00::1]:4222/", "redis://h", "redis://h:6379/15", "redis://h/"])
def test_good_urls(url: str) -> None:
    assert broker_url_problem(url.split(":")[0], url) is None


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
broker_sections = st.one_of(
    scalars,
    st.dictionaries(
        st.sampled_from(["kind", "url", "prefix", "user", "password_env", "token_env", "stall_timeout_seconds", "nope"]),
        st.one_of(scalars, st.sampled_from(["nats", "redis", "nats://h", "", "a.b", "a..b", "A_1", "lower", 0, 0.5])),
        max_size=5,
    ),
)


@settings(max_examples=300, deadline=None)
@given(section=broker_sections)
def test_own_validator_agrees_with_jsonschema_on_broker_sections(section) -> None:
    doc = {"broker": section}
    assert (schema_errors(doc, SCHEMA) == []) == jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


# --- a broker whose client library is not installed -------------------------------------------------

PIP = "pip install 'cable-orchestrator[broker]'"
FIXES = {
    "nats": f"{PIP} (Debian does not package nats-py; an image built from orchestrate render's output carries it beside the hub)",
    "redis": f"{PIP}, or on Debian apt-get install python3-redis",
}


def without_module(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment in which importing `module` fails as it does where it is not installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / f"{module}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))}


def missing(kind: str) -> str:
    """The problem when the package named as the kind is missing: nats-py's, or redis-py's (for redis.asyncio)."""
    return f"a {kind} broker needs the Python module {kind}, which cannot be imported (No module named '{kind}'): {FIXES[kind]}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "flags", "where"),
    [
        ("nats", (), "{hub_yml}: broker.kind"),
        ("redis", (), "{hub_yml}: broker.kind"),
        ("redis", ("--broker", "redis", "--broker-url", "redis://127.0.0.1:6379/0"), "--broker redis"),
    ],
    ids=["nats", "redis", "redis from the flags"],
)
def test_a_broker_whose_client_library_is_missing_is_a_configuration_error_at_start(tmp_path, kind, flags, where) -> None:
    hub_yml = tmp_path / "hub.yml"
    section = f"broker: {{kind: {kind}, url: '{kind}://127.0.0.1'}}\n" if not flags else ""
    hub_yml.write_text("server: {listen: 0}\n" + section)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "--hub-config", str(hub_yml), "--port", "0", "--log-format", "json", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, **without_module(tmp_path, kind)},
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stderr is not None
        # Refused, it exits without logging a line; started, it logs at once (`listening`, or a warning before it).
        first = process.stdout.readline()
        assert first == "", f"the hub started instead of refusing its configuration: {first}"
        assert process.wait(timeout=30) == 2
        errors = process.stderr.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert errors == [f"cable-hub: {where.format(hub_yml=hub_yml)}: {missing(kind)}"]


@pytest.mark.timeout(60)
def test_a_reload_to_a_broker_whose_client_library_is_missing_is_refused_and_the_old_configuration_kept(tmp_path, start_hub) -> None:
    hub = start_hub(navigator=None, hub="server: {listen: 0}\n", env=without_module(tmp_path, "nats"))
    hub.hub_path.write_text("server: {listen: 0}\nbroker: {kind: nats, url: 'nats://127.0.0.1'}\n")
    hub.signal(signal.SIGHUP)
    outcome = wait_for(lambda: hub.find("reload_failed") or hub.find("reloaded"), what="the reload to end")
    assert (outcome["event"], outcome.get("error")) == ("reload_failed", f"{hub.hub_path}: broker.kind: {missing('nats')}")
    assert hub.request("GET", "/up") == (200, b"OK")  # not "degraded: broker unreachable": no broker
    assert b"hub_broker" not in hub.request("GET", "/metrics")[1]


@pytest.mark.timeout(60)
def test_a_reload_that_adds_a_broker_to_a_hub_started_without_one_is_logged_and_the_hub_goes_on_without(tmp_path, start_hub) -> None:
    """Without a broker the hub runs on its own epoll loop, where the brokers' asyncio clients cannot run."""
    hub = start_hub(navigator=None, hub="server: {listen: 0}\npublic_streams: true\n")
    hub.hub_path.write_text("server: {listen: 0}\npublic_streams: true\nbroker: {kind: nats, url: 'nats://127.0.0.1:1'}\n")
    hub.signal(signal.SIGHUP)
    ignored = hub.wait_log("reload_broker_ignored")
    assert ignored["level"] == "warn" and "restart" in ignored["why"]
    hub.wait_log("reloaded")
    assert b"hub_broker" not in hub.request("GET", "/metrics")[1]
    assert hub.broadcast({"stream": "s", "data": 1}) == 201  # delivered locally, as before the reload
