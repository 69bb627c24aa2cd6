"""Small Rails app trees for the preflight tests, written by each test into its temporary directory."""

from __future__ import annotations

from pathlib import Path

from orchestrator.model import Inventory, Mode
from orchestrator.preflight.findings import Finding, Severity
from orchestrator.preflight.report import Report, audit

APPLICATION_RB = "module Demo\n  class Application < Rails::Application\n  end\nend\n"
CHANNEL_BASE = "module ApplicationCable\n  class Channel < ActionCable::Channel::Base\n  end\nend\n"
CONNECTION_BASE = "module ApplicationCable\n  class Connection < ActionCable::Connection::Base\n  end\nend\n"
# The generated config/cable.yml would replace this one without losing anything.
PLAIN_CABLE_YML = """\
development:
  adapter: async

test:
  adapter: test

production:
  adapter: redis
  url: <%= ENV.fetch("REDIS_URL") { "redis://localhost:6379/1" } %>
"""
# What the turbo_cable gem's installer puts in the app: it speaks Navigator's protocol over a raw WebSocket.
TURBO_STREAMS_CONTROLLER = """\
import { Controller } from "@hotwired/stimulus"

export default class extends Controller {
  connect() {
    this.ws = new WebSocket(document.querySelector('meta[name="action-cable-url"]').content)
    this.ws.onopen = () => {
      this.streams.forEach(stream => this.ws.send(JSON.stringify({ type: 'subscribe', stream: stream })))
    }
  }
}
"""

# A clean app on Navigator's protocol: the turbo_cable gem, page streams without a per-user part.
TURBO_CABLE_APP = {
    "config/application.rb": APPLICATION_RB,
    "Gemfile": 'source "https://rubygems.org"\n\ngem "rails", "~> 8.0"\ngem "turbo_cable", "~> 1.0"\n',
    "config/cable.yml": PLAIN_CABLE_YML,
    "config/importmap.rb": 'pin "application"\npin "@hotwired/stimulus", to: "stimulus.min.js"\n'
                           'pin_all_from "app/javascript/controllers", under: "controllers"\n',
    "app/channels/application_cable/channel.rb": CHANNEL_BASE,
    "app/channels/application_cable/connection.rb": CONNECTION_BASE,
    "app/javascript/application.js": 'import "controllers"\n',
    "app/javascript/controllers/turbo_streams_controller.js": TURBO_STREAMS_CONTROLLER,
    "app/views/scores/index.html.erb": '<h1>Scores</h1>\n<%= turbo_stream_from "live-scores-#{ENV[\'RAILS_APP_DB\']}" %>\n',
}

# A clean app on Action Cable: @rails/actioncable and a named channel that only streams.
ACTION_CABLE_APP = {
    "config/application.rb": APPLICATION_RB,
    "Gemfile": 'source "https://rubygems.org"\n\ngem "rails", "~> 8.0"\n',
    "config/cable.yml": PLAIN_CABLE_YML,
    "config/importmap.rb": 'pin "application"\npin "@rails/actioncable", to: "actioncable.esm.js"\n'
                           'pin_all_from "app/javascript/channels", under: "channels"\n',
    "app/channels/application_cable/channel.rb": CHANNEL_BASE,
    "app/channels/application_cable/connection.rb": CONNECTION_BASE,
    "app/channels/scores_channel.rb": 'class ScoresChannel < ApplicationCable::Channel\n  def subscribed\n'
                                      '    stream_from "live-scores-#{params[:database]}"\n  end\nend\n',
    "app/javascript/application.js": 'import "channels"\n',
    "app/javascript/channels/index.js": 'import "channels/scores_channel"\n',
    "app/javascript/channels/consumer.js": 'import { createConsumer } from "@rails/actioncable"\n\nexport default createConsumer()\n',
    "app/javascript/channels/scores_channel.js": 'import consumer from "channels/consumer"\n\n'
                                                 'consumer.subscriptions.create({ channel: "ScoresChannel", database: "x" }, {\n'
                                                 '  received(data) { console.log(data) }\n});\n',
}


def write_files(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def findings(app: Path, mode: Mode, inventory: Inventory | None = None) -> list[Finding]:
    return list(audit(app, inventory, mode).findings)


def coded(report_or_findings: Report | list[Finding], code: str, severity: Severity | None = None) -> list[tuple[str, int | None]]:
    """The places of the findings with this code (and severity): (file, line)."""
    found = report_or_findings.findings if isinstance(report_or_findings, Report) else report_or_findings
    return [(finding.where.file, finding.where.line) for finding in found
            if finding.code.value == code and (severity is None or finding.severity is severity)]
