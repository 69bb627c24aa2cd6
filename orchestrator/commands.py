"""The inventory commands behind `orchestrate validate` and `orchestrate render`."""

from __future__ import annotations

import argparse
import sys

from orchestrator.atomic import publish_directories
from orchestrator.errors import EXIT_INVALID_INPUT, InputError, RenderError
from orchestrator.inventory import load_inventory, warnings_for
from orchestrator.model import Inventory, RegionSettings
from orchestrator.render import render_region, select_regions

EXIT_RENDER_FAILED = 1


def run(options: argparse.Namespace) -> int:
    try:
        inventory = load_inventory(options.inventory)
        if options.command == "validate":
            _warn(inventory, select_regions(inventory))
            print(_summary(inventory))
            return 0
        return _render(inventory, options)
    except InputError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        noun = "problem" if len(error.problems) == 1 else "problems"
        print(f"{options.inventory}: {len(error.problems)} {noun}, nothing written", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except RenderError as error:
        print(f"render failed, nothing written: {error}", file=sys.stderr)
        return EXIT_RENDER_FAILED


def _render(inventory: Inventory, options: argparse.Namespace) -> int:
    unknown = sorted(set(options.region or ()) - set(inventory.regions))
    if unknown:
        known = ", ".join(sorted(inventory.regions))
        raise InputError([f"--region {code}: not a region of {inventory.name} (known: {known})" for code in unknown])
    enabled = None if options.websocket is None else options.websocket == "on"
    selected = select_regions(inventory, options.region, options.mode, enabled)
    _warn(inventory, selected)
    rendered = [render_region(inventory, settings) for settings in selected]
    publish_directories(options.out, {region.directory: region.files for region in rendered})
    file_count = sum(len(region.files) for region in rendered)
    print(f"wrote {file_count} files for {len(rendered)} regions to {options.out}")
    for region in rendered:
        state = "on" if region.settings.websocket_enabled else "off"
        print(f"  {region.directory}: {region.settings.mode}, websocket {state}")
    return 0


def _warn(inventory: Inventory, selected: list[RegionSettings]) -> None:
    for warning in warnings_for(inventory, {settings.mode for settings in selected}):
        print(f"warning: {warning}", file=sys.stderr)


def _summary(inventory: Inventory) -> str:
    environments = ", ".join(
        f"{name} ({env.fly_app}: {len(env.regions)} regions)" for name, env in sorted(inventory.environments.items())
    )
    websocket = inventory.websocket
    state = "on" if websocket.enabled else "off"
    return (
        f"{inventory.name}: valid; {environments}; {len(inventory.tenants)} tenants; "
        f"mode {websocket.mode}, websocket {state}; {len(inventory.rollout.stages)} rollout stages"
    )
