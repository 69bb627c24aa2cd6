"""The handlers behind `orchestrate plan`, `rollout`, `rollback`, `status`, `history` and `lock`.

`rollout` is plan -> lock -> execute: the steps it runs are the ones `plan`
and `--dry-run` print, built before the lock is taken and before anything runs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.atomic import write_file_atomic
from orchestrator.errors import EXIT_INVALID_INPUT, EXIT_REFUSED, EXIT_RENDER_FAILED, EXIT_ROLLOUT_FAILED, InputError, RenderError
from orchestrator.inventory import load_inventory
from orchestrator.inventory_file import find_inventory
from orchestrator.model import Inventory
from orchestrator.preflight.gate import check_first_stage, checkout
from orchestrator.rollout.engine import INTERRUPTED, Engine, StepOutcome
from orchestrator.rollout.gates import observe, resident_mb, secrets_missing
from orchestrator.rollout.journal import (
    JOURNAL_FILE,
    Actor,
    FindingRecord,
    Journal,
    JournalError,
    LockHeld,
    StepRecord,
    iso_z,
)
from orchestrator.rollout.model import Gate, GateTiming, Machine, RegionKey, RegionState, Step, StepState
from orchestrator.rollout.plan import (
    DEPLOYED_FILES,
    RegionHistory,
    Selection,
    all_keys,
    make_plan,
    promotion_problem,
    resolve_regions,
    rollback_steps,
    rollout_steps,
    stage_keys,
    stage_of,
)
from orchestrator.rollout.progress import Progress
from orchestrator.rollout.report import plan_html, plan_json, plan_text
from orchestrator.targets.base import Target, TargetError
from orchestrator.targets.local import LocalTarget
from orchestrator.terminal import plural, printable

DEFAULT_STATE_DIR = ".orchestrate"


class Refused(Exception):
    """The command did not start: the message says why and what would let it."""


@dataclass
class Context:
    inventory: Inventory
    inventory_path: Path
    state_dir: Path
    target: Target
    actor: Actor

    def journal(self) -> Journal:
        return Journal.open(self.state_dir)

    def histories(self, keys: Iterable[RegionKey]) -> dict[RegionKey, RegionHistory]:
        """What the journal knows of each region; no journal yet means nothing deployed (and nothing is created)."""
        if not (self.state_dir / JOURNAL_FILE).exists():
            return {}
        with self.journal() as journal:
            return {key: region_history(journal, key) for key in keys}


def run(options: argparse.Namespace, handler: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Run the command's handler (HANDLERS', unless given), its errors turned into messages and exit statuses."""
    handler = handler or HANDLERS[options.command]
    try:
        return handler(options)
    except InputError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID_INPUT
    except RenderError as error:
        print(f"render failed, nothing deployed: {error}", file=sys.stderr)
        return EXIT_RENDER_FAILED
    except (LockHeld, Refused) as error:  # LockHeld before JournalError, its base
        print(f"{options.command} not started: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except JournalError as error:
        print(f"journal: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT


def open_context(options: argparse.Namespace) -> Context:
    path = find_inventory(options)
    inventory = load_inventory(path)
    if options.state:
        state_dir = Path(options.state)
    else:
        state_dir = path.parent / (inventory.rollout.state_dir or DEFAULT_STATE_DIR)
    kind = getattr(options, "target", None) or inventory.rollout.target
    if kind == "ssh":
        from orchestrator.targets.ssh import SshTarget

        target: Target = SshTarget(inventory, state_dir)
    elif kind == "fly":
        from orchestrator.targets.fly import FlyTarget

        # The image is built from the app's checkout: --app, else app.checkout, else where orchestrate runs.
        app = getattr(options, "app", None)
        found = Path(app) if app else checkout(inventory, path)
        target = FlyTarget(inventory, getattr(options, "image", None), (found or Path.cwd()).resolve())
    else:
        target = LocalTarget(state_dir, inventory.secret_env_names(), inventory.rollout.navigator)
    return Context(inventory, path, state_dir, target, Actor.current())


def region_history(journal: Journal, key: RegionKey) -> RegionHistory:
    deployed = journal.deployed(key)
    previous = journal.previous_deployed(key)
    last = journal.last_step(key)
    finished = last.updated_at if last is not None and last.state in (StepState.PASSED, StepState.ROLLED_BACK, StepState.FAILED) else None
    return RegionHistory(
        deployed=deployed.state if deployed else None,
        previous=previous.state if previous else None,
        last_stage=last.stage if last else None,
        last_action=last.action if last else None,
        last_state=last.state if last else None,
        last_started=last.started_at if last else None,
        last_finished=finished,
        watched=tuple(journal.watched_spans(key)),
    )


# --- plan ---------------------------------------------------------------------------


def plan_command(context: Context, options: argparse.Namespace) -> int:
    inventory = context.inventory
    keys = [key for stage in inventory.rollout.stages for key in stage_keys(stage)]
    histories = context.histories(keys)
    steps = tuple(
        step
        for stage in inventory.rollout.stages
        for step in rollout_steps(inventory, context.target, Selection(stage_keys(stage), stage.name), histories)
    )
    now = datetime.now(UTC)
    plan = make_plan(inventory, context.target, steps, histories, options.start or now, now)
    if options.json:
        print(json.dumps(plan_json(plan), indent=2))
    else:
        print(plan_text(plan, color=sys.stdout.isatty()), end="")
    if options.html:
        write_file_atomic(Path(options.html), plan_html(plan))
        print(f"wrote {options.html}", file=sys.stderr)
    return 0


# --- rollout --------------------------------------------------------------------------


def rollout_command(context: Context, options: argparse.Namespace) -> int:
    if options.force and not options.reason:
        raise InputError(["--force needs --reason TEXT: the reason is recorded in the audit"])
    if options.resume == bool(options.stage or options.region):
        raise InputError(["rollout needs --stage NAME or --region R (or --resume alone, to finish an interrupted one)"])
    inventory = context.inventory
    with context.journal() if (context.state_dir / JOURNAL_FILE).exists() or not options.dry_run else _no_journal() as journal:
        resumed = journal.unfinished_run("rollout") if journal is not None and options.resume else None
        if options.resume and resumed is None:
            raise Refused("there is no unfinished rollout in the journal to resume")
        chosen = resumed.options if resumed else _chosen(options)
        selection = _selection(inventory, chosen)
        # Every region's, not only the selection's: promotion looks at the previous stage.
        histories = {key: region_history(journal, key) for key in all_keys(inventory)} if journal else {}
        steps = rollout_steps(inventory, context.target, selection, histories)
        problems = [] if resumed else _promotion_problems(inventory, selection, histories, chosen)
        now = datetime.now(UTC)
        # Before the first stage that has not passed: the app's own preflight (orchestrate preflight).
        preflight = None if resumed else check_first_stage(inventory, context.inventory_path, options.app, selection, histories, now)
        if preflight is not None:
            print(preflight.note, file=sys.stderr)
        blocked = list(preflight.blocked) if preflight is not None else []
        refusal = "; ".join(problems + blocked) + " (use --force --reason TEXT to go ahead anyway)"
        missing = missing_before_start(context, steps)
        if options.dry_run:
            # The steps are shown either way; the exit status says whether a real run would start.
            print(plan_text(make_plan(inventory, context.target, steps, histories, now, now)), end="")
            if missing:
                print(f"a real run would not start: {not_ready(context.target, missing)}", file=sys.stderr)
            if (problems or blocked) and not chosen["force"]:
                print(f"a real run would not start: {refusal}", file=sys.stderr)
            return EXIT_REFUSED if missing or ((problems or blocked) and not chosen["force"]) else 0
        if missing:
            raise Refused(not_ready(context.target, missing))
        if (problems or blocked) and not chosen["force"]:
            raise Refused(refusal)
        assert journal is not None
        what = _describe(selection)
        if not _confirm(f"roll out {what} ({plural(len(steps), 'region')})?", options.yes or bool(resumed)):
            raise Refused("not confirmed (add --yes to run without the question)")
        _take_lock(journal, context.actor, f"rollout {what}", options.lock_wait, options.resume)
        try:
            if resumed:
                run_id = resumed.id
                journal.audit(context.actor, "rollout resumed", f"run {run_id}: {what}")
                recorded = {record.step_id: record for record in journal.steps(run_id)}
            else:
                run_id = journal.start_run("rollout", chosen, context.actor)
                journal.audit(context.actor, "rollout started", f"run {run_id}: {what}", chosen["reason"])
                for problem in problems:
                    journal.audit(context.actor, "promotion forced", problem, chosen["reason"])
                for problem in blocked:
                    journal.audit(context.actor, "preflight forced", problem, chosen["reason"])
                recorded = {}
            return _execute(context, journal, "rollout", run_id, steps, inventory.rollout.max_failures, recorded)
        finally:
            journal.release_lock(context.actor)


def missing_before_start(context: Context, steps: Sequence[Step]) -> list[str]:
    """Everything the steps need that is missing, before anything is touched: the target's, and the gates' secrets."""
    signing = context.inventory.websocket.signing_secret_env
    return list(dict.fromkeys([*context.target.readiness(steps), *secrets_missing(steps, context.target, signing)]))


def not_ready(target: Target, missing: Sequence[str]) -> str:
    """One message listing everything the target lacks; nothing has been touched."""
    return f"the {target.name} target is not ready, nothing was touched:\n" + "\n".join(f"  - {line}" for line in missing)


def _chosen(options: argparse.Namespace) -> dict[str, Any]:
    """The rollout's choices as JSON, stored with the run so that --resume does the same thing."""
    return {
        "stage": options.stage,
        "regions": options.region or [],
        "mode": options.mode,
        "websocket": options.websocket,
        "force": bool(options.force),
        "reason": options.reason,
    }


def _selection(inventory: Inventory, chosen: dict[str, Any]) -> Selection:
    mode = chosen["mode"]
    enabled = None if chosen["websocket"] is None else chosen["websocket"] == "on"
    if chosen["stage"]:
        stage = next((stage for stage in inventory.rollout.stages if stage.name == chosen["stage"]), None)
        if stage is None:
            names = ", ".join(stage.name for stage in inventory.rollout.stages)
            raise InputError([f"--stage {chosen['stage']}: not a stage of {inventory.name} (stages: {names})"])
        return Selection(stage_keys(stage), stage.name, mode, enabled)
    return Selection(resolve_regions(inventory, chosen["regions"]), None, mode, enabled)


def _promotion_problems(
    inventory: Inventory, selection: Selection, histories: dict[RegionKey, RegionHistory], chosen: dict[str, Any]
) -> list[str]:
    if selection.overrides:
        return []
    now = datetime.now(UTC)
    problems: list[str] = []
    stages = []
    for key in selection.keys:
        stage = stage_of(inventory, key)
        if stage is None:
            problems.append(f"{key} is in no stage of {inventory.name}")
        elif stage.name not in stages:
            stages.append(stage.name)
    for name in stages:
        problem = promotion_problem(inventory, name, histories, now)
        if problem:
            problems.append(problem)
    return problems


def _take_lock(journal: Journal, actor: Actor, message: str, wait: float, resume: bool) -> None:
    held = journal.lock_status()
    if held is not None and held.stale and resume:
        # The rollout being resumed died holding the lock; its process is gone.
        journal.force_release_lock(actor, "resuming a rollout whose process is gone")
    journal.acquire_lock(actor, message, wait_seconds=wait)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt: both stop a rollout the same way."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _execute(context: Context, journal: Journal, command: str, run_id: int, steps: Sequence[Step], max_failures: int,
             recorded: Mapping[str, StepRecord]) -> int:
    """Run the steps, record how the run ended, report; an interrupted rollout is left for --resume."""
    engine = make_engine(context, journal)
    with _terminate_as_interrupt():
        outcomes = engine.execute(run_id, steps, context.inventory.rollout.parallel, max_failures, recorded)
    if engine.interrupted is not None:
        signum = signal.SIGTERM if isinstance(engine.interrupted, Terminated) else signal.SIGINT
        then = "`rollout --resume` finishes it" if command == "rollout" else f"run {command} again"
        if command != "rollout":
            journal.finish_run(run_id, "interrupted")
        journal.audit(context.actor, f"{command} interrupted", f"run {run_id} by {signal.Signals(signum).name}: "
                                                               f"{_tally(outcomes)}; {then}")
        print(f"{command} interrupted by {signal.Signals(signum).name}: {_tally(outcomes)}; {then}", file=sys.stderr)
        return 128 + signum
    failed = [outcome for outcome in outcomes if not outcome.passed]
    journal.finish_run(run_id, "failed" if failed else "passed")
    journal.audit(context.actor, f"{command} finished", f"run {run_id}: {_tally(outcomes)}")
    return _report_outcomes(outcomes)


def make_engine(context: Context, journal: Journal) -> Engine:
    progress = Progress(sys.stdout, sys.stdout.isatty())
    return Engine(context.target, journal, context.actor, progress, context.inventory.websocket.signing_secret_env)


def _report_outcomes(outcomes: Sequence[StepOutcome]) -> int:
    print(_tally(outcomes))
    failed = [outcome for outcome in outcomes if not outcome.passed]
    for outcome in failed:
        if outcome.state is None:
            print(f"  {outcome.step.key}: {outcome.evidence}", file=sys.stderr)
            continue
        print(f"  {outcome.step.key}: {outcome.state}; {outcome.gate} failed: {outcome.evidence}", file=sys.stderr)
    return EXIT_ROLLOUT_FAILED if failed else 0


def _tally(outcomes: Sequence[StepOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        name = str(outcome.state) if outcome.state else "interrupted" if outcome.evidence == INTERRUPTED else "not started"
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def _describe(selection: Selection) -> str:
    regions = " ".join(str(key) for key in selection.keys)
    label = f"stage {selection.stage}: " if selection.stage else ""
    override = []
    if selection.mode:
        override.append(f"mode {selection.mode}")
    if selection.websocket_enabled is not None:
        override.append(f"websocket {'on' if selection.websocket_enabled else 'off'}")
    return label + regions + (f" ({', '.join(override)})" if override else "")


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


class _no_journal:
    """A dry run before any journal exists: nothing is deployed, and nothing is created."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- rollback ---------------------------------------------------------------------------


def rollback_command(context: Context, options: argparse.Namespace) -> int:
    inventory = context.inventory
    with context.journal() as journal:
        if options.all:
            keys = tuple(key for key in all_keys(inventory) if journal.deployed(key) is not None)
        elif options.region:
            keys = resolve_regions(inventory, options.region)
        else:
            keys = _last_rollout_regions(journal)
            print("the most recent rollout step changed: " + " ".join(str(key) for key in keys))
        if not keys:
            raise Refused("no region to roll back: nothing is recorded as deployed")
        histories = {key: region_history(journal, key) for key in keys}
        steps = rollback_steps(inventory, context.target, keys, histories, options.to_previous)
        kind = "to the previous deployment" if options.to_previous else "with the WebSocket switch off"
        missing = missing_before_start(context, steps)
        if missing:
            raise Refused(not_ready(context.target, missing))
        if not _confirm(f"roll back {plural(len(keys), 'region')} {kind}?", options.yes):
            raise Refused("not confirmed (add --yes to run without the question)")
        _take_lock(journal, context.actor, f"rollback {kind}", options.lock_wait, False)
        try:
            run_id = journal.start_run("rollback", {"regions": [str(key) for key in keys], "to_previous": options.to_previous}, context.actor)
            journal.audit(context.actor, "rollback started", f"run {run_id}: {' '.join(map(str, keys))} {kind}", options.reason)
            return _execute(context, journal, "rollback", run_id, steps, len(steps), {})
        finally:
            journal.release_lock(context.actor)


def _last_rollout_regions(journal: Journal) -> tuple[RegionKey, ...]:
    for record in reversed(journal.runs()):
        if record.command == "rollout":
            return tuple(dict.fromkeys(step.key for step in journal.steps(record.id)))
    raise Refused("no rollout in the journal: name the regions with --region or use --all")


# --- status, history, lock ---------------------------------------------------------------


def status_command(context: Context, options: argparse.Namespace) -> int:
    inventory = context.inventory
    keys = resolve_regions(inventory, options.region) if options.region else all_keys(inventory)
    if options.port is not None and not options.serve:
        raise InputError(["--port goes with --serve: it is the live page's port"])
    if options.serve:
        from orchestrator.cli import LIVE_PAGE_PORT
        from orchestrator.watch.serve import serve_live_page

        return serve_live_page(inventory, context.state_dir, keys, LIVE_PAGE_PORT if options.port is None else options.port)
    journal_file = context.state_dir / JOURNAL_FILE
    if journal_file.exists():
        rows = [_region_status(context, key) for key in keys]
    else:
        rows = [{"region": str(key), "deployed": None} for key in keys]
        _say_no_journal(context)
    for key, row in zip(keys, rows):
        row["problem"] = _problem(row)
        if isinstance(context.target, LocalTarget) and row["deployed"] is not None:
            row["front"] = context.target.front_of(key)
    if options.json:
        print(json.dumps({"inventory": inventory.name, "target": context.target.name,
                          "journal": str(journal_file) if journal_file.exists() else None, "regions": rows}, indent=2))
    else:
        _print_status(rows)
        for front, count in Counter(row["front"] for row in rows if row.get("front")).items():
            print(f"front of {plural(count, 'region')}: {front}")
    return EXIT_ROLLOUT_FAILED if any(row["problem"] for row in rows) else 0


def _say_no_journal(context: Context) -> None:
    print(f"no journal at {context.state_dir / JOURNAL_FILE}: nothing has been rolled out with this state directory "
          f"(another one is given with --state DIR, or the inventory's rollout.state_dir)", file=sys.stderr)


def _problem(row: dict[str, Any]) -> str | None:
    """What is wrong with a region, for the exit status: its last step did not pass, the watcher switched it
    back, it is down, or it drifted."""
    last = row.get("last_step") or {}
    if last.get("state") not in (None, "passed"):
        return f"last step {last['state']}"
    if last.get("by") == "watch":
        return "switched back by the watcher"
    if row.get("deployed") is not None and row.get("health", {}).get("ok") is False:
        return "down"
    if row.get("drift"):
        return "drift"
    return None


def _region_status(context: Context, key: RegionKey) -> dict[str, Any]:
    with context.journal() as journal:
        deployed = journal.deployed(key)
        last = journal.last_step(key)
        gates = journal.gate_results(last.row) if last else []
        by = journal.run(last.run_id).options.get("by") if last else None
        findings = journal.findings(key, newest=FINDINGS_SHOWN)
        sample = journal.latest_sample(key)
    row: dict[str, Any] = {"region": str(key), "deployed": None}
    if last is not None:
        row["last_step"] = {"id": last.step_id, "action": last.action, "state": str(last.state),
                            "at": iso_z(last.updated_at), "detail": last.detail, "by": by}
        row["gates"] = [{"gate": gate.gate, "machine": gate.machine, "ok": gate.ok, "evidence": gate.evidence,
                         "at": iso_z(gate.at)} for gate in gates]
    row["findings"] = [finding_json(finding) for finding in findings]
    row["last_sample"] = iso_z(sample.at) if sample and deployed and sample.at >= deployed.at else None
    if deployed is None:
        return row
    state = deployed.state
    row["deployed"] = {"mode": state.mode, "websocket": state.switch, "at": iso_z(deployed.at), "files": deployed.hashes,
                       "images": dict(state.images)}
    try:
        machines = context.target.machines(key)
    except TargetError as error:  # an unreachable host or app is a status, not a crash
        row["health"] = {"ok": False, "evidence": str(error)}
        return row
    row["machines"] = [_machine_status(context, key, state, machine) for machine in machines]
    row["drift"] = [drift for entry in row["machines"] for drift in entry.pop("drift", ())]
    observed = [entry for entry in row["machines"] if "health" in entry]
    down = next((entry for entry in observed if not entry["health"]["ok"]), None)
    asleep = len(machines) - len(observed)
    if down is not None:
        row["health"] = {"ok": False, "evidence": f"{down['id']}: {down['health']['evidence']}" if len(machines) > 1
                         else down["health"]["evidence"]}
    elif observed:
        row["health"] = {"ok": True, "evidence": observed[0]["health"]["evidence"] if len(machines) == 1
                         else f"{len(observed)} of {len(machines)} machines up, {asleep} not running"}
    else:
        row["health"] = {"ok": None, "evidence": f"no machine running ({', '.join(m.describe() for m in machines)}): "
                                                 "status starts none to look"}
    sizes = [entry["memory_mb"] for entry in observed if entry.get("memory_mb") is not None]
    row["memory_mb"] = max(sizes) if sizes else None
    return row


def _machine_status(context: Context, key: RegionKey, state: RegionState, machine: Machine) -> dict[str, Any]:
    """What one machine runs now; a machine that is not running is only listed: status changes nothing."""
    entry: dict[str, Any] = {"id": machine.id, "state": machine.state, "image": machine.image or None}
    recorded = state.images.get(machine.id)
    if recorded and machine.image and recorded != machine.image:
        entry["image_drift"] = recorded
    if machine.state != "started":
        return entry
    health = context.inventory.rollout.health_check
    gate = Gate("http", health.path, GateTiming(0, health.timeout_seconds, health.timeout_seconds, 1, 0))
    try:
        entry["drift"] = _drift(context, key, state, machine.id)
        entry["memory_mb"] = _measured_mb(context, key, machine.id)
        observation = observe(gate, context.target, key, machine.id)
        entry["health"] = {"ok": observation.ok, "evidence": observation.evidence}
    except TargetError as error:
        entry["health"] = {"ok": False, "evidence": str(error)}
    return entry


def _drift(context: Context, key: RegionKey, state: RegionState, machine: str) -> list[dict[str, str]]:
    """Each live file on `machine` that differs from what the journal says was deployed, with its diff."""
    names = tuple(sorted(set(DEPLOYED_FILES) | set(state.files)))
    live = context.target.live_files(key, names, machine)
    return [
        {"file": name, "machine": machine, "diff": "".join(difflib.unified_diff(
            (state.files.get(name) or "").splitlines(keepends=True), (live[name] or "").splitlines(keepends=True),
            f"journal/{key}/{name}", f"live/{key}/{machine}/{name}", n=1))}
        for name in names if live[name] != state.files.get(name)
    ]


def _measured_mb(context: Context, key: RegionKey, machine: str) -> float | None:
    """Resident MB of the machine's front and cable processes now, read through the target; None when unreadable."""
    result = context.target.run(key, context.target.memory_command(key, machine))
    sizes = resident_mb(result.stdout) if result.ok else None
    return round(sum(sizes.values()), 1) if isinstance(sizes, dict) else None


# The newest findings a region's status carries; `history` has them all.
FINDINGS_SHOWN = 5
STATUS_COLUMNS = ("REGION", "MODE", "WEBSOCKET", "MEMORY", "HEALTH", "LAST STEP", "AT")


def _print_status(rows: Sequence[dict[str, Any]]) -> None:
    """A table with a header, one line per region; below a region, what is wrong with it: the step that did not
    pass with its gates, the health evidence, each machine where there are several, drift as a diff."""
    cells = [STATUS_COLUMNS, *(_status_cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(STATUS_COLUMNS))]
    for line, row in zip(cells, [None, *rows]):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if row is not None:
            for detail in _status_details(row):
                print(f"    {detail}")


def _status_cells(row: dict[str, Any]) -> tuple[str, ...]:
    deployed = row["deployed"] or {}
    last = row.get("last_step") or {}
    health = row.get("health")
    up = "-" if health is None else {True: "up", False: "DOWN", None: "asleep"}[health.get("ok", False)]
    memory = "-" if row.get("memory_mb") is None else f"{row['memory_mb']:.1f} MB"
    step = last.get("state", "nothing deployed yet" if not deployed else "-")
    if last.get("action") not in (None, "deploy"):
        step = f"{last['action']} {step}" + (" (watch)" if last.get("by") == "watch" else "")
    return (row["region"], deployed.get("mode", "-"), deployed.get("websocket", "-"), memory, up, step,
            last.get("at") or deployed.get("at", ""))


def _status_details(row: dict[str, Any]) -> list[str]:
    details = []
    health = row.get("health") or {}
    if health and health.get("ok") is not True:
        details.append(f"health: {health.get('evidence', '')}")
    machines = row.get("machines", ())
    if len(machines) > 1 or any(entry.get("image") for entry in machines):
        for entry in machines:
            size = f"  {entry['memory_mb']:.1f} MB" if entry.get("memory_mb") is not None else ""
            image = f"  {entry['image']}" if entry.get("image") else ""
            changed = f"  (the journal recorded {entry['image_drift']})" if entry.get("image_drift") else ""
            details.append(f"machine {entry['id']} {entry['state']}{size}{image}{changed}")
    last = row.get("last_step") or {}
    if last.get("by") == "watch" and row.get("findings"):
        finding = row["findings"][-1]
        on = f" on {printable(finding['machine'])}" if finding["machine"] else ""
        details.append(f"switched back by the watcher at {finding['at']}: {finding['rule']}{on}: "
                       f"{printable(finding['message'])}")
    if last.get("state") not in (None, "passed"):
        details.append(f"{last['id']}: {last['detail']}")
        for gate in row.get("gates", ()):
            on = f" on {gate['machine']}" if gate.get("machine") and len(machines) > 1 else ""
            details.append(f"  {gate['gate']}{on}: {'pass' if gate['ok'] else 'FAIL'} {gate['evidence']}")
    for drift in row.get("drift", ()):
        details.append(f"DRIFT {drift['file']} on {drift['machine']} differs from what the journal says was deployed:")
        details.extend(f"  {line}" for line in drift["diff"].splitlines())
    return details


def history_command(context: Context, options: argparse.Namespace) -> int:
    wanted = set(resolve_regions(context.inventory, options.region)) if options.region else None
    entries: list[dict[str, Any]] = []
    if (context.state_dir / JOURNAL_FILE).exists():
        with context.journal() as journal:
            for record in journal.runs():
                for step in journal.steps(record.id):
                    if wanted is not None and step.key not in wanted:
                        continue
                    entries.append({
                        "run": record.id, "command": record.command, "by": f"{record.actor.user}@{record.actor.host}",
                        "step": step.step_id, "region": str(step.key), "action": step.action,
                        "mode": step.mode, "websocket": "on" if step.websocket_enabled else "off",
                        "transitions": [
                            {"at": iso_z(at), "state": str(state), "detail": detail}
                            for at, state, detail in journal.transitions(step.row)
                        ],
                    })
            audit = [record.line() for record in journal.audit_records()] if wanted is None else []
            findings = [finding_json(finding) for finding in journal.findings()
                        if wanted is None or finding.key in wanted]
    else:
        audit, findings = [], []
        _say_no_journal(context)
    if options.json:
        print(json.dumps({"steps": entries, "findings": findings, "audit": audit}, indent=2))
        return 0
    for entry in entries:
        print(f"run {entry['run']} {entry['command']} by {entry['by']}: {entry['step']} "
              f"({entry['mode']}, websocket {entry['websocket']})")
        for transition in entry["transitions"]:
            print(f"  {transition['at']} {transition['state']:<12} {transition['detail']}")
    if findings:
        print("watch findings:")
        for finding in findings:
            on = f" on {printable(finding['machine'])}" if finding["machine"] else ""
            print(f"  {finding['at']} {finding['region']}{on}: {finding['rule']}: {printable(finding['message'])}; "
                  f"{printable(finding['action'])}")
    if audit:
        print("audit:")
        print("\n".join(f"  {line}" for line in audit))
    return 0


def finding_json(finding: FindingRecord) -> dict[str, Any]:
    return {"at": iso_z(finding.at), "region": str(finding.key), "machine": finding.machine, "rule": finding.rule,
            "message": finding.message, "evidence": finding.evidence, "action": finding.action}


def lock_command(context: Context, options: argparse.Namespace) -> int:
    if not (context.state_dir / JOURNAL_FILE).exists():
        print(f"no lock (no journal at {context.state_dir / JOURNAL_FILE})")
        return 0
    with context.journal() as journal:
        held = journal.lock_status()
        if options.lock_action == "status":
            print(_lock_line(held) if held else "no lock")
            return 0
        if not options.force:
            raise InputError(["lock release needs --force: it removes a lock another rollout may still hold"])
        released = journal.force_release_lock(context.actor, options.reason or "released by hand")
        print(f"released: {_lock_line(released)}" if released else "no lock to release")
        return 0


def fleet_command(context: Context, options: argparse.Namespace) -> int:
    """Start or stop the local fleet's regions with their deployed files (the processes outlive a rollout on purpose)."""
    target = context.target
    if not isinstance(target, LocalTarget):
        raise InputError([f"fleet {options.fleet_action} runs the local fleet; the regions of {context.inventory.name} "
                          f"run on the {target.name} target"])
    keys = resolve_regions(context.inventory, options.region) if options.region else all_keys(context.inventory)
    failed = 0
    for key in keys:
        if options.fleet_action == "start" and not target.deployed_here(key):
            print(f"{key}: nothing deployed here ({target.home(key)}): not started")
            continue
        command = (target.leak_command(key, options.mb_per_minute) if options.fleet_action == "leak"
                   else target.control_command(key, options.fleet_action))
        result = target.run(key, command)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        print(f"{key}: {'done' if result.ok else f'FAILED (exit {result.exit_code})'}"
              + "".join(f"\n    {line}" for line in lines))
        failed += not result.ok
    return EXIT_ROLLOUT_FAILED if failed else 0


def _lock_line(held: Any) -> str:
    return f"held by {held.describe()}"


def in_context(body: Callable[[Context, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(options: argparse.Namespace) -> int:
        context = open_context(options)
        try:
            return body(context, options)
        finally:
            context.target.close()

    return handler


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "plan": in_context(plan_command),
    "rollout": in_context(rollout_command),
    "rollback": in_context(rollback_command),
    "status": in_context(status_command),
    "history": in_context(history_command),
    "lock": in_context(lock_command),
    "fleet": in_context(fleet_command),
}
