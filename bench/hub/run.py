"""Hub benchmark: the hub, Action Cable on Puma (a Rails 6.1 application, and a
bare rack app with only action_cable), and a bare-asyncio floor, one after the
other in one run, servers pinned to CPU 0 and the load generator to CPU 1.
Writes bench/results/hub.json and bench/results/hub.md.

Run by hand (not a test):  .venv/bin/python bench/hub/run.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
from tests.ports import start_failed, start_on_free_port  # noqa: E402  (the tests' port helper)

RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "tmp"
SERVER_CPU = {0}
LOADGEN_CPU = {1}
PUBSUB_IDENTIFIER = '{"channel":"$pubsub","stream_name":"bench"}'
RAILS_IDENTIFIER = '{"channel":"StreamChannel","stream":"bench"}'
MB = 1024  # VmRSS is in KiB; "MB" below means MiB


@dataclass
class Server:
    name: str
    title: str
    command: Callable[[int], list[str]]  # the command line for a port; 0: the server picks one and logs it
    reports_port: bool  # logs {"event": "listening", "port": N}, so it is started on port 0
    identifier: str
    levels: list[int]
    ready_path: str | None  # None: ready when the port accepts connections
    env: dict[str, str]
    note: str = ""
    cwd: Path = REPO
    port: int = 0  # once started
    argv: list[str] = field(default_factory=list)  # as started


def hub_copy(compiled: bool, python: str = sys.executable) -> Path:
    """The hub as the image ships it: hub/*.py with hub.schema.json beside them, and their bytecode
    written ahead by compileall (templates/Dockerfile.j2 does it when a region runs the hub); without
    `compiled`, no bytecode, so the hub (under PYTHONDONTWRITEBYTECODE=1, as Navigator runs it)
    compiles its sources at every start. `python` writes the bytecode (the image's own python3 there)."""
    top = WORK / ("hub-image" if compiled else "hub-sources")
    if top.exists():
        shutil.rmtree(top)
    (top / "hub").mkdir(parents=True)
    for source in sorted((REPO / "hub").glob("*.py")):
        shutil.copy2(source, top / "hub" / source.name)
    shutil.copy2(REPO / "schema" / "hub.schema.json", top / "hub" / "hub.schema.json")
    if compiled:
        subprocess.run([python, "-m", "compileall", "-q", str(top / "hub")], check=True)
    return top


def hub_server(levels: list[int], compiled: bool = True) -> Server:
    navigator = {
        "server": {"listen": 0, "health_check": {"path": "/up"}},
        "cable": {"enabled": True, "path": "/cable", "broadcast_path": "/_broadcast"},
    }
    # Every load-generator connection comes from 127.0.0.1, one client to the per-client limits.
    limits = {"max_connections": 20000, "max_connections_per_client": 20000, "max_subscriptions_per_client": 20000}
    options = {"public_streams": True, "limits": limits}
    (WORK / "navigator.yml").write_text(yaml.safe_dump(navigator))
    (WORK / "hub.yml").write_text(yaml.safe_dump(options))

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "hub", "--config", str(WORK / "navigator.yml"),
            "--hub-config", str(WORK / "hub.yml"), "--host", "127.0.0.1", "--port", str(port),
            "--log-format", "json",
        ]

    name, title = ("hub", "hub (python -m hub)") if compiled else ("hub-sources", "hub, sources compiled at start (no bytecode shipped)")
    return Server(name, title, command, True, PUBSUB_IDENTIFIER, levels, "/up", {"PYTHONDONTWRITEBYTECODE": "1"},
                  cwd=hub_copy(compiled))


def puma_command(config_ru: Path) -> Callable[[int], list[str]]:
    return lambda port: ["puma", "-e", "production", "-b", f"tcp://127.0.0.1:{port}", "-t", "4:4", str(config_ru)]


def actioncable_server(levels: list[int], note: str) -> Server:
    command = puma_command(HERE / "actioncable" / "config.ru")
    title = "bare Action Cable 6.1 rack app (only action_cable loaded) + Puma 5 (async adapter)"
    return Server("actioncable", title, command, False, RAILS_IDENTIFIER, levels, "/up", {}, note)


def actioncable_rails_server(levels: list[int], note: str) -> Server:
    command = puma_command(HERE / "actioncable_rails" / "config.ru")
    title = (
        "Rails 6.1 application (active_record + sqlite3, active_job, action_controller, action_view,"
        " action_cable; eager loaded) + Puma 5 (async adapter)"
    )
    # A fresh key per run, so none is ever written to the repository or the results.
    env = {"RAILS_ENV": "production", "SECRET_KEY_BASE": secrets.token_hex(64)}
    return Server("actioncable-rails", title, command, False, RAILS_IDENTIFIER, levels, "/up", env, note)


def floor_server(levels: list[int]) -> Server:
    def command(port: int) -> list[str]:
        return [sys.executable, str(HERE / "floor.py"), "--port", str(port), "--identifier", PUBSUB_IDENTIFIER]

    title = "floor (bare asyncio: the handshake, subscribe, confirmation and pings Action Cable needs, one pre-built frame to N sockets)"
    return Server("floor", title, command, True, PUBSUB_IDENTIFIER, levels, None, {})


def pinned(cpus: set[int]) -> Any:
    def setup() -> None:
        os.sched_setaffinity(0, cpus)
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


def client_process(servers: str) -> dict[str, Callable[[list[int]], Server]]:
    """Makes this process the one holding the clients (connect.py, storm.py): two CPUs needed, this process on
    the load generator's CPU with descriptors for every client. Returns the servers named in `servers`
    (comma-separated, in run order: floor, hub), each a factory taking the levels."""
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs: servers on CPU 0, the clients on CPU 1")
    WORK.mkdir(parents=True, exist_ok=True)
    pinned(LOADGEN_CPU)()
    factories = {"floor": floor_server, "hub": hub_server}
    return {name: factories[name] for name in servers.split(",") if name}


def ready(server: Server, port: int) -> bool:
    try:
        if server.ready_path is None:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{server.ready_path}", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def reported_port(output: str) -> int:
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "listening":
            return int(record["port"])
    return 0


def start(server: Server) -> subprocess.Popen[bytes]:
    """A server that logs its port is started on port 0; any other on a free port, again on
    another if that one is taken before the server binds it (tests/ports.py)."""
    if server.reports_port:
        return launch(server, 0)
    return start_on_free_port(lambda port: launch(server, port))


def command_line(server: Server) -> str:
    line = shlex.join(server.argv)
    return line if server.cwd == REPO else f"cd {shlex.quote(str(server.cwd.relative_to(REPO)))} && {line}"


def launch(server: Server, port: int) -> subprocess.Popen[bytes]:
    log_path = WORK / f"{server.name}.log"
    server.argv = server.command(port)
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            server.argv, stdout=log, stderr=subprocess.STDOUT, cwd=server.cwd,
            env={**os.environ, **server.env}, preexec_fn=pinned(SERVER_CPU),
        )

    def output() -> str:
        with log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    deadline = time.monotonic() + 30
    while not (port or (port := reported_port(output()))) or not ready(server, port):
        if process.poll() is not None:
            raise start_failed(server.name, process.returncode, output())
        if time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"{server.name} did not come up; see {log_path}")
        time.sleep(0.1)
    server.port = port
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def idle_rss_kb(server: Server) -> dict[str, Any]:
    """Only the idle RSS: start, answer /up once, read VmRSS, stop."""
    entry: dict[str, Any] = {"title": server.title}
    try:
        process = start(server)
    except (RuntimeError, AssertionError) as error:
        return entry | {"error": str(error)}
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return entry | {"command": command_line(server), "idle_rss_kb": rss}
    finally:
        stop(process)


def load(server: Server, pid: int, broadcasts: int) -> dict[str, Any]:
    argv = [
        sys.executable, str(HERE / "loadgen.py"), "--port", str(server.port),
        "--identifier", server.identifier, "--stream", "bench", "--server-pid", str(pid),
        "--levels", ",".join(map(str, server.levels)), "--broadcasts", str(broadcasts),
    ]
    done = subprocess.run(
        argv, stdout=subprocess.PIPE, cwd=HERE, preexec_fn=pinned(LOADGEN_CPU), timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed with {done.returncode}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def measure(server: Server, broadcasts: int) -> dict[str, Any]:
    print(f"== {server.title}", file=sys.stderr, flush=True)
    entry: dict[str, Any] = {"title": server.title, "note": server.note}
    try:
        process = start(server)
    except (RuntimeError, AssertionError) as error:
        return entry | {"command": command_line(server), "error": str(error)}
    entry["command"] = command_line(server)
    try:
        return entry | load(server, process.pid, broadcasts)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
        return entry | {"error": str(error)}
    finally:
        stop(process)


def median_of(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def combine_levels(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    levels = []
    for index, first in enumerate(runs[0]["levels"]):
        entries = [run["levels"][index] for run in runs]
        fanouts = [entry["fanout"] for entry in entries]
        complete = [fanout for fanout in fanouts if "p50_ms" in fanout]
        fanout: dict[str, Any] = {
            "broadcasts": first["fanout"]["broadcasts"],
            "incomplete": sum(fanout["incomplete"] for fanout in fanouts),
            "p50_ms_per_round": [fanout.get("p50_ms") for fanout in fanouts],
        }
        if complete:
            fanout |= {key: median_of([f[key] for f in complete]) for key in ("p50_ms", "p99_ms", "min_ms", "max_ms")}
        fanout["server_cpu_ms_per_broadcast"] = median_of([f["server_cpu_ms_per_broadcast"] for f in fanouts])
        connect_rates = [entry["connect_rate_per_s"] for entry in entries]
        levels.append(
            {
                "clients": first["clients"],
                **{
                    key: median_of([entry[key] for entry in entries])
                    for key in ("rss_kb", "kb_per_connection", "connect_rate_per_s", "rss_after_fanout_kb",
                                "server_cpu_us_per_connection", "loadgen_cpu_us_per_connection")
                },
                "connect_rate_per_s_per_round": connect_rates,
                "fanout": fanout,
            }
        )
    return levels


def combine(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds that worked; the per-round results stay in the report."""
    ok = [entry for entry in entries if "error" not in entry]
    head = {key: entries[0][key] for key in ("title", "command", "note")}
    errors = [entry["error"] for entry in entries if "error" in entry]
    if not ok:
        return head | {"error": "; ".join(errors), "rounds": entries}
    return head | {
        "rounds_ok": len(ok),
        "errors": errors,
        "idle_rss_kb": median_of([entry["idle_rss_kb"] for entry in ok]),
        "levels": combine_levels(ok),
        "rounds": entries,
    }


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    memtotal = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    versions = {}
    for name, argv in {
        "ruby": ["ruby", "--version"],
        "rails": ["ruby", "-rrails", "-e", "puts Rails.version"],
        "puma": ["puma", "--version"],
        "node": ["node", "--version"],
    }.items():
        try:
            versions[name] = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            versions[name] = "missing"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_mb": int(memtotal) // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def run_record(script: str) -> dict[str, Any]:
    """When, how and where a bench of bench/hub/ ran (what heading() prints)."""
    return {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", f"bench/hub/{script}", *sys.argv[1:]]),
        "machine": machine(),
    }


def write_results(output: str, report: dict[str, Any], page: Callable[[dict[str, Any]], str]) -> None:
    """bench/results/OUTPUT.json and OUTPUT.md (page(report)), which is printed too."""
    (RESULTS / f"{output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{output}.md").write_text(page(report))
    print(page(report))


def level(result: dict[str, Any], clients: int) -> dict[str, Any] | None:
    return next((entry for entry in result.get("levels", []) if entry["clients"] == clients), None)


def p50(result: dict[str, Any], clients: int) -> float | None:
    entry = level(result, clients)
    return entry["fanout"].get("p50_ms") if entry and not entry["fanout"]["incomplete"] else None


def cpu_per_broadcast(result: dict[str, Any], clients: int) -> float | None:
    entry = level(result, clients)
    return entry["fanout"].get("server_cpu_ms_per_broadcast") if entry else None


def target(name: str, value: str, met: bool | str | None) -> dict[str, Any]:
    return {"target": name, "measured": value, "met": met}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    servers = report["servers"]
    hub, floor, cable = servers.get("hub", {}), servers.get("floor", {}), servers.get("actioncable-rails", {})
    bare = servers.get("actioncable", {})
    rows = []
    idle = hub.get("idle_rss_kb")
    rows.append(target("hub idle RSS <= 20 MB (as the image runs it: bytecode compiled at build)",
                       f"{idle / MB:.1f} MB" if idle else "not measured", idle <= 20 * MB if idle else None))
    sources = (report.get("hub_idle_sources_only") or {}).get("idle_rss_kb")
    rows.append(target("(for information) hub idle RSS without bytecode (it compiles its sources at start)",
                       f"{sources / MB:.1f} MB" if sources else "not measured", "info"))
    at10k = level(hub, 10000)
    rows.append(target("hub <= 3 KB per subscribed connection (10k)",
                       f"{at10k['kb_per_connection']} KB" if at10k else "not measured",
                       at10k["kb_per_connection"] <= 3 if at10k else None))
    hub_p50, floor_p50 = p50(hub, 10000), p50(floor, 10000)
    ratio = hub_p50 / floor_p50 if hub_p50 and floor_p50 else None
    rows.append(target("hub fan-out p50 within 1.2x of the floor (10k)",
                       f"{hub_p50} ms vs {floor_p50} ms = {ratio:.2f}x" if ratio else "not measured",
                       ratio <= 1.2 if ratio else None))
    hub10, floor10 = level(hub, 10000), level(floor, 10000)
    rate = hub10["connect_rate_per_s"] / floor10["connect_rate_per_s"] if hub10 and floor10 else None
    rows.append(target("hub connect rate >= 0.9x the floor's (10k; one after the other: bench/hub/connect.py measures"
                       " side by side)",
                       f"{hub10['connect_rate_per_s']:.0f} vs {floor10['connect_rate_per_s']:.0f} connects/s = {rate:.2f}x"
                       if rate else "not measured", rate >= 0.9 if rate else None))
    hub_cpu, floor_cpu = cpu_per_broadcast(hub, 10000), cpu_per_broadcast(floor, 10000)
    rows.append(target("(for information) server CPU per broadcast, hub / floor (10k)",
                       f"{hub_cpu} ms / {floor_cpu} ms = {hub_cpu / floor_cpu:.2f}x" if hub_cpu and floor_cpu
                       else "not measured", "info"))
    hub5, cable5 = level(hub, 5000), level(cable, 5000)
    memory = cable5["rss_kb"] / hub5["rss_kb"] if hub5 and cable5 else None
    rows.append(target("Action Cable (Rails app) RSS / hub RSS >= 10 (5k)",
                       f"{cable5['rss_kb'] / MB:.1f} MB / {hub5['rss_kb'] / MB:.1f} MB = {memory:.1f}x" if memory else "not measured",
                       memory >= 10 if memory else None))
    bare5 = level(bare, 5000)
    if bare5 and hub5:
        rows.append(target("(for information) bare action_cable rack app RSS / hub RSS (5k)",
                           f"{bare5['rss_kb'] / MB:.1f} MB / {hub5['rss_kb'] / MB:.1f} MB"
                           f" = {bare5['rss_kb'] / hub5['rss_kb']:.1f}x", "info"))
    per_connection = cable5["kb_per_connection"] / hub5["kb_per_connection"] if hub5 and cable5 else None
    rows.append(target("(for information) Action Cable (Rails app) KB/conn / hub KB/conn (5k)",
                       f"{cable5['kb_per_connection']} KB / {hub5['kb_per_connection']} KB = {per_connection:.1f}x"
                       if per_connection else "not measured", "info"))
    hub_p50_5k, cable_p50_5k, floor_p50_5k = p50(hub, 5000), p50(cable, 5000), p50(floor, 5000)
    ceiling = cable_p50_5k / floor_p50_5k if cable_p50_5k and floor_p50_5k else None
    rows.append(target("(for information) Action Cable (Rails app) p50 / floor p50 (5k): the largest ratio this setup can show",
                       f"{cable_p50_5k} ms / {floor_p50_5k} ms = {ceiling:.1f}x" if ceiling else "not measured", "info"))
    speed = cable_p50_5k / hub_p50_5k if hub_p50_5k and cable_p50_5k else None
    rows.append(target("Action Cable (Rails app) fan-out p50 / hub p50 >= 10 (5k)",
                       f"{cable_p50_5k} ms / {hub_p50_5k} ms = {speed:.1f}x" if speed else "not measured",
                       speed >= 10 if speed else None))
    cable_cpu, hub_cpu_5k = cpu_per_broadcast(cable, 5000), cpu_per_broadcast(hub, 5000)
    rows.append(target("(for information) server CPU per broadcast, Action Cable (Rails app) / hub (5k)",
                       f"{cable_cpu} ms / {hub_cpu_5k} ms = {cable_cpu / hub_cpu_5k:.1f}x" if cable_cpu and hub_cpu_5k
                       else "not measured", "info"))
    return rows


def heading(title: str, report: dict[str, Any]) -> list[str]:
    """A results page's title, when and how it was run, and on what machine."""
    return [
        f"# {title}",
        "",
        f"Run {report['finished_at']} with `{report['command']}`.",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items()) + ".",
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        *heading("Hub benchmark", report),
        "Servers ran one at a time on CPU 0, the load generator (one process of raw-socket asyncio",
        "Action Cable clients) on CPU 1. The hub and the floor ran in alternating rounds"
        f" ({report['rounds']['hub']} each; each Action Cable server {report['rounds']['actioncable']});",
        "every figure below is the median over the rounds, with the p50 of each round shown too.",
        "RSS is VmRSS of the server and its child processes once all N clients are subscribed;",
        "KB per connection is (RSS at N - idle RSS) / N. Connect rate is connections + confirmed",
        "subscriptions per second while growing to N (128 handshakes in flight, opened by",
        "bench/hub/connector.py on one epoll and only then handed to the load generator's asyncio loop),",
        "with the server's and the load generator's CPU time per connection over that growth: where the",
        "load generator's is the larger, the rate is its ceiling rather than the server's. Run one after",
        "the other, the same server's rate moves by a third between rounds on this (virtual) machine;",
        "bench/hub/connect.py measures the hub's connect cost against the floor's side by side. Fan-out is the time",
        "from sending the POST until every one of the N clients has the message, over"
        f" {report['broadcasts']} sequential broadcasts after one",
        "unmeasured warm-up (nearest-rank percentiles, so p99 is the slowest). The load generator's own",
        "per-message cost is part of every fan-out figure. Every server also sends its 3-second pings",
        "to every client during the measurement (Action Cable clients reconnect without them). Server CPU per",
        "broadcast is the server's user + system CPU time over the measured broadcasts divided by their",
        "number (pings included); on this shared virtual machine it varies less than wall time. MB means MiB.",
        "The Action Cable targets compare with actioncable-rails: a minimal Rails 6.1 application",
        "(bench/hub/actioncable_rails: active_record with the sqlite3 adapter, active_job,",
        "action_controller, action_view and action_cable, eager loaded, RAILS_ENV=production, log level",
        "warn, a fresh random SECRET_KEY_BASE from run.py) whose config.ru boots the application and",
        "serves ActionCable.server, the way a Rails app's standalone cable process does. It has no models,",
        "views or gems of its own, so its idle RSS is still below Showcase's cable process in production",
        "(138-153 MB). The bare rack app with only action_cable loaded (actioncable) is kept for",
        "information: it shows what Action Cable costs without an application.",
        "The hub runs as the image runs it: hub/*.py copied with hub.schema.json beside them, their",
        "bytecode written by compileall (as the Dockerfile does), under PYTHONDONTWRITEBYTECODE=1. Its",
        "idle RSS is also measured (idle only, once per round) from a copy without bytecode, which the",
        "hub compiles at every start. The hub and the floor bind port 0 and log the port they got; Puma",
        "gets a free port, and another if that one is taken before it binds (tests/ports.py).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    verdict = {True: "met", False: "**not met**", None: "not measured", "info": "-"}
    lines += [f"| {row['target']} | {row['measured']} | {verdict[row['met']]} |" for row in report["targets"]]
    lines += ["", "## Results", "",
              "| server | clients | RSS MB | KB/conn | connect/s | connect/s per round | CPU µs per connection:"
              " server / load generator | fan-out p50 ms | p99 ms | p50 per round "
              "| server CPU ms per broadcast | RSS after fan-out MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in report["servers"].items():
        if "error" in result:
            lines.append(f"| {result['title']} | error: {result['error']} | | | | | | | | | | |")
            continue
        lines.append(f"| {result['title']} | 0 (idle) | {result['idle_rss_kb'] / MB:.1f} | | | | | | | | | |")
        lines += [f"| {name} | error in one round: {error} | | | | | | | | | | |" for error in result["errors"]]
        for entry in result["levels"]:
            fanout = entry["fanout"]
            incomplete = f" ({fanout['incomplete']} incomplete)" if fanout["incomplete"] else ""
            lines.append(
                f"| {name} | {entry['clients']} | {entry['rss_kb'] / MB:.1f} | {entry['kb_per_connection']} "
                f"| {entry['connect_rate_per_s']:.0f} | {' / '.join(f'{rate:.0f}' for rate in entry['connect_rate_per_s_per_round'])} "
                f"| {entry['server_cpu_us_per_connection']} / {entry['loadgen_cpu_us_per_connection']} "
                f"| {fanout.get('p50_ms', '-')}{incomplete} "
                f"| {fanout.get('p99_ms', '-')} | {' / '.join(map(str, fanout['p50_ms_per_round']))} "
                f"| {fanout['server_cpu_ms_per_broadcast']} | {entry['rss_after_fanout_kb'] / MB:.1f} |"
            )
    sources = report.get("hub_idle_sources_only")
    if sources and sources.get("idle_rss_kb"):
        per_round = " / ".join(f"{kb / MB:.1f}" for kb in sources["idle_rss_kb_per_round"])
        lines.append(f"| {sources['title']} | 0 (idle) | {sources['idle_rss_kb'] / MB:.1f} (per round: {per_round}) "
                     "| | | | | | | | | |")
    subscribe = report.get("subscribe")
    if subscribe:
        lines += [
            "", "## Subscribe and unsubscribe on a connection that already holds N subscriptions", "",
            "In-process (bench/hub/subscribe.py, on CPU 0): an Action Cable session and the stream registry as",
            "the hub builds them; each iteration subscribes the connection to one more `$pubsub` stream and",
            "unsubscribes it, so it holds N before every timed operation. Each operation is timed alone",
            f"(time.perf_counter_ns, its own cost of {subscribe['timing_overhead_ns']} ns taken off);"
            f" {subscribe['iterations']} of each per round, {subscribe['rounds']} rounds,",
            "the median of the rounds' means. session: ActionCableSession.receive of the client's JSON",
            "command (parse, policy, registry, reply) with a no-op log; session + log: the same with the",
            "hub's text log line written to /dev/null, as the hub logs every subscribe and unsubscribe;",
            "registry: StreamRegistry.add / remove alone.",
            "",
            "| held (N) | path | subscribe µs | unsubscribe µs | subscribe µs per round | unsubscribe µs per round |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['held']} | {row['path']} | {row['subscribe_us']} | {row['unsubscribe_us']} "
            f"| {' / '.join(map(str, row['subscribe_us_per_round']))} "
            f"| {' / '.join(map(str, row['unsubscribe_us_per_round']))} |"
            for row in subscribe["results"]
        ]
    notes = [f"- {result['title']}: {result['note']}" for result in report["servers"].values() if result.get("note")]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "Commands:", ""]
    lines += [f"- {name}: `{result['command']}`" + (" (after `python -m compileall -q hub` there)" if name == "hub" else "")
              for name, result in report["servers"].items()]
    if sources:
        lines.append(f"- hub, sources compiled at start: `{sources['command']}`")
    if subscribe:
        lines.append(f"- subscribe / unsubscribe: `{subscribe['command']}`")
    return "\n".join(lines) + "\n"


def combine_idle(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [entry["idle_rss_kb"] for entry in entries if "idle_rss_kb" in entry]
    if not entries:
        return None
    return {
        "title": entries[0]["title"],
        "command": next((entry["command"] for entry in entries if "command" in entry), ""),
        "idle_rss_kb": median_of(ok) if ok else None,
        "idle_rss_kb_per_round": ok,
        "errors": [entry["error"] for entry in entries if "error" in entry],
    }


def subscribe_cost(iterations: int) -> dict[str, Any]:
    """bench/hub/subscribe.py, on the servers' CPU."""
    print("== subscribe / unsubscribe cost (in-process)", file=sys.stderr, flush=True)
    argv = [sys.executable, str(HERE / "subscribe.py"), "--iterations", str(iterations)]
    done = subprocess.run(argv, stdout=subprocess.PIPE, cwd=REPO, preexec_fn=pinned(SERVER_CPU), timeout=1800, check=True)
    return json.loads(done.stdout) | {"command": shlex.join([".venv/bin/python", "bench/hub/subscribe.py",
                                                             "--iterations", str(iterations)])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="floor,hub,actioncable,actioncable-rails", help="comma-separated, in run order")
    parser.add_argument("--levels", default="1000,5000,10000")
    parser.add_argument("--actioncable-levels", help="levels for both Action Cable servers (default: --levels)")
    parser.add_argument("--broadcasts", type=int, default=20, help="measured broadcasts per level")
    parser.add_argument("--rounds", type=int, default=5, help="runs of the hub and the floor (medians are reported)")
    parser.add_argument("--actioncable-rounds", type=int, default=1)
    parser.add_argument("--subscribe-iterations", type=int, default=20000,
                        help="subscribe + unsubscribe pairs per round of bench/hub/subscribe.py (0: skip it)")
    parser.add_argument("--output", default="hub", help="results as bench/results/OUTPUT.json and .md"
                        " (tmp/NAME for a partial run kept out of the repository)")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two CPUs: servers on CPU 0, the load generator on CPU 1")
    WORK.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, LOADGEN_CPU)
    levels = [int(part) for part in args.levels.split(",")]
    cable_levels = [int(part) for part in (args.actioncable_levels or args.levels).split(",")]
    cap_note = (f"run at {', '.join(map(str, cable_levels))} clients only: at 10k Puma's memory and fan-out time"
                " make the run too slow" if cable_levels != levels else "")
    factories = {
        "hub": lambda: hub_server(levels),
        "actioncable": lambda: actioncable_server(cable_levels, cap_note),
        "actioncable-rails": lambda: actioncable_rails_server(cable_levels, cap_note),
        "floor": lambda: floor_server(levels),
    }
    rounds = {
        "hub": args.rounds,
        "floor": args.rounds,
        "actioncable": args.actioncable_rounds,
        "actioncable-rails": args.actioncable_rounds,
    }
    names = [name for name in args.servers.split(",") if name]
    started = datetime.now(timezone.utc)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    sources_idle: list[dict[str, Any]] = []
    # Rounds alternate the servers, so slow drift of the (virtual) machine hits all of them.
    for round_index in range(max((rounds[name] for name in names), default=0)):
        for name in names:
            if round_index < rounds[name]:
                runs[name].append(measure(factories[name](), args.broadcasts))
            if name == "hub" and round_index < rounds[name]:
                sources_idle.append(idle_rss_kb(hub_server(levels, compiled=False)))
    servers = {name: combine(entries) for name, entries in runs.items()}
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": "",
        "command": shlex.join([".venv/bin/python", "bench/hub/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "broadcasts": args.broadcasts,
        "rounds": rounds,
        "servers": servers,
        "hub_idle_sources_only": combine_idle(sources_idle),
        "subscribe": subscribe_cost(args.subscribe_iterations) if args.subscribe_iterations else None,
    }
    report["targets"] = targets(report)
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (RESULTS / f"{args.output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.output}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
