"""What `orchestrate plan` shows: the schedule, each step's operations, gates and file diffs, and the memory projection.

Three renderings of one `Plan` (text for a terminal and logs, plain JSON, one
self-contained HTML page). Everything here is a pure function of the plan: no
file, network or environment variable is read.
"""

from __future__ import annotations

import difflib
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from orchestrator.terminal import plural
from orchestrator.rollout.model import (
    Command,
    Deployment,
    Gate,
    Operation,
    Plan,
    RegionMemory,
    RegionState,
    ScheduledStage,
    Step,
    WriteFile,
    content_hash,
)

FileKind = Literal["added", "changed", "removed"]
LineClass = Literal["head", "hunk", "add", "del", "ctx", "note"]

PROCESSES = ("navigator", "cable_server", "redis")
DIFF_CONTEXT = 2
NO_NEWLINE = "\\ No newline at end of file"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class FileDiff:
    """One configuration file a step changes, as a unified diff of its text in that region."""

    name: str
    kind: FileKind
    diff: str
    added_lines: int
    removed_lines: int


@dataclass(frozen=True)
class ProcessRow:
    """One process's resident memory (MB): per region before and after, and times the number of regions."""

    process: str  # "navigator", "cable_server", "redis" or "total"
    before: float
    after: float
    fleet_before: float
    fleet_after: float


@dataclass(frozen=True)
class MemorySummary:
    regions: int
    before_mb: float
    after_mb: float
    saving_mb: float
    saving_percent: float
    uniform: bool  # every region has the same figures; otherwise the per-region rows are averages
    processes: tuple[ProcessRow, ...]


# --------------------------------------------------------------------------- diffs


def file_diffs(step: Step) -> list[FileDiff]:
    """The files `step` changes in its region, in name order; unchanged files are left out."""
    before = step.current.files if step.current is not None else {}
    after = step.desired.files
    diffs = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind: FileKind = "added" if old is None else "removed" if new is None else "changed"
        diffs.append(_file_diff(str(step.key), name, kind, old or "", new or ""))
    return diffs


def _file_diff(region: str, name: str, kind: FileKind, old: str, new: str) -> FileDiff:
    lines = list(
        difflib.unified_diff(
            _lines(old), _lines(new), f"a/{region}/{name}", f"b/{region}/{name}", n=DIFF_CONTEXT, lineterm=""
        )
    )
    body = lines[2:]  # the first two are the ---/+++ headers, whatever the file's lines look like
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return FileDiff(name, kind, "\n".join(lines), added, removed)


def _lines(text: str) -> list[str]:
    """The text's lines; a last line without a newline is marked, so a change of only that shows in the diff."""
    lines = text.splitlines()
    if text and not text.endswith(("\n", "\r")):
        lines[-1] += f"\n{NO_NEWLINE}"
    return lines


def diff_lines(diff: str) -> list[tuple[LineClass, str]]:
    """Each line of a unified diff with its role, judged by position (a removed line "-- x" reads "--- x")."""
    classified: list[tuple[LineClass, str]] = []
    for index, line in enumerate(diff.split("\n") if diff else []):
        classified.append((_line_class(index, line), line))
    return classified


def _line_class(index: int, line: str) -> LineClass:
    if index < 2:
        return "head"
    if line.startswith("@@"):
        return "hunk"
    if line == NO_NEWLINE:
        return "note"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"


def _line_count(text: str) -> int:
    return len(text.splitlines())


# --------------------------------------------------------------------------- memory


def memory_summary(memory: Sequence[RegionMemory]) -> MemorySummary:
    """Fleet totals and the per-process table: per region (or the average when regions differ) and x regions."""
    count = len(memory)
    before = sum(region.before_total for region in memory)
    after = sum(region.after_total for region in memory)
    saving, percent = _saving(before, after)
    rows = [_process_row(name, memory) for name in _process_names(memory)]
    rows.append(_total_row(rows))
    return MemorySummary(count, before, after, saving, percent, _uniform(memory), tuple(rows))


def _saving(before: float, after: float) -> tuple[float, float]:
    saving = before - after
    return saving, (saving / before * 100.0 if before else 0.0)


def _process_names(memory: Sequence[RegionMemory]) -> list[str]:
    extra = {name for region in memory for name in (*region.before, *region.after)} - set(PROCESSES)
    return [*PROCESSES, *sorted(extra)]


def _process_row(name: str, memory: Sequence[RegionMemory]) -> ProcessRow:
    fleet_before = sum(region.before.get(name, 0.0) for region in memory)
    fleet_after = sum(region.after.get(name, 0.0) for region in memory)
    count = len(memory) or 1
    return ProcessRow(name, fleet_before / count, fleet_after / count, fleet_before, fleet_after)


def _total_row(rows: Sequence[ProcessRow]) -> ProcessRow:
    return ProcessRow(
        "total",
        sum(row.before for row in rows),
        sum(row.after for row in rows),
        sum(row.fleet_before for row in rows),
        sum(row.fleet_after for row in rows),
    )


def _uniform(memory: Sequence[RegionMemory]) -> bool:
    figures = [_figures(region) for region in memory]
    return all(_same(figures[0], other) for other in figures[1:])


def _figures(region: RegionMemory) -> dict[tuple[str, str], float]:
    names = set(region.before) | set(region.after)
    return {
        (side, name): values.get(name, 0.0)
        for side, values in (("before", region.before), ("after", region.after))
        for name in names
    }


def _same(one: Mapping[tuple[str, str], float], other: Mapping[tuple[str, str], float]) -> bool:
    keys = set(one) | set(other)
    return all(math.isclose(one.get(key, 0.0), other.get(key, 0.0), abs_tol=1e-9) for key in keys)


# --------------------------------------------------------------------------- shared formatting


def format_date(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM UTC`; a naive datetime is taken to be UTC already."""
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso_date(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _mb(value: float) -> str:
    return f"{value:.1f}"


ASSUMED_BASELINE = "action_cable*"  # nothing recorded yet: counted as the baseline it replaces


def _mode(mode: str | None) -> str:
    return mode if mode is not None else ASSUMED_BASELINE


def _now(step: Step) -> str:
    return step.current.describe() if step.current is not None else "nothing yet"


def _step_title(step: Step) -> str:
    stage = f", stage {step.stage}" if step.stage else ""
    return f"{step.key}  ({step.action}{stage})"


def _unchanged(step: Step) -> bool:
    """The region runs exactly what the step deploys: running it again changes no file (it would gate it again)."""
    current = step.current
    return (current is not None and current.hashes == step.desired.hashes and current.images == step.desired.images
            and current.describe() == step.desired.describe())


def _memory_row(region: RegionMemory) -> list[str]:
    saving, percent = _saving(region.before_total, region.after_total)
    return [
        str(region.key),
        _mode(region.before_mode),
        region.after_mode,
        _mb(region.before_total),
        _mb(region.after_total),
        _mb(saving),
        _mb(percent),
    ]


MEMORY_HEADERS = ["region", "before", "after", "before MB", "after MB", "saving MB", "saving %"]
SCHEDULE_HEADERS = ["stage", "environment", "regions", "bake", "starts", "bake ends", "status"]


def _schedule_row(stage: ScheduledStage) -> list[str]:
    return [
        stage.name,
        stage.environment,
        ", ".join(stage.regions),
        stage.bake,
        format_date(stage.starts),
        format_date(stage.bake_ends),
        stage.status,
    ]


def _fleet_line(summary: MemorySummary) -> str:
    return (
        f"fleet ({plural(summary.regions, 'region')}): {_mb(summary.before_mb)} MB -> {_mb(summary.after_mb)} MB, "
        f"saving {_mb(summary.saving_mb)} MB ({_mb(summary.saving_percent)} %)"
    )


def _per_region_note(summary: MemorySummary) -> str:
    return "every region alike" if summary.uniform else "average per region; the regions differ"


def _new_file(diff: FileDiff) -> str:
    return f"new file {diff.name}, {plural(diff.added_lines, 'line')}"


# --------------------------------------------------------------------------- text


GREEN, RED, RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"


def plan_text(plan: Plan, *, color: bool = False) -> str:
    """The plan for a terminal or a log; `color` paints added diff lines green and removed ones red."""
    sections = [
        _text_header(plan),
        _text_schedule(plan.schedule),
        _text_steps(plan.steps, color),
        _text_memory(plan.memory),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _text_header(plan: Plan) -> list[str]:
    return [
        "Rollout plan",
        f"  inventory  {plan.inventory}",
        f"  target     {plan.target}",
        f"  created    {format_date(plan.created)}",
    ]


def _text_schedule(schedule: Sequence[ScheduledStage]) -> list[str]:
    if not schedule:
        return ["Schedule", "  (no stages)"]
    return ["Schedule", *_indent(_table(SCHEDULE_HEADERS, [_schedule_row(s) for s in schedule]), 2)]


def _text_steps(steps: Sequence[Step], color: bool) -> list[str]:
    lines = ["Steps"]
    if not steps:
        lines.append("  (no steps)")
    for step in steps:
        lines.extend(["", *_indent(_text_step(step, color), 2)])
    return lines


def _text_step(step: Step, color: bool) -> list[str]:
    if _unchanged(step):
        return [_step_title(step), f"  now:     {_now(step)}, as this step deploys it: nothing to change"]
    lines = [
        _step_title(step),
        f"  now:     {_now(step)}",
        f"  deploys: {step.desired.describe()}",
        *_text_deployment(step.deployment),
    ]
    if step.fallback is None:
        lines.append("  if a gate fails: no fallback")
    else:
        lines.append(f"  if a gate fails: {step.fallback.state.describe()}")
        lines.extend(_indent(_text_deployment(step.fallback), 2))
    lines.extend(_text_files(file_diffs(step), color))
    return lines


def _text_deployment(deployment: Deployment) -> list[str]:
    lines = ["  operations:", *(f"    {op.display()}" for op in deployment.operations)]
    if not deployment.operations:
        lines.append("    (none)")
    lines.append("  gates:")
    lines.extend(f"    {gate.describe()}" for gate in deployment.gates)
    if not deployment.gates:
        lines.append("    (none)")
    return lines


def _text_files(diffs: Sequence[FileDiff], color: bool) -> list[str]:
    if not diffs:
        return ["  files: unchanged"]
    lines = ["  files:"]
    for diff in diffs:
        if diff.kind == "added":
            # The whole text of a new file would be thousands of lines; the JSON and HTML reports carry it.
            lines.append(f"    {_new_file(diff)}")
        else:
            lines.append(f"    {diff.kind} {diff.name}, +{diff.added_lines} -{diff.removed_lines}")
            lines.extend(f"      {_paint(kind, line, color)}" for kind, line in diff_lines(diff.diff))
    return lines


def _paint(kind: LineClass, line: str, color: bool) -> str:
    paint = {"add": GREEN, "del": RED}.get(kind) if color else None
    return f"{paint}{line}{RESET}" if paint else line


def _text_memory(memory: Sequence[RegionMemory]) -> list[str]:
    if not memory:
        return ["Memory", "  (no regions)"]
    summary = memory_summary(memory)
    table = _table(MEMORY_HEADERS, [_memory_row(region) for region in memory])
    n = summary.regions
    process_headers = ["process", "before MB", "after MB", f"x {n} before", f"x {n} after"]
    process_rows = [
        [row.process, _mb(row.before), _mb(row.after), _mb(row.fleet_before), _mb(row.fleet_after)]
        for row in summary.processes
    ]
    assumed = [f"  {ASSUMED_BASELINE}: nothing recorded for the region yet, taken to run the Action Cable baseline"]
    return [
        "Memory",
        *_indent(table, 2),
        *(assumed if any(region.before_mode is None for region in memory) else []),
        "",
        f"  {_fleet_line(summary)}",
        "",
        f"  per process ({_per_region_note(summary)}), x {plural(n, 'region')}:",
        *_indent(_table(process_headers, process_rows), 2),
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns: text left, numbers right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True))
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _indent(lines: Iterable[str], spaces: int) -> list[str]:
    pad = " " * spaces
    return [f"{pad}{line}" if line else line for line in lines]


# --------------------------------------------------------------------------- JSON


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON types; file texts appear only as diffs of files that change."""
    return {
        "inventory": plan.inventory,
        "target": plan.target,
        "created": iso_date(plan.created),
        "schedule": [_stage_json(stage) for stage in plan.schedule],
        "steps": [_step_json(step) for step in plan.steps],
        "memory": _memory_json(plan.memory),
    }


def _stage_json(stage: ScheduledStage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "environment": stage.environment,
        "regions": list(stage.regions),
        "bake": stage.bake,
        "bake_seconds": stage.bake_seconds,
        "starts": iso_date(stage.starts),
        "bake_ends": iso_date(stage.bake_ends),
        "status": stage.status,
    }


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "id": step.id,
        "stage": step.stage,
        "key": str(step.key),
        "environment": step.key.environment,
        "region": step.key.region,
        "action": step.action,
        "current": _state_json(step.current) if step.current is not None else None,
        "desired": _state_json(step.desired),
        "deployment": _deployment_json(step.deployment),
        "fallback": _deployment_json(step.fallback) if step.fallback is not None else None,
        "diffs": [_diff_json(diff, step.desired) for diff in file_diffs(step)],
    }


def _state_json(state: RegionState) -> dict[str, Any]:
    return {
        "mode": state.mode,
        "websocket_enabled": state.websocket_enabled,
        "description": state.describe(),
        "files": state.hashes,  # name -> sha256; never the texts
    }


def _deployment_json(deployment: Deployment) -> dict[str, Any]:
    return {
        "state": _state_json(deployment.state),
        "operations": [operation_json(op) for op in deployment.operations],
        "gates": [gate_json(gate) for gate in deployment.gates],
    }


def operation_json(op: Operation) -> dict[str, Any]:
    if isinstance(op, WriteFile):
        return {"kind": "write", "path": op.path, "sha256": content_hash(op.text), "bytes": len(op.text.encode())}
    return _command_json(op)


def _command_json(command: Command) -> dict[str, Any]:
    return {
        "kind": "run",
        "label": command.label,
        "argv": list(command.argv),
        "env_names": list(command.env_names),
        "timeout_seconds": command.timeout_seconds,
        "machine": command.machine or None,
    }


def gate_json(gate: Gate) -> dict[str, Any]:
    timing = gate.timing
    return {
        "kind": gate.kind,
        "path": gate.path,
        "protocol": gate.protocol,
        "expect_open": gate.expect_open,
        "budget_mb": gate.budget_mb,
        "description": gate.describe(),
        "timing": {
            "interval_seconds": timing.interval_seconds,
            "timeout_seconds": timing.timeout_seconds,
            "deadline_seconds": timing.deadline_seconds,
            "count": timing.count,
            "failure_limit": timing.failure_limit,
        },
    }


def _diff_json(diff: FileDiff, desired: RegionState) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": diff.name,
        "kind": diff.kind,
        "added_lines": diff.added_lines,
        "removed_lines": diff.removed_lines,
    }
    if diff.kind == "added":
        text = desired.files[diff.name]
        entry |= {"lines": _line_count(text), "sha256": content_hash(text)}
    else:
        entry["diff"] = diff.diff
    return entry


def _memory_json(memory: Sequence[RegionMemory]) -> dict[str, Any]:
    summary = memory_summary(memory)
    return {
        "regions": [_region_memory_json(region) for region in memory],
        "summary": {
            "regions": summary.regions,
            "before_mb": _round(summary.before_mb),
            "after_mb": _round(summary.after_mb),
            "saving_mb": _round(summary.saving_mb),
            "saving_percent": _round(summary.saving_percent),
            "uniform": summary.uniform,
            "processes": [_process_json(row) for row in summary.processes],
        },
    }


def _region_memory_json(region: RegionMemory) -> dict[str, Any]:
    saving, percent = _saving(region.before_total, region.after_total)
    return {
        "key": str(region.key),
        "before_mode": region.before_mode,
        "after_mode": region.after_mode,
        "before": {name: float(value) for name, value in region.before.items()},
        "after": {name: float(value) for name, value in region.after.items()},
        "before_mb": _round(region.before_total),
        "after_mb": _round(region.after_total),
        "saving_mb": _round(saving),
        "saving_percent": _round(percent),
    }


def _process_json(row: ProcessRow) -> dict[str, Any]:
    return {
        "process": row.process,
        "before_mb": _round(row.before),
        "after_mb": _round(row.after),
        "fleet_before_mb": _round(row.fleet_before),
        "fleet_after_mb": _round(row.fleet_after),
    }


def _round(value: float) -> float:
    """Sums of one-decimal budgets carry float noise (168.90000000000003); the plan's figures are to 0.01 MB."""
    return round(value, 2)


# --------------------------------------------------------------------------- HTML


HTML_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 68em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-bottom: .3em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
pre span { display: block; white-space: pre; }
.add { background: #e6ffec; color: #116329; } .del { background: #ffebe9; color: #82071e; }
.hunk { color: #0550ae; } .head { font-weight: bold; } .note { color: #777; }
.status-done { color: #116329; } .status-failed { color: #82071e; } .status-baking { color: #9a6700; }
details { margin: .4em 0; } summary { cursor: pointer; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
.bar-before { fill: #d1242f; } .bar-after { fill: #1a7f37; }
"""


def plan_html(plan: Plan) -> str:
    """One self-contained HTML5 page: nothing outside it is referenced, so it opens without a network."""
    title = f"Rollout plan: {plan.inventory} on {plan.target}"
    body = [
        f"<h1>{_e(title)}</h1>",
        _html_facts([("inventory", plan.inventory), ("target", plan.target), ("created", format_date(plan.created))]),
        "<h2>Schedule</h2>",
        _html_schedule(plan.schedule),
        "<h2>Memory</h2>",
        _html_memory(plan.memory),
        "<h2>Steps</h2>",
        *(_html_step(step) for step in plan.steps),
    ]
    if not plan.steps:
        body.append("<p>No steps.</p>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_e(title)}</title>",
            f"<style>{HTML_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_facts(facts: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in facts)
    return f'<dl class="facts">{items}</dl>'


NUM_CLASS = ' class="num"'


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{NUM_CLASS if num else ''}>{_e(v)}</{tag}>" for v, num in zip(values, numeric, strict=True)
        )

    head = f"<thead><tr>{cells('th', headers)}</tr></thead>"
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _html_schedule(schedule: Sequence[ScheduledStage]) -> str:
    if not schedule:
        return "<p>No stages.</p>"
    rows = []
    for stage in schedule:
        cells = _schedule_row(stage)
        status = f'<td class="status-{_e(stage.status)}">{_e(stage.status)}</td>'
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells[:-1]) + status + "</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in SCHEDULE_HEADERS)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_memory(memory: Sequence[RegionMemory]) -> str:
    if not memory:
        return "<p>No regions.</p>"
    summary = memory_summary(memory)
    n = summary.regions
    process_rows = [
        [row.process, _mb(row.before), _mb(row.after), _mb(row.fleet_before), _mb(row.fleet_after)]
        for row in summary.processes
    ]
    return "\n".join(
        [
            memory_svg(memory, summary),
            _html_table(MEMORY_HEADERS, [_memory_row(r) for r in memory], [False] * 3 + [True] * 4),
            f"<p>{_e(_fleet_line(summary))}</p>",
            f"<p>Per process ({_e(_per_region_note(summary))}), &times; {_e(plural(n, 'region'))}:</p>",
            _html_table(
                ["process", "before MB", "after MB", f"× {n} before", f"× {n} after"],
                process_rows,
                [False] + [True] * 4,
            ),
        ]
    )


# Chart geometry, in SVG user units.
LABEL_WIDTH, BAR_WIDTH, VALUE_WIDTH = 170, 420, 90
BAR_HEIGHT, BAR_GAP, GROUP_GAP = 14, 3, 14


def memory_svg(memory: Sequence[RegionMemory], summary: MemorySummary) -> str:
    """Per region a pair of horizontal bars (before, after) on one scale, then the fleet totals on their own."""
    groups = [(str(r.key), r.before_total, r.after_total) for r in memory]
    region_scale = max((max(b, a) for _, b, a in groups), default=0.0)
    fleet = ("fleet", summary.before_mb, summary.after_mb)
    parts: list[str] = []
    y = 20
    parts.append(_svg_legend())
    for label, before, after in groups:
        parts.append(_svg_pair(y, label, before, after, region_scale))
        y += 2 * BAR_HEIGHT + BAR_GAP + GROUP_GAP
    y += GROUP_GAP
    parts.append(f'<text x="0" y="{y - 4}">fleet totals (own scale)</text>')
    parts.append(_svg_pair(y + 4, *fleet, max(summary.before_mb, summary.after_mb)))
    height = y + 4 + 2 * BAR_HEIGHT + BAR_GAP + 8
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="resident memory before and after, per region and for the fleet">'
        f"<title>Resident memory (MB) before and after the rollout</title>{''.join(parts)}</svg>"
    )


def _svg_legend() -> str:
    x = LABEL_WIDTH
    return (
        f'<rect class="bar-before" x="{x}" y="2" width="10" height="10"></rect>'
        f'<text x="{x + 14}" y="11">before</text>'
        f'<rect class="bar-after" x="{x + 70}" y="2" width="10" height="10"></rect>'
        f'<text x="{x + 84}" y="11">after</text>'
    )


def _svg_pair(y: int, label: str, before: float, after: float, scale: float) -> str:
    return (
        f'<text x="0" y="{y + BAR_HEIGHT + 1}">{_e(label)}</text>'
        + _svg_bar(y, "before", before, scale)
        + _svg_bar(y + BAR_HEIGHT + BAR_GAP, "after", after, scale)
    )


def _svg_bar(y: int, side: str, value: float, scale: float) -> str:
    length = BAR_WIDTH * value / scale if scale > 0 else 0.0
    x = LABEL_WIDTH
    return (
        f'<rect class="bar-{side}" x="{x}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}">'
        f"<title>{side}: {_mb(value)} MB</title></rect>"
        f'<text x="{x + length + 4:.1f}" y="{y + BAR_HEIGHT - 3}">{_mb(value)} MB</text>'
    )


def _html_step(step: Step) -> str:
    parts = [
        f"<section><h3>{_e(_step_title(step))}</h3>",
        _html_facts([("now", _now(step)), ("deploys", step.desired.describe())]),
        _html_deployment(step.deployment),
    ]
    if step.fallback is None:
        parts.append("<p>If a gate fails: no fallback.</p>")
    else:
        parts.append(f"<p>If a gate fails: {_e(step.fallback.state.describe())}</p>")
        parts.append(_html_deployment(step.fallback))
    parts.append(_html_files(step))
    parts.append("</section>")
    return "\n".join(parts)


def _html_deployment(deployment: Deployment) -> str:
    ops = "".join(f"<li><code>{_e(op.display())}</code>{_env_note(op)}</li>" for op in deployment.operations)
    gates = "".join(f"<li>{_e(gate.describe())}</li>" for gate in deployment.gates)
    return (
        f"<p>Operations:</p><ol>{ops or '<li>none</li>'}</ol>"
        f"<p>Gates:</p><ul>{gates or '<li>none</li>'}</ul>"
    )


def _env_note(op: Operation) -> str:
    if isinstance(op, Command) and op.env_names:
        return f" <small>(environment: {_e(', '.join(op.env_names))})</small>"
    return ""


def _html_files(step: Step) -> str:
    diffs = file_diffs(step)
    if not diffs:
        return "<p>Files: unchanged.</p>"
    return "<p>Files:</p>\n" + "\n".join(_html_file(diff, step.desired) for diff in diffs)


def _html_file(diff: FileDiff, desired: RegionState) -> str:
    if diff.kind == "added":
        text = desired.files[diff.name]
        summary = _new_file(diff)
        lines = "".join(f"<span>{_e(line)}</span>" for line in text.splitlines())
        return f"<details><summary>{_e(summary)}</summary><pre>{lines}</pre></details>"
    summary = f"{diff.kind} {diff.name}, +{diff.added_lines} -{diff.removed_lines}"
    lines = "".join(f'<span class="{kind}">{_e(line)}</span>' for kind, line in diff_lines(diff.diff))
    return f"<details open><summary>{_e(summary)}</summary><pre>{lines}</pre></details>"
