"""publish_directories against someone who can write beside OUT: symbolic links swapped in for OUT, its lock, a staging directory.

The publisher resolves `--out` once, then holds OUT's parent and OUT by
descriptor: whatever is renamed or linked in their place later, the render
lands in the directory it opened, and never in a link's target.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from publish_harness import tree, units

from orchestrator import atomic
from orchestrator.atomic import publish_directories
from orchestrator.errors import InputError

OLD = units("old")
NEW = units("new")


def snapshot(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    publish_directories(out, OLD)
    return out


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """Where a planted link points: nothing may ever be written here."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    (directory / "precious.txt").write_text("not the render's\n")
    return directory


def swap_for_a_link(out: Path, target: Path) -> Path:
    """Move OUT aside and put a symbolic link to `target` where it was; the moved directory."""
    moved = out.with_name("moved")
    out.rename(moved)
    out.symlink_to(target)
    return moved


def test_out_swapped_for_a_link_while_staging_is_not_followed(
    out: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = atomic._write_file
    moved: list[Path] = []

    def swapping(*arguments: Any) -> None:
        if not moved:
            moved.append(swap_for_a_link(out, elsewhere))
        real(*arguments)

    monkeypatch.setattr(atomic, "_write_file", swapping)
    publish_directories(out, NEW)
    assert snapshot(elsewhere) == {"precious.txt": b"not the render's\n"}
    assert snapshot(moved[0]) == tree(NEW)  # the directory the render opened
    assert out.is_symlink()


def test_out_swapped_for_a_link_before_it_is_opened_is_refused(
    out: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After --out is resolved, before the publisher opens it: the link is refused, not followed."""
    real = atomic._ensure_directory
    moved: list[Path] = []

    def swapping(directory: Path) -> None:
        real(directory)
        if not moved:
            moved.append(swap_for_a_link(out, elsewhere))

    monkeypatch.setattr(atomic, "_ensure_directory", swapping)
    with pytest.raises(InputError) as raised:
        publish_directories(out, NEW)
    assert raised.value.problems == [f"--out {out}: {out} is a symbolic link, which a render never follows; remove it"]
    assert snapshot(elsewhere) == {"precious.txt": b"not the render's\n"}
    assert snapshot(moved[0]) == tree(OLD)
    assert not [path for path in out.parent.iterdir() if ".staging." in path.name]


def test_a_symlinked_lock_is_refused_and_its_target_never_created(out: Path, tmp_path: Path) -> None:
    lock = out.parent / ".out.lock"
    lock.unlink()
    victim = tmp_path / "victim"
    lock.symlink_to(victim)
    with pytest.raises(InputError) as raised:
        publish_directories(out, NEW)
    assert raised.value.problems == [f"--out {out}: {lock} is a symbolic link, which a render never follows; remove it"]
    assert not os.path.lexists(victim)
    assert snapshot(out) == tree(OLD)


def test_a_link_named_like_a_leftover_staging_directory_is_left_alone(out: Path, elsewhere: Path) -> None:
    """Only real directories are leftovers of a crashed run: a link is neither emptied, followed, nor removed."""
    (elsewhere / "production.retired").mkdir()
    (elsewhere / "production.retired" / "Dockerfile").write_text("FROM planted\n")
    planted = out.parent / ".out.staging.planted"
    planted.symlink_to(elsewhere)
    before = snapshot(elsewhere)
    publish_directories(out, NEW)
    assert snapshot(out) == tree(NEW)
    assert planted.is_symlink() and snapshot(elsewhere) == before


def test_the_staging_directory_swapped_for_a_link_while_staging_is_not_followed(
    out: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every staged name is made through a descriptor on its directory: the link's target gets nothing."""
    real = atomic._write_file
    swapped: list[Path] = []

    def swapping(entry: atomic._Entry, file: atomic.OutputFile) -> None:
        if not swapped:
            staging = out.parent / entry.path.relative_to(out.parent).parts[0]
            staging.rename(staging.with_name("moved-staging"))
            staging.symlink_to(elsewhere)
            swapped.append(staging)
        real(entry, file)

    monkeypatch.setattr(atomic, "_write_file", swapping)
    try:
        publish_directories(out, NEW)
    except (InputError, OSError):
        pass  # refusing to clean up through the link is fine; writing through it is not
    assert snapshot(elsewhere) == {"precious.txt": b"not the render's\n"}
    assert snapshot(out) in (tree(OLD), tree(NEW))  # whole, old or new
