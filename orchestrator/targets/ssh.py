"""The ssh target: each region runs on a host reached over SSH (fabric 3 on paramiko).

Inventory: `environments.<name>.ssh` (schema/inventory.schema.json). `hosts` maps
each region code to its host; `{region}` in config_path, state_dir,
reload_command, restart_command and pid_file is replaced by the region code,
so several regions can share one host, each in its own directory.

What runs where:

- Files: navigator.yml goes to `config_path`, the other deployed files
  (render.json, hub.yml) beside it. A write uploads over SFTP to a hidden
  temporary file in the same directory (`.<name>.orchestrate-<random>.tmp`),
  checks its size, copies the file it replaces to `<state_dir>/previous/<name>`
  (only when the content changes, so a repeated write keeps the real previous
  file), then renames it over the target (posix-rename@openssh.com, i.e.
  rename(2); `mv -f` when the server lacks that extension). Readers never see a
  half-written file. A temporary file left by an orchestrator killed mid-upload
  is harmless (Navigator reads only navigator.yml) and is removed by the next
  write of that file.
- Commands: `shlex.join(argv)` run by the login shell of `user` (a POSIX shell;
  reload_command and restart_command are run with `sh -c`), each bounded by
  command_timeout_seconds or the command's own timeout if smaller; past it the
  result is exit 124 (the remote process may go on running: without a pty SSH
  cannot signal it). A host that cannot be reached, refuses the login or
  presents an unknown or changed host key gives exit 255 naming the host: only
  that region fails.
- Gates: the front listens on the host's loopback (`front_ports[region]`, else
  `front_port`, else `app.listen`). `http_url`/`cable_url` return a local port of
  this machine forwarded over SSH (direct-tcpip) to it; the forwards live as long
  as the target. The cable path is always reached through the front: on a real
  host Navigator proxies it to the cable server in every mode.
- Probes run on the host with its `python3` (standard library only,
  orchestrator/targets/onhost.py): the broadcast (Navigator accepts broadcasts
  only from loopback) and the memory reading (/proc VmRSS of the pid in
  pid_file and of its descendants that are redis-server, puma or anycable-go).

Host keys: only the `known_hosts` file of the inventory (`~` expanded) is
trusted; an unknown or changed key is refused (never added), with a message
naming the host and the file. `~/.ssh/config` is not read: the inventory says
everything about a connection.

Secrets: commands name the variables they need (`Command.env_names`: every
secret the inventory names, `Inventory.secret_env_names`), never their values. When
a named variable is set in the orchestrator's environment, `run` sends its value
on the command's standard input and the command is wrapped in
`sh -c 'IFS= read -r NAME || exit 125; ...; export NAME; exec "$@"' sh ARGV...`,
so the value reaches the remote process's environment without ever being in a
command line (the remote process list, sshd's logs) or in a file. A variable
not set here is not sent: the host's own environment (its service manager)
provides it. A value with a newline cannot be sent this way and fails the
command. The SSH server's AcceptEnv is not needed.

Connections: at most `max_connections` open SSH connections per environment at
once, shared by the region threads (an idle one is closed to make room);
each SFTP transfer and command opens its own channel on them.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import secrets
import select
import shlex
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, ThreadException

from orchestrator.errors import InputError
from orchestrator.model import Inventory, SshSettings
from orchestrator.render.image import REGION_SETTINGS
from orchestrator.render.modes import region_config_dir
from orchestrator.rollout.model import Command, Machine, Operation, RegionKey, RegionState, Step, WriteFile
from orchestrator.targets.base import CommandResult, TargetError
from orchestrator.targets.host_probes import PROBE_TIMEOUT_SECONDS, memory_argv, metrics_argv, publish_argv
from orchestrator.targets.local import needs_restart

TEMPORARY_MARK = ".orchestrate-"
EXIT_TIMEOUT = 124
EXIT_UNREACHABLE = 255
EXIT_SECRET_NOT_SENT = 125
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHUNK = 32768

# --- a region's host, from the inventory (pure) -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where one SSH connection goes; regions whose endpoints are equal share connections."""

    host: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: str

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host} port {self.port}"


@dataclass(frozen=True)
class RegionHost:
    """One region's host, paths and commands, with `{region}` replaced."""

    key: RegionKey
    endpoint: Endpoint
    config_path: str
    state_dir: str
    reload_command: str
    restart_command: str
    pid_file: str
    front_port: int
    connect_timeout: float
    command_timeout: float

    @property
    def host(self) -> str:
        return self.endpoint.host

    def path_of(self, name: str) -> str:
        """Where a deployed file lives on the host: navigator.yml at config_path, the others beside it."""
        if name == "navigator.yml":
            return self.config_path
        return posixpath.join(posixpath.dirname(self.config_path), name)


def _local_path(path: str, base: Path) -> str:
    expanded = Path(os.path.expanduser(path))
    return str(expanded if expanded.is_absolute() else base / expanded)


def region_host(inventory: Inventory, key: RegionKey) -> RegionHost:
    """The ssh settings of `key`'s environment applied to the region; InputError naming the inventory path."""
    where = ("environments", key.environment, "ssh")
    environment = inventory.environments.get(key.environment)
    ssh = environment.ssh if environment is not None else None
    if ssh is None:
        raise InputError([f"environments.{key.environment}.ssh: missing: the ssh target needs it for {key} "
                          f"({inventory.located.where(where[:2])})"])
    host = ssh.hosts.get(key.region)
    if not host:
        raise InputError([f"environments.{key.environment}.ssh.hosts: no host for {key.region} "
                          f"({inventory.located.where((*where, 'hosts'))})"])
    base = Path(inventory.located.source).resolve().parent if inventory.located.source else Path.cwd()

    def here(text: str) -> str:
        return text.replace("{region}", key.region)

    front = (ssh.front_ports or {}).get(key.region) or ssh.front_port or inventory.app.listen
    return RegionHost(
        key=key,
        endpoint=Endpoint(
            host=host,
            port=ssh.port,
            user=ssh.user,
            key_file=_local_path(ssh.key_file, base) if ssh.key_file else None,
            known_hosts=_local_path(ssh.known_hosts, base),
        ),
        config_path=here(ssh.config_path),
        state_dir=here(ssh.state_dir),
        reload_command=here(ssh.reload_command),
        restart_command=here(ssh.restart_command),
        pid_file=here(ssh.pid_file),
        front_port=int(front),
        connect_timeout=float(ssh.connect_timeout_seconds),
        command_timeout=float(ssh.command_timeout_seconds),
    )


def _check_hub_config_path(inventory: Inventory, where: RegionHost) -> None:
    """The rendered cable-hub process reads hub.yml where the image keeps it: the host must keep it there too."""
    key = where.key
    expected = region_config_dir(inventory, inventory.settings(key.environment, key.region))
    if posixpath.dirname(where.path_of("hub.yml")) != expected:
        path = ("environments", key.environment, "ssh", "config_path")
        raise InputError([
            f"{'.'.join(path)}: the hub mode's cable-hub process reads {expected}/hub.yml, but this host would get it "
            f"at {where.path_of('hub.yml')}; set config_path to {inventory.image.config_dir}/regions/{{region}}/navigator.yml "
            f"({inventory.located.where(path[:3])})"
        ])


def build_operations(
    where: RegionHost, current: RegionState | None, desired: RegionState, env_names: tuple[str, ...]
) -> tuple[Operation, ...]:
    """The writes, the removal of files the new state no longer has, then reload (or restart)."""
    key = where.key
    shown_host = str(where.endpoint)
    operations: list[Operation] = [
        WriteFile(where.path_of(name), text, host=shown_host) for name, text in sorted(desired.files.items())
    ]
    stale = sorted(set(current.files) - set(desired.files)) if current else []
    if stale:
        operations.append(Command(
            ("rm", "-f", "--", *(where.path_of(name) for name in stale)),
            f"remove {', '.join(stale)} of the old mode on {where.host}",
            timeout_seconds=where.command_timeout, host=shown_host,
        ))
    action = "restart" if needs_restart(current, desired) else "reload"
    command = where.restart_command if action == "restart" else where.reload_command
    operations.append(Command(
        ("sh", "-c", command), f"{action} {key} on {where.host}", env_names=env_names, timeout_seconds=where.command_timeout,
        host=shown_host,
    ))
    return tuple(operations)


def with_secrets_on_stdin(names: tuple[str, ...], argv: tuple[str, ...]) -> tuple[str, ...]:
    """argv wrapped to read `names` (one line each) from standard input into its environment, then exec."""
    if not names:
        return argv
    for name in names:
        if not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
    reads = "; ".join(f"IFS= read -r {name} || exit {EXIT_SECRET_NOT_SENT}" for name in names)
    return ("sh", "-c", f'{reads}; export {" ".join(names)}; exec "$@"', "sh", *argv)


# --- connections --------------------------------------------------------------------------------


class Unreachable(Exception):
    """No usable SSH connection to a host; the message names the host and why."""


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """paramiko's RejectPolicy, with an exception of its own so the message can say "unknown"."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def open_connection(endpoint: Endpoint, connect_timeout: float) -> Connection:
    """An open fabric Connection whose host key is in endpoint.known_hosts; Unreachable otherwise."""
    connect_kwargs: dict[str, Any] = {
        "timeout": connect_timeout,
        "banner_timeout": connect_timeout,
        "auth_timeout": connect_timeout,
        "channel_timeout": connect_timeout,
    }
    if endpoint.key_file:
        connect_kwargs.update(key_filename=[endpoint.key_file], look_for_keys=False, allow_agent=False)
    # lazy: no /etc/fabric.yml, ~/.fabric.yml or ~/.ssh/config; the inventory says everything.
    config = Config(lazy=True)
    connection = Connection(endpoint.host, user=endpoint.user, port=endpoint.port, config=config,
                            connect_kwargs=connect_kwargs)
    connection.client.set_missing_host_key_policy(_RejectUnknown())
    known = endpoint.known_hosts
    missing_file = ""
    try:
        connection.client.get_host_keys().load(known)
    except FileNotFoundError:
        missing_file = " (the file does not exist)"
    except OSError as error:
        raise Unreachable(f"cannot read known hosts file {known}: {error.strerror or error}") from None
    try:
        connection.open()
    except paramiko.BadHostKeyException as error:
        connection.close()
        raise Unreachable(
            f"host key of {endpoint.host} port {endpoint.port} has CHANGED: it presented {_fingerprint(error.key)}, "
            f"but {known} has {_fingerprint(error.expected_key)} for it; refusing to connect "
            f"(if the change is expected, replace that line of {known})"
        ) from None
    except _UnknownHostKey as error:
        connection.close()
        presented = error.args[1]
        raise Unreachable(
            f"host key of {endpoint.host} port {endpoint.port} is unknown: {known}{missing_file} has no key for "
            f"{error.args[0]} (it presented {_fingerprint(presented)}); refusing to connect"
        ) from None
    except paramiko.AuthenticationException as error:
        connection.close()
        raise Unreachable(f"{endpoint}: authentication failed: {error}") from None
    except paramiko.ssh_exception.NoValidConnectionsError as error:
        connection.close()
        reasons = sorted({(e.strerror or str(e)).lower() for e in error.errors.values()})
        raise Unreachable(f"cannot connect to {endpoint}: {', '.join(reasons)}") from None
    except (TimeoutError, socket.timeout):
        connection.close()
        raise Unreachable(f"cannot connect to {endpoint}: no answer within {connect_timeout:g} s") from None
    except (paramiko.SSHException, EOFError) as error:
        connection.close()
        raise Unreachable(f"SSH to {endpoint} failed: {str(error) or type(error).__name__}") from None
    except OSError as error:
        connection.close()
        raise Unreachable(f"cannot connect to {endpoint}: {error.strerror or error}") from None
    return connection


class _Entry:
    def __init__(self) -> None:
        self.connection: Any = None  # None while its first user connects
        self.users = 1


class ConnectionPool:
    """At most `limit` open connections, keyed by endpoint; an idle one is closed to make room.

    `use(endpoint, connect)` yields the endpoint's connection, opening it with
    `connect()` if needed, waiting while `limit` connections are all in use.
    Callers never hold two at once, so waiting cannot deadlock.
    """

    def __init__(self, limit: int, alive: Callable[[Any], bool] = lambda connection: True) -> None:
        self.limit = max(1, limit)
        self._alive = alive
        self._entries: dict[Any, _Entry] = {}
        self._changed = threading.Condition()
        self._closed = False

    @contextmanager
    def use(self, endpoint: Any, connect: Callable[[], Any]) -> Iterator[Any]:
        entry = self._acquire(endpoint, connect)
        try:
            yield entry.connection
        finally:
            with self._changed:
                entry.users -= 1
                self._changed.notify_all()

    def _acquire(self, endpoint: Any, connect: Callable[[], Any]) -> _Entry:
        to_close = []
        with self._changed:
            while True:
                if self._closed:
                    raise Unreachable("the ssh target is closed")
                entry = self._entries.get(endpoint)
                if entry is not None:
                    if entry.connection is None:  # another thread is connecting to it
                        self._changed.wait()
                        continue
                    if entry.users == 0 and not self._alive(entry.connection):
                        to_close.append(self._entries.pop(endpoint).connection)
                        continue
                    entry.users += 1
                    mine = None
                    break
                if len(self._entries) >= self.limit:
                    idle = next((e for e, held in self._entries.items() if held.users == 0 and held.connection is not None), None)
                    if idle is None:
                        self._changed.wait()
                        continue
                    to_close.append(self._entries.pop(idle).connection)
                entry = mine = _Entry()
                self._entries[endpoint] = entry
                break
        for connection in to_close:
            _close_quietly(connection)
        if mine is None:
            return entry
        try:
            connection = connect()
        except BaseException:
            with self._changed:
                del self._entries[endpoint]
                self._changed.notify_all()
            raise
        with self._changed:
            mine.connection = connection
            closed = self._closed
            self._changed.notify_all()
        if closed:
            _close_quietly(connection)
            raise Unreachable("the ssh target is closed")
        return mine

    def open_count(self) -> int:
        with self._changed:
            return len(self._entries)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            connections = [entry.connection for entry in self._entries.values() if entry.connection is not None]
            self._entries.clear()
            self._changed.notify_all()
        for connection in connections:
            _close_quietly(connection)


def _close_quietly(thing: Any) -> None:
    try:
        thing.close()
    except Exception:  # noqa: BLE001 - closing after the fact: nothing to report to
        pass


def _alive(connection: Connection) -> bool:
    transport = connection.transport
    return transport is not None and transport.is_active()


# --- port forwards ------------------------------------------------------------------------------


class _Forward:
    """A local port on 127.0.0.1 whose connections are carried over SSH to `remote_port` on the host's loopback.

    Each accepted connection takes the host's pooled connection for as long as it
    is open; a failure to reach the host or the port closes the local connection.
    """

    def __init__(self, open_channel: Callable[[tuple[str, int], Callable[[Any], None]], None], name: str) -> None:
        self._open_channel = open_channel
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"forward {name}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, peer = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    client.close()
                    return
                self._sockets.add(client)
            threading.Thread(target=self._serve, args=(client, peer), daemon=True).start()

    def _serve(self, client: socket.socket, peer: tuple[str, int]) -> None:
        try:
            self._open_channel(peer, lambda channel: _pump(client, channel))
        except Exception:  # noqa: BLE001 - the prober sees its connection closed; the gate's evidence says so
            pass
        finally:
            with self._lock:
                self._sockets.discard(client)
            _close_quietly(client)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self._listener.close()
        for client in sockets:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _pump(client: socket.socket, channel: paramiko.Channel) -> None:
    """Copy both ways until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([client, channel], [], [])
            if client in readable:
                data = client.recv(_CHUNK)
                if not data:
                    return
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(_CHUNK)
                if not data:
                    return
                client.sendall(data)
    except (OSError, EOFError, paramiko.SSHException, ValueError):
        return
    finally:
        _close_quietly(channel)


# --- the target ---------------------------------------------------------------------------------


class SshTarget:
    name = "ssh"

    def __init__(self, inventory: Inventory, state_dir: Path) -> None:
        self.inventory = inventory
        self.state_dir = state_dir  # the orchestrator's; nothing of the ssh target is kept there
        self.secret_env_names = inventory.secret_env_names()
        self._lock = threading.Lock()
        self._pools: dict[str, ConnectionPool] = {}
        self._forwards: dict[tuple[Endpoint, int], _Forward] = {}
        self._modes: dict[RegionKey, str] = {}  # from the render.json this target last wrote
        self._closed = False

    def __enter__(self) -> SshTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def where(self, key: RegionKey) -> RegionHost:
        return region_host(self.inventory, key)

    # --- pure ---

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        where = self.where(key)
        if desired.mode == "hub" and "hub.yml" in desired.files:
            _check_hub_config_path(self.inventory, where)
        return build_operations(where, current, desired, self.secret_env_names)

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        where = self.where(key)
        argv, env_names = publish_argv(self.inventory, where.front_port, self._mode(key), stream, data_json)
        return Command(argv, f"publish a probe on {key} from {where.host}", env_names=env_names,
                       timeout_seconds=PROBE_TIMEOUT_SECONDS, host=str(where.endpoint))

    def memory_command(self, key: RegionKey, machine: str = "") -> Command:
        where = self.where(key)
        return Command(memory_argv(where.pid_file), f"read memory of {key} on {where.host}", timeout_seconds=PROBE_TIMEOUT_SECONDS,
                       host=str(where.endpoint))

    def metrics_command(self, key: RegionKey, machine: str = "") -> Command:
        where = self.where(key)
        return Command(metrics_argv(self.inventory), f"read the hub's metrics of {key} on {where.host}",
                       timeout_seconds=PROBE_TIMEOUT_SECONDS, host=str(where.endpoint))

    # --- connections ---

    @contextmanager
    def _connection(self, where: RegionHost) -> Iterator[Connection]:
        environment = self.inventory.environments[where.key.environment]
        settings: SshSettings | None = environment.ssh
        assert settings is not None
        with self._lock:
            if self._closed:
                raise Unreachable("the ssh target is closed")
            pool = self._pools.get(where.key.environment)
            if pool is None:
                pool = self._pools[where.key.environment] = ConnectionPool(settings.max_connections, _alive)
        with pool.use(where.endpoint, lambda: open_connection(where.endpoint, where.connect_timeout)) as connection:
            yield connection

    @contextmanager
    def _sftp(self, where: RegionHost) -> Iterator[tuple[Connection, paramiko.SFTPClient]]:
        with self._connection(where) as connection:
            sftp = paramiko.SFTPClient.from_transport(connection.transport)
            if sftp is None:
                raise paramiko.SSHException("the host has no SFTP subsystem")
            try:
                # Every request waits at most this long: a stuck server fails the write, not the rollout.
                sftp.get_channel().settimeout(where.command_timeout)
                yield connection, sftp
            finally:
                _close_quietly(sftp)

    # --- effects ---

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        where = self.where(key)
        path = operation.path
        directory, name = posixpath.split(path)
        data = operation.text.encode("utf-8")
        try:
            with self._sftp(where) as (connection, sftp):
                _make_directories(sftp, directory)
                _remove_temporaries(sftp, directory, name)
                temporary = posixpath.join(directory, f".{name}{TEMPORARY_MARK}{secrets.token_hex(6)}.tmp")
                try:
                    mode = _mode_of(sftp, path)
                    _upload(sftp, temporary, data, mode)
                    self._keep_previous(sftp, where, path, name, data)
                    _rename(connection, sftp, temporary, path, where.command_timeout)
                except BaseException:
                    try:
                        sftp.remove(temporary)
                    except Exception:  # noqa: BLE001 - the next write of this file removes it
                        pass
                    raise
        except Unreachable as error:
            raise TargetError(f"{key}: cannot write {path}: {error}") from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise TargetError(f"{key}: cannot write {path} on {where.endpoint}: {_reason(error)}") from None
        if name == REGION_SETTINGS:
            deployed_mode = _mode_in(operation.text)
            if deployed_mode:
                with self._lock:
                    self._modes[key] = deployed_mode

    def _keep_previous(self, sftp: paramiko.SFTPClient, where: RegionHost, path: str, name: str, data: bytes) -> None:
        """The file being replaced, to <state_dir>/previous/<name>, unless it already holds `data`."""
        try:
            current = _read(sftp, path)
        except FileNotFoundError:
            return
        if current == data:
            return  # a repeated write (a resumed step): the real previous file stays
        previous = posixpath.join(where.state_dir, "previous")
        _make_directories(sftp, previous)
        _remove_temporaries(sftp, previous, name)
        temporary = posixpath.join(previous, f".{name}{TEMPORARY_MARK}{secrets.token_hex(6)}.tmp")
        _upload(sftp, temporary, current, _mode_of(sftp, path))
        sftp.posix_rename(temporary, posixpath.join(previous, name))

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        where = self.where(key)
        timeout = min(command.timeout_seconds, where.command_timeout)
        names = tuple(name for name in command.env_names if os.environ.get(name))
        for name in names:
            if "\n" in os.environ[name] or "\r" in os.environ[name]:
                return CommandResult(EXIT_SECRET_NOT_SENT, "", f"{command.label}: {name} holds a line break; it cannot be sent")
        stdin = "".join(os.environ[name] + "\n" for name in names)
        remote = shlex.join(with_secrets_on_stdin(names, command.argv))
        try:
            with self._connection(where) as connection:
                result = connection.run(remote, hide=True, warn=True, pty=False, timeout=timeout,
                                        in_stream=io.StringIO(stdin), echo_stdin=False)
        except CommandTimedOut:
            return CommandResult(EXIT_TIMEOUT, "", f"{command.label}: no answer from {where.host} within {timeout:g} s "
                                                   "(the command may still be running there)")
        except Unreachable as error:
            return CommandResult(EXIT_UNREACHABLE, "", f"{key}: {error}")
        except (OSError, EOFError, paramiko.SSHException, ThreadException) as error:
            return CommandResult(EXIT_UNREACHABLE, "", f"{key}: {command.label}: connection to {where.endpoint} lost: {_reason(error)}")
        return CommandResult(result.exited if result.exited >= 0 else EXIT_UNREACHABLE, result.stdout, result.stderr)

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        """A region's one host, named as the inventory names it; whether it answers is the gates' to find out."""
        return (Machine(self.where(key).host),)

    def awake(self, key: RegionKey, machine: Machine) -> AbstractContextManager[None]:
        return nullcontext()

    def readiness(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """The files a connection needs: the known hosts (nothing else is trusted) and the key, where one is named.
        (The secrets the commands name are left to the host's environment when not set here.)"""
        problems = []
        for where in dict.fromkeys(self.where(step.key).endpoint for step in steps):
            if not os.path.isfile(where.known_hosts):
                problems.append(f"{where}: the known hosts file {where.known_hosts} does not exist: nothing would be "
                                f"trusted (ssh-keyscan -p {where.port} {where.host} >> {where.known_hosts}, after checking "
                                f"the key)")
            if where.key_file and not os.path.isfile(where.key_file):
                problems.append(f"{where}: the key file {where.key_file} does not exist")
        return tuple(dict.fromkeys(problems))

    def live_files(self, key: RegionKey, names: tuple[str, ...], machine: str = "") -> Mapping[str, str | None]:
        where = self.where(key)
        files: dict[str, str | None] = {}
        try:
            with self._sftp(where) as (_, sftp):
                for name in names:
                    try:
                        files[name] = _read(sftp, where.path_of(name)).decode("utf-8", errors="replace")
                    except FileNotFoundError:
                        files[name] = None
        except Unreachable as error:
            raise TargetError(f"{key}: cannot read the live files: {error}") from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise TargetError(f"{key}: cannot read the live files on {where.endpoint}: {_reason(error)}") from None
        return files

    def http_url(self, key: RegionKey, path: str) -> str:
        where = self.where(key)
        return f"http://127.0.0.1:{self._forward(where, where.front_port)}{path}"

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        return {}

    def cable_url(self, key: RegionKey, path: str) -> str:
        where = self.where(key)
        return f"ws://127.0.0.1:{self._forward(where, where.front_port)}{path}"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            forwards = list(self._forwards.values())
            pools = list(self._pools.values())
            self._forwards.clear()
        for forward in forwards:
            forward.close()
        for pool in pools:
            pool.close()

    # --- helpers ---

    def _forward(self, where: RegionHost, remote_port: int) -> int:
        with self._lock:
            if self._closed:
                raise TargetError(f"{where.key}: the ssh target is closed")
            forward = self._forwards.get((where.endpoint, remote_port))
            if forward is None:
                def open_channel(peer: tuple[str, int], pump: Callable[[Any], None]) -> None:
                    with self._connection(where) as connection:
                        channel = connection.transport.open_channel(
                            "direct-tcpip", ("127.0.0.1", remote_port), peer, timeout=where.connect_timeout
                        )
                        pump(channel)

                forward = _Forward(open_channel, f"{where.host}:{remote_port}")
                self._forwards[(where.endpoint, remote_port)] = forward
            return forward.port

    def _mode(self, key: RegionKey) -> str:
        """The mode the region runs: from the render.json this target wrote, else read from the host."""
        with self._lock:
            known = self._modes.get(key)
        if known:
            return known
        text = self.live_files(key, (REGION_SETTINGS,))[REGION_SETTINGS]
        mode = _mode_in(text or "")
        if not mode:
            where = self.where(key)
            raise TargetError(f"{key}: no mode in {where.path_of(REGION_SETTINGS)} on {where.host}: is the region deployed?")
        return mode


def _mode_in(text: str) -> str | None:
    try:
        mode = json.loads(text).get("mode")
    except (ValueError, AttributeError):
        return None
    return mode if isinstance(mode, str) else None


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _make_directories(sftp: paramiko.SFTPClient, directory: str) -> None:
    """mkdir -p over SFTP."""
    missing = []
    probe = directory
    while probe not in ("", "/"):
        try:
            sftp.stat(probe)
            break
        except FileNotFoundError:
            missing.append(probe)
            probe = posixpath.dirname(probe)
    for path in reversed(missing):
        try:
            sftp.mkdir(path)
        except OSError:
            sftp.stat(path)  # made meanwhile by someone else is fine; anything else raises


def _remove_temporaries(sftp: paramiko.SFTPClient, directory: str, name: str) -> None:
    """Temporary files of `name` left by an upload that never finished (an orchestrator killed mid-write)."""
    prefix = f".{name}{TEMPORARY_MARK}"
    for entry in sftp.listdir(directory):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            try:
                sftp.remove(posixpath.join(directory, entry))
            except FileNotFoundError:
                pass


def _mode_of(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        mode = sftp.stat(path).st_mode
    except FileNotFoundError:
        return None
    return None if mode is None else mode & 0o7777


def _upload(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int | None) -> None:
    with sftp.open(path, "wb") as remote:
        remote.set_pipelined(True)
        remote.write(data)
    size = sftp.stat(path).st_size
    if size != len(data):
        raise OSError(f"uploaded {size} of {len(data)} bytes to {path}")
    sftp.chmod(path, 0o644 if mode is None else mode)


def _read(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path, "rb") as remote:
        return remote.read()


def _rename(connection: Connection, sftp: paramiko.SFTPClient, source: str, target: str, timeout: float) -> None:
    """rename(2) of source over target: posix-rename@openssh.com, else `mv -f` on the host."""
    try:
        sftp.posix_rename(source, target)
        return
    except OSError as error:
        if error.errno is not None:
            raise
    result = connection.run(shlex.join(["mv", "-f", "--", source, target]), hide=True, warn=True, pty=False,
                            timeout=timeout, in_stream=io.StringIO(""))
    if result.exited != 0:
        raise OSError(f"mv -f {source} {target}: {result.stderr.strip() or f'exit {result.exited}'}")
