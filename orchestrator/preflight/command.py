"""`orchestrate preflight --app PATH [--mode M] [--json] [INVENTORY]`: audit a Rails app for the modes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.errors import EXIT_INVALID_INPUT, InputError
from orchestrator.inventory import load_inventory
from orchestrator.preflight.gate import checkout
from orchestrator.preflight.report import Report, audit, report_json, report_text
from orchestrator.inventory_file import discover_inventory


def run(options: argparse.Namespace) -> int:
    try:
        report = _audit(options)
    except InputError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID_INPUT
    if options.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report), end="")
    return report.exit_status


def _audit(options: argparse.Namespace) -> Report:
    """The mode is --mode, else the inventory's websocket.mode; the app --app, else the inventory's app.checkout."""
    inventory_file = discover_inventory(options)
    if inventory_file is None:
        if not options.app:
            raise InputError(["no app: give --app PATH (or an inventory with app.checkout)"])
        return audit(Path(options.app), None, options.mode, "--mode")
    inventory = load_inventory(inventory_file)
    app = Path(options.app) if options.app else checkout(inventory, inventory_file)
    if app is None:
        raise InputError([f"no app: give --app PATH, or set app.checkout in {inventory_file}"])
    if options.mode:
        return audit(app, inventory, options.mode, "--mode")
    return audit(app, inventory, inventory.websocket.mode, f"websocket.mode of {inventory_file}")
