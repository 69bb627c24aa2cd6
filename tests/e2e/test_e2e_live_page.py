"""The live page of a watched bake in a real browser: `orchestrate status --serve` as a process, headless Chromium
(tests/e2e/browser.py) reading the page's DOM over the DevTools Protocol.

Two regions have samples in the journal, one with its memory rising past its budget and a finding; the page draws
each one's memory against its budget, shows the newest gates, the finding, the stages and the audit, then shows the
samples and audit lines recorded afterwards by itself, without a reload, having asked nothing of any other origin.
Its screenshots are kept in test-artifacts/ as live-page-*.png."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from browser import Chromium, Page, artifact_path
from orchestrator.rollout.journal import Actor, Journal, utc_now
from orchestrator.rollout.model import RegionKey, StepState
from tests.orchestrator.rollout.fleet import Fleet, make_fleet
from tests.orchestrator.watch.test_live_serve import serving
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(180)

ORD = RegionKey("production", "ord")
IAD = RegionKey("staging", "iad")
WATCHER = Actor("ops", "bastion.example", 4242)
HOSTILE = '<img src=x onerror="window.pwned = 1">'
FINDING = "memory grows +48.0 MB/h: 44.0 MB now, it would cross its budget of 40 MB before the bake ends"
REGIONS_DRAWN = """Array.from(document.querySelectorAll('section.region'))
  .filter(section => section.querySelector('svg.memory-chart polyline.series')
                     && section.querySelector('svg.memory-chart line.budget'))
  .map(section => section.dataset.region)"""


def sample(memory_mb: float, budget_mb: float, evidence: str = "GET http://127.0.0.1:9999/up: 200 in 4 ms") -> dict[str, Any]:
    return {"state": "started", "budget_mb": budget_mb, "http": {"ok": True, "evidence": evidence},
            "websocket": {"ok": True, "evidence": "subscribed and echoed in 12 ms"},
            "memory": {"navigator": 14.0, "cable_server": round(memory_mb - 14.0, 2)}, "memory_mb": memory_mb,
            "counters": {"connections": 3, "broadcasts": 120}}


def record(journal: Journal, key: RegionKey, at: datetime, data: dict[str, Any]) -> None:
    journal.record_samples([(key, "m1", at, data)], keep=1000, max_gap=600)


def baking(fleet: Fleet, now: datetime) -> None:
    """staging passed; canary (ord) passed and bakes, watched: its memory rises past its budget, iad's stays flat."""
    with Journal.open(fleet.state) as journal:
        run = journal.start_run("rollout", {"stage": "canary"}, WATCHER)
        for stage, key in (("staging", IAD), ("canary", ORD)):
            journal.transition(journal.add_step(run, str(key), stage, key, "deploy", "integrated", True), StepState.PASSED)
        journal.audit(WATCHER, "watch started", "the baking regions, every 30 s")
        for minute in range(15):
            at = now - timedelta(minutes=15 - minute)
            record(journal, ORD, at, sample(30.0 + minute, 40.0))
            record(journal, IAD, at, sample(22.0 + minute % 2 * 0.4, 35.0, HOSTILE))
        journal.record_finding(ORD, "m1", "memory_trend", FINDING, {"slope_mb_per_hour": 48.0},
                               "switched back (WebSocket off), rollback run 2")
        journal.audit(WATCHER, "watch switched back", f"run 2: {ORD}: memory_trend: {FINDING}")


def text(page: Page) -> str:
    return str(page.evaluate("document.body.innerText"))


def wait_page(page: Page, condition: Callable[[Page], Any], what: str) -> Any:
    try:
        return wait_for(lambda: condition(page), 30, what, interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}\nDOM: {text(page)!r}\n{page.console()}") from None


def points(page: Page, region: RegionKey) -> int:
    found = page.evaluate(f"document.querySelector('section.region[data-region=\"{region}\"] polyline.series')?.dataset.points")
    return int(found or 0)


def keep_screenshot(page: Page, name: str) -> None:
    page.send("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 1900, "deviceScaleFactor": 1, "mobile": False})
    print(f"screenshot: {page.screenshot(artifact_path(name))}")


def test_the_live_page_draws_each_region_against_its_budget_and_follows_the_journal_by_itself(
    tmp_path: Path, chromium: Chromium
) -> None:
    fleet = make_fleet(tmp_path)
    now = utc_now()
    baking(fleet, now)
    with serving(fleet, "--region", "ord", "--region", "staging/iad") as served:
        page = chromium.open(served.url + "?refresh=1")
        page.send("Network.enable")  # every request from here on is seen, the updates' included

        drawn = wait_page(page, lambda p: p.evaluate(REGIONS_DRAWN) == ["production/ord", "staging/iad"] and p,
                          "a memory chart with its budget line for both regions")
        shown = text(drawn)
        for expected in ("production/ord", "staging/iad", FINDING, "switched back (WebSocket off), rollback run 2",
                         "[ops@bastion.example pid 4242] watch started: the baking regions, every 30 s",
                         "canary", "baking", "44.0 MB", "budget 40.0 MB", HOSTILE):
            assert expected in shown, expected
        # The journal's text is shown as text: the planted markup made no element and ran nothing.
        assert page.evaluate("document.querySelectorAll('img').length === 0 && window.pwned === undefined")
        assert page.evaluate("getComputedStyle(document.querySelector('section.region')).borderTopLeftRadius") == "6px"
        budget = page.evaluate("document.querySelector('section.region[data-region=\"production/ord\"] line.budget')"
                               ".dataset.mb")
        assert float(budget) == 40.0 and points(page, ORD) == 15
        keep_screenshot(page, "live-page-baking")

        with Journal.open(fleet.state) as journal:
            record(journal, ORD, now, sample(47.5, 40.0))
            journal.audit(WATCHER, "watch stopped", "SIGTERM")
        wait_page(page, lambda p: points(p, ORD) == 16 and "47.5 MB" in text(p) and "watch stopped: SIGTERM" in text(p),
                  "the new sample and audit line, without a reload")
        keep_screenshot(page, "live-page-updated")

        origin = served.url.rstrip("/")
        loaded = page.evaluate("performance.getEntriesByType('resource').map(entry => entry.name)")
        asked = [event["params"]["request"]["url"] for event in page.devtools.events
                 if event.get("sessionId") == page.session and event.get("method") == "Network.requestWillBeSent"]
        assert sum(url.startswith(f"{origin}/state.json") for url in loaded) >= 2
        assert asked and all(url.startswith(f"{origin}/") for url in loaded + asked), loaded + asked
        assert served.stop() == 0
