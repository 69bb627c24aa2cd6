"""Navigator's built-in cable against the hub, by memory: from how many subscribed connections is a
hub-mode region smaller in total than an integrated one? Three configurations, in alternating rounds:

- integrated: the real Navigator with its own cable on (`cable.enabled: true`); the clients connect to it;
  total = Navigator's RSS.
- hub-proxied (hub mode as deployed): Navigator with its cable off and the reverse proxy
  orchestrator/render/modes.py renders (`^(/cable)$` -> `http://localhost:HUB$1`, `websocket: true`) to the hub;
  the clients connect to Navigator, which opens one WebSocket to the hub for each; total = Navigator + hub.
- hub-direct (no proxy in the way: what the hub itself adds): the same two processes, the clients connected straight to the hub;
  total = Navigator's RSS before any client (in the hub-mode configuration) + the hub's RSS.

The hub runs as the image runs it (bench/hub/run.py's hub_copy, bytecode compiled by /usr/bin/python3, which
runs it under PYTHONDONTWRITEBYTECODE=1), started beside Navigator rather than as its managed process, so its
RSS is read alone. Every client speaks Navigator's protocol (a WebSocket without subprotocol, subscribe to
`bench`, pong to every ping). Servers run on CPU 0, the clients (this process, not counted) on CPU 1.
Writes bench/results/hub-navigator.json and .md.

Run by hand (not a test):  .venv/bin/python bench/hub/navigator.py [--levels 0,100,1000,5000,10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loadgen import HANDSHAKE_CONCURRENCY, Bench, Client, Fanout, is_one_text_frame, rss_kb  # noqa: E402
from run import (  # noqa: E402  (the hub benchmark's helpers)
    LOADGEN_CPU, MB, WORK, Server, heading, hub_copy, pinned, run_record, start, stop, write_results,
)
from wire import client_frame  # noqa: E402

NAVIGATOR = "/work/navbuild/out/navigator"  # v1.2.0 built from source
NAVIGATOR_SOURCE = "/work/.mirror/rubys+navigator/repo"
IMAGE_PYTHON = "/usr/bin/python3"
CABLE_PATH = "/cable"
BROADCAST_PATH = "/_broadcast"
STREAM = "bench"
CONFIGURATIONS = ("integrated", "hub-proxied", "hub-direct")
TITLES = {
    "integrated": "1. integrated: Navigator's own cable",
    "hub-proxied": "2. hub behind Navigator (as deployed): clients -> Navigator's WebSocket proxy -> hub",
    "hub-direct": "3. hub direct (no proxy: what the hub itself adds): clients -> hub; Navigator idle in its hub-mode configuration",
}
SUBSCRIBE = client_frame(json.dumps({"type": "subscribe", "stream": STREAM}).encode())
PONG = client_frame(b'{"type":"pong"}')
BROADCAST = json.dumps({"stream": STREAM, "data": {"n": 1}}, separators=(",", ":")).encode()
EXPECTED = {"type": "message", "stream": STREAM, "data": {"n": 1}}
SETTLE_INTERVAL = 0.5  # seconds between two RSS reads
SETTLE_AGREE = 0.01  # they agree within 1 %
SETTLE_MAX = 5.0  # seconds, at most
DELIVERY_TIMEOUT = 60.0
CONNECT_TIMEOUT = 900.0  # per level
# Descriptors a server keeps besides its WebSockets (stdio, epoll, listener, log, the hub's 64 for plain HTTP).
DESCRIPTOR_RESERVE = 100
HUB_LIMITS = {
    # Every client of this bench is 127.0.0.1 (behind Navigator too: its WebSocket proxy adds no
    # X-Forwarded-For), so the per-client limits are raised as far as the connection limit, as run.py does.
    "max_connections": 20000,
    "max_connections_per_client": 20000,
    "max_subscriptions_per_client": 20000,
}


def log(message: str) -> None:
    print(f"[navigator-bench] {message}", file=sys.stderr, flush=True)


# --- the clients ------------------------------------------------------------------------------------------


class Counts:
    """What every client saw, for the round's record."""

    def __init__(self) -> None:
        self.pings = 0
        self.delivered = 0
        self.unexpected: list[str] = []
        self.lost = 0


class NavigatorClient(Client):
    """loadgen's raw-socket client on Navigator's protocol: no welcome, so it subscribes as soon as the 101
    has arrived (gorilla/websocket refuses a frame sent before it), answers every ping with a pong, and
    counts the broadcast when it is exactly EXPECTED."""

    def __init__(self, request: bytes, subscribed: asyncio.Future[None], counts: Counts, fanout: Fanout) -> None:
        super().__init__(request, SUBSCRIBE, fanout, subscribed)
        self.counts = counts
        self.received = 0

    def data_received(self, data: bytes) -> None:
        if self.open and not self.buffer and is_one_text_frame(data):
            self.on_text(data[2:] if data[1] < 126 else data[4:])  # the payload (server frames are unmasked)
            return
        was_open = self.open
        super().data_received(data)  # the handshake, then parse_frames -> on_text
        if self.open and not was_open:
            self.transport.write(self.subscribe)

    def on_text(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            self.counts.pings += 1
            self.transport.write(PONG)
        elif kind == "subscribed" and message.get("stream") == STREAM and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif message == EXPECTED:
            self.received += 1
            self.counts.delivered += 1
        else:
            self.counts.unexpected.append(payload[:200].decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.subscribed.done():
            self.counts.lost += 1
        super().connection_lost(exc)


class NavigatorBench(Bench):
    """loadgen's Bench with Navigator's handshake (no Sec-WebSocket-Protocol, as `new WebSocket(url)`)."""

    counts: Counts
    SUBPROTOCOL = None

    async def open_clients(self, count: int, timeout: float) -> float:
        """Open `count` more clients, each subscribed (its `subscribed` arrived); return clients per second."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)

        async def one() -> None:
            async with gate:
                subscribed: asyncio.Future[None] = loop.create_future()
                _, client = await loop.create_connection(
                    lambda: NavigatorClient(self.handshake(), subscribed, self.counts, self.fanout), self.host, self.port
                )
                await subscribed
                self.clients.append(client)

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), timeout)
        return count / (time.perf_counter() - started)


# --- the servers ------------------------------------------------------------------------------------------


def navigator_yml(configuration: str, port: int, hub_port: int) -> dict[str, Any]:
    """A minimal navigator.yml: no applications, a synthetic /up, and the cable block the region renders
    (orchestrator/render/modes.py: cable_block always says `enabled`, reverse_proxies in hub mode)."""
    config: dict[str, Any] = {
        "server": {"listen": port, "health_check": {"path": "/up", "response": {"status": 200, "body": "OK"}}},
        "cable": {"enabled": configuration == "integrated", "path": CABLE_PATH, "broadcast_path": BROADCAST_PATH},
    }
    if configuration != "integrated":
        # As modes.reverse_proxies renders it: the exact cable path, $1 keeping it, to the hub's loopback port.
        config["routes"] = {"reverse_proxies": [
            {"name": "cable", "path": f"^({CABLE_PATH})$", "target": f"http://localhost:{hub_port}$1", "websocket": True},
        ]}
    return config


def navigator_server(configuration: str, directory: Path, hub_port: int) -> Server:
    config_path = directory / f"navigator-{'integrated' if configuration == 'integrated' else 'hub-mode'}.yml"

    def command(port: int) -> list[str]:
        # Navigator binds ":PORT" (every address; main.go builds the address from server.listen), so the
        # port comes from tests/ports.py (a free one, another when it was taken meanwhile); the file is written here.
        import yaml

        config_path.write_text(yaml.safe_dump(navigator_yml(configuration, port, hub_port), sort_keys=False))
        return [NAVIGATOR, str(config_path)]

    name = "navigator-bench-navigator"
    return Server(name, f"Navigator ({configuration})", command, False, "", [], "/up", {}, cwd=directory)


def hub_server(copy: Path, hub_yml: Path) -> Server:
    def command(port: int) -> list[str]:
        return [
            IMAGE_PYTHON, "-m", "hub", "--hub-config", str(hub_yml), "--navigator-protocol", "open",
            "--public-streams", "--port", str(port), "--host", "127.0.0.1", "--log-format", "json",
        ]

    return Server("navigator-bench-hub", "hub", command, True, "", [], "/up", {"PYTHONDONTWRITEBYTECODE": "1"}, cwd=copy)


def display(server: Server) -> str:
    return f"cd {server.cwd} && {shlex.join(server.argv)}"


# --- one configuration, one round -------------------------------------------------------------------------


async def settled_rss(pids: dict[str, int]) -> tuple[dict[str, int], float, bool]:
    """Each process's RSS once two reads SETTLE_INTERVAL apart agree within SETTLE_AGREE (at most SETTLE_MAX s)."""
    started = time.monotonic()
    previous = {name: rss_kb(pid) for name, pid in pids.items()}
    while True:
        await asyncio.sleep(SETTLE_INTERVAL)
        current = {name: rss_kb(pid) for name, pid in pids.items()}
        agree = all(abs(current[name] - previous[name]) <= SETTLE_AGREE * previous[name] for name in pids)
        waited = time.monotonic() - started
        if agree or waited >= SETTLE_MAX:
            return current, round(waited, 1), agree
        previous = current


async def drive(configuration: str, pids: dict[str, int], client_port: int, broadcast_port: int,
                levels: list[int], hold: float) -> dict[str, Any]:
    bench = NavigatorBench("127.0.0.1", client_port, CABLE_PATH, "", STREAM, BROADCAST_PATH, pids["navigator"])
    bench.counts = Counts()
    entries: list[dict[str, Any]] = []
    try:
        for level in [0, *levels]:
            rate = None
            grow_started = time.perf_counter()
            if level > len(bench.clients):
                rate = await bench.open_clients(level - len(bench.clients), CONNECT_TIMEOUT)
            grow_seconds = time.perf_counter() - grow_started
            rss, waited, agreed = await settled_rss(pids)
            if bench.counts.lost:
                raise RuntimeError(f"{bench.counts.lost} subscribed clients lost their connection")
            entry = {
                "clients": level, "rss_kb": rss, "settle_seconds": waited, "settled": agreed,
                "connect_seconds": round(grow_seconds, 1),
                "connect_rate_per_s": round(rate, 1) if rate else None,
            }
            entries.append(entry)
            log(f"{configuration}: {level} subscribed, rss {rss} KB (settled {agreed} after {waited} s)")
        if hold:
            log(f"{configuration}: holding {len(bench.clients)} clients for {hold} s")
            await asyncio.sleep(hold)  # the servers' pings come (every 30 s) and are answered
            if bench.counts.lost:
                raise RuntimeError(f"{bench.counts.lost} subscribed clients lost their connection while held")
        broadcast = await broadcast_check(bench, broadcast_port, pids)
        log(f"{configuration}: broadcast {broadcast['status']}, delivered to {broadcast['delivered']}/{broadcast['clients']}")
    finally:
        lost = bench.counts.lost  # before the clients are closed here
        for client in bench.clients:
            client.transport.abort()
        await asyncio.sleep(0)  # let the aborts run
    return {"levels": entries, "broadcast": broadcast, "pings_answered": bench.counts.pings,
            "lost": lost, "unexpected": bench.counts.unexpected[:5],
            "unexpected_count": len(bench.counts.unexpected)}


async def broadcast_check(bench: NavigatorBench, port: int, pids: dict[str, int]) -> dict[str, Any]:
    """POST the broadcast where a Rails process would (Navigator in integrated mode, the hub's own port
    otherwise) and count the clients that got exactly EXPECTED."""
    poster = Bench("127.0.0.1", port, CABLE_PATH, "", STREAM, BROADCAST_PATH, 0)
    started = time.perf_counter()
    status = await poster.post(BROADCAST)
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while bench.counts.delivered < len(bench.clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.5)  # a duplicate would show here
    every_one = sum(1 for client in bench.clients if client.received == 1)
    return {
        "port": port, "status": status, "clients": len(bench.clients), "delivered": bench.counts.delivered,
        "clients_with_exactly_one": every_one, "seconds": round(seconds, 3),
        "rss_after_kb": {name: rss_kb(pid) for name, pid in pids.items()},
    }


def run_configuration(configuration: str, levels: list[int], directory: Path, copy: Path,
                      hub_yml: Path, round_index: int, hold: float) -> dict[str, Any]:
    log(f"== round {round_index + 1}: {configuration}, levels {levels}")
    entry: dict[str, Any] = {"configuration": configuration, "round": round_index + 1, "levels_asked": levels}
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        hub = None
        if configuration != "integrated":
            hub = hub_server(copy, hub_yml)
            processes.append(("hub", start(hub)))
            entry["hub_command"] = display(hub)
        navigator = navigator_server(configuration, directory, hub.port if hub else 0)
        processes.append(("navigator", start(navigator)))
        entry["navigator_command"] = display(navigator)
        entry["navigator_yml"] = navigator_yml(configuration, navigator.port, hub.port if hub else 0)
        pids = {name: process.pid for name, process in processes}
        pids = {"navigator": pids["navigator"], **({"hub": pids["hub"]} if hub else {})}
        client_port = hub.port if configuration == "hub-direct" else navigator.port
        broadcast_port = navigator.port if configuration == "integrated" else hub.port
        entry["ports"] = {"clients": client_port, "broadcast": broadcast_port}
        entry |= asyncio.run(drive(configuration, pids, client_port, broadcast_port, levels, hold))
        for level in entry["levels"]:
            level["total_kb"] = total_kb(configuration, level["rss_kb"], entry["levels"][0]["rss_kb"])
        broadcast = entry["broadcast"]
        if broadcast["clients_with_exactly_one"] != broadcast["clients"]:
            entry["error"] = (f"the broadcast reached {broadcast['clients_with_exactly_one']} of"
                              f" {broadcast['clients']} clients exactly once")
    except (RuntimeError, AssertionError, OSError, TimeoutError) as error:
        entry["error"] = f"{type(error).__name__}: {error}"
        log(f"{configuration}: {entry['error']}")
    finally:
        for name, process in reversed(processes):  # Navigator first, then the hub behind it
            stop(process)
            entry.setdefault("exit_codes", {})[name] = process.returncode
    return entry


def total_kb(configuration: str, rss: dict[str, int], idle: dict[str, int]) -> int:
    if configuration == "hub-direct":
        return idle["navigator"] + rss["hub"]  # Navigator has no client in this model: its idle RSS
    return sum(rss.values())


# --- combining rounds ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def combine(configuration: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [entry for entry in rounds if "error" not in entry]
    result: dict[str, Any] = {
        "title": TITLES[configuration], "rounds_ok": len(ok),
        "errors": [f"round {entry['round']}: {entry['error']}" for entry in rounds if "error" in entry],
    }
    if not ok:
        return result | {"levels": []}
    processes = list(ok[0]["levels"][0]["rss_kb"])
    levels = []
    for index, first in enumerate(ok[0]["levels"]):
        clients = first["clients"]
        per_round = [entry["levels"][index] for entry in ok]
        idle = [entry["levels"][0] for entry in ok]
        row: dict[str, Any] = {
            "clients": clients,
            "rss_kb": {name: median([level["rss_kb"][name] for level in per_round]) for name in processes},
            "total_kb": median([level["total_kb"] for level in per_round]),
            "total_kb_per_round": [level["total_kb"] for level in per_round],
        }
        if clients:
            row["kb_per_connection"] = {
                name: median([(level["rss_kb"][name] - base["rss_kb"][name]) / clients
                              for level, base in zip(per_round, idle)]) for name in processes
            }
            row["total_kb_per_connection"] = median(
                [(level["total_kb"] - base["total_kb"]) / clients for level, base in zip(per_round, idle)])
        levels.append(row)
    return result | {"processes": processes, "levels": levels}


def interpolate(points: list[tuple[int, float]], n: float) -> float | None:
    for (n0, v0), (n1, v1) in zip(points, points[1:]):
        if n0 <= n <= n1:
            return v0 + (v1 - v0) * (n - n0) / (n1 - n0) if n1 != n0 else v0
    return next((v for m, v in points if m == n), None)


def crossover(hub_mode: dict[str, Any], integrated: dict[str, Any]) -> dict[str, Any]:
    """Where the hub-mode total falls below the integrated one, from the medians, interpolated linearly
    between measured levels (each curve at the other's levels where they differ)."""
    hub_points = [(row["clients"], row["total_kb"]) for row in hub_mode["levels"]]
    integrated_points = [(row["clients"], row["total_kb"]) for row in integrated["levels"]]
    if not hub_points or not integrated_points:
        return {"text": "not measured", "clients": None}
    top = min(hub_points[-1][0], integrated_points[-1][0])
    grid = sorted({n for n, _ in hub_points + integrated_points if n <= top})
    differences = [(n, interpolate(hub_points, n) - interpolate(integrated_points, n)) for n in grid]
    result: dict[str, Any] = {"difference_kb": [{"clients": n, "hub_mode_minus_integrated_kb": round(d, 1)}
                                                for n, d in differences]}
    previous = None
    for n, difference in differences:
        if difference < 0:
            if previous is None:
                return result | {"clients": n, "text": f"from {n} connections (already at {n})"}
            n0, d0 = previous
            at = n0 + (n - n0) * d0 / (d0 - difference)
            return result | {"clients": round(at), "text": f"from about {round(at):,} connections"
                             f" (interpolated between {n0:,} and {n:,})"}
        previous = (n, difference)
    # Never within the levels: would the lines cross further out, at the top level's slopes?
    (n_top, d_top) = differences[-1]
    result["gap_at_top_kb"] = {"clients": n_top, "kb": round(d_top, 1)}
    (n_before, d_before) = differences[-2] if len(differences) > 1 else differences[-1]
    slope = (d_top - d_before) / (n_top - n_before) if n_top != n_before else 0.0
    if slope < 0:
        beyond = round(n_top - d_top / slope)
        outlook = (f"the gap shrinks by {-slope:.1f} KB per connection, so on a straight line it would close at"
                   f" about {beyond:,}")
    else:
        outlook = f"the gap grows by {slope:.1f} KB per connection: hub mode costs more per connection too"
        beyond = None
    return result | {"clients": None, "extrapolated_clients": beyond,
                     "text": f"never within the levels (up to {top:,}, where it is still {d_top / MB:.1f} MB larger);"
                             f" {outlook}"}


# --- the report -----------------------------------------------------------------------------------------


def mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / MB:.1f}"


def markdown(report: dict[str, Any]) -> str:
    results = report["configurations"]
    lines = [
        *heading("Hub behind Navigator vs Navigator's built-in cable: memory by connections", report),
        f"Navigator: `{report['navigator']['binary']}`, {report['navigator']['source']}, built with"
        f" {report['navigator']['go']} (`--version` says \"{report['navigator']['version']}\"). Hub: hub/*.py as the"
        f" image ships it, run by {IMAGE_PYTHON} ({report['hub_python']}).",
        "",
        "Method. The real Navigator and the hub run on CPU 0, the clients on CPU 1 in this process (one asyncio",
        "loop of bench/hub/loadgen.py's raw-socket clients, 128 handshakes in flight), which is never counted. Every",
        "client speaks Navigator's own protocol: a WebSocket on /cable without subprotocol, `{\"type\":\"subscribe\","
        "\"stream\":\"bench\"}`,",
        "counted only once `{\"type\":\"subscribed\",\"stream\":\"bench\"}` has arrived; each ping is answered with a pong.",
        "(Both servers ping every 30 s and drop a client silent for 60 s; a configuration here lasts well under 30 s,",
        "so none came, as the counts below show. `--hold SECONDS` keeps the clients that long at the top level",
        "before the broadcast, to exercise the pongs.)",
        "Each configuration starts its servers afresh, reads RSS (VmRSS, per process) before any client, then grows",
        "to each level in turn; after each level it waits until two reads 0.5 s apart agree within 1 % (at most",
        "5 s). At the top level one broadcast `{\"stream\":\"bench\",\"data\":{\"n\":1}}` is POSTed from 127.0.0.1",
        "where Rails would post it (Navigator's /_broadcast in integrated mode, the hub's own port in hub mode) and",
        "every client must receive `{\"type\":\"message\",\"stream\":\"bench\",\"data\":{\"n\":1}}` exactly once.",
        f"{report['rounds']} rounds, the configurations alternating (their order rotated each round); figures are",
        "medians over the rounds (the total's median is taken over the rounds' totals, so it need not equal the sum",
        "of the per-process medians). KB per connection is (RSS at N - RSS at 0) / N per round, then the median.",
        "Navigator's config has no applications, only a synthetic /up, the `cable` block and, in hub mode, the",
        "reverse proxy exactly as orchestrator/render/modes.py renders it:",
        f"`{json.dumps(report['hub_route'])}`. The hub is started beside Navigator, not as its managed process, so",
        "its RSS is read alone: "
        f"`{report['hub_command']}` with hub.yml `{json.dumps(report['hub_yml'])}` (the per-client limits raised",
        "because every bench client is 127.0.0.1; Navigator's WebSocket proxy adds no X-Forwarded-For).",
        "In hub-direct, Navigator (hub-mode config) runs idle beside the hub and its RSS before any client is what",
        "the total counts. Clients, broadcasts and the proxy's target are all on 127.0.0.1, but Navigator itself binds",
        "every address (main.go listens on `:` + server.listen; no setting narrows it), on a free port chosen by",
        "tests/ports.py since it does not say which port it got. Navigator writes /tmp/navigator.pid, one file for",
        "every Navigator on the machine; this bench runs one Navigator at a time and never signals through that file.",
        f"Pinned to one CPU, Navigator ({report['navigator']['go']}) runs with GOMAXPROCS 1. MB means MiB.",
        "",
    ]
    if report.get("capped"):
        lines += [f"**Descriptor limit.** {report['capped']}", ""]
    for name in CONFIGURATIONS:
        result = results.get(name)
        if not result:
            continue
        lines += [f"## {result['title']}", ""]
        lines += [f"- error: {error}" for error in result["errors"]]
        if result["errors"]:
            lines.append("")
        if not result["levels"]:
            continue
        processes = result["processes"]
        head = " | ".join(f"{process} RSS MB" for process in processes)
        per_conn = " | ".join(f"{process} KB/conn" for process in processes)
        lines += [f"| N | {head} | total MB | {per_conn} | total KB/conn | total MB per round |",
                  "|---" * (4 + 2 * len(processes)) + "|"]
        for row in result["levels"]:
            cells = " | ".join(mb(row["rss_kb"][process]) for process in processes)
            kbs = " | ".join("-" if not row["clients"] or row["kb_per_connection"][process] is None
                             else f"{row['kb_per_connection'][process]}" for process in processes)
            total_per = f"{row['total_kb_per_connection']}" if row["clients"] else "-"
            per_round = " / ".join(mb(kb) for kb in row["total_kb_per_round"])
            lines.append(f"| {row['clients']:,} | {cells} | {mb(row['total_kb'])} | {kbs} | {total_per} | {per_round} |")
        checks = [entry["broadcast"] for entry in report["per_round"][name] if "broadcast" in entry]
        if checks:
            delivered = ", ".join(f"{check['clients_with_exactly_one']:,}/{check['clients']:,} (HTTP {check['status']},"
                                  f" {check['seconds']} s)" for check in checks)
            pings = " / ".join(f"{entry.get('pings_answered', 0):,}" for entry in report["per_round"][name])
            lines += ["", f"Broadcast at the top level, clients that got it exactly once, per round: {delivered}."
                      f" Server pings answered per round: {pings}."]
        if name == "hub-direct":
            seen = [row["rss_kb"]["navigator"] for row in result["levels"]]
            lines += ["", f"Navigator's own RSS meanwhile (not in the total, no client goes through it):"
                      f" {' / '.join(mb(kb) for kb in seen)} MB at the levels above."]
        lines.append("")
    summary = report["summary"]
    lines += [
        "## Summary",
        "",
        "| hub-mode configuration | hub-mode region smaller in total than an integrated one | Navigator KB/conn"
        " | hub KB/conn | hub-mode total KB/conn | integrated KB/conn | idle: hub-mode total MB vs integrated MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("hub-proxied", "hub-direct"):
        row = summary.get(name)
        if row:
            lines.append(
                f"| {TITLES[name]} | {row['crossover']['text']} | {row['navigator_kb_per_connection']}"
                f" | {row['hub_kb_per_connection']} | {row['total_kb_per_connection']}"
                f" | {summary['integrated_kb_per_connection']} | {mb(row['idle_total_kb'])} vs"
                f" {mb(summary['integrated_idle_kb'])} |")
    lines += ["", f"Per-connection figures are at the top level measured ({summary['top_levels']}).", ""]
    lines += ["## What the numbers say", "", *report["conclusions"], ""]
    lines += ["Commands (as run in the first round):", ""]
    for name in CONFIGURATIONS:
        first = next((entry for entry in report["per_round"].get(name, []) if "navigator_command" in entry), None)
        if first:
            parts = [f"Navigator `{first['navigator_command']}`"]
            if "hub_command" in first:
                parts.append(f"hub `{first['hub_command']}`")
            lines.append(f"- {name}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def conclusions(report: dict[str, Any]) -> list[str]:
    summary = report["summary"]
    results = report["configurations"]
    said = []
    integrated = summary["integrated_kb_per_connection"]
    proxied, direct = summary.get("hub-proxied"), summary.get("hub-direct")
    if direct:
        said.append(
            f"- Hub direct (no proxy): {direct['crossover']['text']}. The hub holds"
            f" {direct['hub_kb_per_connection']} KB per connection against Navigator's cable's {integrated} KB,"
            f" and the region pays for it with a second idle process ({mb(direct['idle_total_kb'])} MB idle in"
            f" total against {mb(summary['integrated_idle_kb'])} MB).")
    if proxied:
        verdict = ("so as deployed a hub-mode region is never the smaller one"
                   if proxied["crossover"]["clients"] is None and proxied["total_kb_per_connection"] >= integrated
                   else "")
        said.append(
            f"- Hub behind Navigator (as deployed): {proxied['crossover']['text']}. Every WebSocket goes through"
            f" Navigator's reverse proxy, which costs Navigator {proxied['navigator_kb_per_connection']} KB per"
            f" connection by itself, on top of the hub's {proxied['hub_kb_per_connection']} KB: together"
            f" {proxied['total_kb_per_connection']} KB against the built-in cable's {integrated} KB"
            + (f", {verdict}." if verdict else "."))
        said.append(
            "- Where the proxy's memory goes (Navigator v1.2.0 internal/server/proxy.go:203-349, gorilla/websocket"
            " v1.5.3): for every proxied WebSocket, handleWebSocketProxy dials a second WebSocket to the hub"
            " (websocket.DefaultDialer, line 284: gorilla allocates a 4 KiB read buffer and a 4 KiB + 14 B write"
            " buffer for it; the handshake's request and response are garbage afterwards), upgrades the client's connection with a"
            " package-level Upgrader without buffer sizes (line 301, which keeps the 4 KiB reader and writer net/http"
            " hijacked), and then holds three goroutines: the request's own, parked on `<-errc` with the handler"
            " chain (Navigator's ResponseRecorder, request and header maps) alive under it, and two copy loops"
            " (lines 314 and 329) each parked in ReadMessage, which allocates a fresh buffer for every message. So"
            " one proxied connection is two TCP sockets, four gorilla/net/http buffers and three goroutine stacks"
            " in Navigator, where the built-in cable (internal/cable/handler.go) keeps one socket, 1 KiB buffers,"
            " two goroutines and a 256-slot channel; the hub's share comes on top. Go's garbage collector also"
            " lets the heap grow to about twice what is live (GOGC=100) before collecting, so allocation-heavy"
            " connection setup shows in RSS. Kernel socket buffers (two sockets per client in Navigator and one in"
            " the hub) are not in any RSS here.")
    capped = report.get("capped")
    if capped:
        said.append(f"- {capped}")
    errors = [f"{name}: {error}" for name, result in results.items() for error in result["errors"]]
    if errors:
        said.append("- Rounds with errors (left out of the medians): " + "; ".join(errors))
    return said


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    integrated = results.get("integrated", {})
    summary: dict[str, Any] = {}
    top_levels = []
    if integrated.get("levels"):
        top = integrated["levels"][-1]
        summary["integrated_kb_per_connection"] = top.get("total_kb_per_connection")
        summary["integrated_idle_kb"] = integrated["levels"][0]["total_kb"]
        top_levels.append(f"integrated {top['clients']:,}")
    for name in ("hub-proxied", "hub-direct"):
        result = results.get(name, {})
        if not result.get("levels") or not integrated.get("levels"):
            continue
        top = result["levels"][-1]
        top_levels.append(f"{name} {top['clients']:,}")
        summary[name] = {
            "crossover": crossover(result, integrated),
            "navigator_kb_per_connection": top.get("kb_per_connection", {}).get("navigator"),
            "hub_kb_per_connection": top.get("kb_per_connection", {}).get("hub"),
            "total_kb_per_connection": top.get("total_kb_per_connection"),
            "idle_total_kb": result["levels"][0]["total_kb"],
        }
    summary["top_levels"] = ", ".join(top_levels)
    return summary


# --- main -----------------------------------------------------------------------------------------------


def navigator_version() -> str:
    done = subprocess.run([NAVIGATOR, "--version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def navigator_go() -> str:
    """The Go release the binary was built with (its build info names it)."""
    found = re.search(rb"go1\.\d+(?:\.\d+)?", Path(NAVIGATOR).read_bytes())
    return found.group().decode() if found else "Go ?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="0,100,1000,5000,10000", help="subscribed connections (0 is always measured)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="comma-separated")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds to keep the clients at the top level before the broadcast (to see pings answered)")
    parser.add_argument("--output", default="hub-navigator", help="results as bench/results/OUTPUT.json and .md")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs: servers on CPU 0, the clients on CPU 1")
    if not os.access(NAVIGATOR, os.X_OK):
        sys.exit(f"no Navigator at {NAVIGATOR}")
    levels = sorted({int(part) for part in args.levels.split(",") if int(part) > 0})
    configurations = [name for name in args.configurations.split(",") if name]
    pinned(LOADGEN_CPU)()  # this process holds the clients: CPU 1, descriptors up to the hard limit
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Behind Navigator's proxy each client costs Navigator two descriptors (the client's and the hub's socket),
    # and Navigator (Go raises its soft limit to the hard one) cannot have more than the hard limit.
    proxied_cap = (hard - DESCRIPTOR_RESERVE) // 2 // 100 * 100
    proxied_levels = sorted({min(level, proxied_cap) for level in levels})
    capped = ""
    if proxied_levels != levels:
        capped = (f"The hard limit on open files here is {hard:,} (it cannot be raised: no CAP_SYS_RESOURCE), and a"
                  f" WebSocket proxied by Navigator holds two of Navigator's descriptors, so hub-proxied was measured"
                  f" at {proxied_cap:,} instead of {', '.join(f'{level:,}' for level in levels if level > proxied_cap)};"
                  " its crossover compares it with the integrated curve interpolated there.")
    directory = WORK / "navigator-bench"
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("navigator-bench-navigator", "navigator-bench-hub"):
        (WORK / f"{name}.log").unlink(missing_ok=True)
    # hub_copy writes bench/results/tmp/hub-image, which run.py and idle.py also use: take a private copy
    # of it (copy2 keeps the sources' mtimes, so the bytecode stays valid).
    image = hub_copy(compiled=True, python=IMAGE_PYTHON)
    copy = directory / "hub-image"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(image, copy)
    hub_yml = directory / "hub.yml"
    hub_options = {"server": {"listen": 0}, "limits": HUB_LIMITS}
    import yaml

    hub_yml.write_text(yaml.safe_dump(hub_options, sort_keys=False))
    started = time.monotonic()
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in configurations}
    for round_index in range(args.rounds):
        # Alternating, the order rotated each round, so slow drift of the (virtual) machine hits all of them.
        shift = round_index % len(configurations)
        for name in configurations[shift:] + configurations[:shift]:
            asked = proxied_levels if name == "hub-proxied" else levels
            rounds[name].append(run_configuration(name, asked, directory, copy, hub_yml, round_index, args.hold))
    results = {name: combine(name, entries) for name, entries in rounds.items()}
    sample_hub = hub_server(copy, hub_yml)
    sample_hub.argv = sample_hub.command(0)
    report = run_record("navigator.py") | {
        "machine": {key: value for key, value in run_record("navigator.py")["machine"].items()
                    if key in ("cpu", "cpus", "memory_mb", "kernel", "python")},
        "seconds": round(time.monotonic() - started),
        "navigator": {"binary": NAVIGATOR, "version": navigator_version(), "go": navigator_go(),
                      "source": "rubys/navigator v1.2.0 (commit ce0fccc; source mirrored at " + NAVIGATOR_SOURCE + ")"},
        "hub_python": subprocess.run([IMAGE_PYTHON, "-V"], capture_output=True, text=True).stdout.strip(),
        "hub_command": display(sample_hub).replace("--port 0", "--port P"),
        "hub_yml": hub_options,
        "hub_route": navigator_yml("hub-proxied", 0, 0)["routes"]["reverse_proxies"][0] | {"target": "http://localhost:HUB$1"},
        "nofile_hard_limit": hard,
        "levels": levels,
        "levels_hub_proxied": proxied_levels,
        "capped": capped,
        "rounds": args.rounds,
        "configurations": results,
        "per_round": rounds,
    }
    report["summary"] = summarize(results)
    report["conclusions"] = conclusions(report)
    write_results(args.output, report, markdown)


if __name__ == "__main__":
    main()
