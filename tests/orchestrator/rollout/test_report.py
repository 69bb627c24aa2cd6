"""The plan report: text, JSON and HTML renderings of a small hand-built plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from orchestrator.rollout.model import (
    Command,
    Deployment,
    Gate,
    GateTiming,
    Plan,
    RegionKey,
    RegionMemory,
    RegionState,
    ScheduledStage,
    Step,
    WriteFile,
    content_hash,
)
from orchestrator.rollout.report import (
    FileDiff,
    file_diffs,
    memory_summary,
    plan_html,
    plan_json,
    plan_text,
)

ACTION_CABLE = {"navigator": 17.6, "cable_server": 137.8, "redis": 13.5}
INTEGRATED = {"navigator": 35.0, "cable_server": 0.0, "redis": 0.0}

# A value that looks like a secret, in a file that does not change: no report may show it.
UNCHANGED_SECRET = "SECRET_KEY_BASE=d3adb33f-unchanged-secret"
# One on a line the step changes: it is part of that file's diff, so it is shown there.
CHANGED_SECRET = "changed-token-5ecr3t"
# One in the environment of the machine making the report: the report never reads it.
ENV_SECRET = "fo1_planted-environment-secret"

NAVIGATOR_NEW = "server:\n  listen: 3000\ncable:\n  enabled: true\n  path: /cable\n"
NAVIGATOR_OLD = "server:\n  listen: 3000\n  token: old-token\ncable:\n  enabled: false\nhooks: []\n"
NAVIGATOR_CHANGED = f"server:\n  listen: 3000\n  token: {CHANGED_SECRET}\ncable:\n  enabled: true\nhooks: []\n"
PLANTED_SCRIPT = "<script>alert('x')</script> https://evil.example/x.js\n"

TIMING = GateTiming(interval_seconds=10, timeout_seconds=5, deadline_seconds=300, count=3, failure_limit=1)
HTTP = Gate("http", "/up", TIMING)
WEBSOCKET = Gate("websocket", "/cable", TIMING, protocol="navigator")
CLOSED = Gate("websocket", "/cable", TIMING, expect_open=False)
MEMORY = Gate("memory", None, TIMING, budget_mb=60)

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _deploy(region: str) -> Command:
    return Command(("fly", "deploy", "--region", region), "deploy", env_names=("FLY_API_TOKEN",), timeout_seconds=600)


def _writes(state: RegionState) -> tuple[WriteFile, ...]:
    return tuple(WriteFile(f"/rails/config/{name}", text) for name, text in sorted(state.files.items()))


def _switch_off(state: RegionState) -> Deployment:
    off = RegionState(state.mode, False, state.files)
    return Deployment(off, (Command(("bin/cable-switch", "off"), "switch off"),), (HTTP, CLOSED))


def _step(step_id: str, stage: str, key: RegionKey, current: RegionState | None, desired: RegionState) -> Step:
    gates = (HTTP, WEBSOCKET, MEMORY) if desired.websocket_enabled else (HTTP, CLOSED)
    deployment = Deployment(desired, (*_writes(desired), _deploy(key.region)), gates)
    return Step(step_id, stage, key, "deploy", current, deployment, _switch_off(desired))


STAGING = RegionKey("staging", "iad")
ORD = RegionKey("production", "ord")
AMS = RegionKey("production", "ams")

FIRST = _step(
    "staging-iad",
    "staging",
    STAGING,
    None,
    RegionState("integrated", True, {"navigator.yml": NAVIGATOR_NEW, "notes.txt": PLANTED_SCRIPT}),
)
CHANGED = _step(
    "production-ord",
    "canary",
    ORD,
    RegionState(
        "action_cable",
        True,
        {"navigator.yml": NAVIGATOR_OLD, "secrets.env": UNCHANGED_SECRET + "\n", "cable.yml": "adapter: redis\n"},
    ),
    RegionState("integrated", True, {"navigator.yml": NAVIGATOR_CHANGED, "secrets.env": UNCHANGED_SECRET + "\n"}),
)
OFF = _step(
    "production-ams",
    "wave-1",
    AMS,
    RegionState("integrated", True, {"navigator.yml": NAVIGATOR_NEW}),
    RegionState("integrated", False, {"navigator.yml": NAVIGATOR_NEW.replace("enabled: true", "enabled: false")}),
)


def _stage(name: str, environment: str, region: str, hours: int, starts: datetime, status: str) -> ScheduledStage:
    return ScheduledStage(
        name, environment, (region,), f"{hours}h", hours * 3600, starts, starts + timedelta(hours=hours), status
    )


SCHEDULE = (
    _stage("staging", "staging", "iad", 1, START, "next"),
    _stage("canary", "production", "ord", 24, START + timedelta(hours=1), "later"),
    _stage("wave-1", "production", "ams", 48, START + timedelta(hours=25), "later"),
)

# Eight regions moving from Action Cable to the integrated mode; the first had nothing deployed yet.
EIGHT = tuple(
    RegionMemory(
        RegionKey("production", code),
        None if index == 0 else "action_cable",
        "integrated",
        ACTION_CABLE,
        INTEGRATED,
    )
    for index, code in enumerate(["ams", "cdg", "dfw", "iad", "lhr", "nrt", "ord", "syd"])
)

PLAN = Plan("inventories/demo.yml", "fly", START, SCHEDULE, (FIRST, CHANGED, OFF), EIGHT)


# ------------------------------------------------------------------- diffs


def test_a_changed_file_is_a_unified_diff_with_region_headers_and_two_lines_of_context():
    diffs = file_diffs(CHANGED)
    navigator = next(d for d in diffs if d.name == "navigator.yml")
    assert navigator.kind == "changed"
    assert navigator.diff.split("\n") == [
        "--- a/production/ord/navigator.yml",
        "+++ b/production/ord/navigator.yml",
        "@@ -1,6 +1,6 @@",
        " server:",
        "   listen: 3000",
        "-  token: old-token",
        f"+  token: {CHANGED_SECRET}",
        " cable:",
        "-  enabled: false",
        "+  enabled: true",
        " hooks: []",
    ]
    assert (navigator.added_lines, navigator.removed_lines) == (2, 2)


def test_only_files_that_change_are_listed_in_name_order_with_their_kind():
    assert [(d.name, d.kind) for d in file_diffs(CHANGED)] == [("cable.yml", "removed"), ("navigator.yml", "changed")]
    assert [(d.name, d.kind) for d in file_diffs(FIRST)] == [("navigator.yml", "added"), ("notes.txt", "added")]
    assert file_diffs(OFF)[0].diff.split("\n")[-3:] == ["-  enabled: true", "+  enabled: false", "   path: /cable"]


def test_a_removed_file_is_all_minus_lines():
    removed = file_diffs(CHANGED)[0]
    assert removed == FileDiff(
        "cable.yml",
        "removed",
        "--- a/production/ord/cable.yml\n+++ b/production/ord/cable.yml\n@@ -1 +0,0 @@\n-adapter: redis",
        0,
        1,
    )


def test_a_change_of_only_the_final_newline_still_shows():
    before, after = RegionState("integrated", True, {"a": "x\n"}), RegionState("integrated", True, {"a": "x"})
    step = _step("x", "staging", STAGING, before, after)
    (diff,) = file_diffs(step)
    assert diff.diff.split("\n")[3:] == ["-x", "+x", "\\ No newline at end of file"]


def test_a_file_diff_counts_a_removed_line_that_looks_like_a_header():
    step = _step(
        "x",
        "staging",
        STAGING,
        RegionState("integrated", True, {"a": "-- x\nkeep\n"}),
        RegionState("integrated", True, {"a": "keep\n++ y\n"}),
    )
    (diff,) = file_diffs(step)
    assert (diff.added_lines, diff.removed_lines) == (1, 1)
    assert "--- x" in diff.diff.split("\n")[3:]


# ------------------------------------------------------------------- memory


def test_memory_summary_of_eight_alike_regions():
    summary = memory_summary(EIGHT)
    assert summary.regions == 8
    assert summary.uniform
    assert round(summary.before_mb, 1) == 1351.2
    assert round(summary.after_mb, 1) == 280.0
    assert round(summary.saving_mb, 1) == 1071.2
    assert round(summary.saving_percent, 1) == 79.3
    rows = {row.process: row for row in summary.processes}
    assert [row.process for row in summary.processes] == ["navigator", "cable_server", "redis", "total"]
    assert (rows["total"].before, rows["total"].after) == pytest.approx((168.9, 35.0))
    assert (rows["total"].fleet_before, rows["total"].fleet_after) == pytest.approx((1351.2, 280.0))
    assert (rows["cable_server"].before, rows["cable_server"].fleet_before) == pytest.approx((137.8, 1102.4))


def test_memory_summary_averages_regions_that_differ_and_survives_no_regions():
    mixed = (EIGHT[0], RegionMemory(AMS, "integrated", "integrated", INTEGRATED, INTEGRATED))
    summary = memory_summary(mixed)
    assert not summary.uniform
    total = summary.processes[-1]
    assert (total.before, total.after, total.fleet_before) == pytest.approx((101.95, 35.0, 203.9))
    empty = memory_summary(())
    assert (empty.regions, empty.before_mb, empty.saving_percent) == (0, 0, 0.0)
    assert memory_summary((RegionMemory(AMS, None, "integrated", {}, {}),)).saving_percent == 0.0


# ------------------------------------------------------------------- text


def test_plan_text_schedule_dates_and_statuses():
    text = plan_text(PLAN)
    assert "staging  staging      iad      1h    2025-01-06 09:00 UTC  2025-01-06 10:00 UTC  next" in text
    assert "wave-1   production   ams      48h   2025-01-07 10:00 UTC  2025-01-09 10:00 UTC  later" in text
    assert "created    2025-01-06 09:00 UTC" in text


def test_plan_text_steps():
    text = plan_text(PLAN)
    assert "staging/iad  (deploy, stage staging)" in text
    assert "now:     nothing yet" in text
    assert "now:     action_cable, websocket on" in text
    assert "deploys: integrated, websocket off" in text
    assert "fly deploy --region ord" in text
    assert f"write /rails/config/navigator.yml (sha256 {content_hash(NAVIGATOR_CHANGED)[:12]}," in text
    assert "websocket: /cable refuses the upgrade (switch off)" in text
    assert "if a gate fails: integrated, websocket off" in text
    assert "bin/cable-switch off" in text
    assert "new file navigator.yml, 5 lines" in text
    assert "new file notes.txt, 1 line\n" in text
    assert "        --- a/production/ord/navigator.yml\n        +++ b/production/ord/navigator.yml\n" in text
    assert "        -  enabled: false\n        +  enabled: true\n" in text
    # An added file's text is not printed.
    assert "path: /cable" not in text.split("production/ams  (deploy")[0]
    assert "<script>" not in text


def test_plan_text_memory():
    text = plan_text(PLAN)
    assert "production/ams  action_cable*  integrated      168.9      35.0      133.9      79.3" in text
    assert "action_cable*: nothing recorded for the region yet, taken to run the Action Cable baseline" in text
    assert "fleet (8 regions): 1351.2 MB -> 280.0 MB, saving 1071.2 MB (79.3 %)" in text
    assert "per process (every region alike), x 8 regions:" in text
    assert "  total             168.9      35.0      1351.2      280.0\n" in text
    assert "  cable_server      137.8       0.0      1102.4        0.0\n" in text


def test_plan_text_says_when_per_region_figures_are_averages():
    mixed = (EIGHT[0], RegionMemory(AMS, "integrated", "integrated", INTEGRATED, INTEGRATED))
    text = plan_text(Plan("i.yml", "fly", START, (), (), mixed))
    assert "per process (average per region; the regions differ), x 2 regions:" in text
    assert "  total             102.0      35.0       203.9       70.0\n" in text
    assert "Schedule\n  (no stages)" in text and "Steps\n  (no steps)" in text


def test_plan_text_colours_only_diff_lines():
    plain = plan_text(PLAN)
    coloured = plan_text(PLAN, color=True)
    assert "\x1b" not in plain
    assert "\x1b[32m+  enabled: true\x1b[0m" in coloured
    assert "\x1b[31m-  enabled: false\x1b[0m" in coloured
    assert "\x1b[32m+++" not in coloured and "\x1b[31m---" not in coloured
    assert coloured.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "") == plain


# ------------------------------------------------------------------- JSON


def test_plan_json_round_trips_and_carries_no_text_of_added_files():
    data = plan_json(PLAN)
    assert json.loads(json.dumps(data)) == data
    dumped = json.dumps(data)
    assert "path: /cable" not in dumped.split('"production-ams"')[0]
    assert "<script>" not in dumped
    first = data["steps"][0]
    assert first["current"] is None
    assert first["diffs"][0] == {
        "name": "navigator.yml",
        "kind": "added",
        "added_lines": 5,
        "removed_lines": 0,
        "lines": 5,
        "sha256": content_hash(NAVIGATOR_NEW),
    }
    assert data["schedule"][1]["starts"] == "2025-01-06T10:00:00Z"
    assert data["created"] == "2025-01-06T09:00:00Z"


def test_plan_json_operations_gates_and_memory():
    data = plan_json(PLAN)
    operations = data["steps"][1]["deployment"]["operations"]
    assert operations[0] == {
        "kind": "write",
        "path": "/rails/config/navigator.yml",
        "sha256": content_hash(NAVIGATOR_CHANGED),
        "bytes": len(NAVIGATOR_CHANGED.encode()),
    }
    assert operations[-1] == {
        "kind": "run",
        "label": "deploy",
        "argv": ["fly", "deploy", "--region", "ord"],
        "env_names": ["FLY_API_TOKEN"],
        "timeout_seconds": 600,
        "machine": None,
    }
    gate = data["steps"][1]["deployment"]["gates"][2]
    assert (gate["kind"], gate["budget_mb"], gate["timing"]["count"]) == ("memory", 60, 3)
    summary = data["memory"]["summary"]
    assert (summary["before_mb"], summary["after_mb"], summary["saving_mb"], summary["saving_percent"]) == (
        1351.2,
        280.0,
        1071.2,
        79.28,
    )
    assert data["memory"]["regions"][0]["before_mode"] is None
    assert data["steps"][1]["diffs"][1]["diff"].startswith("--- a/production/ord/navigator.yml\n")


# ------------------------------------------------------------------- HTML


VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base", "embed", "track"}


class Checker(HTMLParser):
    """Every element closed in order, and every attribute collected."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.extend(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _check(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    return checker


def test_plan_html_parses_with_every_element_closed():
    page = plan_html(PLAN)
    checker = _check(page)
    assert checker.problems == []
    assert checker.stack == []
    assert page.startswith("<!DOCTYPE html>")
    assert {"svg", "table", "details", "pre", "style", "title"} <= checker.tags
    assert "script" not in checker.tags


def test_plan_html_escapes_file_text_and_references_nothing_outside():
    page = plan_html(PLAN)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script" not in page
    checker = _check(page)
    assert not [name for name, _ in checker.attributes if name in {"src", "href", "xmlns", "action", "srcset"}]
    assert not [value for _, value in checker.attributes if value and "//" in value]
    # The only URL is the planted one, inside an added file's escaped text.
    assert page.count("http://") + page.count("https://") == 1
    assert page.count("https://evil.example/x.js") == 1


def test_plan_html_memory_chart_and_diffs():
    page = plan_html(PLAN)
    assert "<svg" in page
    assert "168.9 MB" in page and "35.0 MB" in page
    assert "1351.2 MB" in page and "280.0 MB" in page
    assert '<span class="del">-  enabled: false</span><span class="add">+  enabled: true</span>' in page
    assert "<details><summary>new file navigator.yml, 5 lines</summary>" in page
    assert "<td>2025-01-06 09:00 UTC</td>" in page


def test_no_report_shows_an_unchanged_secret_or_reads_the_environment(monkeypatch):
    monkeypatch.setenv("FLY_API_TOKEN", ENV_SECRET)
    reports = [plan_text(PLAN), plan_text(PLAN, color=True), json.dumps(plan_json(PLAN)), plan_html(PLAN)]
    for report in reports:
        assert UNCHANGED_SECRET not in report
        assert ENV_SECRET not in report
        assert report.count(CHANGED_SECRET) == 1  # on its changed line of the diff
        assert f"+  token: {CHANGED_SECRET}" in report.replace("\x1b[32m", "")
