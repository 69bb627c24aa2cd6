"""The lower bound for an Action Cable server, in bare asyncio: what any such server must do and
nothing more. It completes the WebSocket handshake (Upgrade, key and version checked, the accept
key, the subprotocol if offered), sends the welcome, unmasks each client frame and parses its
JSON command, confirms a subscribe to --identifier (echoing the identifier as the client sent
it) and rejects any other, sends every subscriber Action Cable's ping every 3 seconds (clients
reconnect after 6 seconds without one), and on POST /_broadcast builds ONE frame and writes it
to every subscriber. No per-client state beyond the transport and whether it is subscribed."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

from wire import OP_TEXT, accept_key, parse_frames, server_frame

WELCOME = server_frame(b'{"type":"welcome"}')
PING_SECONDS = 3.0
PROTOCOL = "actioncable-v1-json"


def json_frame(value: Any) -> bytes:
    return server_frame(json.dumps(value, separators=(",", ":")).encode())


class Floor:
    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.params = json.loads(identifier)  # a client may send the same identifier spelled otherwise
        self.sockets: set[asyncio.Transport] = set()  # the subscribed ones

    def ping(self) -> None:
        frame = json_frame({"type": "ping", "message": int(time.time())})
        for transport in self.sockets:
            transport.write(frame)
        asyncio.get_running_loop().call_later(PING_SECONDS, self.ping)

    def fan_out(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            message = item["data"]  # sent as posted, as the hub does
            frame = json_frame({"identifier": self.identifier, "message": message})
            for transport in self.sockets:
                transport.write(frame)


class FloorConnection(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.websocket = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            for opcode, payload in parse_frames(self.buffer):
                if opcode == OP_TEXT:
                    self.command(json.loads(payload))
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        body = bytes(self.buffer[end + 4 :])
        headers = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip() for line in head.split("\r\n")[1:]}
        if head.startswith("GET"):
            self.upgrade(headers)
        elif head.startswith("POST"):
            length = int(headers.get("content-length", "0"))
            if len(body) >= length:
                self.broadcast(body[:length])

    def upgrade(self, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "")
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        if not upgrade or len(key) != 24 or headers.get("sec-websocket-version") != "13":
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            return
        offered = PROTOCOL in headers.get("sec-websocket-protocol", "")
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key.encode()).decode()}\r\n"
                + (f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n" if offered else "")
                + "\r\n"
            ).encode()
            + WELCOME
        )
        self.websocket = True
        self.buffer.clear()

    def command(self, message: dict[str, Any]) -> None:
        identifier = message.get("identifier")
        if message.get("command") != "subscribe" or not isinstance(identifier, str):
            return
        try:
            confirmed = json.loads(identifier) == self.floor.params
        except ValueError:
            confirmed = False
        if confirmed:
            self.floor.sockets.add(self.transport)
        kind = "confirm_subscription" if confirmed else "reject_subscription"
        self.transport.write(json_frame({"identifier": identifier, "type": kind}))

    def broadcast(self, body: bytes) -> None:
        payload = json.loads(body)
        self.floor.fan_out(payload if isinstance(payload, list) else [payload])
        self.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.floor.sockets.discard(self.transport)


async def serve(host: str, port: int, identifier: str) -> None:
    floor = Floor(identifier)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FloorConnection(floor), host, port, backlog=4096)
    loop.call_later(PING_SECONDS, floor.ping)
    port = server.sockets[0].getsockname()[1]  # the one the kernel chose when asked for port 0
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--identifier", required=True)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.host, args.port, args.identifier))


if __name__ == "__main__":
    main()
