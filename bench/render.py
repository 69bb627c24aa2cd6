"""How long validate + render take, on the real inventory and on synthetic large ones.

Run by hand: `.venv/bin/python bench/render.py` (writes bench/results/render.json
and bench/results/render.md). Each measurement is the wall time of a whole
`orchestrate` process, interpreter start included, as an operator sees it.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
RUNS = 5
TARGET_REAL_SECONDS = 0.5
# (regions, tenants): the last is the issue's 100 x 5,000; the others show how time grows.
SYNTHETIC_SIZES = [(25, 1250), (50, 2500), (100, 5000)]
EVENTS_PER_STUDIO = 5


def wall_times(arguments: list[str], runs: int = RUNS) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            command = [sys.executable, "-m", "orchestrator", *arguments]
            if arguments[0] == "render":
                command += ["--out", str(Path(scratch) / "out")]
            started = time.perf_counter()
            subprocess.run(command, cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return times


def synthetic_inventory(directory: Path, region_count: int, tenant_count: int) -> Path:
    codes = ["".join(letters) for letters in itertools.islice(itertools.product(string.ascii_lowercase, repeat=3), region_count)]
    showcases: dict[int, dict[str, dict]] = {2026: {}}
    for studio_index in range(tenant_count // EVENTS_PER_STUDIO):
        showcases[2026][f"studio{studio_index}"] = {
            ":name": f"Studio {studio_index}",
            ":region": codes[studio_index % region_count],
            ":events": {f"event{e}": {":name": f"Event {e}"} for e in range(EVENTS_PER_STUDIO)},
        }
    (directory / "showcases.yml").write_text(yaml.safe_dump(showcases), encoding="utf-8")
    inventory = yaml.safe_load((REPO / "inventories" / "showcase.yml").read_text())
    inventory["app"]["primary_region"] = codes[0]
    inventory["environments"] = {
        "staging": {"fly_app": "bench-staging", "regions": [codes[0]]},
        "production": {"fly_app": "bench", "regions": codes},
    }
    inventory["regions"] = [{"code": code, "memory_mb": 2048} for code in codes]
    inventory["rollout"]["stages"] = [
        {"name": "staging", "environment": "staging", "regions": [codes[0]], "bake": "1h"},
        {"name": "all", "environment": "production", "regions": codes, "bake": "1h"},
    ]
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    return path


def summarise(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "max_s": round(max(times), 4)}


def main() -> int:
    results: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "runs_per_measurement": RUNS,
        "command": "python bench/render.py",
    }
    real = REPO / "inventories" / "showcase.yml"
    results["real_validate"] = summarise(wall_times(["validate", str(real)]))
    results["real_render"] = summarise(wall_times(["render", str(real)]))
    results["interpreter_start"] = summarise(
        [t for t in (_time([sys.executable, "-c", "pass"]) for _ in range(RUNS))]
    )
    synthetic = []
    for region_count, tenant_count in SYNTHETIC_SIZES:
        with tempfile.TemporaryDirectory() as scratch:
            inventory = synthetic_inventory(Path(scratch), region_count, tenant_count)
            times = wall_times(["render", str(inventory)], runs=3)
            out = Path(scratch) / "measure"
            subprocess.run([sys.executable, "-m", "orchestrator", "render", str(inventory), "--out", str(out)],
                           cwd=REPO, check=True, capture_output=True)
            output_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            shutil.rmtree(out)
        synthetic.append({
            "regions": region_count, "tenants": tenant_count, **summarise(times),
            "output_mb": round(output_bytes / 1e6, 2),
            "seconds_per_output_mb": round(statistics.median(times) / (output_bytes / 1e6), 4),
        })
    results["synthetic_render"] = synthetic
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "render.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "render.md").write_text(_markdown(results), encoding="utf-8")
    print(_markdown(results))
    return 0


def _time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def _markdown(results: dict) -> str:
    real = results["real_render"]
    met = "met" if real["median_s"] < TARGET_REAL_SECONDS else "NOT met"
    lines = [
        "# Render benchmark",
        "",
        f"`{results['command']}` on {results['machine']['cpus']} CPUs, Python {results['machine']['python']}; "
        f"wall time of whole `orchestrate` processes, median of {results['runs_per_measurement']} runs.",
        "",
        "| what | median | min | max |",
        "| --- | --- | --- | --- |",
        f"| interpreter start alone | {results['interpreter_start']['median_s']} s | {results['interpreter_start']['min_s']} s | {results['interpreter_start']['max_s']} s |",
        f"| validate showcase.yml | {results['real_validate']['median_s']} s | {results['real_validate']['min_s']} s | {results['real_validate']['max_s']} s |",
        f"| render showcase.yml (9 regions, 369 tenants) | {real['median_s']} s | {real['min_s']} s | {real['max_s']} s |",
        "",
        f"Target: the real inventory renders in under {TARGET_REAL_SECONDS} s including interpreter start: **{met}**.",
        "",
        "Synthetic inventories (Showcase-format tenant file, 5 events per studio). Each region's",
        "navigator.yml lists its own tenants and a replay rule for every studio elsewhere, so the",
        "output grows with regions x studios; time per output MB shows whether rendering keeps pace.",
        "",
        "| regions | tenants | median | output | s per output MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["synthetic_render"]:
        lines.append(f"| {row['regions']} | {row['tenants']} | {row['median_s']} s | {row['output_mb']} MB | {row['seconds_per_output_mb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
