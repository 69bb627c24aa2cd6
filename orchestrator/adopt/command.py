"""`orchestrate init`: read the app's files, write the inventory, prove the translation, report."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hub.yaml_loader import read_text_file
from orchestrator.adopt.fly import FlySettings, read_fly
from orchestrator.adopt.proof import RegionProof, prove
from orchestrator.adopt.sources import REGION_CODE, RegionFile, read_region_file, region_of
from orchestrator.adopt.translate import Translation, translate
from orchestrator.atomic import write_file_atomic
from orchestrator.errors import EXIT_INVALID_INPUT, InputError
from orchestrator.inventory import load_inventory
from orchestrator.model import Inventory
from orchestrator.tenants import load_showcases
from orchestrator.terminal import plural, printable
from orchestrator.yaml_out import dump

EXIT_UNEXPLAINED = 1
SECTION_ORDER = ("app", "image", "environments", "regions", "tenants", "websocket", "navigator", "runtime_config",
                 "modes", "rollout")
SECTION_PURPOSE = {
    "app": "The app: where it is mounted, the port Navigator listens on, its primary region.",
    "image": "The image the generated Dockerfile builds (only what the app's files said; the rest are defaults).",
    "environments": "The Fly app and its regions (production; add staging by hand).",
    "regions": "One entry per region; a region's own mode or memory goes here.",
    "tenants": "The tenants and each one's environment; the generator writes applications.tenants from these.",
    "websocket": "The WebSocket mode to move to, and the cable path.",
    "navigator": "The rest of navigator.yml, as Navigator reads it; {region} stands for the region's code.",
    "runtime_config": "How a running machine renders its configuration again (the app's own sync, the CGI "
                      "scripts that reload).",
    "modes": "The settings of the mode the app runs today.",
    "rollout": "A first rollout: one region, then the rest; edit the stages and bakes to suit.",
}


def run(options: argparse.Namespace) -> int:
    out = Path(options.out)
    try:
        problems = [f"--out {out}: that is {path}, which {flag} reads; the inventory would replace it: name another file"
                    for flag, path in _inputs(options) if _same_file(out, Path(path))]
        if out.exists() and not options.force and not problems:
            problems.append(f"{out}: already exists; name another file with --out, or replace it with --force")
        if problems:
            raise InputError(problems)
        fly = read_fly(options.fly) if options.fly else None
        files = _region_files(options, fly)
        with tempfile.TemporaryDirectory() as scratch:
            translation, data, notes, text, inventory = _adopt(options, out, Path(scratch), files, fly)
        proofs = prove(inventory, files, translation.current)
        try:
            write_file_atomic(out, text)
        except OSError as error:
            raise InputError([f"--out {out}: cannot write there ({error.strerror}: {error.filename or out})"]) from None
    except InputError as error:
        for problem in error.problems:
            print(printable(problem), file=sys.stderr)
        print(f"init: {plural(len(error.problems), 'problem')}, nothing written", file=sys.stderr)
        return EXIT_INVALID_INPUT
    _report(out, data, translation, files, proofs, notes + translation.notes)
    return EXIT_UNEXPLAINED if any(proof.unexplained for proof in proofs) else 0


def _inputs(options: argparse.Namespace) -> list[tuple[str, str]]:
    """Every file init reads, with the option that names it."""
    named = [("--navigator", path) for path in options.navigator or ()]
    named += [("--regions", pair.partition("=")[2]) for pair in options.regions or ()]
    named += [("--fly", options.fly), ("--tenants-from", options.tenants_from)]
    return [(flag, path) for flag, path in named if path]


def _same_file(out: Path, path: Path) -> bool:
    """Whether writing `out` would replace `path`: the same file by another name or link, or the same resolved path."""
    try:
        return os.path.samefile(out, path)
    except OSError:  # one of them does not exist (yet)
        return out.resolve() == path.resolve()


def _adopt(options: argparse.Namespace, out: Path, scratch: Path, files: list[RegionFile], fly: FlySettings | None
           ) -> tuple[Translation, dict[str, Any], list[str], str, Inventory]:
    """The translation, the inventory's data, text and loaded self. The tenant file is read once, with a bound,
    into `scratch`, where the inventory is loaded from too; a problem names the user's files, not those copies."""
    candidate = scratch / out.name
    renamed = {str(candidate): str(out)}
    tenants_file = None
    try:
        if options.tenants_from:
            tenants_file = scratch / "tenants" / Path(options.tenants_from).name
            tenants_file.parent.mkdir()
            tenants_file.write_text(read_text_file(options.tenants_from), encoding="utf-8")
            renamed[str(tenants_file)] = options.tenants_from
        translation = translate(files, load_showcases(tenants_file)[0] if tenants_file else None)
        data, notes = _inventory_data(translation, fly, options, out)
        text = _commented(data, translation, options)
        candidate.write_text(text, encoding="utf-8")
        return translation, data, notes, text, load_inventory(candidate, tenants_file)
    except InputError as error:
        problems = error.problems
        for copy, original in renamed.items():
            problems = [problem.replace(copy, original) for problem in problems]
        raise InputError(problems) from None


def _region_files(options: argparse.Namespace, fly: FlySettings | None) -> list[RegionFile]:
    named: list[tuple[str | None, str]] = [(region_of(path), path) for path in options.navigator or ()]
    for pair in options.regions or ():
        code, _, path = pair.partition("=")
        if not REGION_CODE.match(code) or not path:
            raise InputError([f"--regions {pair}: expected CODE=FILE with a three-letter region code, such as ord=navigator.yml"])
        named.append((code, path))
    if not named:
        raise InputError(["init needs the app's navigator.yml: --navigator FILE or --regions CODE=FILE"])
    if len(named) == 1 and named[0][0] is None and fly is not None:
        named = [(fly.environment.get("primary_region"), named[0][1])]
    unnamed = [path for code, path in named if code is None]
    if unnamed:
        raise InputError([f"{path}: which region is this file? name it navigator.CODE.yml, or give --regions CODE={path}"
                          for path in unnamed])
    counts = Counter(code for code, _ in named)
    twice = sorted(code for code, count in counts.items() if count > 1)
    if twice:
        raise InputError([f"region {code}: more than one file given" for code in twice])
    return [read_region_file(path, code) for code, path in named if code]


def _inventory_data(translation: Translation, fly: FlySettings | None, options: argparse.Namespace,
                    out: Path) -> tuple[dict[str, Any], list[str]]:
    data = translation.data
    notes: list[str] = []
    environment = data["environments"]["production"]
    regions = environment["regions"]
    if fly is not None:
        fly_env = dict(fly.environment)
        primary = fly_env.get("primary_region")
        if primary is not None and primary not in regions:
            del fly_env["primary_region"]
            notes.append(f"{options.fly}: primary_region {primary!r} is none of the regions of the navigator.yml "
                         f"files ({', '.join(regions)}): not kept")
        environment.update(fly_env)
        if fly.data_dir:
            data["image"] = {"data_dir": fly.data_dir}
        if fly.internal_port is not None and fly.internal_port != data["app"]["listen"]:
            notes.append(f"{options.fly}: http_service.internal_port {fly.internal_port} is not server.listen "
                         f"{data['app']['listen']}: the generated fly.toml uses server.listen")
        notes.extend(fly.not_held)
        data["app"]["primary_region"] = environment.get("primary_region", data["app"]["primary_region"])
    name = environment["fly_app"] if fly else data["app"]["root_path"].rsplit("/", 1)[-1]
    data["app"]["name"] = re.sub(r"[^a-z0-9_-]", "-", name.lower()).lstrip("-0123456789_") or "app"
    if fly is None:
        environment["fly_app"] = data["app"]["name"]
    if options.tenants_from:
        tenants = data["tenants"]
        tenants.pop("events")
        relative = os.path.relpath(Path(options.tenants_from).resolve(), out.resolve().parent)
        data["tenants"] = {"source": "showcases", "file": relative, **{k: v for k, v in tenants.items() if k != "source"}}
    current = next(iter(translation.current.values()))
    target = options.mode or ("integrated" if current.mode == "action_cable" else current.mode)
    data["websocket"]["mode"] = target
    if target != current.mode:
        data["websocket"]["enabled"] = True
    first = [code for code in translation.current if code in regions][:1] or regions[:1]
    stages = [{"name": "canary", "environment": "production", "regions": first, "bake": "24h"}]
    if rest := [code for code in regions if code not in first]:
        stages.append({"name": "all", "environment": "production", "regions": rest, "bake": "24h"})
    data["rollout"] = {"stages": stages}
    return data, notes


def _commented(data: dict[str, Any], translation: Translation, options: argparse.Namespace) -> str:
    files = ", ".join([*(options.navigator or ()), *(pair.partition("=")[2] for pair in options.regions or ())])
    # File names are the user's: written as `printable` writes them, a line break in one cannot end the comment.
    lines = [printable(f"# Written by `orchestrate init` from {files}" + (f" and {options.fly}" if options.fly else "") + "."),
             "# `orchestrate validate` checks it, `orchestrate plan` shows the move to websocket.mode; the inventory",
             "# is the source of truth from now on: edit it, then render."]
    for section in SECTION_ORDER:
        if section not in data:
            continue
        lines.append("")
        lines.append(f"# {SECTION_PURPOSE[section]}")
        lines.extend(printable(f"# From {source}") for source in translation.sources.get(section, ()))
        if section == "environments" and options.fly:
            lines.append(printable(f"# From {options.fly}: the Fly app, primary region, VM, volume, service and env."))
        lines.append(dump({section: data[section]}).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _report(out: Path, data: dict[str, Any], translation: Translation, files: list[RegionFile],
            proofs: list[RegionProof], notes: list[str]) -> None:
    """What was written and the proof; file names, keys and values are the app's, so each line is `printable`."""
    current = {code: f"{r.mode}, websocket {'on' if r.enabled else 'off'}" for code, r in translation.current.items()}
    today = "; ".join(f"{code}: {state}" for code, state in current.items())
    _say(f"wrote {out}: {plural(len(data['regions']), 'region')}, websocket.mode {data['websocket']['mode']} "
         f"(today {today})")
    _say("proof: each region rendered in today's mode and loaded as Navigator would load it, against the original")
    width = max(len(proof.region) for proof in proofs)
    for proof in proofs:
        if not proof.compared:
            _say(f"  {proof.region:<{width}}  rendered; no file of this region was given to compare with")
            continue
        verdict = plural(len(proof.unexplained), "unexplained difference") if proof.unexplained else "the same"
        _say(f"  {proof.region:<{width}}  {verdict}" + (", once these are explained:" if proof.explained else ""))
        for reason, places in proof.explained:
            _say(f"  {'':<{width}}    - {reason} ({plural(places, 'place')})")
        for difference in proof.unexplained:
            _say(f"  {'':<{width}}    ! {difference}")
    dropped = [entry for file in files for entry in file.dropped]
    if dropped:
        _say("left out, since Navigator ignores them:")
        for entry in dropped:
            _say(f"  {entry.where}: {entry.reason}")
    if notes:
        _say("not held by the inventory (carry over by hand if needed):")
        for note in notes:
            _say(f"  {note}")



def _say(line: str) -> None:
    print(printable(line))
