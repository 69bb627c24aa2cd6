"""Helpers shared by the hub tests (a distinct module name, so it cannot clash with other test folders)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from hub.streams import Client

from tests.polling import wait_for


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = b"\x11\x22\x33\x44") -> bytes:
    """A client frame built by hand, for the malformed cases a real client library refuses to produce."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if mask is None:
        return header + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class FakeSubscriber:
    """Stands in for a connection in the registry: records the frames written to it."""

    def __init__(self, name: str = "c", client: Client | None = None) -> None:
        self.name = name
        self.client = client
        self.frames: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def __repr__(self) -> str:
        return f"FakeSubscriber({self.name})"


class LogRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]


class HubProcess:
    """The hub as a real subprocess on 127.0.0.1 with a free port; its log lines are collected."""

    def __init__(
        self,
        directory: Path,
        navigator: str | None,
        hub: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (sys.executable, "-m", "hub"),
    ) -> None:
        """Without `navigator`, the hub runs from hub.yml alone (--hub-config)."""
        self.directory = directory
        self.navigator_path = directory / "navigator.yml"
        self.hub_path = directory / "hub.yml"
        if hub is not None:
            self.hub_path.write_text(hub)
        if navigator is None:
            config = ["--hub-config", str(self.hub_path)]
        else:
            self.navigator_path.write_text(navigator)
            config = ["--config", str(self.navigator_path)]
        command = [*launcher, *config, "--port", "0", "--log-format", "json", *args]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=directory,
        )
        self.lines: list[dict] = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = wait_for(lambda: self.find("listening") or self.proc.poll() is not None, what="listening")
        if listening is True:
            self._reader.join(5)
            raise AssertionError(f"hub exited with {self.proc.returncode}: {self.proc.stderr.read()}")
        self.port = listening["port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def find(self, event: str, **fields) -> dict | None:
        for line in list(self.lines):
            if line["event"] == event and all(line.get(k) == v for k, v in fields.items()):
                return line
        return None

    def wait_log(self, event: str, **fields) -> dict:
        return wait_for(lambda: self.find(event, **fields), what=f"log event {event} {fields}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def broadcast(self, payload, headers: dict[str, str] | None = None, path: str = "/_broadcast") -> int:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})[0]

    def metric(self, name: str) -> float:
        status, body = self.request("GET", "/metrics")
        assert status == 200
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"metric {name} missing")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)  # it ends at EOF; closing stdout under it would break its read
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class RawClient:
    """A WebSocket client over a bare socket, for what real client libraries refuse to do."""

    def __init__(self, port: int, path: str, subprotocol: str | None = None, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        protocol = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.sock.sendall(client_frame(opcode, payload, fin=fin))

    def _need(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def recv_frame(self) -> tuple[int, bytes]:
        self._need(2)
        opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
        offset = 2
        if length == 126:
            self._need(4)
            length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            self._need(10)
            length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        self._need(offset + length)
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return opcode, payload

    def recv_until_close(self) -> tuple[list[bytes], int | None]:
        """Texts received, then the close code of the server's close frame."""
        texts = []
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x8:
                return texts, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if opcode == 0x1:
                texts.append(payload)

    def at_eof(self) -> bool:
        """True once the server has closed the TCP connection (reset counts as closed)."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


# --- WebSocket clients (websockets' sync client) -----------------------------------------


def recv_json(ws) -> dict:
    return json.loads(ws.recv(timeout=10))


def recv_until(ws, predicate, timeout: float = 10.0) -> dict:
    """Skip pings and other traffic until a message matches; fail after `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.001)))
        if predicate(message):
            return message


def assert_closed_with(ws, code: int, timeout: float = 10.0) -> None:
    """The server closes within `timeout` seconds (whatever it sends before), with `code`."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=max(deadline - time.monotonic(), 0.001))
    assert ws.close_code == code


def subscribe(ws, **params) -> tuple[str, dict]:
    """An Action Cable subscribe and the server's answer to it."""
    identifier = json.dumps(params)
    ws.send(json.dumps({"command": "subscribe", "identifier": identifier}))
    return identifier, recv_until(ws, lambda m: m.get("identifier") == identifier)
