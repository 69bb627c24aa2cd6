"""Connect cost, side by side: the floor and the hub run at the same time, both on CPU 0, and the
clients (connector.py, on CPU 1) go to one and the other in turn, so both servers accept their
connections under the same machine at the same moment. Each round grows both to --base clients,
then times the growth to --clients; the figure is each server's CPU time (user + system, from
/proc) per connection it accepted in the timed part, and the hub's against the floor's.

Why side by side: run one after the other, the same server's CPU per connection moved between
72 and 150 µs from one run to the next on the (virtual) bench machine, more than the difference
being measured. Sharing CPU 0 keeps both servers busy, so this is the cost that sets how many
connections a second each can take: the hub's connect rate, CPU-bound, is the floor's divided by
the ratio. Writes bench/results/OUTPUT.json and .md.

Run by hand (not a test):  .venv/bin/python bench/hub/connect.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from loadgen import Bench, cpu_seconds
from run import Server, client_process, command_line, heading, median_of, run_record, start, stop, write_results


async def ramp(servers: list[Server], pids: list[int], base: int, clients: int) -> dict[str, Any]:
    first = servers[0]
    ports = [server.port for server in servers]
    bench = Bench("127.0.0.1", first.port, "/cable", first.identifier, "bench", "/_broadcast", pids[0], ports=ports)
    await bench.open_clients(base, 300)
    before, own_before = [cpu_seconds(pid) for pid in pids], time.process_time()
    rate = await bench.open_clients(clients - base, 300)
    each = (clients - base) / len(servers)  # the connector deals the clients out in turn
    result: dict[str, Any] = {
        "connect_rate_per_s": round(rate, 1),  # both servers together
        "loadgen_cpu_us_per_connection": round((time.process_time() - own_before) * 1e6 / (clients - base), 1),
        "server_cpu_us_per_connection": {
            server.name: round((cpu_seconds(pid) - cpu) * 1e6 / each, 1)
            for server, pid, cpu in zip(servers, pids, before)
        },
    }
    for client in bench.clients:
        client.transport.abort()
    return result


def measure(servers: list[Server], base: int, clients: int) -> dict[str, Any]:
    print(f"== {' + '.join(server.name for server in servers)}", file=sys.stderr, flush=True)
    processes = []
    try:
        for server in servers:
            processes.append(start(server))
        result = asyncio.run(ramp(servers, [process.pid for process in processes], base, clients))
    finally:
        for process in processes:
            stop(process)
    cpu = result["server_cpu_us_per_connection"]
    result["hub_over_floor"] = round(cpu["hub"] / cpu["floor"], 3)
    print(f"   {result}", file=sys.stderr, flush=True)
    return result | {"commands": {server.name: command_line(server) for server in servers}}


def markdown(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    each_base, each_clients = report["base"] // 2, report["clients"] // 2
    ratio = report["hub_over_floor"]
    lines = [
        *heading("Hub connect cost, side by side with the floor", report),
        "The floor and the hub ran at the same time, both on CPU 0; the clients (bench/hub/connector.py:"
        " non-blocking sockets",
        "on one epoll, 128 handshakes in flight) ran on CPU 1 and went to one server and the other in turn."
        " Each round grew both",
        f"to {each_base} subscribed clients, then timed their growth to {each_clients} each. CPU per connection"
        " is a server's user +",
        "system time over the timed part divided by the connections it accepted (its 3-second pings to"
        " the clients it holds are in it).",
        "Both servers are busy all along, so this is the cost that bounds the rate at which each takes"
        " connections; side by side,",
        "the machine's drift (the same server's figure moved between 72 and 150 µs from one run to the"
        " next when run alone)",
        f"falls on both at once. {len(rounds)} rounds; medians, each round's value in brackets.",
        "",
        "| server | CPU µs per connection |",
        "|---|---|",
    ]
    for name in ("floor", "hub"):
        per_round = " / ".join(str(entry["server_cpu_us_per_connection"][name]) for entry in rounds)
        lines.append(f"| {name} | {report['server_cpu_us_per_connection'][name]} ({per_round}) |")
    lines += [
        "",
        f"Hub / floor CPU per connection: {ratio}x"
        f" ({' / '.join(str(entry['hub_over_floor']) for entry in rounds)}), so CPU-bound the hub connects at"
        f" {1 / ratio:.2f}x the floor's rate.",
        f"Both servers together took {report['connect_rate_per_s']} connections a second"
        f" ({' / '.join(str(entry['connect_rate_per_s']) for entry in rounds)}); the load generator spent"
        f" {report['loadgen_cpu_us_per_connection']} µs per connection.",
        "",
        "Commands:",
        "",
    ]
    lines += [f"- {name}: `{command}`" for name, command in rounds[0]["commands"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=8000, help="clients (both servers together) before the timed part")
    parser.add_argument("--clients", type=int, default=18000,
                        help="clients (both servers together) once the timed part is done; with --base, even")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="hub-connect", help="results as bench/results/OUTPUT.json and .md")
    args = parser.parse_args()
    if args.base % 2 or args.clients % 2 or args.clients <= args.base:
        sys.exit("--base and --clients must be even, and --clients larger: the two servers share them equally")
    factories = client_process("floor,hub")  # this process is the load generator
    levels = [args.base // 2, args.clients // 2]
    rounds = [measure([factories["floor"](levels), factories["hub"](levels)], args.base, args.clients)
              for _ in range(args.rounds)]
    report = run_record("connect.py") | {
        "base": args.base,
        "clients": args.clients,
        "rounds": rounds,
        "server_cpu_us_per_connection": {
            name: median_of([entry["server_cpu_us_per_connection"][name] for entry in rounds]) for name in ("floor", "hub")
        },
        "hub_over_floor": round(statistics.median(entry["hub_over_floor"] for entry in rounds), 3),
        "connect_rate_per_s": median_of([entry["connect_rate_per_s"] for entry in rounds]),
        "loadgen_cpu_us_per_connection": median_of([entry["loadgen_cpu_us_per_connection"] for entry in rounds]),
    }
    write_results(args.output, report, markdown)


if __name__ == "__main__":
    main()
