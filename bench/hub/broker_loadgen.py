"""Load generator for hubs that share broadcasts: N raw-socket Action Cable clients spread round-robin
over the hubs' ports (opened by connector.py, then held on one asyncio loop as loadgen.py's clients).
Broadcasts are posted in turn to each hub; a broadcast's time runs from sending its POST until every one of the N clients, on all
hubs, has it. Prints one JSON document on stdout; progress goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource

from loadgen import SETTLE_SECONDS, Bench, cpu_seconds, log, percentile, rss_kb


async def run(args: argparse.Namespace) -> dict[str, object]:
    bench = Bench(args.host, args.ports[0], "/cable", args.identifier, args.stream, "/_broadcast", args.server_pids[0],
                  ports=args.ports)
    await asyncio.sleep(SETTLE_SECONDS)
    idle = [rss_kb(pid) for pid in args.hub_pids]
    rate = await bench.open_clients(args.clients, args.connect_timeout)
    await asyncio.sleep(SETTLE_SECONDS)
    rss = [rss_kb(pid) for pid in args.hub_pids]
    log(f"{args.clients} clients over {len(args.ports)} hubs at {rate:.0f}/s, hub rss {rss} KB")
    samples: list[float] = []
    incomplete = 0
    await bench.broadcast_once(0, args.fanout_timeout)  # unmeasured: the first write to fresh sockets allocates
    cpu_before = sum(cpu_seconds(pid) for pid in args.server_pids)
    for seq in range(1, args.broadcasts + 1):
        bench.port = args.ports[seq % len(args.ports)]  # posted to each hub in turn
        elapsed = await bench.broadcast_once(seq, args.fanout_timeout)
        if elapsed is None:
            incomplete += 1
        else:
            samples.append(elapsed * 1000)
    server_cpu_ms = (sum(cpu_seconds(pid) for pid in args.server_pids) - cpu_before) * 1000 / args.broadcasts
    fanout: dict[str, object] = {"broadcasts": args.broadcasts, "incomplete": incomplete,
                                 "server_cpu_ms_per_broadcast": round(server_cpu_ms, 2)}  # fmt: skip
    if samples:
        fanout |= {"p50_ms": round(percentile(samples, 0.50), 2), "p99_ms": round(percentile(samples, 0.99), 2),
                   "min_ms": round(min(samples), 2), "max_ms": round(max(samples), 2)}  # fmt: skip
    log(f"fan-out {fanout}")
    for client in bench.clients:
        client.transport.abort()
    return {"clients": args.clients, "connect_rate_per_s": round(rate, 1), "hub_idle_rss_kb": idle, "hub_rss_kb": rss, "fanout": fanout}


def main() -> None:
    ints = lambda text: [int(part) for part in text.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", type=ints, required=True, help="the hubs' ports")
    parser.add_argument("--hub-pids", type=ints, required=True)
    parser.add_argument("--server-pids", type=ints, required=True, help="hubs and broker: their CPU time is counted")
    parser.add_argument("--identifier", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--connect-timeout", type=float, default=300)
    parser.add_argument("--fanout-timeout", type=float, default=60)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
