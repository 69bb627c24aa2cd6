"""Hubs sharing broadcasts through a broker: fan-out to N clients spread over 3 hubs on one NATS
server and on one Redis, against the same N clients on one hub without a broker; and the idle RSS of
a hub with a broker configured (and connected) against one without. Servers (hubs and broker) on
CPU 0, the load generator on CPU 1. Writes bench/results/broker.json and bench/results/broker.md.

Run by hand (not a test):  .venv/bin/python bench/hub/broker.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from tests.brokers import Broker  # noqa: E402  (the tests' real nats-server / redis-server)

RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "tmp" / "broker"
SERVER_CPU = {0}
LOADGEN_CPU = {1}
IDENTIFIER = '{"channel":"$pubsub","stream_name":"bench"}'
DEBIAN_PYTHON = "/usr/bin/python3"
MB = 1024


def pinned() -> None:
    os.sched_setaffinity(0, SERVER_CPU)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hub_copy() -> Path:
    """The hub as the image ships it: hub/*.py with hub.schema.json beside them, run without bytecode
    files (PYTHONDONTWRITEBYTECODE=1: it compiles its sources at every start), as bench/hub/run.py does."""
    top = WORK / "hub-image"
    if top.exists():
        shutil.rmtree(top)
    (top / "hub").mkdir(parents=True)
    for source in sorted((REPO / "hub").glob("*.py")):
        shutil.copy2(source, top / "hub" / source.name)
    shutil.copy2(REPO / "schema" / "hub.schema.json", top / "hub" / "hub.schema.json")
    return top


class Hub:
    def __init__(self, name: str, copy: Path, broker: Broker | None, python: str = sys.executable) -> None:
        self.name = name
        self.log = WORK / f"{name}.log"
        config = WORK / f"{name}.yml"
        # Every load-generator connection comes from 127.0.0.1, one client to the per-client limits.
        text = ("server: {listen: 0}\npublic_streams: true\n"
                "limits: {max_connections: 20000, max_connections_per_client: 20000, max_subscriptions_per_client: 20000}\n")
        if broker is not None:
            text += f"broker: {{kind: {broker.kind}, url: '{broker.url}', prefix: bench}}\n"
        config.write_text(text)
        self.argv = [python, "-m", "hub", "--hub-config", str(config), "--port", "0", "--log-format", "json"]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(copy)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=copy, env=env, preexec_fn=pinned)
        self.port = self._wait(lambda lines: next((r["port"] for r in lines if r.get("event") == "listening"), None), "listening")
        if broker is not None:
            self._wait(lambda lines: any(r.get("event") == "broker_connected" for r in lines) or None, "broker_connected")

    def _wait(self, find, what: str) -> Any:
        deadline = time.monotonic() + 60
        while True:
            lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
            found = find(lines)
            if found is not None:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what}; see {self.log}")
            time.sleep(0.05)

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_broker(kind: str) -> Broker:
    broker = Broker(kind, WORK / kind)
    assert broker.process is not None
    os.sched_setaffinity(broker.process.pid, SERVER_CPU)
    return broker


def fanout(config: str, copy: Path, clients: int, broadcasts: int) -> dict[str, Any]:
    """One round of one configuration: `one-hub`, or `nats` / `redis` with three hubs."""
    print(f"== {config}", file=sys.stderr, flush=True)
    broker = start_broker(config) if config != "one-hub" else None
    hubs: list[Hub] = []
    try:
        for index in range(1 if broker is None else 3):
            hubs.append(Hub(f"{config}-{index}", copy, broker))
        pids = [hub.process.pid for hub in hubs]
        servers = pids + ([broker.process.pid] if broker is not None and broker.process is not None else [])
        argv = [sys.executable, str(HERE / "broker_loadgen.py"), "--ports", ",".join(str(h.port) for h in hubs),
                "--hub-pids", ",".join(map(str, pids)), "--server-pids", ",".join(map(str, servers)),
                "--identifier", IDENTIFIER, "--stream", "bench", "--clients", str(clients), "--broadcasts", str(broadcasts)]  # fmt: skip
        done = subprocess.run(argv, stdout=subprocess.PIPE, cwd=HERE, timeout=1800, check=False,
                              preexec_fn=lambda: os.sched_setaffinity(0, LOADGEN_CPU))  # fmt: skip
        if done.returncode != 0:
            return {"error": f"load generator failed with {done.returncode}"}
        result = json.loads(done.stdout.decode().strip().splitlines()[-1])
        result["broker_rss_kb"] = _rss(broker.process.pid) if broker is not None and broker.process is not None else 0
        return result
    except (RuntimeError, AssertionError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}
    finally:
        for hub in hubs:
            hub.stop()
        if broker is not None:
            broker.stop()


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def idle(copy: Path, kind: str, python: str) -> int | str:
    """Idle RSS of one hub: started, connected to its broker if it has one, given a second, read."""
    broker = start_broker(kind) if kind != "none" else None
    hub = None
    try:
        hub = Hub(f"idle-{kind}", copy, broker, python)
        time.sleep(1.0)  # as loadgen.py settles before reading the idle RSS
        return hub.rss_kb()
    except (RuntimeError, AssertionError) as error:
        return f"error: {error}"
    finally:
        if hub is not None:
            hub.stop()
        if broker is not None:
            broker.stop()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def versions() -> dict[str, str]:
    def run(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "missing"

    return {
        "python": platform.python_version(),
        "nats-server": run(["nats-server", "--version"]),
        "redis-server": run(["redis-server", "--version"]),
        "nats-py": run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('nats-py'))"]),
        "redis-py": run([sys.executable, "-c", "import redis; print(redis.__version__)"]),
        "debian python3": run([DEBIAN_PYTHON, "-c", "import platform; print(platform.python_version())"]),
        "debian python3-redis": run([DEBIAN_PYTHON, "-c", "import redis; print(redis.__version__)"]),
        "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "?"),  # fmt: skip
        "cpus": str(os.cpu_count()),
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [entry for entry in rounds if "error" not in entry and "p50_ms" in entry["fanout"] and not entry["fanout"]["incomplete"]]
    summary: dict[str, Any] = {"rounds": rounds, "rounds_ok": len(ok), "errors": [e["error"] for e in rounds if "error" in e]}
    if ok:
        summary |= {
            "p50_ms": median([e["fanout"]["p50_ms"] for e in ok]),
            "p99_ms": median([e["fanout"]["p99_ms"] for e in ok]),
            "p50_ms_per_round": [e["fanout"]["p50_ms"] for e in ok],
            "server_cpu_ms_per_broadcast": median([e["fanout"]["server_cpu_ms_per_broadcast"] for e in ok]),
            "connect_rate_per_s": median([e["connect_rate_per_s"] for e in ok]),
            "hub_rss_mb": [round(kb / MB, 1) for kb in ok[0]["hub_rss_kb"]],
            "broker_rss_mb": round(ok[0]["broker_rss_kb"] / MB, 1),
        }
    return summary


def markdown(report: dict[str, Any]) -> str:
    fan, idle_rows = report["fanout"], report["idle"]
    lines = [
        "# Hubs sharing broadcasts through a broker",
        "",
        f"Run {report['finished_at']} with `{report['command']}`.",
        "",
        "Versions and machine: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "Load average (1, 5, 15 min) at start and end: " + " and ".join(" ".join(l) for l in report["loadavg_at_start_and_end"])
        + " (other work shared the machine when it is above 2).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    verdict = {True: "met", False: "**not met**", None: "not measured", "info": "-"}
    lines += [f"| {row['target']} | {row['measured']} | {verdict[row['met']]} |" for row in report["targets"]]
    lines += [
        "",
        f"## Fan-out to {report['clients']} clients",
        "",
        "Method: `one-hub` is one hub without a broker holding all the clients; `nats` and `redis` are three",
        "hubs on one broker with the clients spread round-robin over them (a third each). Hubs run as the",
        "image runs them (hub/*.py copied with the schema beside them, PYTHONDONTWRITEBYTECODE=1). All",
        "servers (hubs and broker) share CPU 0; the load generator (bench/hub/broker_loadgen.py: loadgen.py's",
        "raw-socket asyncio Action Cable client, 128 handshakes in flight) runs on CPU 1. So on this",
        "2-CPU machine three hubs do the same fan-out work as one on the same single CPU, plus the broker",
        "hop: the figures show what sharing costs, not what spreading hubs over machines gains. A",
        f"broadcast's time runs from sending its POST until every client on every hub has it; {report['broadcasts']}",
        "sequential broadcasts per round after one unmeasured warm-up, posted to each hub in turn",
        "(nearest-rank percentiles: with 20 samples p99 is the slowest). Server CPU per broadcast is the",
        "user + system time of all hubs and the broker over the measured broadcasts divided by their",
        f"number (3-second pings included). Rounds: {report['rounds']}, configurations alternating; figures",
        "are medians over the rounds. MB means MiB.",
        "",
        "The last column divides each round's p50 by one-hub's p50 of the same round (the configurations",
        "of a round ran back to back, so a round's ratio is less disturbed by other work than the medians).",
        "",
        "| configuration | rounds ok | fan-out p50 ms | p99 ms | p50 per round | server CPU ms per broadcast | connect/s | hub RSS MB at N | broker RSS MB | p50 / one-hub p50 per round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in fan.items():
        if not entry["rounds_ok"]:
            lines.append(f"| {name} | 0 | error: {'; '.join(entry['errors'])} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {entry['rounds_ok']} | {entry['p50_ms']} | {entry['p99_ms']} "
            f"| {' / '.join(map(str, entry['p50_ms_per_round']))} | {entry['server_cpu_ms_per_broadcast']} "
            f"| {entry['connect_rate_per_s']:.0f} | {' / '.join(map(str, entry['hub_rss_mb']))} | {entry['broker_rss_mb'] or '-'} "
            f"| {' / '.join(per_round_ratios(fan, name)) or '-'} |"
        )
    lines += [
        "",
        "## Idle RSS of one hub",
        "",
        "VmRSS of a hub process started as the image runs it, connected to its broker when it has one, read",
        f"one second after start; {report['idle_repeats']} starts each, the median (and every start).",
        "",
        "| python | broker | idle RSS MB | over no broker | each start (MB) |",
        "|---|---|---|---|---|",
    ]
    for row in idle_rows:
        over = f"+{row['over_kb'] / MB:.1f} MB" if row.get("over_kb") is not None else ""
        each = " / ".join(f"{kb / MB:.1f}" if isinstance(kb, int) else kb for kb in row["each_kb"])
        lines.append(f"| {row['python']} | {row['broker']} | {row['median_kb'] / MB:.1f} | {over} | {each} |")
    lines += ["", "Commands:", "", f"- `{report['command']}`", "- a hub: `" + report["hub_command"] + "`", ""]
    return "\n".join(lines)


def per_round_ratios(fan: dict[str, Any], name: str) -> list[str]:
    one = fan.get("one-hub", {}).get("rounds", [])
    mine = fan[name]["rounds"]
    return [f"{a['fanout']['p50_ms'] / b['fanout']['p50_ms']:.2f}" for a, b in zip(mine, one)
            if "p50_ms" in a.get("fanout", {}) and "p50_ms" in b.get("fanout", {})]  # fmt: skip


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in report["idle"]:
        if row["broker"] != "none" and row.get("over_kb") is not None:
            over = row["over_kb"] / MB
            rows.append({"target": f"idle RSS with a {row['broker']} broker <= 3 MB over none ({row['python']})",
                         "measured": f"+{over:.1f} MB", "met": over <= 3})  # fmt: skip
    one = report["fanout"].get("one-hub", {})
    for kind in ("nats", "redis"):
        entry = report["fanout"].get(kind, {})
        if entry.get("rounds_ok") and one.get("rounds_ok"):
            ratios = per_round_ratios(report["fanout"], kind)
            rows.append({"target": f"(for information) 3 hubs on {kind} vs one hub, fan-out p50 / p99 ({report['clients']} clients)",
                         "measured": f"{entry['p50_ms']} / {entry['p99_ms']} ms vs {one['p50_ms']} / {one['p99_ms']} ms"
                                     f" (p50 ratio per round: {', '.join(ratios)}x)", "met": "info"})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-repeats", type=int, default=5)
    parser.add_argument("--configs", default="one-hub,nats,redis")
    parser.add_argument("--rewrite", action="store_true", help="only rewrite broker.md from broker.json")
    args = parser.parse_args()
    if args.rewrite:
        report = json.loads((RESULTS / "broker.json").read_text())
        report["targets"] = targets(report)
        (RESULTS / "broker.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "broker.md").write_text(markdown(report))
        return
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs: servers on CPU 0, the load generator on CPU 1")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    started = datetime.now(timezone.utc)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    copy = hub_copy()
    configs = [name for name in args.configs.split(",") if name]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name in configs:
            runs[name].append(fanout(name, copy, args.clients, args.broadcasts))
    idle_rows = []
    for python, label in ((sys.executable, f"venv {platform.python_version()}"), (DEBIAN_PYTHON, "Debian python3")):
        kinds = ("none", "nats", "redis") if python == sys.executable else ("none", "redis")
        measured = {kind: [idle(copy, kind, python) for _ in range(args.idle_repeats)] for kind in kinds}
        base = [kb for kb in measured["none"] if isinstance(kb, int)]
        for kind in kinds:
            ok = [kb for kb in measured[kind] if isinstance(kb, int)]
            row: dict[str, Any] = {"python": label, "broker": kind, "each_kb": measured[kind], "median_kb": statistics.median(ok) if ok else 0}
            if kind != "none" and ok and base:
                row["over_kb"] = statistics.median(ok) - statistics.median(base)
            idle_rows.append(row)
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "bench/hub/broker.py", *sys.argv[1:]]),
        "hub_command": "cd bench/results/tmp/broker/hub-image && PYTHONDONTWRITEBYTECODE=1 python -m hub --hub-config HUB_YML --port 0 --log-format json",
        "versions": versions(),
        "clients": args.clients,
        "broadcasts": args.broadcasts,
        "rounds": args.rounds,
        "idle_repeats": args.idle_repeats,
        "fanout": {name: summarize(entries) for name, entries in runs.items()},
        "idle": idle_rows,
    }
    report["loadavg_at_start_and_end"] = [load_before, Path("/proc/loadavg").read_text().split()[:3]]
    report["targets"] = targets(report)
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (RESULTS / "broker.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "broker.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
