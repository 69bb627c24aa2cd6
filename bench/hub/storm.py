"""Reconnect storm: N Action Cable consumers that reconnect as @rails/actioncable's own client
does, the server killed (SIGKILL) and started again on the same port, as Navigator's managed
process is (after Navigator's restart delay), and the time until every consumer is subscribed
again. The hub and the floor are started as run.py starts them (servers on CPU 0, the consumers,
all in this process, on CPU 1), in alternating rounds. Writes bench/results/OUTPUT.json and .md.

Run by hand (not a test):  .venv/bin/python bench/hub/storm.py
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from loadgen import HANDSHAKE_CONCURRENCY, SETTLE_SECONDS, Bench, Client, Fanout, percentile, rss_kb
from run import (
    MB, REPO, WORK, Server, client_process, command_line, heading, launch, median_of, run_record, start, stop,
    write_results,
)
from wire import OP_CLOSE, client_frame

ACTIONCABLE = "tests/node/node_modules/@rails/actioncable"  # @rails/actioncable 8.1.400, the tests' own copy
# The client's reconnect logic, written again here from ACTIONCABLE/src (the same code is in
# app/assets/javascripts/actioncable.js:48-111):
STALE_THRESHOLD = 6.0  # connection_monitor.js:121: seconds without any message before a connection is stale
BACKOFF_RATE = 0.15  # connection_monitor.js:122: reconnectionBackoffRate
BACKOFF_CAP = 10  # connection_monitor.js:76: the exponent stops growing after 10 attempts
REOPEN_DELAY = 0.5  # connection.js:125: reopenDelay, only when the old socket is still open (connection.js:54-69)
RESUBSCRIBE_SECONDS = 0.5  # subscription_guarantor.js:37-47: an unconfirmed subscribe is sent again every 500 ms
# 8.x has no reconnectionDelayMin/Max: the poll interval is staleThreshold * (1 + rate)^min(attempts, 10) *
# (1 + jitter), connection_monitor.js:74-80. (Rails 6.1's client polled at clamp(5 ln(attempts + 1), 3, 30) s,
# pollInterval {min: 3, max: 30}, without jitter: the actioncable-6.1.7.10 gem's action_cable.js:110-114, 146-151.)
NAVIGATOR_RESTART_DELAY = 5.0  # Navigator v1.2.0 internal/process/manager.go:200-202: a managed process that exits
# with an error (a signal counts) is started again after time.Sleep(5 * time.Second), without its start_delay.
CLOSE_FRAME = client_frame(b"\x03\xe8", OP_CLOSE)  # 1000, normal closure: what WebSocket.close() sends


class Storm:
    """What the consumers share: the loop, the server's address, the jitter's random source and the counts."""

    def __init__(self, bench: Bench, seed: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.bench = bench  # its handshake(): a fresh Sec-WebSocket-Key per socket, as a browser sends
        self.subscribe = client_frame(json.dumps({"command": "subscribe", "identifier": bench.identifier}).encode())
        self.random = random.Random(seed)
        self.fanout = Fanout()  # no broadcasts in this bench; Client wants one
        self.killed_at: float | None = None
        self.refusals: Counter[str] = Counter()
        self.sockets = 0  # WebSockets opened since the kill
        self.reopens = 0  # monitor reopens (before the kill there should be none)
        self.stale_reopens = 0  # of them, of a socket that was still open (a live connection that went stale)
        self.resubscribed: dict[int, float] = {}  # consumer -> seconds from the kill to its first confirmation
        self.waits: list[float] = []  # seconds from a successful socket's open() to its confirmation, after the kill
        self.everyone = asyncio.Event()
        self.count = 0

    def now(self) -> float:
        return self.loop.time()

    def refused(self, reason: str) -> None:
        self.refusals["before the kill: " + reason if self.killed_at is None else reason] += 1


class StormSocket(Client):
    """One WebSocket of a consumer: loadgen's client, telling its consumer what a browser's WebSocket
    events would (onopen, onmessage, onclose)."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.announced = False  # onopen fired (the 101 arrived)
        self.closing = False  # closed by the consumer itself (a stale connection reopened)
        self.opened_at = consumer.storm.now()
        subscribed = consumer.storm.loop.create_future()
        subscribed.add_done_callback(self.settled)
        storm = consumer.storm
        super().__init__(storm.bench.handshake(), storm.subscribe, storm.fanout, subscribed)

    def on_text(self, payload: bytes) -> None:
        if not self.announced:
            self.announced = True
            self.consumer.socket_opened(self)
        self.consumer.message(self, payload)
        super().on_text(payload)  # the welcome sends the subscribe (connection.js:133-138 -> subscriptions.reload)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and not self.announced:
            self.announced = True
            self.consumer.socket_opened(self)
        self.consumer.socket_closed(self)
        super().connection_lost(exc)

    def settled(self, subscribed: asyncio.Future[None]) -> None:
        """Confirmed, or refused before that: an HTTP status instead of 101, a close, a rejection, a lost socket."""
        error = subscribed.exception()
        if error is not None and not self.closing:
            reason = str(error).split("\r\n", 1)[0]
            self.consumer.storm.refused("connection lost before the confirmation" if reason.startswith("connection lost")
                                        else reason)


class Consumer:
    """One @rails/actioncable consumer with one subscription: its Connection (connection.js), ConnectionMonitor
    (connection_monitor.js) and SubscriptionGuarantor (subscription_guarantor.js), reduced to what a storm uses."""

    def __init__(self, storm: Storm, number: int) -> None:
        self.storm = storm
        self.number = number
        self.socket: StormSocket | None = None
        self.state = "closed"  # the WebSocket's readyState: connecting, open, closing, closed
        self.disconnected = True  # connection.js:19
        self.disconnected_at: float | None = None  # connection_monitor.js:50-53
        self.pinged_at: float | None = None  # connection_monitor.js:40-42: any message
        self.started_at: float | None = None  # connection_monitor.js:17-25
        self.attempts = 0  # reconnectAttempts
        self.poll_timer: asyncio.TimerHandle | None = None
        self.resend_timer: asyncio.TimerHandle | None = None
        self.confirmed: asyncio.Future[None] = storm.loop.create_future()  # the first confirmation (the ramp waits on it)

    # --- Connection (connection.js) ---

    def open(self) -> None:
        """connection.js:31-44."""
        if self.state in ("connecting", "open"):
            return
        storm = self.storm
        self.state = "connecting"
        self.socket = StormSocket(self)
        if storm.killed_at is not None:
            storm.sockets += 1
        self.monitor_start()
        storm.loop.create_task(self.connect(self.socket))

    async def connect(self, socket: StormSocket) -> None:
        storm = self.storm
        try:
            await storm.loop.create_connection(lambda: socket, storm.bench.host, storm.bench.port)
        except OSError as error:  # the WebSocket fails before onopen: onclose, with `disconnected` still true
            storm.refused(f"connect: {errno.errorcode.get(error.errno, str(error))}")
            if socket is self.socket:
                self.socket, self.state = None, "closed"

    def reopen(self) -> None:
        """connection.js:54-69: an open socket is closed and a new one opened 500 ms later; a closed one at once."""
        storm = self.storm
        storm.reopens += 1
        if self.state in ("connecting", "open"):
            if self.state == "open" and self.socket is not None:  # close() only closes an open socket (connection.js:46-52)
                storm.stale_reopens += 1
                self.socket.closing = True
                self.socket.transport.write(CLOSE_FRAME)
                self.socket.transport.close()
                self.state = "closing"
            storm.loop.call_later(REOPEN_DELAY, self.open)
        else:
            self.open()

    def socket_opened(self, socket: StormSocket) -> None:
        """connection.js:159-166 (onopen)."""
        if socket is self.socket:
            self.state = "open"
            self.disconnected = False

    def message(self, socket: StormSocket, payload: bytes) -> None:
        """connection.js:128-157 (onmessage)."""
        if socket is not self.socket:
            return  # a replaced socket's handlers are uninstalled (connection.js:38)
        now = self.storm.now()
        self.pinged_at = now  # connection.js:131 -> connection_monitor.js:40-42
        if b'"welcome"' in payload:
            self.attempts, self.disconnected_at = 0, None  # connection.js:137 -> connection_monitor.js:44-48
            self.guarantee()
        elif b"confirm_subscription" in payload:
            self.forget()
            storm = self.storm
            if not self.confirmed.done():
                self.confirmed.set_result(None)
            if storm.killed_at is not None and self.number not in storm.resubscribed:
                storm.resubscribed[self.number] = now - storm.killed_at
                storm.waits.append(now - socket.opened_at)
                if len(storm.resubscribed) == storm.count:
                    storm.everyone.set()

    def socket_closed(self, socket: StormSocket) -> None:
        """connection.js:168-174 (onclose)."""
        if socket is not self.socket:
            return
        self.socket, self.state = None, "closed"
        self.forget()
        if self.disconnected:
            return
        self.disconnected = True
        self.disconnected_at = self.storm.now()  # connection_monitor.js:50-53

    # --- SubscriptionGuarantor (subscription_guarantor.js) ---

    def guarantee(self) -> None:
        self.forget()
        self.resend_timer = self.storm.loop.call_later(RESUBSCRIBE_SECONDS, self.resend)

    def resend(self) -> None:
        if self.state == "open" and self.socket is not None:  # subscriptions.js:87-91: only a sent command is guaranteed
            self.socket.transport.write(self.storm.subscribe)
            self.guarantee()

    def forget(self) -> None:
        if self.resend_timer is not None:
            self.resend_timer.cancel()
            self.resend_timer = None

    # --- ConnectionMonitor (connection_monitor.js) ---

    def monitor_start(self) -> None:
        """connection_monitor.js:17-25: started by the first open() and running from then on."""
        if self.poll_timer is None:
            self.started_at = self.storm.now()
            self.poll()

    def poll(self) -> None:
        """connection_monitor.js:66-72."""
        self.poll_timer = self.storm.loop.call_later(self.poll_interval(), self.poll_tick)

    def poll_tick(self) -> None:
        self.reconnect_if_stale()
        self.poll()

    def poll_interval(self) -> float:
        """connection_monitor.js:74-80: 6-12 s while connected, then 6.9-7.9 s, 7.9-9.1 s, ... (x1.15 per attempt)."""
        backoff = (1 + BACKOFF_RATE) ** min(self.attempts, BACKOFF_CAP)
        jitter_max = 1.0 if self.attempts == 0 else BACKOFF_RATE
        return STALE_THRESHOLD * backoff * (1 + jitter_max * self.storm.random.random())

    def reconnect_if_stale(self) -> None:
        """connection_monitor.js:82-105."""
        now = self.storm.now()
        refreshed_at = self.pinged_at if self.pinged_at is not None else self.started_at
        assert refreshed_at is not None
        if now - refreshed_at > STALE_THRESHOLD:
            self.attempts += 1
            if self.disconnected_at is None or now - self.disconnected_at >= STALE_THRESHOLD:
                self.reopen()

    def drop(self) -> None:
        for timer in (self.poll_timer, self.resend_timer):
            if timer is not None:
                timer.cancel()
        if self.socket is not None and self.socket.transport is not None:
            self.socket.closing = True
            self.socket.transport.abort()


def restart(server: Server, current: list[subprocess.Popen[bytes]]) -> int:
    """The server again on its port (run.launch, in a thread of this process) as current[0]; where its log starts."""
    log = WORK / f"{server.name}.log"
    offset = log.stat().st_size if log.exists() else 0
    current[0] = launch(server, server.port)
    return offset


def server_warnings(server: Server, offset: int) -> dict[str, int]:
    """The restarted hub's warnings (refused upgrades and sockets, handshake timeouts...), by event and reason."""
    found: Counter[str] = Counter()
    with (WORK / f"{server.name}.log").open("rb") as log:
        log.seek(offset)
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("warn", "error"):
                why = record.get("why")
                found[record.get("event", "?") + (f": {why}" if why else "")] += record.get("refused", 1)
    return dict(found)


async def storm_round(server: Server, current: list[subprocess.Popen[bytes]], args: argparse.Namespace,
                      seed: int) -> dict[str, Any]:
    """The round's figures; current[0] is the server process running (the restarted one, once started)."""
    process = current[0]
    bench = Bench("127.0.0.1", server.port, "/cable", server.identifier, "bench", "/_broadcast", process.pid)
    storm = Storm(bench, seed)
    consumers = [Consumer(storm, number) for number in range(args.clients)]
    storm.count = len(consumers)
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)  # the first connects are paced as loadgen paces them

    async def first(consumer: Consumer) -> None:
        async with gate:
            consumer.open()
            await consumer.confirmed

    ramp_started = storm.now()
    try:
        await asyncio.wait_for(asyncio.gather(*(first(consumer) for consumer in consumers)), args.connect_timeout)
        ramp = storm.now() - ramp_started
        # The kill comes a fixed time after the first connect, so every server sees the monitors in the same phase.
        await asyncio.sleep(max(SETTLE_SECONDS, args.kill_after - ramp))
        result: dict[str, Any] = {
            "ramp_seconds": round(ramp, 2),
            "rss_before_kb": rss_kb(process.pid),
            "reopens_before_kill": storm.reopens,
        }
        storm.killed_at = storm.now()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        await asyncio.sleep(args.restart_delay)
        log_offset = await asyncio.to_thread(restart, server, current)
        process = current[0]
        result["server_ready_s"] = round(storm.now() - storm.killed_at, 2)
        try:
            await asyncio.wait_for(storm.everyone.wait(), args.storm_timeout)
        except TimeoutError:
            pass
        done = storm.now() - storm.killed_at
        await asyncio.sleep(args.settle)
        times = sorted(storm.resubscribed.values())
        result |= {
            "resubscribed": len(times),
            "resubscribed_s": round(times[-1], 2) if len(times) == storm.count else None,
            "waited_s": round(done, 2),
            "first_resubscribed_s": round(times[0], 2) if times else None,
            "p50_resubscribed_s": round(percentile(times, 0.5), 2) if times else None,
            "sockets_after_kill": storm.sockets,
            "reopens": storm.reopens - result["reopens_before_kill"],
            "stale_reopens": storm.stale_reopens,
            "refused": sum(count for reason, count in storm.refusals.items() if not reason.startswith("before")),
            "refusals": dict(storm.refusals),
            "connect_to_confirm_ms": {
                "p50": round(percentile(storm.waits, 0.5) * 1000, 1),
                "p99": round(percentile(storm.waits, 0.99) * 1000, 1),
                "max": round(max(storm.waits) * 1000, 1),
            } if storm.waits else None,
            "rss_after_kb": rss_kb(process.pid),
            "server_warnings": server_warnings(server, log_offset) if server.name.startswith("hub") else None,
        }
        result["rss_after_over_before"] = round(result["rss_after_kb"] / result["rss_before_kb"], 3)
        return result
    finally:
        for consumer in consumers:
            consumer.drop()
        await asyncio.sleep(0)


def measure(server: Server, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    print(f"== {server.title}", file=sys.stderr, flush=True)
    current = [start(server)]
    entry: dict[str, Any] = {"command": command_line(server)}
    try:
        result = asyncio.run(storm_round(server, current, args, seed))
    finally:
        stop(current[0])
    print(f"   {json.dumps(result)}", file=sys.stderr, flush=True)
    return entry | result


def summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    complete = [entry["resubscribed_s"] for entry in entries if entry["resubscribed_s"] is not None]
    return {
        "resubscribed_s": median_of(complete) if len(complete) == len(entries) else None,
        "p50_resubscribed_s": median_of([entry["p50_resubscribed_s"] for entry in entries]),
        "server_ready_s": median_of([entry["server_ready_s"] for entry in entries]),
        "refused_total": sum(entry["refused"] for entry in entries),
        "rss_before_kb": median_of([entry["rss_before_kb"] for entry in entries]),
        "rss_after_kb": median_of([entry["rss_after_kb"] for entry in entries]),
        "rss_after_over_before": median_of([entry["rss_after_over_before"] for entry in entries]),
        "rounds": entries,
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    hub, floor = report["servers"].get("hub"), report["servers"].get("floor")
    rows = []
    resubscribed = "every client resubscribed within 1.2x the floor's time"
    if hub and floor and hub["resubscribed_s"] and floor["resubscribed_s"]:
        ratio = hub["resubscribed_s"] / floor["resubscribed_s"]
        rows.append({"target": resubscribed, "met": ratio <= 1.2,
                     "measured": f"{hub['resubscribed_s']} s vs {floor['resubscribed_s']} s = {ratio:.2f}x"})
    elif hub:
        rows.append({"target": resubscribed, "measured": "not every client resubscribed in some round", "met": False})
    else:
        rows.append({"target": resubscribed, "measured": "not measured", "met": None})
    if hub:
        per_round = " / ".join(str(entry["refused"]) for entry in hub["rounds"])
        rows.append({"target": f"no client refused below the limits ({report['clients']} clients)",
                     "measured": f"{hub['refused_total']} refused ({per_round} per round)",
                     "met": hub["refused_total"] == 0})
        ratios = [entry["rss_after_over_before"] for entry in hub["rounds"]]
        worst = max(ratios, key=lambda value: abs(value - 1))
        rows.append({"target": "hub RSS after the storm within 10 % of before",
                     "measured": f"{hub['rss_after_kb'] / MB:.1f} MB after vs {hub['rss_before_kb'] / MB:.1f} MB before"
                                 f" = {hub['rss_after_over_before']:.3f}x (worst round {worst:.3f}x)",
                     "met": all(abs(value - 1) <= 0.10 for value in ratios)})
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        *heading("Hub reconnect storm", report),
        f"Each round starts the server as bench/hub/run.py does (on CPU 0; the hub as the image runs it), opens"
        f" {report['clients']} consumers",
        "in this process (on CPU 1; at most 128 handshakes in flight while they first connect, as loadgen.py),"
        " each subscribed to the bench",
        f"stream, and {report['kill_after']} s after the first connect reads the server's RSS and kills it with SIGKILL."
        f" {report['restart_delay']} s later",
        "it starts the same command again on the same port: "
        + ("Navigator's own restart of a managed process that exited with an error (Navigator v1.2.0,"
           " internal/process/manager.go:200-202: `time.Sleep(5 * time.Second)`, then the process again without its"
           " start_delay; the hub is such a process, `auto_restart: true`, in orchestrator/render/modes.py)."
           if report["restart_delay"] == 5.0 else "not Navigator's 5 s restart delay."),
        "Resubscribed is the time from the kill until the last consumer has its confirm_subscription from the new"
        " process; the RSS after",
        f"is read {report['settle']} s after that. Medians of {report['rounds']} alternating rounds; each round's"
        " jitter comes from a random source seeded",
        "with the round's number, the same for both servers.",
        "",
        "The consumers reconnect as @rails/actioncable 8.1.400 does (tests/node/node_modules/@rails/actioncable/src,"
        " written again in storm.py,",
        "file:line cited there): nothing on the close itself; the ConnectionMonitor polls every"
        " staleThreshold (6 s) x 1.15^attempts x (1 + jitter)",
        "(jitter up to 1.0 while connected, up to 0.15 after a failed attempt), reopens only a connection that has"
        " had no message for 6 s",
        "and that did not close in the last 6 s; the welcome resets the attempts and sends the subscribe, resent"
        " every 500 ms until confirmed.",
        "So no consumer reconnects earlier than 6 s after the kill, and most of the storm's time is the client's"
        " own backoff: 'connect to",
        "confirm' below is what the server adds to each reconnect. 8.x has no reconnectionDelayMin/Max: the poll"
        " interval above is the",
        "whole backoff (Rails 6.1's client polled at clamp(5 ln(attempts + 1), 3, 30) s without jitter).",
        "",
        "Refused: every WebSocket after the kill that did not end with a confirmation (connect errors, any HTTP"
        " status other than 101,",
        "a close or a lost socket before the confirmation, reject_subscription). The hub identifies a client by"
        " its peer address (or, from a",
        "loopback peer, the last X-Forwarded-For address: hub/server.py client_address), and every bench consumer"
        " comes from 127.0.0.1",
        "without that header, so all of them are one client to the hub's per-client limits (defaults:"
        " max_connections_per_client 1000,",
        "max_subscriptions_per_client 10000, hub/config.py Limits). The bench's hub.yml (run.py hub_server) raises"
        " both, and max_connections,",
        "to 20000, so that only the hub's behaviour under the storm can refuse a consumer, not the bench's shared"
        " address; behind Navigator each",
        "browser is its own client.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    verdict = {True: "met", False: "**not met**", None: "not measured"}
    lines += [f"| {row['target']} | {row['measured']} | {verdict[row['met']]} |" for row in report["targets"]]
    lines += [
        "", "## Results", "",
        "| server | resubscribed s | p50 s | first s | server ready s | sockets after the kill | refused "
        "| connect to confirm p50 / p99 / max ms | RSS before MB | RSS after MB | after / before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["servers"].items():
        for index, entry in enumerate(result["rounds"], 1):
            wait = entry["connect_to_confirm_ms"] or {}
            resubscribed = entry["resubscribed_s"] or f"incomplete: {entry['resubscribed']} after {entry['waited_s']} s"
            lines.append(
                f"| {name} round {index} | {resubscribed} | {entry['p50_resubscribed_s']} | {entry['first_resubscribed_s']}"
                f" | {entry['server_ready_s']} | {entry['sockets_after_kill']} | {entry['refused']}"
                f" | {wait.get('p50')} / {wait.get('p99')} / {wait.get('max')} | {entry['rss_before_kb'] / MB:.1f}"
                f" | {entry['rss_after_kb'] / MB:.1f} | {entry['rss_after_over_before']} |"
            )
        lines.append(
            f"| **{name} median** | {result['resubscribed_s']} | {result['p50_resubscribed_s']} |"
            f" | {result['server_ready_s']} | | {result['refused_total']} (total) |"
            f" | {result['rss_before_kb'] / MB:.1f} | {result['rss_after_kb'] / MB:.1f}"
            f" | {result['rss_after_over_before']} |"
        )
    refusals = [(name, index, entry["refusals"]) for name, result in report["servers"].items()
                for index, entry in enumerate(result["rounds"], 1) if entry["refusals"]]
    hub_rounds = report["servers"].get("hub", {}).get("rounds", [])
    warnings = [(index, entry["server_warnings"]) for index, entry in enumerate(hub_rounds, 1) if entry.get("server_warnings")]
    if refusals or warnings:
        lines += ["", "Why:", ""]
        lines += [f"- {name} round {index}, consumers saw: " + ", ".join(f"{why} x{count}" for why, count in found.items())
                  for name, index, found in refusals]
        lines += [f"- hub round {index}, the restarted hub logged: " + ", ".join(f"{why} x{count}" for why, count in found.items())
                  for index, found in warnings]
        if any("descriptors_low" in found for _, found in warnings):
            lines.append("- descriptors_low is logged at every start of the bench's hub, before any client: this machine's"
                         " hard open-files limit (20,000) is below the 20,000 connections plus the hub's reserve (20,096);"
                         " it refuses no one until 20,000 descriptors are open.")
    lines += ["", "Commands:", "", f"- storm: `{report['command']}`"]
    compiled = " (after `python -m compileall -q hub` there)"
    lines += [f"- {name}: `{result['rounds'][0]['command']}`" + (compiled if name == "hub" else "")
              for name, result in report["servers"].items()]
    lines.append("- each restart: the same command with `--port` set to the port the first start reported (run.launch)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="floor,hub", help="comma-separated, in run order")
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--restart-delay", type=float, default=NAVIGATOR_RESTART_DELAY,
                        help="seconds from the kill to the new start (Navigator's: 5)")
    parser.add_argument("--kill-after", type=float, default=10.0, help="seconds from the first connect to the kill")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the storm before the RSS is read")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--output", default="hub-storm", help="results as bench/results/OUTPUT.json and .md")
    args = parser.parse_args()
    servers = client_process(args.servers)  # this process holds the consumers
    started = datetime.now(timezone.utc)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for round_index in range(args.rounds):  # alternating, so slow drift of the (virtual) machine hits both
        for name, factory in servers.items():
            runs[name].append(measure(factory([args.clients]), args, seed=round_index))
    report: dict[str, Any] = {"started_at": started.isoformat(timespec="seconds")} | run_record("storm.py") | {
        "clients": args.clients,
        "rounds": args.rounds,
        "restart_delay": args.restart_delay,
        "kill_after": args.kill_after,
        "settle": args.settle,
        "client": f"{ACTIONCABLE} {json.loads((REPO / ACTIONCABLE / 'package.json').read_text())['version']}",
        "servers": {name: summary(entries) for name, entries in runs.items()},
    }
    report["targets"] = targets(report)
    write_results(args.output, report, markdown)


if __name__ == "__main__":
    main()
