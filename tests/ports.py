"""Ports on 127.0.0.1 for the servers the tests start.

Choosing a free port, closing it, then starting a server on it is a race: another process can
take the port in between. So:

- a server that can bind port 0 and say which port it got is started that way (the hub logs
  `listening ... port=N`; see tests/e2e/e2e_support.py and tests/hub/hub_testkit.py);
- a server that cannot (sshd, puma, redis-server) is started with `start_on_free_port`, which
  chooses a port, and when the server fails because the port was taken meanwhile (its start
  function raises `PortTaken`, see `start_failed`), chooses another and starts it again;
  `start_listening` does that for a command line and a readiness check.

`unused_port()` alone is for a port that is only passed on (to a program that binds it itself
later, or to a client that must find nothing listening there).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.polling import wait_for

T = TypeVar("T")

# How sshd, puma and redis-server word a bind to a port in use (strerror of EADDRINUSE); Go programs such as
# Navigator write the same words in lower case, so the output is compared case-insensitively.
ADDRESS_IN_USE = os.strerror(errno.EADDRINUSE).lower()
START_ATTEMPTS = 5


class PortTaken(AssertionError):
    """A server could not listen on the port it was given: something else took it first."""


def unused_port() -> int:
    """A port nothing listens on at this moment (it may be taken by the time it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_failed(what: str, returncode: int | None, output: str) -> AssertionError:
    """The error for a server that exited while starting: PortTaken when its output says the port was in use."""
    kind = PortTaken if ADDRESS_IN_USE in output.lower() else AssertionError
    return kind(f"{what} exited with {returncode}:\n{output}")


def start_on_free_port(start: Callable[[int], T], attempts: int = START_ATTEMPTS) -> T:
    """`start(port)` on a port that is free now; again on another port while it raises PortTaken.

    `start` must leave nothing running when it raises.
    """
    taken: list[int] = []
    while True:
        port = unused_port()  # looked up on each call, so a test can hand out a taken port first
        try:
            return start(port)
        except PortTaken:
            taken.append(port)
            if len(taken) >= attempts:
                raise PortTaken(f"every port tried was taken before its server could bind it: {taken}") from None


def start_listening(
    argv: Callable[[int], Sequence[str]],
    ready: Callable[[int], bool],
    what: str,
    *,
    log: Path | None = None,
    timeout: float = 30,
    **popen: Any,
) -> tuple[subprocess.Popen[bytes], int]:
    """Run `argv(port)` on a free port until `ready(port)`; on another port when the first was taken.

    The server's output goes to `log` (or a temporary file), where a failed start is read from.
    """

    def start(port: int) -> tuple[subprocess.Popen[bytes], int]:
        with open(log, "a+b") if log is not None else tempfile.TemporaryFile() as output:
            offset = output.tell()
            process = subprocess.Popen(list(argv(port)), stdout=output, stderr=subprocess.STDOUT, **popen)
            try:
                wait_for(lambda: process.poll() is not None or ready(port), timeout, f"{what} on port {port}")
                if process.poll() is not None:
                    output.flush()
                    output.seek(offset)
                    raise start_failed(what, process.returncode, output.read().decode(errors="replace"))
            except BaseException:
                if process.poll() is None:
                    process.kill()
                process.wait()
                raise
        return process, port

    return start_on_free_port(start)


def redis_answers_ping(port: int) -> bool:
    """Whether a redis-server listens on `port` (the readiness check for start_listening)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
