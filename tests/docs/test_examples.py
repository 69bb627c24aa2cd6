"""Every shell example in README.md and docs/ runs, and exits as the page says.

The examples are the fenced `sh` and `console` blocks. In a `sh` block every line is a command; in a
`console` block the lines that start with `$ ` are (the others show output, which is not compared). A
line that ends with `\\` goes on on the next. A command exits 0 unless its trailing comment names another
status: `orchestrate rollout --stage canary --yes    # refused: exit 3`.

The examples of one page run in order in one bash session (an `export` holds for the commands after it),
in a temporary directory holding a copy of the example inventory as `inventories/showcase.yml`, so its
state directory, `inventories/.orchestrate/`, is fresh; the local target is the inventory's. The session
starts without CABLE_SIGNING_SECRET and ORCHESTRATE_INVENTORY, as an operator's would, and with the
project's `.venv/bin` first on PATH, where `orchestrate` and `cable-hub` are. Whatever the page leaves
running on the local fleet is stopped afterwards.

An example that cannot run here (it needs a Fly account, ssh hosts, the app's checkout, or it runs until
stopped) is marked in the Markdown with an HTML comment right before its block,
`<!-- not run: the reason -->`, and reported as skipped with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
VENV_BIN = Path(sys.executable).parent
PAGE_TIMEOUT_SECONDS = 240
CLEANUP_TIMEOUT_SECONDS = 60
LANGUAGES = ("sh", "console")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<language>[\w-]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")
EXIT = re.compile(r"\s#[^#]*\bexit (?P<status>\d+)\b[^#]*$")
MARK = "::docs-example::"  # a line of its own before and after each command's output


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in the page
    text: str
    status: int  # the exit status the page expects


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence
    language: str
    lines: list[tuple[int, str]] = field(default_factory=list)
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def commands(self) -> list[Command]:
        found: list[Command] = []
        pending: list[tuple[int, str]] = []
        for number, text in self.lines:
            if not pending:
                if self.language == "console":
                    if not text.startswith("$ "):
                        continue
                    text = text[2:]
                if not text.strip() or text.lstrip().startswith("#"):
                    continue
            pending.append((number, text))
            if text.endswith("\\"):
                continue
            joined = "\n".join(part for _, part in pending)
            last = pending[-1][1]
            expected = EXIT.search(last)
            found.append(Command(pending[0][0], joined, int(expected["status"]) if expected else 0))
            pending = []
        if pending:
            raise AssertionError(f"{self.where}: the last command goes on past the end of the block")
        return found


def blocks(page: Path) -> list[Block]:
    """The page's `sh` and `console` blocks, each with the reason it is not run, if it is marked."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, language = opening["indent"], opening["fence"], opening["language"]
        start = index
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(lines) and not (lines[index].strip() == fence and lines[index].startswith(indent)):
            body.append((index + 1, lines[index][len(indent):] if lines[index].startswith(indent) else lines[index]))
            index += 1
        index += 1
        if language not in LANGUAGES:
            continue
        before = next((lines[back] for back in range(start - 1, -1, -1) if lines[back].strip()), "")
        marked = NOT_RUN.match(before)
        found.append(Block(page, start + 1, language, body, marked["reason"] if marked else None))
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
RUN_PAGES = [page for page in PAGES if any(block.not_run is None and block.commands() for block in blocks(page))]
NOT_RUN_BLOCKS = [block for block in ALL_BLOCKS if block.not_run is not None]


def session_script(commands: list[Command]) -> str:
    """Bash that runs the commands in order and marks where each one's output starts and how it ended."""
    parts = ["set +e", "exec 2>&1"]
    for number, command in enumerate(commands):
        parts += [f"printf '\\n{MARK} {number} start\\n'", command.text, f"printf '\\n{MARK} {number} status %d\\n' \"$?\""]
    return "\n".join(parts) + "\n"


def session_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("CABLE_SIGNING_SECRET", "ORCHESTRATE_INVENTORY", "PYTHONPATH")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return env


def stop_local_fleets(directory: Path) -> None:
    """Stop every local fleet region under `directory` with the fleet's own supervisor (it checks each pid's
    start time, so a pid reused since is left alone)."""
    for fleet in directory.rglob("fleet"):
        for home in sorted(path for path in fleet.glob("*/*") if (path / "run").is_dir()):
            subprocess.run([str(VENV_BIN / "python"), "-m", "orchestrator.targets.localctl", "stop", "--home", str(home)],
                           cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, timeout=CLEANUP_TIMEOUT_SECONDS)


def run_session(commands: list[Command], directory: Path) -> tuple[dict[int, int], dict[int, str], str]:
    """Each command's exit status and output, and the whole transcript."""
    process = subprocess.Popen(["bash", "-c", session_script(commands)], cwd=directory, env=session_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        transcript, _ = process.communicate(timeout=PAGE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        transcript, _ = process.communicate()
        raise AssertionError(f"the examples did not finish within {PAGE_TIMEOUT_SECONDS} s:\n{transcript[-4000:]}") from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    statuses: dict[int, int] = {}
    outputs: dict[int, list[str]] = {}
    current: int | None = None
    for line in transcript.splitlines():
        if line.startswith(MARK):
            _, number, what, *rest = line.split()
            current = int(number) if what == "start" else None
            if what == "status":
                statuses[int(number)] = int(rest[0])
            continue
        if current is not None:
            outputs.setdefault(current, []).append(line)
    return statuses, {number: "\n".join(lines) for number, lines in outputs.items()}, transcript


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.timeout(PAGE_TIMEOUT_SECONDS + 2 * CLEANUP_TIMEOUT_SECONDS)
@pytest.mark.parametrize("page", RUN_PAGES, ids=page_id)
def test_the_examples_of_a_page_run(page: Path, tmp_path: Path) -> None:
    commands = [command for block in blocks(page) if block.not_run is None for command in block.commands()]
    (tmp_path / "inventories").mkdir()
    for name in ("showcase.yml", "showcases.yml"):
        shutil.copy(REPO / "inventories" / name, tmp_path / "inventories" / name)
    try:
        statuses, outputs, transcript = run_session(commands, tmp_path)
    finally:
        stop_local_fleets(tmp_path)
    wrong = [
        f"{page_id(page)}:{command.line}: `{command.text}` exited {statuses.get(number, 'never')}, "
        f"the page says {command.status}\n" + "\n".join(f"    {line}" for line in outputs.get(number, "").splitlines()[-15:])
        for number, command in enumerate(commands) if statuses.get(number) != command.status
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("block", NOT_RUN_BLOCKS, ids=lambda block: block.where)
def test_an_example_marked_not_run(block: Block) -> None:
    pytest.skip(f"{block.where}: not run: {block.not_run}")


def test_the_examples_are_found() -> None:
    """A check of the reader: the README's tour is among the examples, with its expected refusal."""
    readme = [command for block in blocks(REPO / "README.md") if block.not_run is None for command in block.commands()]
    assert any(command.text.startswith("orchestrate rollout --stage staging") for command in readme)
    assert any(command.status == 3 for command in readme)
    assert {block.not_run for block in blocks(REPO / "README.md")} >= {"the whole test suite"}
    assert REPO / "README.md" in RUN_PAGES and len(RUN_PAGES) > 10


def test_the_reader_of_a_block() -> None:
    block = Block(REPO / "README.md", 1, "console", [
        (2, "$ orchestrate rollout --stage canary \\"), (3, "    --yes    # refused: exit 3"),
        (4, "rollout not started: ..."), (5, "$ orchestrate status"),
    ])
    assert block.commands() == [
        Command(2, "orchestrate rollout --stage canary \\\n    --yes    # refused: exit 3", 3),
        Command(5, "orchestrate status", 0),
    ]
    script = Block(REPO / "README.md", 1, "sh", [(2, "# a comment"), (3, "export A=1"), (4, ""), (5, "echo $A")])
    assert [command.text for command in script.commands()] == ["export A=1", "echo $A"]
