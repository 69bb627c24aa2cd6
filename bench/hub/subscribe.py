"""The cost of one subscribe and one unsubscribe on a connection that already holds N subscriptions.

In-process, no sockets: an Action Cable session (hub.cable.ActionCableSession) and the stream
registry (hub.streams.StreamRegistry) exactly as the hub builds them, with public streams on.
Each iteration subscribes the connection to one more `$pubsub` stream and unsubscribes it again,
so the connection holds N subscriptions before every measured operation. Each operation is timed
alone with time.perf_counter_ns; the cost of the timing itself (an empty timed block) is taken
off. Reported per N: microseconds per operation, the median over rounds of each round's mean.

- session: ActionCableSession.receive of the client's JSON command (parse, identifier check,
  policy, registry, confirmation reply), the session's log a no-op;
- session + log: the same with the hub's Logger writing its text line to /dev/null, as the hub
  logs every subscribe and unsubscribe;
- registry: StreamRegistry.add / remove alone.

Run by hand (bench/hub/run.py runs it too):  .venv/bin/python bench/hub/subscribe.py
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
from pathlib import Path
from time import perf_counter_ns
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hub.cable import ActionCableSession, Context, Policy  # noqa: E402
from hub.log import Logger  # noqa: E402
from hub.streams import Client, StreamRegistry  # noqa: E402


class Subscriber:
    __slots__ = ("client",)

    def __init__(self) -> None:
        self.client = Client("127.0.0.1")  # counted per client too, as the hub counts a connection

    def send_frame(self, frame: bytes) -> None:
        pass


def no_log(event: str, **fields: Any) -> None:
    pass


def identifier(name: str) -> str:
    return '{"channel":"$pubsub","stream_name":"' + name + '"}'


def command(kind: str, name: str) -> str:
    return json.dumps({"command": kind, "identifier": identifier(name)})


def timing_overhead_ns(iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        start = perf_counter_ns()
        samples.append(perf_counter_ns() - start)
    return statistics.fmean(samples)


def session_round(held: int, iterations: int, log: Any) -> tuple[float, float]:
    """Mean ns of one subscribe and of one unsubscribe, over `iterations` of each."""
    registry = StreamRegistry(held + 1, held + 1)
    session = ActionCableSession(Context(Policy(True, None, {}), registry, log), Subscriber())
    for i in range(held):
        assert session.receive(command("subscribe", f"held-{i}"))
    subscribes = [command("subscribe", f"new-{i}") for i in range(iterations)]
    unsubscribes = [command("unsubscribe", f"new-{i}") for i in range(iterations)]
    sub_total = unsub_total = 0
    gc.collect()
    for subscribe, unsubscribe in zip(subscribes, unsubscribes):
        start = perf_counter_ns()
        session.receive(subscribe)
        middle = perf_counter_ns()
        session.receive(unsubscribe)
        end = perf_counter_ns()
        sub_total += middle - start
        unsub_total += end - middle
    assert registry.subscriptions == held and len(session.subs) == held
    return sub_total / iterations, unsub_total / iterations


def registry_round(held: int, iterations: int) -> tuple[float, float]:
    registry = StreamRegistry(held + 1, held + 1)
    subscriber = Subscriber()
    for i in range(held):
        registry.add(f"held-{i}", identifier(f"held-{i}"), subscriber)
    streams = [(sys.intern(f"new-{i}"), sys.intern(identifier(f"new-{i}"))) for i in range(iterations)]
    add_total = remove_total = 0
    gc.collect()
    for stream, ident in streams:
        start = perf_counter_ns()
        registry.add(stream, ident, subscriber)
        middle = perf_counter_ns()
        registry.remove(stream, ident, subscriber)
        end = perf_counter_ns()
        add_total += middle - start
        remove_total += end - middle
    assert registry.subscriptions == held
    return add_total / iterations, remove_total / iterations


def measure(held_levels: list[int], iterations: int, rounds: int) -> dict[str, Any]:
    overhead = timing_overhead_ns(100_000)
    devnull = open("/dev/null", "w")  # noqa: SIM115 (kept open for the whole run)
    paths = {
        "session": lambda held: session_round(held, iterations, no_log),
        "session + log": lambda held: session_round(held, iterations, Logger("text", devnull)),
        "registry": lambda held: registry_round(held, iterations),
    }
    results = []
    for held in held_levels:
        for path, run in paths.items():
            samples = [run(held) for _ in range(rounds)]
            subscribe = statistics.median(s for s, _ in samples) - overhead
            unsubscribe = statistics.median(u for _, u in samples) - overhead
            results.append(
                {
                    "held": held,
                    "path": path,
                    "subscribe_us": round(subscribe / 1000, 2),
                    "unsubscribe_us": round(unsubscribe / 1000, 2),
                    "subscribe_us_per_round": [round((s - overhead) / 1000, 2) for s, _ in samples],
                    "unsubscribe_us_per_round": [round((u - overhead) / 1000, 2) for _, u in samples],
                }
            )
    return {
        "iterations": iterations,
        "rounds": rounds,
        "timing_overhead_ns": round(overhead, 1),
        "python": sys.version.split()[0],
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held", default="1,10000", help="subscriptions the connection already holds")
    parser.add_argument("--iterations", type=int, default=20000, help="subscribe + unsubscribe pairs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    held = [int(n) for n in args.held.split(",")]
    print(json.dumps(measure(held, args.iterations, args.rounds), indent=2))


if __name__ == "__main__":
    main()
