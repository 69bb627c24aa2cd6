"""`orchestrate watch`: watch every baking region until stopped (SIGTERM or SIGINT), or for one round.

The watcher holds the journal's watch lock for its whole life, so a second one
on the same journal is refused and named; one whose process is gone (killed, its
machine restarted) left the lock behind, and the next one on the same host takes
it over, audited. It prints one line when the set of watched regions changes and
one per finding.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.errors import EXIT_ROLLOUT_FAILED
from orchestrator.inventory import DEFAULT_WATCH_SETTINGS
from orchestrator.rollout import commands
from orchestrator.rollout.commands import Context, in_context
from orchestrator.rollout.journal import Journal, iso_z, utc_now
from orchestrator.watch.watcher import Watcher


def run(options: argparse.Namespace) -> int:
    return commands.run(options, in_context(watch_command))


def watch_command(context: Context, options: argparse.Namespace) -> int:
    settings = context.inventory.rollout.watch
    if settings is None:
        settings = DEFAULT_WATCH_SETTINGS
        say(f"{context.inventory.name} has no rollout.watch: watching with the defaults (every "
            f"{settings.interval_seconds:g} s), and promotion does not require a watched bake")
    with context.journal() as journal:
        _take_watch_lock(context, journal)
        stop = threading.Event()
        stopped_by: list[str] = []
        try:
            journal.audit(context.actor, "watch started", _described(options, settings.interval_seconds))
            say(f"{iso_z(utc_now())} watch started on the {context.target.name} target, every "
                f"{settings.interval_seconds:g} s; journal {journal.path}")
            watcher = Watcher(context, settings, options.all, say)
            with stopping_on_signals(stop, stopped_by):
                while True:
                    started = time.monotonic()
                    findings = watcher.round(journal)
                    if options.once:
                        return EXIT_ROLLOUT_FAILED if findings else 0
                    took = time.monotonic() - started
                    if took > settings.interval_seconds:
                        say(f"{iso_z(utc_now())} a round took {took:.0f} s, more than the {settings.interval_seconds:g} s "
                            f"interval: raise rollout.parallel or rollout.watch.interval_seconds")
                    if stop.wait(max(0.0, settings.interval_seconds - took)):
                        break
            say(f"{iso_z(utc_now())} watch stopped by {stopped_by[0]}")
            return 0
        finally:
            journal.audit(context.actor, "watch stopped", stopped_by[0] if stopped_by else "")
            journal.release_lock(context.actor, lock="watch")


def _take_watch_lock(context: Context, journal: Journal) -> None:
    held = journal.lock_status(lock="watch")
    if held is not None and held.stale:
        journal.force_release_lock(context.actor, "the previous watcher's process is gone", lock="watch")
    journal.acquire_lock(context.actor, "watch", lock="watch")


def _described(options: argparse.Namespace, interval: float) -> str:
    which = "every deployed region" if options.all else "the baking regions"
    return f"{which}, every {interval:g} s" + (", one round" if options.once else "")


@contextmanager
def stopping_on_signals(stop: threading.Event, stopped_by: list[str]) -> Iterator[None]:
    """SIGTERM and SIGINT end the watcher after the round it is in: a switch back under way finishes."""

    def request_stop(signum: int, frame: object) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def say(line: str) -> None:
    print(line, flush=True)
