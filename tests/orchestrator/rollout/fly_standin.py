"""A STAND-IN for flyctl (`fly`), for the tests only: there is no Fly account here.

Put on PATH as `fly` (a shell wrapper running `python3 fly_standin.py "$@"`).
Every call appends its argv as one JSON line to the file named by
$FLY_STANDIN_LOG. Answers, from the directory named by $FLY_STANDIN_ROOT:

- `machine list ... --json`: the text of machines.json (flyctl's shape: id,
  region, state, image_ref, checks[{name, status, output}]);
- `releases ... --json`: the text of releases.json (flyctl's shape: Version,
  Status, ImageRef, ...);
- `deploy ...`, `machine restart ...`: exit 0 (recorded only);
- `ssh console --region R -C CMD`: CMD split into words (as flyctl's remote
  side does) and run locally in regions/R/ with FLY_REGION=R, its output and
  exit status passed through.
Anything else exits 2.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def main(argv: list[str]) -> int:
    with open(os.environ["FLY_STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    root = Path(os.environ["FLY_STANDIN_ROOT"])
    if argv[:2] == ["machine", "list"] and "--json" in argv:
        sys.stdout.write((root / "machines.json").read_text())
        return 0
    if argv[:1] == ["releases"] and "--json" in argv:
        sys.stdout.write((root / "releases.json").read_text())
        return 0
    if argv[:1] == ["deploy"] or argv[:2] == ["machine", "restart"]:
        return 0
    if argv[:2] == ["ssh", "console"]:
        region, command = option(argv, "--region"), option(argv, "-C")
        if not region or command is None:
            print("stand-in fly: ssh console needs --region and -C", file=sys.stderr)
            return 2
        home = root / "regions" / region
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(shlex.split(command), cwd=home, env={**os.environ, "FLY_REGION": region},
                              capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    print(f"stand-in fly: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
