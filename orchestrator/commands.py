"""The inventory commands behind `orchestrate validate` and `orchestrate render`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.atomic import check_output_dir, publish_directories
from orchestrator.errors import EXIT_INVALID_INPUT, EXIT_RENDER_FAILED, InputError, RenderError
from orchestrator.inventory import load_inventory, mode_problems, mode_warnings
from orchestrator.inventory_file import find_inventory
from orchestrator.terminal import plural
from orchestrator.model import Inventory, RegionSettings
from orchestrator.render.files import recorded_settings, regions_by_mode, render_environment, select_settings
from orchestrator.render.image import REGION_SETTINGS
from hub.yaml_loader import read_text_file


def run(options: argparse.Namespace) -> int:
    path: Path | str = "the inventory"
    try:
        if options.command == "render":
            check_output_dir(options.out)
        path = find_inventory(options)
        inventory = load_inventory(path)
        if options.command == "validate":
            _check_modes(inventory, [s for group in select_settings(inventory).values() for s in group])
            print(_summary(inventory))
            return 0
        return _render(inventory, options)
    except InputError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        noun = "problem" if len(error.problems) == 1 else "problems"
        print(f"{path}: {len(error.problems)} {noun}, nothing written", file=sys.stderr)
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
    out = Path(options.out)
    recorded = _recorded(inventory, out) if options.region else {}
    selected = select_settings(inventory, options.region, options.mode, enabled, recorded)
    _check_modes(inventory, [s for group in selected.values() for s in group])
    rendered = [render_environment(inventory, settings) for settings in selected.values()]
    publish_directories(out, {environment.directory: environment.files for environment in rendered})
    file_count = sum(len(environment.files) for environment in rendered)
    print(f"wrote {file_count} files for {len(rendered)} images to {out}")
    for environment in rendered:
        deploy_path = f"{inventory.image.deploy_dir}/{environment.directory}"
        print(f"  {environment.directory}/: the image of Fly app {environment.environment.fly_app}; with this "
              f"directory at {deploy_path} in the app's checkout, deploy from there with")
        print(f"      fly deploy . --config {deploy_path}/fly.toml --dockerfile {deploy_path}/Dockerfile")
        for settings in environment.settings:
            state = "on" if settings.websocket_enabled else "off"
            print(f"    regions/{settings.region.code}: {settings.mode}, websocket {state}")
    return 0


def _recorded(inventory: Inventory, out: Path) -> dict[tuple[str, str], RegionSettings]:
    """What each region under `out` was last rendered with, so a render of other regions keeps it."""
    found = {}
    for env_name, environment in inventory.environments.items():
        for code in environment.regions:
            path = out / env_name / "navigator" / "regions" / code / REGION_SETTINGS
            if path.is_file():
                found[(env_name, code)] = recorded_settings(read_text_file(path), str(path), inventory, env_name)
    return found


def _check_modes(inventory: Inventory, settings: list[RegionSettings]) -> None:
    """Refuse what the modes cannot do; print what they would do that the operator should know (stderr)."""
    by_mode = regions_by_mode(settings)
    problems = mode_problems(inventory, by_mode)
    if problems:
        raise InputError(problems)
    for warning in mode_warnings(inventory, by_mode):
        print(f"warning: {warning}", file=sys.stderr)


def _summary(inventory: Inventory) -> str:
    environments = ", ".join(
        f"{name} ({env.fly_app}: {plural(len(env.regions), 'region')})" for name, env in sorted(inventory.environments.items())
    )
    websocket = inventory.websocket
    state = "on" if websocket.enabled else "off"
    return (
        f"{inventory.name}: valid; {environments}; {plural(len(inventory.tenants.events), 'tenant')}; "
        f"mode {websocket.mode}, websocket {state}; {plural(len(inventory.rollout.stages), 'rollout stage')}"
    )
