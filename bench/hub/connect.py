"""Connect rate alone: the hub and the floor, started as run.py starts them (servers on CPU 0,
clients on CPU 1), grown to --base clients and then timed while growing to --clients, which is
what run.py's connect/s at 10,000 measures (after its 5,000 level). Besides the rate, each
side's CPU time per connection: the server's user + system time from /proc, and this
process's (the load generator's) own. Writes bench/results/OUTPUT.json and .md.

Run by hand (not a test):  .venv/bin/python bench/hub/connect.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from loadgen import Bench, cpu_seconds
from run import Server, client_process, command_line, heading, median_of, run_record, start, stop, write_results


async def ramp(server: Server, pid: int, base: int, clients: int) -> dict[str, float]:
    bench = Bench("127.0.0.1", server.port, "/cable", server.identifier, "bench", "/_broadcast", pid)
    await bench.open_clients(base, 300)
    server_before, own_before = cpu_seconds(pid), time.process_time()
    rate = await bench.open_clients(clients - base, 300)
    added = clients - base
    result = {
        "connect_rate_per_s": round(rate, 1),
        "server_cpu_us_per_connection": round((cpu_seconds(pid) - server_before) * 1e6 / added, 1),
        "loadgen_cpu_us_per_connection": round((time.process_time() - own_before) * 1e6 / added, 1),
    }
    for client in bench.clients:
        client.transport.abort()
    return result


def measure(server: Server, base: int, clients: int) -> dict[str, Any]:
    print(f"== {server.title}", file=sys.stderr, flush=True)
    process = start(server)
    try:
        result = asyncio.run(ramp(server, process.pid, base, clients))
    finally:
        stop(process)
    print(f"   {result}", file=sys.stderr, flush=True)
    return result | {"command": command_line(server)}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        *heading("Hub connect rate", report),
        f"Each round starts the server, connects and subscribes {report['base']} clients, then times"
        f" {report['clients'] - report['base']} more",
        f"(connections + confirmed subscriptions per second, up to {report['clients']}, 128 handshakes in"
        " flight, as bench/hub/run.py's",
        "connect/s at 10,000). The server runs on CPU 0, the clients (bench/hub/loadgen.py's, in this"
        " process) on CPU 1.",
        "CPU per connection is user + system time over the timed part divided by the connections it"
        " added (each server's 3-second",
        "pings to the clients already connected are in it, as in run.py). Where the load generator needs as"
        " much CPU per connection",
        "as the server or more, the rate is the load generator's ceiling rather than the server's."
        f" Medians of {report['rounds']} alternating rounds,",
        "each round's value in brackets.",
        "",
        "| server | connect/s | server CPU µs per connection | load generator CPU µs per connection |",
        "|---|---|---|---|",
    ]
    for name, result in report["servers"].items():
        cells = [
            f"{result[key]} ({' / '.join(str(entry[key]) for entry in result['rounds'])})"
            for key in ("connect_rate_per_s", "server_cpu_us_per_connection", "loadgen_cpu_us_per_connection")
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    hub, floor = report["servers"].get("hub"), report["servers"].get("floor")
    if hub and floor:
        lines += ["", f"Hub / floor connect rate: {hub['connect_rate_per_s'] / floor['connect_rate_per_s']:.2f}x."]
    lines += ["", "Commands:", ""]
    lines += [f"- {name}: `{result['rounds'][0]['command']}`" for name, result in report["servers"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="floor,hub", help="comma-separated, in run order")
    parser.add_argument("--base", type=int, default=5000, help="clients connected before the timed part")
    parser.add_argument("--clients", type=int, default=10000, help="clients once the timed part is done")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="hub-connect", help="results as bench/results/OUTPUT.json and .md")
    args = parser.parse_args()
    servers = client_process(args.servers)  # this process is the load generator
    levels = [args.base, args.clients]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for _ in range(args.rounds):  # alternating, so slow drift of the (virtual) machine hits both
        for name, factory in servers.items():
            runs[name].append(measure(factory(levels), args.base, args.clients))
    keys = ("connect_rate_per_s", "server_cpu_us_per_connection", "loadgen_cpu_us_per_connection")
    report = run_record("connect.py") | {
        "base": args.base,
        "clients": args.clients,
        "rounds": args.rounds,
        "servers": {
            name: {key: median_of([entry[key] for entry in entries]) for key in keys} | {"rounds": entries}
            for name, entries in runs.items()
        },
    }
    write_results(args.output, report, markdown)


if __name__ == "__main__":
    main()
