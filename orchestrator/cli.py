"""`orchestrate`: validate an inventory, render every region's configuration, run the hub."""

from __future__ import annotations

import argparse
import sys
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

    commands.add_parser("hub", help="run the cable hub (see `orchestrate hub --help`)", add_help=False)
    return parser


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
    from orchestrator.commands import run

    return run(options)
