"""The audit of an app for one mode or for all of them, and how it is shown: text grouped by severity, or JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import EXIT_PREFLIGHT_BLOCKED
from orchestrator.model import MODES, Inventory, Mode
from orchestrator.preflight.facts import AppFacts, scan
from orchestrator.preflight.findings import Finding, Severity
from orchestrator.preflight.rules import CableSettings, judge
from orchestrator.preflight.source import AppTree
from orchestrator.terminal import plural, printable

# The modes that take the app off Action Cable: without a chosen mode, the app is ready when one of them fits.
MIGRATION_MODES: tuple[Mode, ...] = ("anycable", "integrated", "hub")
_HEADINGS = {Severity.BLOCKING: "blocking", Severity.WARNING: "warnings", Severity.INFO: "notes"}


@dataclass(frozen=True)
class Report:
    app: Path
    mode: Mode | None  # None: every mode was checked
    mode_source: str  # why this mode: --mode, or the inventory's websocket.mode
    facts: AppFacts
    findings: tuple[Finding, ...]  # of the chosen mode, or of every mode with the modes each is about
    by_mode: dict[Mode, tuple[Finding, ...]]

    def blocking(self, mode: Mode) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.by_mode[mode] if finding.severity is Severity.BLOCKING)

    @property
    def fit(self) -> tuple[Mode, ...]:
        return tuple(mode for mode in MODES if not self.blocking(mode))

    @property
    def exit_status(self) -> int:
        if self.mode is not None:
            return EXIT_PREFLIGHT_BLOCKED if self.blocking(self.mode) else 0
        return 0 if any(mode in self.fit for mode in MIGRATION_MODES) else EXIT_PREFLIGHT_BLOCKED


def audit(app: Path, inventory: Inventory | None, mode: Mode | None, mode_source: str = "") -> Report:
    """Scan the app once, then judge it for each mode; InputError when `app` is not a Rails app."""
    with AppTree.open(app) as tree:
        facts = scan(tree)
    settings = CableSettings.of(inventory)
    by_mode = {each: tuple(judge(facts, each, settings)) for each in MODES}
    chosen = (mode,) if mode is not None else MODES
    return Report(app, mode, mode_source, facts, _merged(finding for each in chosen for finding in by_mode[each]), by_mode)


def _merged(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """One finding per code, severity, place and text, with every mode it is about."""
    merged: dict[tuple[Any, ...], Finding] = {}
    for finding in findings:
        key = (finding.code, finding.severity, finding.where, finding.message, finding.remedy)
        known = merged.get(key)
        if known is None:
            merged[key] = finding
        else:
            merged[key] = replace(known, modes=known.modes + tuple(mode for mode in finding.modes if mode not in known.modes))
    return tuple(sorted(merged.values(), key=Finding.sort_key))


def count(findings: tuple[Finding, ...], severity: Severity) -> int:
    return sum(1 for finding in findings if finding.severity is severity)


def report_text(report: Report) -> str:
    lines = []
    target = f"the {report.mode} mode ({report.mode_source})" if report.mode else "every mode (no --mode and no inventory)"
    lines.append(f"preflight of {report.app} for {target}")
    lines.append(f"the pages subscribe over: {_protocols(report.facts)}")
    for severity, heading in _HEADINGS.items():
        group = [finding for finding in report.findings if finding.severity is severity]
        if not group:
            continue
        lines.append("")
        lines.append(f"{heading} ({len(group)}):")
        for finding in group:
            modes = "" if report.mode else f" ({', '.join(finding.modes)})"
            lines.append(f"  {finding.where} [{finding.code.value}]{modes}")
            lines.append(f"      {finding.message}")
            lines.append(f"      remedy: {finding.remedy}")
    lines.append("")
    if report.mode is not None:
        mine = report.by_mode[report.mode]
        blocking, warnings = count(mine, Severity.BLOCKING), count(mine, Severity.WARNING)
        verdict = "not ready" if blocking else "ready"
        lines.append(f"{report.mode}: {verdict}: {plural(blocking, 'blocking finding')}, {plural(warnings, 'warning')}")
    summary = ", ".join(f"{mode} {count(report.by_mode[mode], Severity.BLOCKING)}" for mode in MODES)
    lines.append(f"modes that fit: {', '.join(report.fit) or 'none'} (blocking findings per mode: {summary})")
    # File names and source text are the app's: a newline or a terminal escape in them is shown, not obeyed.
    return "".join(printable(line) + "\n" for line in lines)


def _protocols(facts: AppFacts) -> str:
    names = []
    if facts.turbo_cable is not None and facts.navigator_streams:
        names.append(f"Navigator's protocol (the turbo_cable gem, {facts.turbo_cable})")
    if facts.subscriptions:
        names.append(f"Action Cable ({plural(len(facts.subscriptions), 'subscription')})")
    return ", ".join(names) or "none found (no subscription)"


def report_json(report: Report) -> dict[str, Any]:
    return {
        "app": str(report.app),
        "mode": report.mode,
        "protocols": list(report.facts.protocols),
        "modes": {
            mode: {
                "fits": mode in report.fit,
                "blocking": count(report.by_mode[mode], Severity.BLOCKING),
                "warnings": count(report.by_mode[mode], Severity.WARNING),
            }
            for mode in MODES
        },
        "fit": list(report.fit),
        "findings": [
            {
                "code": finding.code.value,
                "severity": finding.severity.value,
                "file": finding.where.file,
                "line": finding.where.line,
                "message": finding.message,
                "remedy": finding.remedy,
                "modes": list(finding.modes),
            }
            for finding in report.findings
        ],
        "exit_status": report.exit_status,
    }
