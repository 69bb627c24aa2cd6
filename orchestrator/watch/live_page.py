"""The live page of `orchestrate status --serve`: one self-contained HTML document and the policy it is served with.

The page holds no data: its script fetches `state.json` (orchestrator.watch.live_state)
from where the page came from, every 5 s (`?refresh=N` for another number of
seconds, 1 to 3600), and builds the page from it with DOM calls. Every text from the
journal (evidence, messages, the audit: text that came from remote machines and
operators) goes in as text, never as markup. Nothing is loaded from anywhere else:
the Content-Security-Policy allows the page's own script and style (by their hashes)
and requests to its own origin, nothing more.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; background: #f7f7f7; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
h3 { font-size: 15px; margin: 0 0 4px; }
table { border-collapse: collapse; margin: 6px 0; background: #fff; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { font-weight: 600; }
td.when { white-space: nowrap; }
.muted, #updated { color: #666; margin: 0; }
.notice { background: #fff3cd; border: 1px solid #e0c36c; padding: 6px 10px; margin: 8px 0; }
.region { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.ok { color: #1a7f37; font-weight: 600; }
.fail, .findings li { color: #b42318; }
.fail { font-weight: 600; }
.evidence { color: #555; font-size: 12px; word-break: break-word; max-width: 32em; }
.status-baking { color: #9a6700; font-weight: 600; }
.status-failed { color: #b42318; font-weight: 600; }
.status-done { color: #1a7f37; }
.legend { margin: 0 0 4px; font-size: 12px; }
.legend span { margin-right: 12px; }
svg.memory-chart { display: block; background: #fff; border: 1px solid #eee; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.axis { stroke: #999; stroke-width: 1; }
.series { fill: none; stroke-width: 2; }
.budget { stroke: #b42318; stroke-width: 1.5; stroke-dasharray: 6 4; }
text.budget-label { fill: #b42318; }
#audit { font: 12px ui-monospace, monospace; list-style: none; padding: 0; background: #fff; }
#audit li { padding: 2px 6px; border-bottom: 1px solid #eee; word-break: break-word; }
"""

SCRIPT = """
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];
const CHART = {width: 640, height: 180, left: 52, right: 110, top: 10, bottom: 22};

function refreshSeconds() {
  const asked = Number(new URLSearchParams(location.search).get("refresh"));
  return Number.isFinite(asked) && asked >= 1 && asked <= 3600 ? asked : 5;
}
const REFRESH_SECONDS = refreshSeconds();

// Text goes in as text nodes (append() never parses markup): the journal's text is not trusted.
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children.map(child => child instanceof Node ? child : text(child)));
  return node;
}

function svgEl(tag, attributes, content) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (content !== undefined) node.textContent = text(content);
  return node;
}

function text(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function isNumber(value) { return typeof value === "number" && Number.isFinite(value); }
function megabytes(value) { return isNumber(value) ? value.toFixed(1) + " MB" : "-"; }
function clock(at) { return typeof at === "string" ? at.slice(11, 19) : ""; }
function machineName(name) { return name ? name : "(region)"; }

function render(state) {
  document.title = "live bake: " + text(state.inventory);
  document.getElementById("inventory").textContent = text(state.inventory);
  document.getElementById("journal").textContent = state.journal ? "journal " + text(state.journal) : "";
  const problem = document.getElementById("problem");
  problem.hidden = !state.problem;
  problem.textContent = text(state.problem);
  document.getElementById("stages").replaceChildren(...(state.stages || []).map(stageRow));
  document.getElementById("regions").replaceChildren(...(state.regions || []).map(region));
  const audit = (state.audit || []).slice().reverse();
  document.getElementById("audit").replaceChildren(...audit.map(line => el("li", "", line)));
  document.getElementById("audit-count").textContent =
    audit.length < state.audit_total ? `the last ${audit.length} of ${state.audit_total}` : `${audit.length}`;
  document.getElementById("updated").textContent = `as of ${text(state.at)}, updated every ${REFRESH_SECONDS} s`;
}

function stageRow(stage) {
  const regions = Array.isArray(stage.regions) ? stage.regions.join(", ") : "";
  return el("tr", "", el("td", "", stage.name), el("td", "", stage.environment), el("td", "", regions),
            el("td", "", stage.bake), el("td", "", stage.starts), el("td", "", stage.bake_ends),
            el("td", "status-" + text(stage.status), stage.status));
}

function region(data) {
  const section = el("section", "region");
  section.dataset.region = text(data.region);
  const last = data.last_step;
  const facts = [data.deployed ? text(data.deployed) : "nothing deployed",
                 last ? `last step ${text(last.action)} ${text(last.state)} ${text(last.at)}` : "no step yet",
                 isNumber(data.budget_mb) ? `budget ${megabytes(data.budget_mb)}` : "no budget known"];
  section.append(el("h3", "", data.region), el("p", "muted", facts.join("; ")), chart(data), latest(data),
                 findings(data));
  return section;
}

function series(machine) {
  const points = Array.isArray(machine.memory) ? machine.memory : [];
  return points.map(point => [Date.parse(point[0]), point[1]]).filter(([at, mb]) => isNumber(at) && isNumber(mb));
}

function chart(data) {
  const machines = (data.machines || []).map(machine => ({name: machineName(machine.machine), points: series(machine)}))
    .filter(machine => machine.points.length);
  if (!machines.length) return el("p", "muted", "no memory samples yet");
  const all = machines.flatMap(machine => machine.points);
  const first = Math.min(...all.map(point => point[0]));
  const last = Math.max(first + 60000, ...all.map(point => point[0]));
  const budget = isNumber(data.budget_mb) ? data.budget_mb : null;
  const highest = Math.max(...all.map(point => point[1]), budget ?? 0) * 1.15 || 1;
  const {width, height, left, right, top, bottom} = CHART;
  const x = at => (left + (at - first) / (last - first) * (width - left - right)).toFixed(1);
  const y = mb => (height - bottom - mb / highest * (height - top - bottom)).toFixed(1);
  const svg = svgEl("svg", {class: "memory-chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img"});
  svg.append(svgEl("title", {}, `resident memory of ${text(data.region)} (MB) over time`),
             svgEl("line", {class: "axis", x1: left, x2: left, y1: top, y2: height - bottom}),
             svgEl("line", {class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom}),
             svgEl("text", {x: left - 6, y: height - bottom, "text-anchor": "end"}, "0"),
             svgEl("text", {x: left - 6, y: top + 8, "text-anchor": "end"}, highest.toFixed(0) + " MB"),
             svgEl("text", {x: left, y: height - 6}, clock(new Date(first).toISOString())),
             svgEl("text", {x: width - right, y: height - 6, "text-anchor": "end"}, clock(new Date(last).toISOString())));
  if (budget !== null) {
    svg.append(svgEl("line", {class: "budget", "data-mb": budget, x1: left, x2: width - right, y1: y(budget), y2: y(budget)}),
               svgEl("text", {class: "budget-label", x: width - right + 4, y: Number(y(budget)) + 4},
                     `budget ${megabytes(budget)}`));
  }
  const legend = el("p", "legend");
  machines.forEach((machine, index) => {
    const color = COLORS[index % COLORS.length];
    const line = svgEl("polyline", {class: "series", stroke: color,
                                    points: machine.points.map(([at, mb]) => `${x(at)},${y(mb)}`).join(" ")});
    line.dataset.machine = machine.name;
    line.dataset.points = String(machine.points.length);
    const [at, mb] = machine.points[machine.points.length - 1];
    svg.append(line, svgEl("circle", {cx: x(at), cy: y(mb), r: 3, fill: color}));
    const key = el("span", "", "\\u25a0 ", machine.name);
    key.style.color = color;
    legend.append(key);
  });
  return el("div", "chart", legend, svg);
}

function observation(value) {
  const cell = el("td");
  if (!value || typeof value !== "object") {
    cell.append("-");
    return cell;
  }
  cell.append(el("span", value.ok === true ? "ok" : "fail", value.ok === true ? "ok" : "FAIL"));
  if (value.evidence) cell.append(el("div", "evidence", value.evidence));
  return cell;
}

function memoryCell(sample, budget) {
  const over = isNumber(sample.memory_mb) && isNumber(budget) && sample.memory_mb > budget;
  const cell = el("td", "", el("span", over ? "fail" : "", megabytes(sample.memory_mb)));
  const parts = sample.memory && typeof sample.memory === "object" ? Object.entries(sample.memory) : [];
  if (parts.length) cell.append(el("div", "evidence", parts.map(([name, mb]) => `${name} ${text(mb)}`).join(", ")));
  if (sample.memory_error) cell.append(el("div", "evidence", sample.memory_error));
  return cell;
}

function countersCell(sample) {
  const counters = sample.counters && typeof sample.counters === "object" ? Object.entries(sample.counters) : [];
  const cell = el("td", "", counters.length ? "" : "-");
  if (counters.length) cell.append(el("div", "evidence", counters.map(([name, n]) => `${name} ${text(n)}`).join(", ")));
  if (sample.counters_error) cell.append(el("div", "evidence", sample.counters_error));
  return cell;
}

function latest(data) {
  const machines = data.machines || [];
  if (!machines.length) return el("p", "muted", "no samples: the region was not watched");
  const table = el("table", "latest", el("tr", "", ...["machine", "sampled", "state", "http", "websocket", "memory",
                                                        "counters"].map(name => el("th", "", name))));
  for (const machine of machines) {
    const sample = machine.latest || {};
    const state = el("td", "", sample.state);
    if (sample.error) state.append(el("div", "evidence", sample.error));
    table.append(el("tr", "", el("td", "", machineName(machine.machine)), el("td", "when", sample.at), state,
                    observation(sample.http), observation(sample.websocket), memoryCell(sample, data.budget_mb),
                    countersCell(sample)));
  }
  return table;
}

function findings(data) {
  const found = data.findings || [];
  if (!found.length) return el("p", "muted", "no findings");
  const shown = found.length < data.findings_total ? ` (the last ${found.length} of ${data.findings_total})` : "";
  const list = el("ul", "findings");
  for (const finding of found) {
    const on = finding.machine ? ` on ${text(finding.machine)}` : "";
    list.append(el("li", "", `${text(finding.at)}${on}: ${text(finding.rule)}: ${text(finding.message)}`,
                   el("div", "evidence", finding.action)));
  }
  return el("div", "", el("p", "", "findings" + shown), list);
}

async function refresh() {
  const stale = document.getElementById("stale");
  try {
    const response = await fetch("state.json", {cache: "no-store", credentials: "omit"});
    if (!response.ok) throw new Error(`state.json answered ${response.status}`);
    render(await response.json());
    stale.hidden = true;
  } catch (error) {
    stale.hidden = false;
    stale.textContent = `not updated: ${error.message}; trying again every ${REFRESH_SECONDS} s`;
  } finally {
    setTimeout(refresh, REFRESH_SECONDS * 1000);
  }
}
refresh();
"""

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>live bake</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Live bake: <span id="inventory"></span></h1>
<p id="updated">loading state.json</p>
<p id="journal" class="muted"></p>
<p id="problem" class="notice" hidden></p>
<p id="stale" class="notice" hidden></p>
</header>
<h2>Stages</h2>
<table>
<thead><tr><th>stage</th><th>environment</th><th>regions</th><th>bake</th><th>starts</th><th>bake ends</th><th>status</th></tr></thead>
<tbody id="stages"></tbody>
</table>
<h2>Regions</h2>
<div id="regions"></div>
<h2>Audit, newest first (<span id="audit-count">0</span>)</h2>
<ol id="audit"></ol>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _source_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Only this page's own script and style run; it may ask its own origin, and nothing else, for anything.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_source_hash(SCRIPT)}; style-src {_source_hash(STYLE)}; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
