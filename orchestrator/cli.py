"""`orchestrate`: validate an inventory, render every region's configuration, plan and roll out, run the hub."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from collections.abc import Sequence
from pathlib import Path

from orchestrator.model import MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate",
        description="Move a Navigator-fronted Rails app's WebSockets off Action Cable, region by region.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check an inventory and report every problem at once")
    validate.add_argument("inventory", type=Path)

    render = commands.add_parser(
        "render",
        help="write each Fly app's image (Dockerfile, fly.toml) and every region's configuration",
        description="Writes DIR/<environment>/ for each environment: Dockerfile, fly.toml, rails/ and navigator/ "
        "(every region's configuration). Each environment directory is replaced whole, or not at all.",
    )
    render.add_argument("inventory", type=Path)
    # A string, not a Path: Path("") would silently become the current directory.
    render.add_argument("--out", required=True, metavar="DIR", help="output directory, e.g. the app's deploy/")
    render.add_argument(
        "--region", action="append", metavar="R",
        help="apply --mode/--websocket to this region only (repeatable); the other regions of its environment "
        "keep the settings they were last rendered with",
    )
    render.add_argument("--mode", choices=MODES, help="render the selected regions in this mode")
    render.add_argument(
        "--websocket", choices=("on", "off"), help="force the WebSocket switch (off is the rollback switch)"
    )

    refresh = commands.add_parser(
        "refresh",
        help="inside the image: render this region's navigator.yml again from the synced tenant list",
    )
    refresh.add_argument("--config-dir", type=Path, required=True, metavar="DIR", help="the image's configuration directory")
    refresh.add_argument("--region", required=True, metavar="R")

    _add_rollout_commands(commands)
    _add_preflight_command(commands)
    commands.add_parser("hub", help="run the cable hub (see `orchestrate hub --help`)", add_help=False)
    return parser


INVENTORY_HELP = (
    "The inventory is INVENTORY if given, else --inventory FILE, else $ORCHESTRATE_INVENTORY, else ./orchestrate.yml. "
    "The journal, the lock and the local fleet live in --state DIR, else the inventory's rollout.state_dir, "
    "else .orchestrate/ beside the inventory."
)


def _add_rollout_commands(commands: argparse._SubParsersAction) -> None:
    def command(name: str, summary: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=summary, description=f"{summary}. {INVENTORY_HELP}")
        parser.add_argument("inventory", nargs="?", metavar="INVENTORY")
        parser.add_argument("--inventory", dest="inventory_option", metavar="FILE", help="the inventory, instead of INVENTORY")
        parser.add_argument("--state", metavar="DIR", help="the state directory (journal, lock, local fleet)")
        parser.add_argument("--target", choices=("local", "ssh", "fly"),
                            help="where the regions run (default: the inventory's rollout.target, else local)")
        return parser

    plan = command("plan", "show the stages, a dated schedule, every region's change with its diff, "
                           "the memory projection and the exact steps; changes nothing")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--html", metavar="FILE", help="also write the plan as one self-contained HTML page")
    plan.add_argument("--start", type=_utc_date, metavar="DATE", help="schedule from this date (YYYY-MM-DD[THH:MM], UTC)")

    rollout = command("rollout", "deploy a stage or regions: lock, render, deploy, gate, record; "
                                 "a region whose gates fail is switched back with the WebSocket off")
    which = rollout.add_mutually_exclusive_group()
    which.add_argument("--stage", metavar="NAME", help="the inventory's stage to roll out")
    which.add_argument("--region", action="append", metavar="R", help="a region (ord, or production/ord); repeatable")
    rollout.add_argument("--mode", choices=MODES, help="deploy this mode instead of the inventory's (outside the stages)")
    rollout.add_argument("--websocket", choices=("on", "off"), help="force the switch (outside the stages)")
    rollout.add_argument("--dry-run", action="store_true", help="print the steps and run none")
    rollout.add_argument("--image", metavar="REF", help="fly target: deploy this image instead of building one")
    rollout.add_argument("--app", metavar="PATH", help="the app's checkout, audited (orchestrate preflight) before the "
                                                       "first stage that has not passed, and on the fly target the folder "
                                                       "the image is built from (default: the inventory's app.checkout)")
    rollout.add_argument("--yes", action="store_true", help="do not ask before starting")
    rollout.add_argument("--resume", action="store_true", help="finish the rollout that was interrupted")
    rollout.add_argument("--force", action="store_true", help="start although the previous stage has not baked or passed")
    rollout.add_argument("--reason", metavar="TEXT", help="why (required with --force; recorded in the audit)")
    rollout.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                         help="wait this long for another rollout's lock instead of failing at once")

    rollback = command("rollback", "switch regions' WebSocket off (the quick rollback), "
                                   "or with --to-previous put back the previously deployed files")
    rollback_which = rollback.add_mutually_exclusive_group()
    rollback_which.add_argument("--region", action="append", metavar="R", help="a region; repeatable")
    rollback_which.add_argument("--all", action="store_true", help="every region with a deployment")
    rollback.add_argument("--to-previous", action="store_true",
                          help="the previous deployment's files from the journal (fly target: each machine's previous image)")
    rollback.add_argument("--yes", action="store_true", help="do not ask before starting")
    rollback.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit)")
    rollback.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")

    status = command("status", "every region's deployed state, last gate results, health and drift "
                               "(exit 1 when a region's live files differ from the journal)")
    status.add_argument("--json", action="store_true")

    history = command("history", "every step and phase change recorded in the journal, and the audit")
    history.add_argument("--region", action="append", metavar="R")
    history.add_argument("--json", action="store_true")

    lock = command("lock", "show or release the rollout lock")
    lock.add_argument("lock_action", choices=("status", "release"))
    lock.add_argument("--force", action="store_true", help="required to release")
    lock.add_argument("--reason", metavar="TEXT", help="recorded in the audit")


def _add_preflight_command(commands: argparse._SubParsersAction) -> None:
    preflight = commands.add_parser(
        "preflight",
        help="audit a Rails app's source for the modes: what blocks each one, with file and line",
        description="Reads the app's channels, pages, scripts and settings (no Ruby needed) and reports what each mode "
        "cannot serve (blocking) and what the operator should know (warnings). The mode is --mode, else the "
        "inventory's websocket.mode; with neither, every mode is checked. Exit status: 0 ready, 1 blocking "
        "findings, 2 bad input. The inventory is found as for plan and rollout: INVENTORY, --inventory FILE, "
        "$ORCHESTRATE_INVENTORY, ./orchestrate.yml.",
    )
    preflight.add_argument("inventory", nargs="?", metavar="INVENTORY")
    preflight.add_argument("--inventory", dest="inventory_option", metavar="FILE", help="the inventory, instead of INVENTORY")
    preflight.add_argument("--app", metavar="PATH", help="the Rails app's root (default: the inventory's app.checkout)")
    preflight.add_argument("--mode", choices=MODES, help="check this mode (default: the inventory's websocket.mode)")
    preflight.add_argument("--json", action="store_true", help="print the findings as JSON")


def _utc_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01 or 2026-12-01T09:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["hub"]:
        from hub.__main__ import main as hub_main

        return hub_main(arguments[1:])
    options = build_parser().parse_args(arguments)
    # Imported here, not at the top: the hub must start before jinja2, jsonschema
    # and httpx are loaded (they pull in ssl, which the hub keeps out of its memory).
    if options.command == "refresh":
        from orchestrator.refresh import refresh

        return refresh(options.config_dir, options.region)
    if options.command == "preflight":
        from orchestrator.preflight.command import run as run_preflight

        return run_preflight(options)
    if options.command in ("plan", "rollout", "rollback", "status", "history", "lock"):
        from orchestrator.rollout.commands import run as run_rollout

        return run_rollout(options)
    from orchestrator.commands import run

    return run(options)
