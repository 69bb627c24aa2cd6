"""Hub configuration: navigator.yml (the keys Navigator honours) plus hub.yml, plus flags.

A hub.yml with a `server` section is the whole configuration (the hub behind Navigator);
otherwise navigator.yml gives the port and paths. Errors name the file and the key path;
all of a file's errors are reported at once.
"""

from __future__ import annotations

import json
import marshal
import os
import re
import select
import signal
import time
from collections.abc import Mapping
from types import MappingProxyType

from .cable import Channel, template_problem
from .errors import InputError
from .record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _schema_path() -> str:
    """hub.schema.json: beside the hub where it ships alone (the image), else in schema/ of a checkout or wheel."""
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(here)
    candidates = [os.path.join(here, "hub.schema.json"), os.path.join(top, "schema", "hub.schema.json"),
                  os.path.join(top, "orchestrator", "schema", "hub.schema.json")]
    return next((path for path in candidates if os.path.exists(path)), candidates[1])


# os.path rather than pathlib: pathlib and what it imports cost ~0.9 MB of resident memory.
SCHEMA_PATH = _schema_path()
CHANNEL_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$")
NAVIGATOR_PROTOCOLS = ("open", "policy")
BROKER_KINDS = ("nats", "redis")
BROKER_DEFAULT_PREFIX = "cable-hub"
# Tokens of a NATS subject (the prefix is also a Redis channel's): hub.schema.json has the same pattern.
BROKER_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
BROKER_PORTS = {"nats": 4222, "redis": 6379}
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)$", re.S)
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?$")


class Limits(Record):
    max_message_bytes: int = 65536
    max_broadcast_bytes: int = 1048576
    max_connections: int = 20000
    handshake_timeout_seconds: float = 10.0
    output_buffer_bytes: int = 262144
    shutdown_timeout_seconds: float = 30.0
    max_subscriptions_per_connection: int = 1000
    # A client is an address (see hub.server.client_address): these bound what one can hold over all its connections.
    max_connections_per_client: int = 1000
    max_subscriptions_per_client: int = 10000


class BrokerSettings(Record, secret=("password", "token")):
    """hub.yml's `broker` section with flags applied and secrets read from the environment."""

    kind: str  # nats | redis
    url: str  # checked by broker_url_problem: never holds credentials
    prefix: str = BROKER_DEFAULT_PREFIX
    user: str | None = None
    password: str | None = None
    token: str | None = None
    stall_timeout_seconds: float = 10.0

    def address(self) -> tuple[str, int, int]:
        """Host, port and (Redis) database number of the URL."""
        match = _URL.match(self.url)
        assert match is not None
        hostport = _HOST_PORT.match(match["authority"])
        assert hostport is not None
        database = match["path"].strip("/")
        return (
            hostport["host"].strip("[]"),
            int(hostport["port"] or BROKER_PORTS[self.kind]),
            int(database) if database else 0,
        )


def broker_url_problem(kind: str, url: str) -> str | None:
    """What is wrong with a broker URL, or None. The message never quotes the URL: it may hold a password."""
    match = _URL.match(url)
    if match is None:
        return f"expected {kind}://HOST:PORT, such as {kind}://127.0.0.1:{BROKER_PORTS[kind]}"
    if "@" in match["authority"]:
        return ("credentials do not belong in the URL: name the user in broker.user and the environment"
                " variable holding the password in broker.password_env")  # fmt: skip
    scheme = match["scheme"].lower()
    if scheme in ("tls", "rediss", "wss", "ws"):
        return f"{scheme}:// is not supported: the hub reaches the broker without TLS (keep it on a private network)"
    if scheme != kind:
        return f"a {kind} broker's URL starts with {kind}://, got {scheme}://"
    hostport = _HOST_PORT.match(match["authority"])
    if hostport is None or not 1 <= int(hostport["port"] or BROKER_PORTS[kind]) <= 65535:
        return f"expected HOST or HOST:PORT after {kind}://"
    if match["rest"]:
        return "a query or fragment is not read: give the options as broker keys"
    path = match["path"]
    if kind == "nats" and path not in ("", "/"):
        return "a nats:// URL has no path"
    if kind == "redis" and path not in ("", "/") and not re.fullmatch(r"/[0-9]{1,5}", path):
        return "the path of a redis:// URL is the database number, such as /0"
    return None


class Overrides(Record):
    """Command-line values, kept so that a reload applies them again."""

    hub_config: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    public_streams: bool | None = None
    navigator_protocol: str | None = None
    channels: tuple[tuple[str, Channel], ...] = ()
    broker: str | None = None  # none | nats | redis
    broker_url: str | None = None
    broker_prefix: str | None = None


class HubConfig(Record, secret=("signing_secret", "broadcast_key")):
    navigator_path: str | None  # None: hub.yml's server section gives the port and paths
    hub_path: str | None
    host: str
    port: int
    health_path: str = "/up"
    cable_enabled: bool = True
    cable_path: str = "/cable"
    broadcast_path: str = "/_broadcast"
    public_streams: bool = False
    navigator_protocol: str = "policy"
    channels: Mapping[str, Channel] = MappingProxyType({})
    signing_secret: bytes | None = None
    broadcast_key: bytes | None = None
    limits: Limits = Limits()
    ping_interval_seconds: float = 3.0
    broker: BrokerSettings | None = None  # None: broadcasts reach this hub's clients only
    client_ip_header: str = "X-Forwarded-For"  # trusted from a loopback peer only


# --- a validator for the JSON Schema keywords hub.schema.json uses -----------------
# (the jsonschema package costs ~5 MB of resident memory for the hub's lifetime)

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}
_ANNOTATIONS = {"$schema", "$id", "title", "description"}


def _type_ok(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()  # JSON Schema counts 10.0 as an integer
    return isinstance(value, _TYPES[kind])


def _in_enum(value: Any, choices: list[Any]) -> bool:
    """JSON equality: true is not 1, unlike in Python."""
    return any(value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in choices)


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    here = path or "(top level)"
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "properties", "additionalProperties", "required", "propertyNames",
        "pattern", "minLength", "minimum", "maximum", "exclusiveMinimum", "enum",
    }  # fmt: skip
    if unknown:
        raise ValueError(f"hub schema uses unsupported keywords {sorted(unknown)}")
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        return [f"{here}: expected {kind}, got {json.dumps(value, default=str)}"]
    if "enum" in schema and not _in_enum(value, schema["enum"]):
        allowed = ", ".join(json.dumps(choice) for choice in schema["enum"])
        return [f"{here}: expected one of {allowed}, got {json.dumps(value, default=str)}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{here}: missing required key {name!r}")
        for name, item in value.items():
            where = f"{path}.{name}" if path else str(name)
            names = schema.get("propertyNames")
            if names is not None and schema_errors(str(name), names, where):
                errors.append(f"{where}: invalid name, must match {names.get('pattern')}")
            if name in properties:
                errors.extend(schema_errors(item, properties[name], where))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unknown key")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors.extend(schema_errors(item, schema["additionalProperties"], where))
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{here}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{here}: shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{here}: must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{here}: must be <= {schema['maximum']}, got {value}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{here}: must be > {schema['exclusiveMinimum']}, got {value}")
    return errors


# A configuration file that takes longer to parse is refused (a running hub keeps its configuration).
PARSE_SECONDS = 10.0


def _read_yaml(path: str) -> Any:
    """The project's one strict loader: duplicate keys and YAML 1.1 surprises are errors, as for the orchestrator.

    It runs in a short-lived child process, so that PyYAML and LibYAML (~1.5 MB of resident memory)
    never enter the hub's own, and whatever a file makes the parser do happens outside the hub, for
    at most PARSE_SECONDS: the hub reads its files only at start and on SIGHUP.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, hand the result over, and exit without running anything of the parent's
        try:
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(_parsed(path))
        finally:
            os._exit(0)
    os.close(write)
    try:
        reply = _reply(read, pid, path)
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
    if not reply:
        raise RuntimeError(f"{path}: the process parsing it ended without a result (wait status {status})")
    if reply[:1] == b"p":
        import pickle  # only for the values of explicit tags (see _parsed); the bytes come from our own child

        ok, value = pickle.loads(reply[1:])
    else:
        ok, value = marshal.loads(reply[1:])
    if ok:
        return value
    raise InputError(value) if ok is False else value


def _reply(fd: int, pid: int, path: str) -> bytes:
    """Everything the child writes until it closes the pipe; the child is killed past PARSE_SECONDS."""
    deadline = time.monotonic() + PARSE_SECONDS
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            raise RuntimeError(f"{path}: parsing it took more than {PARSE_SECONDS:g} s")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _parsed(path: str) -> bytes:
    """In the child: (True, the document), (False, its problems) or (None, the exception), serialized."""
    result: tuple[bool | None, Any]
    try:
        from .yaml_loader import load_yaml_file

        result = True, load_yaml_file(path).data
    except InputError as error:
        result = False, error.problems
    except Exception as error:  # noqa: BLE001 (raised again in the parent)
        result = None, error
    try:
        return b"m" + marshal.dumps(result)
    except ValueError:  # a value marshal cannot carry: an exception, or an explicitly tagged one such as !!timestamp
        import pickle

        return b"p" + pickle.dumps(result)


def _section(doc: Mapping[str, Any], key: str, file: str, problems: list[str]) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{file}: {key}: expected a mapping")
        return {}
    return value


def parse_listen(value: Any) -> int | None:
    """Navigator's server.listen: 3000, "3000", ":3000" or "host:3000"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and re.fullmatch(r"(?:.*:)?\d{1,5}", value.strip()):
        port = int(value.strip().rsplit(":", 1)[-1])
    else:
        return None
    return port if 0 <= port <= 65535 else None


def _path_value(section: Mapping[str, Any], key: str, default: str, where: str, problems: list[str]) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not value.startswith("/"):
        problems.append(f"{where}: expected a path starting with /, got {json.dumps(value, default=str)}")
        return default
    return value


def read_navigator(path: str) -> dict[str, Any]:
    doc = _read_yaml(path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InputError([f"{path}: expected a mapping at the top level"])
    problems: list[str] = []
    server = _section(doc, "server", path, problems)
    cable = _section(doc, "cable", path, problems)
    health = server.get("health_check") or {}
    if not isinstance(health, dict):
        problems.append(f"{path}: server.health_check: expected a mapping")
        health = {}
    port = parse_listen(server.get("listen", "3000"))
    if port is None:
        problems.append(f"{path}: server.listen: expected a port number, got {json.dumps(server.get('listen'), default=str)}")
    enabled = cable.get("enabled")
    if enabled is None:  # Navigator treats an absent cable.enabled as true
        enabled = True
    if not isinstance(enabled, bool):
        problems.append(f"{path}: cable.enabled: expected boolean, got {json.dumps(enabled, default=str)}")
    values = {
        "port": port,
        "health_path": _path_value(health, "path", "/up", f"{path}: server.health_check.path", problems),
        "cable_enabled": enabled is True,
        "cable_path": _path_value(cable, "path", "/cable", f"{path}: cable.path", problems),
        "broadcast_path": _path_value(cable, "broadcast_path", "/_broadcast", f"{path}: cable.broadcast_path", problems),
    }
    if problems:
        raise InputError(problems)
    return values


def _server_values(server: Mapping[str, Any]) -> dict[str, Any]:
    """hub.yml's server section (already checked against the schema): the hub serves the cable itself."""
    return {
        "port": int(server["listen"]),  # the schema lets 9999.0 through as an integer
        "cable_enabled": True,
        "cable_path": server.get("cable_path", "/cable"),
        "broadcast_path": server.get("broadcast_path", "/_broadcast"),
        "health_path": server.get("health_path", "/up"),
    }


def read_hub_options(path: str, environ: Mapping[str, str]) -> tuple[dict[str, Any], bool]:
    """hub.yml's values, and whether it has a server section (then it is the whole configuration)."""
    doc = _read_yaml(path)
    if doc is None:
        doc = {}
    try:
        with open(SCHEMA_PATH, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as error:
        raise InputError([f"{SCHEMA_PATH}: cannot read the hub.yml schema: {error.strerror}"]) from None
    problems = [f"{path}: {error}" for error in schema_errors(doc, schema)]
    if problems:
        raise InputError(problems)
    values: dict[str, Any] = _server_values(doc["server"]) if "server" in doc else {}
    if "broker" in doc:
        values["broker"] = doc["broker"]  # flags and secrets are applied in load()
    for key in ("public_streams", "navigator_protocol", "client_ip_header"):
        if key in doc:
            values[key] = doc[key]
    if "ping_interval_seconds" in doc:
        values["ping_interval_seconds"] = float(doc["ping_interval_seconds"])
    channels = doc.get("channels") or {}
    problems = [
        f"{path}: channels.{name}.stream: {why}"
        for name, spec in channels.items()
        if (why := template_problem(spec["stream"]))
    ]
    if problems:
        raise InputError(problems)
    values["channels"] = {
        name: Channel(spec["stream"], bool(spec.get("signed", False))) for name, spec in channels.items()
    }
    defaults = Limits()
    values["limits"] = defaults.replace(
        **{k: type(getattr(defaults, k))(v) for k, v in (doc.get("limits") or {}).items()}
    )
    for key, target in (("signing_secret_env", "signing_secret"), ("broadcast_key_env", "broadcast_key")):
        if key in doc:
            secret = environ.get(doc[key], "")
            if not secret:
                problems.append(f"{path}: {key}: environment variable {doc[key]} is not set")
            values[target] = secret.encode("utf-8")
    if problems:
        raise InputError(problems)
    return values, "server" in doc


def parse_channel_flag(text: str, signed: bool) -> tuple[str, Channel]:
    name, sep, template = text.partition("=")
    if not sep or not CHANNEL_NAME.match(name) or not template:
        raise InputError([f"--channel {text}: expected NAME=STREAM_TEMPLATE with a channel class name"])
    if why := template_problem(template):
        raise InputError([f"--channel {text}: {why}"])
    return name, Channel(template, signed)


def load(navigator_path: str | None, overrides: Overrides, environ: Mapping[str, str] | None = None) -> HubConfig:
    environ = os.environ if environ is None else environ
    hub_path = overrides.hub_config or _hub_yml_beside(navigator_path)
    if hub_path is None:
        if navigator_path is None:
            raise InputError(["no configuration: give --config NAVIGATOR_YML, --hub-config HUB_YML, or both"])
        values = read_navigator(navigator_path)
    else:
        values = _read_both(navigator_path, hub_path, environ)
    if overrides.port is not None:
        values["port"] = overrides.port
    for key in ("public_streams", "navigator_protocol"):
        if getattr(overrides, key) is not None:
            values[key] = getattr(overrides, key)
    if overrides.channels:
        values["channels"] = {**values.get("channels", {}), **dict(overrides.channels)}
    values["broker"] = _broker(values.get("broker"), hub_path, overrides, environ)
    return HubConfig(navigator_path=navigator_path, hub_path=hub_path, host=overrides.host, **values)


def _broker(
    doc: Mapping[str, Any] | None, hub_path: str | None, overrides: Overrides, environ: Mapping[str, str]
) -> BrokerSettings | None:
    """hub.yml's broker section (already checked against the schema) with --broker* applied."""
    doc = doc or {}
    kind: str | None = overrides.broker if overrides.broker is not None else doc.get("kind")
    if kind is None or kind == "none":
        stray = [flag for flag, value in (("--broker-url", overrides.broker_url), ("--broker-prefix", overrides.broker_prefix))
                 if value is not None]  # fmt: skip
        if stray and kind is None:
            raise InputError([f"{flag}: no broker is configured: give --broker nats|redis or a broker section in hub.yml" for flag in stray])
        return None
    where = lambda key: f"{hub_path}: broker.{key}"  # noqa: E731
    problems: list[str] = []
    url: str | None
    if overrides.broker_url is not None:
        url, url_where = overrides.broker_url, "--broker-url"
    else:
        url, url_where = doc.get("url"), where("url")
    if url is None:
        problems.append(f"--broker {kind}: no URL: give --broker-url or broker.url in hub.yml")
    elif problem := broker_url_problem(kind, url):
        problems.append(f"{url_where}: {problem}")
    prefix = doc.get("prefix", BROKER_DEFAULT_PREFIX)
    if overrides.broker_prefix is not None:
        prefix = overrides.broker_prefix
        if not BROKER_PREFIX.match(prefix):
            problems.append(f"--broker-prefix: {prefix!r} does not match {BROKER_PREFIX.pattern}")
    if "token_env" in doc and kind != "nats":
        problems.append(f"{where('token_env')}: only a nats broker takes a token (kind is {kind})")
    elif "token_env" in doc and ("password_env" in doc or "user" in doc):
        problems.append(f"{where('token_env')}: give either a token or a user and password_env, not both")
    if kind == "nats" and "password_env" in doc and "user" not in doc:
        problems.append(f"{where('password_env')}: a nats password needs broker.user")
    from .broker import client_problem  # only with a broker: it imports the client library

    if missing := client_problem(kind):
        problems.append(f"--broker {kind}: {missing}" if overrides.broker is not None else f"{where('kind')}: {missing}")
    secrets: dict[str, str | None] = {"password": None, "token": None}
    for key, target in (("password_env", "password"), ("token_env", "token")):
        if key in doc:
            secrets[target] = environ.get(doc[key], "")
            if not secrets[target]:
                problems.append(f"{where(key)}: environment variable {doc[key]} is not set")
    if problems:
        raise InputError(problems)
    assert url is not None
    return BrokerSettings(
        kind, url, prefix, doc.get("user"), secrets["password"], secrets["token"],
        float(doc.get("stall_timeout_seconds", 10.0)),
    )  # fmt: skip


def _hub_yml_beside(navigator_path: str | None) -> str | None:
    if navigator_path is None:
        return None
    beside = os.path.join(os.path.dirname(os.path.abspath(navigator_path)), "hub.yml")
    return beside if os.path.exists(beside) else None


def _read_both(navigator_path: str | None, hub_path: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """hub.yml, and navigator.yml unless hub.yml has a server section; every problem of both in one go."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    served = False
    try:
        values, served = read_hub_options(hub_path, environ)
    except InputError as error:
        problems.extend(error.problems)
    if served and navigator_path is not None:
        # Refused rather than picking one: navigator.yml beside a served hub.yml says cable.enabled: false.
        problems.append(f"{hub_path}: server: with a server section hub.yml is the whole configuration;"
                        f" start the hub with --hub-config {hub_path} and without --config")
    elif navigator_path is not None:
        try:
            values.update(read_navigator(navigator_path))
        except InputError as error:
            problems.extend(error.problems)
    elif not served and not problems:
        problems.append(f"{hub_path}: server: missing, and no navigator.yml was given (--config) to take the port and paths from")
    if problems:
        raise InputError(problems)
    return values
