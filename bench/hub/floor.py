"""The lower bound for fan-out: an asyncio server that completes the WebSocket
handshake, confirms any subscription, and on POST /_broadcast builds ONE frame
and writes it to every socket. No per-client state beyond the transport."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from typing import Any

from wire import accept_key, server_frame

WELCOME = server_frame(b'{"type":"welcome"}')


class Floor:
    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.sockets: set[asyncio.Transport] = set()
        self.confirm = server_frame(
            json.dumps({"identifier": identifier, "type": "confirm_subscription"}, separators=(",", ":")).encode()
        )

    def fan_out(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            message = item["data"]  # sent as posted, as the hub does
            frame = server_frame(json.dumps({"identifier": self.identifier, "message": message}, separators=(",", ":")).encode())
            for transport in self.sockets:
                transport.write(frame)


class FloorConnection(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.websocket = False
        self.confirmed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.websocket:
            # The only thing clients send is their subscribe command.
            if not self.confirmed:
                self.confirmed = True
                self.transport.write(self.floor.confirm)
            return
        self.buffer += data
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
        accept = accept_key(headers["sec-websocket-key"].encode()).decode()
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
            ).encode()
            + WELCOME
        )
        self.websocket = True
        self.buffer.clear()
        self.floor.sockets.add(self.transport)

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
