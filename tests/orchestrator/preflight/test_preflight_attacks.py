"""The preflight on a hostile app tree: FIFOs, links out of the tree, deep nesting, names that would drive a terminal.

The audit runs on anyone's checkout, as whoever runs `orchestrate`: it must
finish, read nothing outside the tree, and print what it found without obeying
it. Runs that could hang on the old code go through a subprocess with a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.preflight.packages import MAX_JSON_DEPTH
from orchestrator.preflight.report import audit, report_text
from orchestrator.preflight.source import MAX_DEPTH
from tests.orchestrator.preflight.apps import ACTION_CABLE_APP, TURBO_CABLE_APP, coded, write_files
from tests.orchestrator.rollout.fleet import REPO, Fleet, make_fleet

SECRET = "s3cret-from-outside-the-tree"
LEAKING_CHANNEL = f'class LeakChannel < ApplicationCable::Channel\n  def leak; "{SECRET}"; end\nend\n'
# A name with a line break, a terminal escape (red, then "clear screen") and a right-to-left override.
EVIL = "evil\n\x1b[31m\x1b[2J\u202e_channel.rb"
EVIL_SHOWN = "evil\\n\\x1b[31m\\x1b[2J\\u202e_channel.rb"
PERFORMING = 'class EvilChannel < ApplicationCable::Channel\n  def speak; end\nend\n'


def preflight(app: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`orchestrate preflight` of this checkout, in a process of its own: a hang is a timeout, not a stuck suite."""
    command = [sys.executable, "-m", "orchestrator", "preflight", "--app", str(app), *arguments]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("ORCHESTRATE_INVENTORY", None)
    return subprocess.run(command, capture_output=True, text=True, cwd=app, env=environment, timeout=60)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path)
    yield made
    made.stop_all()


def test_fifos_in_the_tree_are_skipped_not_waited_on(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", TURBO_CABLE_APP)
    os.mkfifo(app / "app" / "channels" / "pipe_channel.rb")  # found by a walk
    os.mkfifo(app / "Gemfile.lock")  # read by name
    result = preflight(app, "--mode", "integrated")
    assert result.returncode == 0, result.stderr
    assert "  Gemfile.lock [file-skipped]\n      not audited: Gemfile.lock is not a regular file\n" in result.stdout
    assert "  app/channels/pipe_channel.rb [file-skipped]\n" in result.stdout


def test_a_rollout_audits_an_app_with_a_fifo_and_an_evil_name_and_says_so_safely(fleet: Fleet, tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", {**TURBO_CABLE_APP, f"app/channels/{EVIL}": PERFORMING})
    os.mkfifo(app / "app" / "channels" / "pipe_channel.rb")
    refused = fleet.orchestrate("rollout", "--stage", "staging", "--dry-run", "--app", str(app), timeout=60)
    assert refused.code == 3, refused.text
    assert f"(app/channels/{EVIL_SHOWN}:2 channel-action)" in refused.err
    assert "\x1b" not in refused.text and "\u202e" not in refused.text


def test_deeply_nested_json_is_skipped_with_the_reason(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", {**ACTION_CABLE_APP, "package.json": "[" * 100_000})
    report = audit(app, None, "hub")
    (skipped,) = [finding for finding in report.findings if finding.code.value == "file-skipped"]
    assert (skipped.where.file, skipped.message) == (
        "package.json", f"not audited: cannot be read as JSON: nested deeper than {MAX_JSON_DEPTH} levels")


def nest(base: Path, depth: int) -> list[Path]:
    """`depth` directories, each in the one before (a loop: pathlib's and os's own helpers recurse)."""
    made = []
    for _ in range(depth):
        base = base / "d"
        base.mkdir()
        made.append(base)
    return made


def test_a_tree_nested_deeper_than_recursion_goes_is_walked_to_the_bound(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)
    (app / "app" / "javascript" / "controllers").mkdir()
    nested = nest(app / "app" / "javascript" / "controllers", 1_500)
    try:
        (nested[9] / "room_controller.js").write_text('this.room.perform("speak")\n')
        report = audit(app, None, "hub")
        deep = "app/javascript/controllers" + "/d" * (MAX_DEPTH - 2)
        assert coded(report, "client-perform") == [(f"app/javascript/controllers{'/d' * 10}/room_controller.js", 1)]
        assert [(finding.where.file, finding.message) for finding in report.findings if finding.code.value == "file-skipped"] == [
            (deep, f"not audited: nested deeper than {MAX_DEPTH} directories")]
    finally:
        for directory in reversed(nested):
            for entry in directory.iterdir():
                if not entry.is_dir():
                    entry.unlink()
            directory.rmdir()


@pytest.mark.parametrize("link", ["app/channels", "app/channels/leak_channel.rb", "config/cable.yml"])
def test_links_out_of_the_tree_are_not_followed_and_what_they_hold_is_never_shown(tmp_path: Path, link: str) -> None:
    outside = write_files(tmp_path / "outside", {
        "leak_channel.rb": LEAKING_CHANNEL,
        "channels/leak_channel.rb": LEAKING_CHANNEL,
        "config/cable.yml": f"production:\n  adapter: redis\n  url: redis://:{SECRET}@db:6379/1\n",
    })
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)
    target = {"app/channels": outside / "channels", "app/channels/leak_channel.rb": outside / "leak_channel.rb",
              "config/cable.yml": outside / "config" / "cable.yml"}[link]
    if (app / link).is_dir():
        shutil.rmtree(app / link)
    (app / link).unlink(missing_ok=True)
    (app / link).symlink_to(target)
    report = audit(app, None, "hub")
    text = report_text(report)
    assert SECRET not in text and "LeakChannel" not in text
    skipped = [(finding.where.file, finding.message) for finding in report.findings if finding.code.value == "file-skipped"]
    assert skipped == [(skipped[0][0], f"not audited: {link} is a symbolic link, not followed: the audit reads only the app's own files")]


def test_a_link_to_the_root_directory_is_not_walked(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)
    shutil.rmtree(app / "app" / "channels")
    (app / "app" / "channels").symlink_to("/")
    result = preflight(app, "--mode", "hub")
    assert "  app/channels [file-skipped]\n      not audited: app/channels is a symbolic link" in result.stdout, result.stderr


def test_names_and_source_text_are_printed_escaped(tmp_path: Path) -> None:
    client = ('import consumer from "channels/consumer"\n'
              'consumer.subscriptions.create({ channel: "Room\x1b]0;owned\x07Channel" }, {})\n')
    app = write_files(tmp_path / "app", {**ACTION_CABLE_APP, f"app/channels/{EVIL}": PERFORMING,
                                         "app/javascript/channels/room_channel.js": client})
    (app / "app" / "javascript" / "channels" / "index.js").write_text(
        'import "channels/scores_channel"\nimport "channels/room_channel"\n')
    result = preflight(app, "--mode", "hub")
    assert result.returncode == 1, result.stderr
    assert f"\n  app/channels/{EVIL_SHOWN}:2 [channel-action]\n" in result.stdout
    assert "subscribes to Room\\x1b]0;owned\\x07Channel, which websocket.channels" in result.stdout
    assert all(line.isprintable() for line in result.stdout.splitlines())
