"""Mutation testing of one part of the tree, in a scratch copy (results: bench/results/mutation.md).

mutmut mutates every file `only_mutate` names and first runs every selected test once to map
tests to functions; the copy narrows both to the files asked for, so a run neither waits for nor
depends on the rest of the suite (other work in progress cannot break it), and the working tree
gets no mutants/ directory. The copy is of the working tree as it is when this runs.

    .venv/bin/python bench/mutation_scratch.py DIR --mutate hub/frames.py --tests tests/hub/test_hub_frames.py ...
    cd DIR && /work/main/.venv/bin/mutmut run && /work/main/.venv/bin/python bench/mutation_scratch.py DIR --summary

`--summary` counts the copy's mutants per file and per function from mutmut's own records
(mutants/**/*.meta), as killed / survived / timed out / other.

To run the survivors of a first run again with new tests, on exactly the same sources:

    .venv/bin/python bench/mutation_scratch.py DIR2 --sources-of DIR --overlay tests/hub/test_new.py --mutate ... --tests ...
    cd DIR2 && /work/main/.venv/bin/mutmut run $(cd DIR && /work/main/.venv/bin/mutmut results | awk -F: '/survived/{print $1}')

`--deselect NODEID` leaves out a test that fails on the copied sources (one written ahead of its code).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEFT_OUT = (".venv", "mutants", "node_modules", "__pycache__", ".hypothesis", ".pytest_cache", "tmp", ".orchestrate")


def copy_tree(target: Path, sources_of: Path | None = None, overlay: Sequence[str] = ()) -> None:
    """The working tree; or an earlier copy (`sources_of`: the same state again) with the files in
    `overlay` (new tests) taken from the working tree."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(sources_of or REPO, target, ignore=shutil.ignore_patterns(*LEFT_OUT), symlinks=True)
    for path in overlay:
        shutil.copy2(REPO / path, target / path)


def narrow_config(target: Path, mutate: list[str], tests: list[str], pytest_args: list[str]) -> None:
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    section = "\n".join(
        [
            "[tool.mutmut]",
            'source_paths = ["orchestrator", "hub"]',
            "only_mutate = " + json.dumps(mutate),
            'also_copy = ["hub", "schema", "templates", "inventories", "tests"]',
            "pytest_add_cli_args_test_selection = " + json.dumps(tests),
            "pytest_add_cli_args = " + json.dumps(["-p", "no:cacheprovider", *pytest_args]),
            "",
        ]
    )
    pyproject.write_text(text[:start] + section + (text[end:] if end >= 0 else ""))


STATUS = {0: "survived", 1: "killed", 3: "killed", -24: "timeout", 24: "timeout", 36: "timeout", 152: "timeout",
          5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious", 37: "caught by type check", -11: "segfault"}


def _function_of(mutant: str) -> str:
    """hub.frames.xǁFrameParserǁfeed__mutmut_3 -> FrameParser.feed; hub.frames.x_negotiate__mutmut_1 -> negotiate."""
    name = re.sub(r"__mutmut_\d+$", "", mutant.rsplit(".", 1)[-1])
    if name.startswith("xǁ"):
        return name[2:].replace("ǁ", ".")
    return name[2:] if name.startswith("x_") else name


def summary(target: Path) -> dict[str, dict[str, Counter[str]]]:
    """file -> function -> Counter(status) from the .meta files mutmut writes beside each mutated file."""
    result: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for meta in sorted((target / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = str(meta.relative_to(target / "mutants"))[: -len(".meta")]
        for name, code in data.get("exit_code_by_key", {}).items():
            function = _function_of(name)
            status = "not run" if code is None else STATUS.get(code, f"exit {code}")
            result[source][function][status] += 1
    return result


def print_summary(target: Path) -> None:
    for source, functions in summary(target).items():
        total: Counter[str] = Counter()
        for counts in functions.values():
            total += counts
        print(f"{source}: {sum(total.values())} mutants, " + ", ".join(f"{n} {s}" for s, n in sorted(total.items())))
        for function, counts in sorted(functions.items()):
            if set(counts) - {"killed", "timeout"}:
                print(f"    {function}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--mutate", action="append", default=[], help="a file to mutate (repeat)")
    parser.add_argument("--tests", nargs="+", default=[], help="the test files to run against the mutants")
    parser.add_argument("--deselect", action="append", default=[], metavar="NODEID",
                        help="a test to leave out (one that fails on the copied sources, e.g. a test written ahead of its code)")
    parser.add_argument("--sources-of", type=Path, metavar="EARLIER_COPY",
                        help="copy an earlier copy instead of the working tree: the same state again")
    parser.add_argument("--overlay", action="append", default=[], metavar="PATH",
                        help="with --sources-of: a file (a new test) to take from the working tree")
    parser.add_argument("--summary", action="store_true", help="count the results of a finished run")
    args = parser.parse_args()
    if args.summary:
        print_summary(args.directory)
        return
    if not args.mutate or not args.tests:
        sys.exit("give at least one --mutate and the --tests")
    copy_tree(args.directory, args.sources_of, args.overlay)
    narrow_config(args.directory, args.mutate, args.tests, [f"--deselect={node}" for node in args.deselect])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if args.sources_of:
        print(f"copied {args.sources_of} to {args.directory}, with {', '.join(args.overlay) or 'nothing'} from the working tree")
    else:
        print(f"copied the working tree (HEAD {head.stdout.strip()} plus uncommitted changes) to {args.directory}")
    for source in args.mutate:
        digest = hashlib.sha256((args.directory / source).read_bytes()).hexdigest()[:12]
        diff = subprocess.run(["git", "-C", str(REPO), "diff", "--stat", "HEAD", "--", source], capture_output=True, text=True)
        state = "" if args.sources_of else ", as committed in HEAD" if not diff.stdout.strip() else ", " + diff.stdout.strip()
        print(f"  {source}: sha256 {digest}{state}")
    print(f"next: cd {args.directory} && {REPO}/.venv/bin/mutmut run")


if __name__ == "__main__":
    main()
