"""What `orchestrate watch` itself costs per watched region: CPU and resident memory, at a 15 s interval.

Run by hand: `.venv/bin/python bench/watch.py` (about 20 minutes; writes bench/results/watch.json
and bench/results/watch.md). `--interval 2 --rounds 5 --sizes 8` is a quick run: printed, not
written, because the result that counts is at the 15 s default.

For N = 8 and N = 100 regions, on the local fleet (every region its own front process on loopback,
integrated mode, Showcase's inventory with its 369 tenants spread over N synthetic regions, one
stage of the N regions baking for a day), the real `orchestrate watch` runs as a process in three
phases, each for `--rounds` whole rounds after two rounds of warm-up:

- idle: the same inventory and journal before anything is deployed: it watches 0 regions. This is
  the baseline subtracted: cost per watched region = (cost of a phase - idle) / N.
- fresh: right after the rollout of the N regions: the rules see only a few samples.
- full: the journal holds `samples_per_region` samples of every region (the bound, 8.3 h at 15 s;
  copies of the region's own real samples from the fresh phase, back-dated, with the rollout's
  steps back-dated to match), as it does from the ninth hour of a bake on: every round's memory
  trend is fitted to an hour of samples, the samples query walks the region's whole history, and
  the first round thins it (which shows that the bound works).

What is measured, from outside the watcher: its CPU (utime + stime + cutime + cstime of
/proc/PID/stat over the window, all its threads) as % of one core; its resident memory (VmRSS
polled every 0.1 s, and VmHWM, the peak of its life); how long each round takes (the main
thread's run time in /proc/PID/task/PID/schedstat, polled every 5 ms: a round is one busy
stretch); the samples' timestamps in the journal; the journal's growth; and, apart, the CPU the
regions' own processes spent answering the probes. Every process it starts is stopped at the end;
everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SIZES = (8, 100)
INTERVAL_SECONDS = 15.0
ROUNDS = 10
WARMUP_ROUNDS = 2
SAMPLES_PER_REGION = 2000
TARGET_CPU_PERCENT = 1.0  # of one core, per watched region
TARGET_RSS_MB = 2.0  # resident, per watched region
SCHEDSTAT_POLL_SECONDS = 0.005
STATUS_POLL_SECONDS = 0.1
TICKS = os.sysconf("SC_CLK_TCK")


# --- the fleet -----------------------------------------------------------------------------------


def region_codes(count: int) -> list[str]:
    return ["".join(letters) for letters in itertools.islice(itertools.product(string.ascii_lowercase, repeat=3), count)]


def bench_inventory(directory: Path, count: int, interval: float) -> Path:
    """Showcase's inventory and tenants, the studios dealt over `count` regions, one stage of them all baking
    a day, watched every `interval` seconds."""
    codes = region_codes(count)
    dealt = itertools.count()
    tenants = re.sub(r"(?m)^(\s+:region: )\w+$", lambda match: match.group(1) + codes[next(dealt) % count],
                     (REPO / "inventories" / "showcases.yml").read_text(encoding="utf-8"))
    (directory / "showcases.yml").write_text(tenants, encoding="utf-8")
    inventory = yaml.safe_load((REPO / "inventories" / "showcase.yml").read_text(encoding="utf-8"))
    inventory["app"]["primary_region"] = codes[0]
    production = inventory["environments"]["production"]
    production.pop("ssh", None)
    inventory["environments"] = {"production": {**production, "regions": codes}}
    inventory["regions"] = [{"code": code} for code in codes]
    inventory["rollout"]["stages"] = [{"name": "all", "environment": "production", "regions": codes, "bake": "1d"}]
    inventory["rollout"]["watch"] = {"interval_seconds": interval, "samples_per_region": SAMPLES_PER_REGION}
    path = directory / "showcase.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    return path


def orchestrate(*arguments: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, "-m", "orchestrator", *arguments], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"orchestrate {' '.join(arguments)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def stop_fleet(state: Path) -> None:
    for home in sorted((state / "fleet").glob("*/*")):
        subprocess.run([sys.executable, "-m", "orchestrator.targets.localctl", "stop", "--home", str(home)],
                       capture_output=True, cwd=REPO, check=False, timeout=120)


def fleet_cpu_seconds(state: Path) -> float:
    """CPU of the regions' processes (localctl's pid files), which answer the watcher's probes."""
    total = 0.0
    for pid_file in state.glob("fleet/*/*/run/*.pid"):
        try:
            total += _cpu_ticks(int(pid_file.read_text().split()[0]), children=False) / TICKS
        except (OSError, IndexError, ValueError):
            continue
    return total


def fleet_rss_mb(state: Path) -> float:
    total = 0.0
    for pid_file in state.glob("fleet/*/*/run/*.pid"):
        try:
            total += _status(int(pid_file.read_text().split()[0])).get("VmRSS", 0) / 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


# --- the watcher's process, seen from /proc ------------------------------------------------------


def _cpu_ticks(pid: int, children: bool = True) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command: state is field 3, so utime (14), stime (15), cutime (16), cstime (17) are 11..14 here.
    return sum(int(value) for value in fields[11:15 if children else 13])


def _status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            values[name] = int(rest.split()[0])  # kB, or a count
    return values


def _main_thread_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0])


@dataclass
class Observer:
    """Polls the watcher's main thread's run time (rounds) and its memory, in a thread of its own."""

    pid: int
    busy: list[float] = field(default_factory=list)  # wall times at which the main thread had run since the last poll
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    threads: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        last_ns = None
        next_status = 0.0
        while not self.done.is_set():
            now = time.time()
            try:
                ran = _main_thread_ns(self.pid)
                if last_ns is not None and ran != last_ns:
                    self.busy.append(now)
                last_ns = ran
                if now >= next_status:
                    status = _status(self.pid)
                    self.rss_kb.append((now, status["VmRSS"]))
                    self.threads = max(self.threads, status["Threads"])
                    next_status = now + STATUS_POLL_SECONDS
            except (OSError, KeyError, ValueError):
                return
            time.sleep(SCHEDSTAT_POLL_SECONDS)


def busy_stretches(moments: list[float], start: float, end: float, gap: float) -> list[tuple[float, float]]:
    """The stretches of `moments` within [start, end) with no pause longer than `gap`: the rounds."""
    stretches: list[list[float]] = []
    for moment in (m for m in moments if start <= m < end):
        if stretches and moment - stretches[-1][1] <= gap:
            stretches[-1][1] = moment
        else:
            stretches.append([moment, moment])
    return [(first, last + SCHEDSTAT_POLL_SECONDS) for first, last in stretches]


# --- the journal, read as any SQLite client would -------------------------------------------------


def query(state: Path, sql: str, *parameters: object) -> list[tuple]:
    connection = sqlite3.connect(f"file:{state / 'journal.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def journal_bytes(state: Path) -> int:
    """Bytes of pages in use, the write-ahead log's pages included (what the file is once checkpointed)."""
    ((pages,),) = query(state, "PRAGMA page_count")
    ((free,),) = query(state, "PRAGMA freelist_count")
    ((size,),) = query(state, "PRAGMA page_size")
    return (pages - free) * size


def sample_counts(state: Path) -> list[int]:
    return [count for (count,) in query(state, "SELECT count(*) FROM samples GROUP BY environment, region")]


def fill_to_bound(state: Path, interval: float, keep: int) -> dict[str, object]:
    """Give every region `keep` samples, the last `keep` rounds' worth, as if it had been watched that long: its own
    real samples cycled, at the watcher's interval, ending now; the rollout's steps moved back to before them."""
    now = datetime.now(UTC)
    shift = timedelta(seconds=keep * interval + 60)
    connection = sqlite3.connect(state / "journal.sqlite3", timeout=30)
    try:
        with connection:
            real: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for environment, region, machine, data in connection.execute(
                    "SELECT environment, region, machine, data FROM samples ORDER BY id"):
                real.setdefault((environment, region), []).append((machine, data))
            connection.execute("DELETE FROM samples")
            connection.execute("DELETE FROM watched")
            for row, started, updated in connection.execute("SELECT row, started_at, updated_at FROM steps").fetchall():
                connection.execute("UPDATE steps SET started_at = ?, updated_at = ? WHERE row = ?",
                                   (_moved(started, shift), _moved(updated, shift), row))
            for row, at in connection.execute("SELECT id, at FROM transitions").fetchall():
                connection.execute("UPDATE transitions SET at = ? WHERE id = ?", (_moved(at, shift), row))
            first = now - timedelta(seconds=(keep - 1) * interval)
            rows = []
            for index in range(keep):
                at = _utc((first + timedelta(seconds=index * interval)).isoformat())
                for (environment, region), samples in real.items():
                    machine, data = samples[index % len(samples)]
                    rows.append((environment, region, machine, at, data))
            connection.executemany("INSERT INTO samples (environment, region, machine, at, data) VALUES (?, ?, ?, ?, ?)",
                                   rows)
            connection.executemany("INSERT INTO watched (environment, region, started_at, last_at) VALUES (?, ?, ?, ?)",
                                   [(environment, region, _utc(first.isoformat()), _utc(now.isoformat()))
                                    for environment, region in real])
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return {"samples_per_region": keep, "hours": round(keep * interval / 3600, 2), "regions": len(real),
            "journal_bytes": journal_bytes(state)}


def _moved(text: str, shift: timedelta) -> str:
    return _utc((datetime.fromisoformat(text) - shift).isoformat())


def _utc(text: str) -> str:
    """As the journal stores a moment."""
    return datetime.fromisoformat(text).astimezone(UTC).isoformat(timespec="microseconds")


def rounds_from_samples(state: Path, start: float, end: float, interval: float) -> list[dict[str, float]]:
    """Each round's samples in [start, end): how many, and from its first sample's moment to its last's."""
    moments = sorted(datetime.fromisoformat(at).timestamp() for (at,) in query(state, "SELECT at FROM samples"))
    rounds: list[list[float]] = []
    for moment in (m for m in moments if start <= m < end):
        if rounds and moment - rounds[-1][-1] < interval / 2:
            rounds[-1].append(moment)
        else:
            rounds.append([moment])
    return [{"samples": len(found), "spread_s": found[-1] - found[0]} for found in rounds]


# --- one phase: the watcher as a process, measured over whole rounds ------------------------------


def measure_phase(inventory: Path, state: Path, interval: float, rounds: int, watched: int) -> dict[str, object]:
    command = [sys.executable, "-m", "orchestrator", "watch", str(inventory), "--state", str(state)]
    lines: list[tuple[float, str]] = []
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        reader = threading.Thread(target=lambda: lines.extend((time.time(), line) for line in process.stdout),
                                  daemon=True)
        reader.start()
        observer = Observer(process.pid)
        observer.start()
        started = _wait_for(lambda: next((at for at, line in lines if "watch started" in line), None), 60, process, lines)
        # Round k starts (k - 1) intervals after the first: the window holds `rounds` whole rounds after the warm-up.
        window_start = started + (WARMUP_ROUNDS - 0.5) * interval
        window_end = window_start + rounds * interval
        _sleep_until(window_start)
        cpu_before, fleet_before, journal_before = _cpu_ticks(process.pid), fleet_cpu_seconds(state), journal_bytes(state)
        counts_before = sample_counts(state)
        _sleep_until(window_end)
        cpu_after, fleet_after, journal_after = _cpu_ticks(process.pid), fleet_cpu_seconds(state), journal_bytes(state)
        status = _status(process.pid)
        observer.done.set()
        counts_after = sample_counts(state)
        if process.poll() is not None:
            raise SystemExit("the watcher ended early:\n" + "".join(line for _, line in lines))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    window = window_end - window_start
    in_window = [kb for at, kb in observer.rss_kb if window_start <= at < window_end]
    cpu_seconds = (cpu_after - cpu_before) / TICKS
    # The window starts and ends half-way between two rounds: it holds `rounds` whole ones.
    durations = [last - first for first, last in busy_stretches(observer.busy, window_start, window_end, interval / 3)]
    by_samples = rounds_from_samples(state, window_start, window_end, interval)
    said = [line.strip() for _, line in lines if "watching" not in line and "watch st" not in line
            and "nothing to watch" not in line]
    return {
        "regions_watched": watched,
        "window_seconds": round(window, 1),
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_percent_of_core": round(100 * cpu_seconds / window, 3),
        "rss_mb_mean": round(statistics.mean(in_window) / 1024, 2),
        "rss_mb_max": round(max(in_window) / 1024, 2),
        "rss_mb_at_end": round(status["VmRSS"] / 1024, 2),
        "rss_mb_growth_in_window": round((in_window[-1] - in_window[0]) / 1024, 2),
        "hwm_mb": round(status["VmHWM"] / 1024, 2),
        "threads_max": observer.threads,
        "rounds": len(durations),
        "round_seconds_median": round(statistics.median(durations), 3) if durations else None,
        "round_seconds_max": round(max(durations), 3) if durations else None,
        "cpu_seconds_per_round": round(cpu_seconds / rounds, 4),
        "samples_per_round": [round_["samples"] for round_ in by_samples],
        "sample_spread_seconds_median": round(statistics.median(r["spread_s"] for r in by_samples), 3) if by_samples else None,
        "journal_growth_bytes": journal_after - journal_before,
        "journal_bytes_at_end": journal_after,
        "samples_per_region_before": [min(counts_before, default=0), max(counts_before, default=0)],
        "samples_per_region_after": [min(counts_after, default=0), max(counts_after, default=0)],
        "regions_cpu_percent_of_core": round(100 * (fleet_after - fleet_before) / window, 3),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the machine meanwhile
        "printed": said[:5],
    }


def _wait_for(probe, timeout: float, process: subprocess.Popen, lines: list) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("the watcher did not start:\n" + "".join(line for _, line in lines))


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 1.0))


def per_region(phase: dict, idle: dict, count: int) -> dict[str, float]:
    return {
        "cpu_percent_of_core": round((phase["cpu_percent_of_core"] - idle["cpu_percent_of_core"]) / count, 4),
        "cpu_ms_per_round": round(1000 * (phase["cpu_seconds_per_round"] - idle["cpu_seconds_per_round"]) / count, 2),
        "rss_mb": round((phase["hwm_mb"] - idle["hwm_mb"]) / count, 3),
        "journal_bytes_per_hour": round(phase["journal_growth_bytes"] / count * 3600 / phase["window_seconds"]),
        "regions_cpu_percent_of_core": round(phase["regions_cpu_percent_of_core"] / count, 4),
    }


def bench_size(count: int, interval: float, rounds: int, phases: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as scratch:
        directory = Path(scratch)
        inventory = bench_inventory(directory, count, interval)
        state = directory / "state"
        result: dict[str, object] = {"regions": count}
        try:
            print(f"N={count}: idle (nothing deployed) ...", flush=True)
            result["idle"] = idle = measure_phase(inventory, state, interval, rounds, 0)
            started = time.perf_counter()
            orchestrate("rollout", str(inventory), "--state", str(state), "--stage", "all", "--yes")
            result["rollout_seconds"] = round(time.perf_counter() - started, 1)
            result["fleet_rss_mb"] = round(fleet_rss_mb(state), 1)
            for name in phases:
                if name == "full":
                    print(f"N={count}: filling the journal to the bound ...", flush=True)
                    result["filled"] = fill_to_bound(state, interval, SAMPLES_PER_REGION)
                print(f"N={count}: {name} ...", flush=True)
                result[name] = phase = measure_phase(inventory, state, interval, rounds, count)
                result[f"{name}_per_region"] = per_region(phase, idle, count)
                print(json.dumps({name: phase, "per_region": result[f"{name}_per_region"]}), flush=True)
            sample = query(state, "SELECT avg(length(data)) FROM samples")[0][0]
            result["sample_bytes_mean"] = round(sample or 0)
            result["navigator_yml_bytes"] = (state / "fleet" / "production" / "aaa" / "config" / "navigator.yml").stat().st_size
        finally:
            stop_fleet(state)
    return result


# --- results ---------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(memory_kb / 1024**2, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def sources_digest() -> str:
    """Which code was measured: a digest of the tool's and the hub's sources (the tree may hold uncommitted work)."""
    digest = hashlib.sha256()
    for path in sorted([*(REPO / "orchestrator").rglob("*.py"), *(REPO / "hub").rglob("*.py")]):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def verdict(per: dict[str, float]) -> str:
    cpu_ok = per["cpu_percent_of_core"] <= TARGET_CPU_PERCENT
    rss_ok = per["rss_mb"] <= TARGET_RSS_MB
    return "met" if cpu_ok and rss_ok else "NOT met (" + ", ".join(
        what for what, ok in (("CPU", cpu_ok), ("memory", rss_ok)) if not ok) + ")"


def summary(results: dict) -> str:
    box = results["machine"]
    lines = [
        "# Watch benchmark (`.venv/bin/python bench/watch.py`)",
        "",
        f"Machine: {box['cpus']} CPUs ({box['cpu_model']}), {box['memory_gb']} GB, Python {box['python']}, "
        f"{box['platform']}.",
        "",
        f"The real `orchestrate watch` as a process, every {results['interval_seconds']:g} s, over "
        f"{results['rounds']} whole rounds ({results['rounds'] * results['interval_seconds']:g} s) after "
        f"{WARMUP_ROUNDS} of warm-up, watching N regions of a local fleet (each its own front process, integrated "
        f"mode, Showcase's inventory and 369 tenants dealt over the N regions, rollout.parallel "
        f"{results['parallel']}). Per region = (phase - idle) / N, idle being the same watcher, inventory and "
        f"journal with nothing deployed (0 regions watched). *fresh*: just after the rollout; *full*: the journal "
        f"holding the bound of {SAMPLES_PER_REGION} samples per region (8.3 h at 15 s), as from a bake's ninth hour "
        f"on. Memory is the watcher's peak resident size (VmHWM).",
        "",
        f"Targets per watched region: at most {TARGET_CPU_PERCENT:g} % of a core and {TARGET_RSS_MB:g} MB resident.",
        "",
        "| N | phase | CPU, % of a core | per region | RSS peak | per region | round (median / max) | CPU per round | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        idle = size["idle"]
        lines.append(f"| {size['regions']} | idle (0 watched) | {idle['cpu_percent_of_core']:.3f} % | | "
                     f"{idle['hwm_mb']:.1f} MB | | {_round_text(idle)} | {1000 * idle['cpu_seconds_per_round']:.1f} ms | |")
        for name in ("fresh", "full"):
            if name not in size:
                continue
            phase, per = size[name], size[f"{name}_per_region"]
            lines.append(
                f"| {size['regions']} | {name} | {phase['cpu_percent_of_core']:.2f} % | "
                f"{per['cpu_percent_of_core']:.3f} % | {phase['hwm_mb']:.1f} MB | {per['rss_mb']:.2f} MB | "
                f"{_round_text(phase)} | {1000 * phase['cpu_seconds_per_round']:.0f} ms | {verdict(per)} |")
    lines += ["", "| N | phase | journal growth per region per hour | samples per region (before, after) | "
              "regions' own CPU answering the probes, per region | watcher threads (max) |", "|---|---|---|---|---|---|"]
    for size in results["sizes"]:
        for name in ("fresh", "full"):
            if name in size:
                phase, per = size[name], size[f"{name}_per_region"]
                lines.append(f"| {size['regions']} | {name} | {per['journal_bytes_per_hour'] / 1024:.0f} KB | "
                             f"{_counts(phase['samples_per_region_before'])} -> "
                             f"{_counts(phase['samples_per_region_after'])} | "
                             f"{per['regions_cpu_percent_of_core']:.3f} % | {phase['threads_max']} |")
    lines += ["", *notes(results)]
    return "\n".join(lines).rstrip() + "\n"


def notes(results: dict) -> list[str]:
    """What the tables imply, computed from them."""
    interval = results["interval_seconds"]
    found = []
    for size in results["sizes"]:
        count = size["regions"]
        for name in ("fresh", "full"):
            if name in size:
                per = size[f"{name}_per_region"]
                found.append(f"- N = {count}, {name}: {per['cpu_ms_per_round']:.0f} ms of CPU per region per round.")
    fresh = [size for size in results["sizes"] if "fresh" in size]
    if len(fresh) >= 2:
        small, large = fresh[0], fresh[-1]
        slope = (large["fresh"]["hwm_mb"] - small["fresh"]["hwm_mb"]) / (large["regions"] - small["regions"])
        fixed = small["fresh"]["hwm_mb"] - slope * small["regions"] - small["idle"]["hwm_mb"]
        found.append(f"- Memory: from N = {small['regions']} to N = {large['regions']} the peak grows {1024 * slope:.0f} KB "
                     f"per region; watching anything at all costs about {fixed:.1f} MB more than watching nothing "
                     f"(probing's threads and libraries), which is most of N = {small['regions']}'s per-region figure.")
        time_slope = ((large["fresh"]["round_seconds_median"] - small["fresh"]["round_seconds_median"])
                      / (large["regions"] - small["regions"]))
        if time_slope > 0:
            found.append(f"- A round takes about {1000 * time_slope:.0f} ms more per region (the probes' Python work, "
                         f"one interpreter lock for rollout.parallel {results['parallel']} threads): at this rate a "
                         f"round would outgrow the {interval:g} s interval at about {interval / time_slope:.0f} regions.")
    for size in results["sizes"]:
        filled = size.get("filled")
        if filled and "full" in size:
            found.append(
                f"- N = {size['regions']}: the journal at the bound of {filled['samples_per_region']} samples per region "
                f"({filled['samples_per_region'] * interval / 3600:.1f} h at {interval:g} s) is "
                f"{filled['journal_bytes'] / 1e6:.1f} MB ({filled['journal_bytes'] / filled['regions'] / 1e6:.2f} MB per "
                f"region, {size['sample_bytes_mean']} B of JSON per sample); its first round thinned every region to "
                f"{size['full']['samples_per_region_before'][0] - WARMUP_ROUNDS + 1} samples, so the bound holds.")
    loads = [size[name]["load_average_1min_at_end"] for size in results["sizes"] for name in ("idle", "fresh", "full")
             if name in size]
    found.append(f"- Other work shared the {results['machine']['cpus']} CPUs (1-minute load average at the end of the "
                 f"windows: {min(loads):.2f}-{max(loads):.2f}); CPU time is the watcher's own, round durations include "
                 f"waiting for a CPU.")
    found.append(f"- Code measured: sources digest {results['sources_sha256']} (orchestrator/ and hub/).")
    return found


def _round_text(phase: dict) -> str:
    if phase["round_seconds_median"] is None:
        return "-"
    return f"{phase['round_seconds_median']:.2f} / {phase['round_seconds_max']:.2f} s"


def _counts(pair: list[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=INTERVAL_SECONDS,
                        help="rollout.watch.interval_seconds (default 15; results are written only at 15)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="whole rounds measured per phase (default 10)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="region counts (default 8,100)")
    parser.add_argument("--phases", default="fresh,full", help="after the idle baseline (default fresh,full)")
    options = parser.parse_args()
    os.environ.setdefault("CABLE_SIGNING_SECRET", os.urandom(16).hex())
    sizes = [int(size) for size in options.sizes.split(",")]
    phases = [name for name in options.phases.split(",") if name]
    results: dict[str, object] = {
        "machine": machine(),
        "command": "python bench/watch.py " + " ".join(sys.argv[1:]),
        "sources_sha256": sources_digest(),
        "interval_seconds": options.interval,
        "rounds": options.rounds,
        "parallel": yaml.safe_load((REPO / "inventories" / "showcase.yml").read_text())["rollout"].get("parallel", 4),
        "targets": {"cpu_percent_of_core_per_region": TARGET_CPU_PERCENT, "rss_mb_per_region": TARGET_RSS_MB},
        "sizes": [bench_size(size, options.interval, options.rounds, phases) for size in sizes],
    }
    text = summary(results)
    print(text)
    if options.interval == INTERVAL_SECONDS and sizes == list(SIZES):
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "watch.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (RESULTS / "watch.md").write_text(text, encoding="utf-8")
    else:
        print(f"(not written to {RESULTS}: the results that count are at a {INTERVAL_SECONDS:g} s interval, "
              f"N = {', '.join(map(str, SIZES))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
