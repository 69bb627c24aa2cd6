"""Which inventory a command works on: every command finds it the same way."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from orchestrator.errors import InputError

INVENTORY_ENV = "ORCHESTRATE_INVENTORY"
DEFAULT_INVENTORY = "orchestrate.yml"
EXAMPLE_INVENTORY = "inventories/showcase.yml"
HELP = (f"The inventory is INVENTORY if given, else --inventory FILE, else ${INVENTORY_ENV}, else ./{DEFAULT_INVENTORY} "
        f"(the example: {EXAMPLE_INVENTORY}).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inventory", nargs="?", metavar="INVENTORY", help="the inventory file (see below)")
    parser.add_argument("--inventory", dest="inventory_option", metavar="FILE", help="the inventory, instead of INVENTORY")


def discover_inventory(options: argparse.Namespace) -> Path | None:
    """The explicit argument, then --inventory, then $ORCHESTRATE_INVENTORY, then ./orchestrate.yml; None if none."""
    for given in (getattr(options, "inventory", None), getattr(options, "inventory_option", None), os.environ.get(INVENTORY_ENV)):
        if given:
            return Path(given)
    if Path(DEFAULT_INVENTORY).is_file():
        return Path(DEFAULT_INVENTORY)
    return None


def find_inventory(options: argparse.Namespace) -> Path:
    found = discover_inventory(options)
    if found is None:
        example = f"; the example is {EXAMPLE_INVENTORY}" if Path(EXAMPLE_INVENTORY).is_file() else ""
        raise InputError([f"no inventory: no INVENTORY argument, no --inventory FILE, ${INVENTORY_ENV} is not set, and "
                          f"there is no {Path.cwd() / DEFAULT_INVENTORY}: name one{example}"])
    return found
