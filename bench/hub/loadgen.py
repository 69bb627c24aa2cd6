"""Load generator: N raw-socket Action Cable clients on one asyncio loop.

Opens clients in steps up to each level, measures the server's RSS and the
connect rate, then times broadcasts from the POST until every client has the
message. Prints one JSON document on stdout; progress goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from connector import open_subscribed
from wire import OP_CLOSE, OP_TEXT, client_frame, parse_frames

MARK = b'"bseq":'
HANDSHAKE_CONCURRENCY = 128
SETTLE_SECONDS = 1.0


def log(message: str) -> None:
    print(f"[loadgen] {message}", file=sys.stderr, flush=True)


def rss_kb(pid: int) -> int:
    """VmRSS of `pid` plus all its descendants, in KB."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (all its threads) plus its descendants."""
    ticks = 0
    for member in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 20 samples, p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def is_one_text_frame(data: bytes) -> bool:
    if len(data) < 2 or data[0] != 0x80 | OP_TEXT:
        return False
    length = data[1]
    if length < 126:
        return len(data) == 2 + length
    return length == 126 and len(data) == 4 + int.from_bytes(data[2:4], "big")


@dataclass
class Fanout:
    """Counts arrivals of the broadcast in flight."""

    seq: int = -1
    remaining: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, seq: int) -> None:
        if seq == self.seq:
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


# Clients read into one shared buffer (each read is handled before the next one
# starts). Plain Protocol reads allocate a 256 KiB bytes object per recv, which
# more than doubled the client's kernel time per message and capped what the
# bench could measure at the server.
READ_BUFFER = memoryview(bytearray(65536))


class Client(asyncio.BufferedProtocol):
    """One client. With `request` None it was opened and subscribed by connector.py, and `subscribed`
    is None too; otherwise it sends `request` once connected and resolves `subscribed`."""

    def __init__(
        self, request: bytes | None, subscribe: bytes, fanout: Fanout, subscribed: asyncio.Future[None] | None
    ) -> None:
        self.request = request
        self.subscribe = subscribe
        self.fanout = fanout
        self.subscribed = subscribed
        self.buffer = bytearray()
        self.open = request is None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.request is not None:
            transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.open and not self.buffer and is_one_text_frame(data):
            # Fast path for the common case (one whole frame per read), so the
            # client side adds as little as possible to fan-out timings.
            self.on_text(data)
            return
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.fail(bytes(self.buffer[:end]).decode("latin-1"))
                return
            self.open = True
            del self.buffer[: end + 4]
        for opcode, payload in parse_frames(self.buffer):
            if opcode == OP_TEXT:
                self.on_text(payload)
            elif opcode == OP_CLOSE:
                self.fail(f"closed by server: {payload!r}")

    def on_text(self, payload: bytes) -> None:
        mark = payload.find(MARK)
        if mark >= 0:
            start = mark + len(MARK)
            end = start
            while payload[end] in b"0123456789":
                end += 1
            self.fanout.arrived(int(payload[start:end]))
        elif b'"welcome"' in payload:
            self.transport.write(self.subscribe)
        elif b"confirm_subscription" in payload and self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif b"reject_subscription" in payload:
            self.fail("subscription rejected")

    def fail(self, reason: str) -> None:
        if self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(reason))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost: {exc}")


@dataclass
class Bench:
    host: str
    port: int
    path: str
    identifier: str
    stream: str
    broadcast_path: str
    server_pid: int
    fanout: Fanout = field(default_factory=Fanout)
    clients: list[Client] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # more than one server: clients spread over them in turn

    SUBPROTOCOL: ClassVar[str | None] = "actioncable-v1-json"  # None: Navigator's protocol, as `new WebSocket(url)`

    def handshake(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Protocol: {self.SUBPROTOCOL}\r\n" if self.SUBPROTOCOL else ""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{offer}Origin: http://{self.host}:{self.port}\r\n\r\n"
        ).encode()

    async def open_clients(self, count: int, timeout: float) -> float:
        """Open and subscribe `count` more clients (spread over `ports` when set); return subscriptions
        per second. The connects are timed in connector.py, and the sockets only then handed to
        this loop, so the rate measures the server rather than asyncio's create_connection."""
        subscribe = client_frame(json.dumps({"command": "subscribe", "identifier": self.identifier}).encode())
        addresses = [(self.host, port) for port in self.ports or [self.port]]
        started = time.perf_counter()
        opened = open_subscribed(addresses, count, self.handshake, subscribe, HANDSHAKE_CONCURRENCY, timeout)
        rate = count / (time.perf_counter() - started)
        loop = asyncio.get_running_loop()
        for sock, rest in opened:
            _, client = await loop.create_connection(lambda: Client(None, subscribe, self.fanout, None), sock=sock)
            if rest:
                client.data_received(rest)
            self.clients.append(client)
        return rate

    async def post(self, body: bytes) -> int:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            (
                f"POST {self.broadcast_path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + body
        )
        status_line = await reader.readline()
        writer.close()
        return int(status_line.split()[1])

    async def broadcast_once(self, seq: int, timeout: float) -> float | None:
        """Seconds from POST to the last arrival, or None when not all arrived."""
        self.fanout.seq = seq
        self.fanout.remaining = len(self.clients)
        self.fanout.done = asyncio.Event()
        # The message itself, as the generated Rails adapter posts it (it decodes Action Cable's payload).
        data = {"bseq": seq, "heat": 42, "html": "<turbo-stream action=replace>" + "x" * 120 + "</turbo-stream>"}
        started = time.perf_counter()
        status = await self.post(json.dumps({"stream": self.stream, "data": data}).encode())
        if status != 201:
            raise RuntimeError(f"broadcast answered {status}")
        try:
            await asyncio.wait_for(self.fanout.done.wait(), timeout)
        except TimeoutError:
            return None
        return time.perf_counter() - started

    async def measure_fanout(self, count: int, timeout: float, seq_base: int) -> dict[str, object]:
        samples: list[float] = []
        incomplete = 0
        # One unmeasured broadcast first: the first write to fresh sockets allocates.
        await self.broadcast_once(seq_base, timeout)
        cpu_before = cpu_seconds(self.server_pid)
        for index in range(1, count + 1):
            elapsed = await self.broadcast_once(seq_base + index, timeout)
            if elapsed is None:
                incomplete += 1
            else:
                samples.append(elapsed * 1000)
        # Less sensitive to a noisy (virtual) machine than wall time; includes the server's pings.
        server_cpu_ms = (cpu_seconds(self.server_pid) - cpu_before) * 1000 / count
        result: dict[str, object] = {
            "broadcasts": count,
            "incomplete": incomplete,
            "server_cpu_ms_per_broadcast": round(server_cpu_ms, 2),
        }
        if samples:
            result |= {
                "p50_ms": round(percentile(samples, 0.50), 2),
                "p99_ms": round(percentile(samples, 0.99), 2),
                "min_ms": round(min(samples), 2),
                "max_ms": round(max(samples), 2),
            }
        return result


async def run(args: argparse.Namespace) -> dict[str, object]:
    bench = Bench(
        args.host, args.port, args.path, args.identifier, args.stream, args.broadcast_path, args.server_pid
    )
    await asyncio.sleep(SETTLE_SECONDS)
    result: dict[str, object] = {"idle_rss_kb": rss_kb(args.server_pid), "levels": []}
    log(f"idle rss {result['idle_rss_kb']} KB")
    for level_index, level in enumerate(args.levels):
        added = level - len(bench.clients)
        server_cpu, own_cpu = cpu_seconds(args.server_pid), time.process_time()
        rate = await bench.open_clients(added, args.connect_timeout)
        server_cpu, own_cpu = cpu_seconds(args.server_pid) - server_cpu, time.process_time() - own_cpu
        await asyncio.sleep(SETTLE_SECONDS)  # let the server finish allocating before reading RSS
        rss = rss_kb(args.server_pid)
        log(f"{level} clients subscribed at {rate:.0f}/s, rss {rss} KB")
        fanout = await bench.measure_fanout(args.broadcasts, args.fanout_timeout, level_index * 1000)
        log(f"{level} clients fan-out {fanout}")
        result["levels"].append(
            {
                "clients": level,
                "rss_kb": rss,
                "kb_per_connection": round((rss - result["idle_rss_kb"]) / level, 2),
                "connect_rate_per_s": round(rate, 1),
                "server_cpu_us_per_connection": round(server_cpu * 1e6 / added, 1),
                "loadgen_cpu_us_per_connection": round(own_cpu * 1e6 / added, 1),
                "fanout": fanout,
                "rss_after_fanout_kb": rss_kb(args.server_pid),
            }
        )
    for client in bench.clients:
        client.transport.abort()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cable")
    parser.add_argument("--broadcast-path", default="/_broadcast")
    parser.add_argument("--identifier", required=True, help="the subscription identifier (a JSON string)")
    parser.add_argument("--stream", required=True, help="the stream that identifier subscribes to")
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--levels", type=lambda text: [int(part) for part in text.split(",")], required=True)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument("--fanout-timeout", type=float, default=60)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
