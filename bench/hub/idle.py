"""Idle hub benchmark: the resident memory of a started hub with no client, as the image runs it,
and what each module it imports costs. Writes bench/results/hub-idle.json and hub-idle.md.

As the image runs it: hub/*.py copied with hub.schema.json beside them, their bytecode written ahead
by compileall, run by Debian's python3 (/usr/bin/python3) under PYTHONDONTWRITEBYTECODE=1, with a
minimal hub.yml (a server section only: no broker, no channels, no secrets).

Run by hand (not a test):  .venv/bin/python bench/hub/idle.py [--starts 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import MB, RESULTS, WORK, Server, hub_copy, idle_rss_kb, machine  # noqa: E402  (the hub benchmark's helpers)

IMAGE_PYTHON = "/usr/bin/python3"
HUB_YML = "server:\n  listen: 0\n"
TARGET_MB = 13
# Run in place of `python3 -m hub`: times nothing, but reads the process's resident pages before and after
# each module's code runs; a module's own cost is that minus what the modules it imports cost. Written to
# the file named by $HUB_IMPORT_COSTS when the hub exits.
PROBE = """
import os, sys
_statm = os.open("/proc/self/statm", os.O_RDONLY)
_page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
def _rss_kb():
    return int(os.pread(_statm, 64, 0).split()[1]) * _page_kb
_stack, _costs = [[None, 0]], {}
class _Measured:
    def __init__(self, loader, name):
        self.loader, self.name = loader, name
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        _stack.append([self.name, 0])
        before = _rss_kb()
        try:
            self.loader.exec_module(module)
        finally:
            total = _rss_kb() - before
            _, inner = _stack.pop()
            _costs[self.name] = [total - inner, total]
            _stack[-1][1] += total
class _Finder:
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    if hasattr(spec.loader, "exec_module"):
                        spec.loader = _Measured(spec.loader, name)
                    return spec
        return None
sys.meta_path.insert(0, _Finder())
sys.path.insert(0, os.getcwd())
_start = _rss_kb()
from hub.__main__ import main
code = main(sys.argv[1:])
with open(os.environ["HUB_IMPORT_COSTS"], "w") as out:
    loaded = sorted(name for name, module in sys.modules.items() if module is not None)
    out.write(__import__("json").dumps({"start_kb": _start, "modules": _costs, "loaded": loaded}))
sys.exit(code)
"""


def image_hub(cwd: Path, hub_yml: Path, name: str, program: list[str], env: dict[str, str]) -> Server:
    """The hub copy in `cwd` started by Debian's python3 (`program`: -m hub, or -c PROBE) on port 0."""

    def command(port: int) -> list[str]:
        return [IMAGE_PYTHON, *program, "--hub-config", str(hub_yml), "--port", str(port), "--log-format", "json"]

    return Server(name, name, command, True, "", [], "/up", {"PYTHONDONTWRITEBYTECODE": "1", **env}, cwd=cwd)


def interpreter_rss() -> int:
    """Debian's python3 doing nothing: the floor under any Python hub."""
    process = subprocess.Popen([IMAGE_PYTHON, "-c", "import sys; print(flush=True); sys.stdin.read()"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdout.readline()  # it has started
        return int(next(line.split()[1] for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                        if line.startswith("VmRSS:")))
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(timeout=10)


def import_costs(cwd: Path, hub_yml: Path) -> dict[str, Any]:
    costs_path = WORK / "hub-idle-imports.json"
    costs_path.unlink(missing_ok=True)
    server = image_hub(cwd, hub_yml, "hub-idle-probe", ["-c", PROBE], {"HUB_IMPORT_COSTS": str(costs_path)})
    idle = idle_rss_kb(server)  # stops the hub, which then writes the costs
    if "error" in idle:
        raise RuntimeError(idle["error"])
    return json.loads(costs_path.read_text()) | {"idle_kb": idle["idle_rss_kb"]}


def markdown(report: dict[str, Any], top: int) -> str:
    idle = report["idle_rss_kb"]
    per_start = " / ".join(f"{kb / MB:.1f}" for kb in report["idle_rss_kb_per_start"])
    verdict = "met" if idle <= TARGET_MB * MB else f"**not met** (by {(idle - TARGET_MB * MB) / MB:.1f} MB)"
    costs = report["imports"]
    rows = sorted(costs["modules"].items(), key=lambda item: -item[1][0])
    lines = [
        "# Idle hub",
        "",
        f"Run {report['finished_at']} with `{report['command']}`.",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items())
        + f"; the hub's python: {report['image_python']}.",
        "",
        "The hub as the image runs it: hub/*.py copied with hub.schema.json beside them, bytecode written",
        f"ahead by compileall, `{IMAGE_PYTHON} -m hub` under PYTHONDONTWRITEBYTECODE=1, a hub.yml with only",
        "a server section (no broker, channels or secrets). Idle RSS is VmRSS once the hub listens and has",
        f"answered /up once; the median of {len(report['idle_rss_kb_per_start'])} starts. MB means MiB.",
        "",
        "| what | measured | target |",
        "|---|---|---|",
        f"| hub idle RSS | {idle / MB:.1f} MB (per start: {per_start}) | <= {TARGET_MB} MB: {verdict} |",
        f"| (for information) {IMAGE_PYTHON} doing nothing | {report['interpreter_rss_kb'] / MB:.1f} MB | - |",
        "",
        "## What each import costs",
        "",
        "One more start under a probe (`PROBE` in bench/hub/idle.py) that reads the resident pages before and",
        "after each module's code runs. Own: the module alone; with imports: together with the modules it",
        "imported first (a module shared by several is counted where it was first imported). Page-granular,",
        f"so small figures are approximate. The probe's process: {costs['start_kb'] / MB:.1f} MB before the hub's"
        f" first import, {costs['idle_kb'] / MB:.1f} MB idle; {len(costs['loaded'])} modules loaded.",
        "",
        "| module | own KB | with its imports KB |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {own} | {total} |" for name, (own, total) in rows[:top]]
    lines += ["", f"Modules imported at idle: {', '.join(costs['loaded'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=7, help="hub starts; the median idle RSS is reported")
    parser.add_argument("--top", type=int, default=40, help="modules listed in the import-cost table")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    cwd = hub_copy(True, python=IMAGE_PYTHON)
    hub_yml = WORK / "hub-idle.yml"
    hub_yml.write_text(HUB_YML)
    runs = [idle_rss_kb(image_hub(cwd, hub_yml, "hub-idle", ["-m", "hub"], {})) for _ in range(args.starts)]
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        sys.exit(f"the hub did not start: {errors[0]}")
    per_start = [run["idle_rss_kb"] for run in runs]
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "bench/hub/idle.py", *sys.argv[1:]]),
        "machine": {key: value for key, value in machine().items() if key in ("cpu", "cpus", "memory_mb", "kernel", "python")},
        "image_python": subprocess.run([IMAGE_PYTHON, "-VV"], capture_output=True, text=True, check=True).stdout.strip(),
        "hub_yml": HUB_YML,
        "idle_rss_kb": statistics.median(per_start),
        "idle_rss_kb_per_start": per_start,
        "target_mb": TARGET_MB,
        "interpreter_rss_kb": interpreter_rss(),
        "imports": import_costs(cwd, hub_yml),
    }
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (RESULTS / "hub-idle.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "hub-idle.md").write_text(markdown(report, args.top))
    print(markdown(report, args.top))


if __name__ == "__main__":
    main()
