"""How long a rollout takes on the local fleet, and how long `orchestrate --help` takes.

Run by hand: `.venv/bin/python bench/rollout.py` (writes bench/results/rollout.json
and bench/results/rollout.md).

- A wave of the 8 production regions of inventories/showcase.yml, deployed and
  gated in parallel (rollout.parallel: 8), against each region rolled out alone:
  the wave should take at most 1.5x the slowest single region, not the sum.
  Every measurement is a whole `orchestrate rollout` process on a fresh state
  directory (interpreter start, render, lock, journal, processes started, gates).
- `orchestrate --help`: the wall time of the whole process; target 0.15 s.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
REGIONS = ["ams", "dfw", "ewr", "iad", "nrt", "ord", "sjc", "syd"]
HELP_RUNS = 15
HELP_TARGET_SECONDS = 0.15
WAVE_FACTOR_TARGET = 1.5
STAGES = """\
  stages:
    - {name: all, environment: production, regions: [%s], bake: 0s}
""" % ", ".join(REGIONS)


def bench_inventory(directory: Path) -> Path:
    """The example inventory with one stage of all 8 production regions, gated all at once."""
    text = (REPO / "inventories" / "showcase.yml").read_text(encoding="utf-8")
    head, _, _ = text.partition("  stages:\n")
    shutil.copy(REPO / "inventories" / "showcases.yml", directory / "showcases.yml")
    path = directory / "showcase.yml"
    path.write_text(head + "  parallel: 8\n" + STAGES, encoding="utf-8")
    return path


def stop_fleet(state: Path) -> None:
    for home in sorted((state / "fleet").glob("*/*")):
        subprocess.run([sys.executable, "-m", "orchestrator.targets.localctl", "stop", "--home", str(home)],
                       capture_output=True, cwd=REPO, check=False)


def timed_rollout(inventory: Path, state: Path, selection: list[str]) -> tuple[float, float]:
    """Wall seconds of the rollout, and the CPU seconds it and the region processes it started used meanwhile."""
    command = [sys.executable, "-m", "orchestrator", "rollout", str(inventory), "--state", str(state), "--yes", *selection]
    cpu_before = _cpu_seconds(state)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(state) - cpu_before
    stop_fleet(state)
    if done.returncode != 0:
        raise SystemExit(f"rollout {' '.join(selection)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, cpu


def _cpu_seconds(state: Path) -> float:
    """The rollout process's CPU (it is our child) plus that of the regions' processes still running (not ours)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    for pid_file in state.glob("fleet/*/*/run/*.pid"):
        try:
            fields = Path(f"/proc/{pid_file.read_text().split()[0]}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def help_times() -> list[float]:
    times = []
    for _ in range(HELP_RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, check=True, cwd=REPO)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    os.environ.setdefault("CABLE_SIGNING_SECRET", os.urandom(16).hex())
    with tempfile.TemporaryDirectory() as scratch:
        inventory = bench_inventory(Path(scratch))
        single_runs = {region: timed_rollout(inventory, Path(scratch) / f"state-{region}", ["--region", f"production/{region}"])
                       for region in REGIONS}
        wave_runs = [timed_rollout(inventory, Path(scratch) / f"state-wave-{run}", ["--stage", "all"]) for run in range(3)]
    helps = help_times()
    singles = {region: wall for region, (wall, _) in single_runs.items()}
    waves = [wall for wall, _ in wave_runs]
    slowest = max(singles.values())
    wave = statistics.median(waves)
    wave_cpu = statistics.median(cpu for _, cpu in wave_runs)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "single_region_seconds": {region: round(seconds, 3) for region, seconds in singles.items()},
        "slowest_single_seconds": round(slowest, 3),
        "sum_of_singles_seconds": round(sum(singles.values()), 3),
        "wave_of_8_seconds": [round(seconds, 3) for seconds in waves],
        "wave_median_seconds": round(wave, 3),
        "wave_over_slowest_single": round(wave / slowest, 2),
        "single_region_cpu_seconds": {region: round(cpu, 3) for region, (_, cpu) in single_runs.items()},
        "wave_cpu_seconds": round(wave_cpu, 3),
        "wave_cpu_floor_seconds": round(wave_cpu / (os.cpu_count() or 1), 3),
        "wave_target_factor": WAVE_FACTOR_TARGET,
        "help_median_seconds": round(statistics.median(helps), 3),
        "help_max_seconds": round(max(helps), 3),
        "help_target_seconds": HELP_TARGET_SECONDS,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollout.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "rollout.md").write_text(summary(results), encoding="utf-8")
    print(summary(results))


def summary(results: dict) -> str:
    machine = results["machine"]
    wave_ok = results["wave_over_slowest_single"] <= WAVE_FACTOR_TARGET
    help_ok = results["help_median_seconds"] <= HELP_TARGET_SECONDS
    return (
        "# Rollout benchmark (`.venv/bin/python bench/rollout.py`)\n\n"
        f"Machine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}.\n\n"
        "| measurement | result | target |\n|---|---|---|\n"
        f"| one region alone, slowest of 8 | {results['slowest_single_seconds']:.2f} s | |\n"
        f"| the 8 regions one after the other (sum) | {results['sum_of_singles_seconds']:.2f} s | |\n"
        f"| a wave of 8 gated in parallel (median of 3) | {results['wave_median_seconds']:.2f} s "
        f"({results['wave_over_slowest_single']:.2f}x the slowest single) | <= {WAVE_FACTOR_TARGET}x: "
        f"{'met' if wave_ok else 'NOT met'} |\n"
        f"| CPU used by the wave (rollout + region processes) | {results['wave_cpu_seconds']:.2f} s: "
        f"at least {results['wave_cpu_floor_seconds']:.2f} s of wall time on {machine['cpus']} CPUs | |\n"
        f"| `orchestrate --help` (median of {HELP_RUNS}) | {results['help_median_seconds']:.3f} s "
        f"(max {results['help_max_seconds']:.3f}) | <= {HELP_TARGET_SECONDS} s: {'met' if help_ok else 'NOT met'} |\n"
    )


if __name__ == "__main__":
    main()
