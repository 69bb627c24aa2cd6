"""`orchestrate`: validate an inventory, render every region's configuration, plan and roll out, run the hub."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from collections.abc import Sequence
from pathlib import Path

from orchestrator import inventory_file
from orchestrator.model import MODES

# What each command's exit status means, shown in its --help.
EXIT_STATUS = {
    "validate": "0 valid; 2 problems (every one listed, with its file and line)",
    "render": "0 written; 1 a rendered file failed its own check (nothing written); 2 bad input (nothing written)",
    "plan": "0 shown; 2 bad input",
    "rollout": "0 every region passed; 1 a region failed its gates (switched back, or failed); 2 bad input; "
               "3 not started (the lock, promotion, the preflight, a missing tool or secret, not confirmed); "
               "130 interrupted (143 on SIGTERM): `rollout --resume` finishes it",
    "rollback": "0 every region switched back and healthy; 1 a region failed; 2 bad input; 3 not started; 130/143 interrupted",
    "status": "0 every deployed region up and as recorded; 1 a region down, failed, rolled back or drifted; 2 bad input; "
              "with --serve: 0 stopped by SIGTERM or SIGINT, 2 bad input (the port cannot be listened on)",
    "history": "0 shown; 2 bad input",
    "watch": "0 stopped by SIGTERM or SIGINT, or --once found nothing; 1 --once found a region breaking a rule; "
             "2 bad input; 3 not started (another watcher holds the journal's watch lock)",
    "lock": "0 done; 2 bad input",
    "fleet": "0 done; 1 a process failed to start or stop; 2 bad input",
    "preflight": "0 ready (warnings allowed); 1 blocking findings; 2 bad input",
    "init": "0 written, and the proof found no difference it could not explain; 1 written, with the differences "
            "it could not explain listed; 2 bad input (nothing written)",
    "refresh": "0 written, or already up to date; 1 the running configuration kept (the synced tenant list or "
               "the switch on the volume cannot be used)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate",
        description="Move a Navigator-fronted Rails app's WebSockets off Action Cable, region by region.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    command(commands, "validate", "check an inventory and report every problem at once")
    render = command(commands, "render", "write each Fly app's image (Dockerfile, fly.toml) and every region's "
                     "configuration", "Writes DIR/<environment>/ for each environment: Dockerfile, fly.toml, rails/ "
                     "and navigator/ (every region's configuration). Each environment directory is replaced whole, "
                     "or not at all.")
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
        epilog=f"exit status: {EXIT_STATUS['refresh']}",
    )
    refresh.add_argument("--config-dir", type=Path, required=True, metavar="DIR", help="the image's configuration directory")
    refresh.add_argument("--region", required=True, metavar="R", help="the machine's region (FLY_REGION)")

    _add_init_command(commands)
    _add_rollout_commands(commands)
    _add_preflight_command(commands)
    commands.add_parser("hub", help="run the cable hub (see `orchestrate hub --help`)", add_help=False)
    return parser


# `status --serve`'s port, unless --port says another.
LIVE_PAGE_PORT = 8765

STATE_HELP = ("The journal, the lock and the local fleet live in --state DIR, else the inventory's rollout.state_dir, "
              "else .orchestrate/ beside the inventory.")


def command(commands: argparse._SubParsersAction, name: str, summary: str, description: str = "",
            *, state: bool = False, target: bool = False, family: str | None = None) -> argparse.ArgumentParser:
    """A subcommand that finds its inventory as every command does, with its exit status in its help
    (that of `family` for the actions of a command: lock status, fleet stop)."""
    parts = (f"{summary[0].upper()}{summary[1:]}.", description, inventory_file.HELP, STATE_HELP if state else "")
    parser = commands.add_parser(name, help=summary, description=" ".join(part for part in parts if part),
                                 epilog=f"exit status: {EXIT_STATUS[family or name]}")
    inventory_file.add_arguments(parser)
    if state:
        parser.add_argument("--state", metavar="DIR", help="the state directory (journal, lock, local fleet)")
    if target:
        parser.add_argument("--target", choices=("local", "ssh", "fly"),
                            help="where the regions run (default: the inventory's rollout.target, else local)")
    return parser


def _add_rollout_commands(commands: argparse._SubParsersAction) -> None:
    def command_with_state(name: str, summary: str) -> argparse.ArgumentParser:
        return command(commands, name, summary, state=True, target=True)

    plan = command_with_state("plan", "show the stages, a dated schedule, every region's change with its diff, "
                           "the memory projection and the exact steps; changes nothing")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--html", metavar="FILE", help="also write the plan as one self-contained HTML page")
    plan.add_argument("--start", type=_utc_date, metavar="DATE", help="schedule from this date (YYYY-MM-DD[THH:MM], UTC)")

    rollout = command_with_state("rollout", "deploy a stage or regions: lock, render, deploy, gate, record; "
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

    rollback = command_with_state("rollback", "switch regions' WebSocket off (the quick rollback), "
                                   "or with --to-previous put back the previously deployed files")
    rollback_which = rollback.add_mutually_exclusive_group()
    rollback_which.add_argument("--region", action="append", metavar="R", help="a region; repeatable")
    rollback_which.add_argument("--all", action="store_true", help="every region with a deployment")
    rollback.add_argument("--to-previous", action="store_true",
                          help="the previous deployment's files from the journal (fly target: each machine's previous image)")
    rollback.add_argument("--yes", action="store_true", help="do not ask before starting")
    rollback.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit)")
    rollback.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                          help="wait this long for another rollout's lock instead of failing at once")

    status = command_with_state("status", "every region's deployed state, last step and its gates, health, "
                                          "memory and drift")
    status.add_argument("--region", action="append", metavar="R", help="only this region (ord, or production/ord); repeatable")
    shown = status.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the status as JSON")
    shown.add_argument("--serve", action="store_true", help="serve a live page of the watched bake on 127.0.0.1 "
                       "(memory against budget, gates, findings, stages, audit), read-only, until SIGTERM or Ctrl-C")
    status.add_argument("--port", type=_port, metavar="P",
                        help=f"with --serve, the port (default {LIVE_PAGE_PORT}; 0 picks a free one)")

    watch = command_with_state("watch", "watch every baking region until stopped: sample its gates, memory and "
                                        "the hub's counters, and switch back, alone, a region that breaks a rule")
    watch.add_argument("--all", action="store_true", help="watch every deployed region, not only the baking ones")
    watch.add_argument("--once", action="store_true", help="one round, then exit (1 when a region broke a rule)")

    history = command_with_state("history", "every step and phase change recorded in the journal, and the audit")
    history.add_argument("--region", action="append", metavar="R", help="only this region's steps; repeatable")
    history.add_argument("--json", action="store_true", help="print the history as JSON")

    lock = commands.add_parser("lock", help="show or release the rollout lock", description="Show or release the "
                               "rollout lock.", epilog=f"exit status: {EXIT_STATUS['lock']}")
    lock_actions = lock.add_subparsers(dest="lock_action", required=True, metavar="ACTION")
    command(lock_actions, "status", "who holds the rollout lock, and since when", state=True, family="lock")
    release = command(lock_actions, "release", "remove the rollout lock, whoever holds it (audited)", state=True,
                      family="lock")
    release.add_argument("--force", action="store_true", help="required: another rollout may still hold the lock")
    release.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit)")

    fleet = commands.add_parser("fleet", help="start or stop the local fleet's regions (the local target)",
                                description="Start or stop the local fleet's regions, as last deployed.",
                                epilog=f"exit status: {EXIT_STATUS['fleet']}")
    fleet_actions = fleet.add_subparsers(dest="fleet_action", required=True, metavar="ACTION")
    for action, summary in (("start", "start every deployed region's processes (restarting those that run)"),
                            ("stop", "stop every region's processes"),
                            ("leak", "rehearse a leak: start a process in the region that grows at a set rate, "
                                     "counted with its processes and stopped with them")):
        parser = command(fleet_actions, action, summary, state=True, family="fleet")
        parser.add_argument("--region", action="append", metavar="R", required=action == "leak",
                            help="only this region; repeatable")
        if action == "leak":
            parser.add_argument("--mb-per-minute", type=float, required=True, metavar="N", help="how fast it grows")


def _add_init_command(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser(
        "init", help="write an inventory from an app's own navigator.yml(s) and fly.toml, and prove it renders them",
        description="Write an inventory from an app's own navigator.yml (one for every region, or one per region) "
        "and fly.toml, then render every region from it and compare, region by region, what Navigator would load "
        "from the original and from the rendered file. Differences the generator makes on purpose are listed with "
        "their reasons; any other is an unexplained difference.",
        epilog=f"exit status: {EXIT_STATUS['init']}")
    init.add_argument("--navigator", nargs="+", metavar="FILE", help="the app's navigator.yml; a file named "
                      "navigator.CODE.yml is region CODE's, a single other file is fly.toml's primary region's")
    init.add_argument("--regions", nargs="+", metavar="CODE=FILE", help="region CODE's navigator.yml (repeatable)")
    init.add_argument("--fly", metavar="FILE", help="the app's fly.toml: the Fly app, primary region, VM, volume, "
                      "service and env")
    init.add_argument("--tenants-from", metavar="FILE", help="a tenant file in Showcase's format (showcases.yml), "
                      "instead of listing the tenants in the inventory")
    init.add_argument("--mode", choices=MODES, help="the mode to move to (default: the app's own, or integrated when "
                      "the app runs Action Cable)")
    init.add_argument("--out", default=inventory_file.DEFAULT_INVENTORY, metavar="FILE",
                      help=f"the inventory to write (default: {inventory_file.DEFAULT_INVENTORY})")
    init.add_argument("--force", action="store_true", help="replace --out if it exists (never a file init reads)")


def _add_preflight_command(commands: argparse._SubParsersAction) -> None:
    preflight = command(
        commands, "preflight", "audit a Rails app's source for the modes: what blocks each one, with file and line",
        "Reads the app's channels, pages, scripts and settings (no Ruby needed) and reports what each mode cannot "
        "serve (blocking) and what the operator should know (warnings). The mode is --mode, else the inventory's "
        "websocket.mode; with neither, every mode is checked.",
    )
    preflight.add_argument("--app", metavar="PATH", help="the Rails app's root (default: the inventory's app.checkout)")
    preflight.add_argument("--mode", choices=MODES, help="check this mode (default: the inventory's websocket.mode)")
    preflight.add_argument("--json", action="store_true", help="print the findings as JSON")


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def _utc_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01 or 2026-12-01T09:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; an interrupt ends it with 130 and a reader that went away (`| head`) quietly."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whatever is still buffered for the closed pipe would raise again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(argv: Sequence[str] | None) -> int:
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
    if options.command == "init":
        from orchestrator.adopt.command import run as run_init

        return run_init(options)
    if options.command == "preflight":
        from orchestrator.preflight.command import run as run_preflight

        return run_preflight(options)
    if options.command == "watch":
        from orchestrator.watch.command import run as run_watch

        return run_watch(options)
    if options.command in ("plan", "rollout", "rollback", "status", "history", "lock", "fleet"):
        from orchestrator.rollout.commands import run as run_rollout

        return run_rollout(options)
    from orchestrator.commands import run

    return run(options)
