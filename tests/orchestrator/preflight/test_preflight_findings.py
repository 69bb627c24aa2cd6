"""Each finding on a small app tree: where it is reported, how severe in which mode, and what must not trigger it."""

from __future__ import annotations

from pathlib import Path

from orchestrator.inventory import load_inventory
from orchestrator.model import MODES, Inventory
from orchestrator.preflight.findings import Severity
from orchestrator.preflight.report import audit
from orchestrator.preflight.source import MAX_FILE_BYTES
from tests.orchestrator.preflight.apps import ACTION_CABLE_APP, TURBO_CABLE_APP, coded, findings, write_files
from tests.orchestrator.rollout.fleet import FLEET_INVENTORY

BLOCKING, WARNING, INFO = Severity.BLOCKING, Severity.WARNING, Severity.INFO


def inventory(tmp_path: Path, websocket_extra: str = "") -> Inventory:
    """The fleet's inventory, with lines added to its websocket block."""
    text = FLEET_INVENTORY.replace("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                                   "  signing_secret_env: CABLE_SIGNING_SECRET\n" + websocket_extra)
    path = tmp_path / "inventory.yml"
    path.write_text(text, encoding="utf-8")
    return load_inventory(path)


def test_a_clean_turbo_cable_app_is_ready_for_the_integrated_mode_without_a_warning(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", TURBO_CABLE_APP)
    report = audit(app, None, "integrated")
    assert [f for f in report.findings if f.severity is not INFO] == []
    assert report.exit_status == 0
    assert report.facts.protocols == ("navigator",)
    assert report.fit == ("integrated",)


def test_a_clean_action_cable_app_fits_action_cable_and_the_hub_once_its_channel_is_mapped(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)
    unmapped = audit(app, None, None)
    assert unmapped.fit == ("action_cable",)
    assert coded(unmapped, "channel-unmapped", BLOCKING) == [("app/javascript/channels/scores_channel.js", 3)]
    mapped = audit(app, inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n"), None)
    assert mapped.fit == ("action_cable", "hub")
    assert mapped.exit_status == 0


def test_public_channel_methods_are_actions_and_private_protected_and_class_methods_are_not(tmp_path: Path) -> None:
    channel = """\
class ChatChannel < ApplicationCable::Channel
  def subscribed
    stream_from "chat"
  end

  def unsubscribed; end

  def speak(data)
    ActionCable.server.broadcast("chat", data)
  end

  def self.register(token)
  end

  protected

  def guarded; end

  private

  def helper; end
end
"""
    base = "module ApplicationCable\n  class Channel < ActionCable::Channel::Base\n    def whoami; end\n\n    private\n\n    def secret; end\n  end\nend\n"
    app = write_files(tmp_path / "app", {**ACTION_CABLE_APP, "app/channels/chat_channel.rb": channel,
                                        "app/channels/application_cable/channel.rb": base})
    for mode in ("anycable", "integrated", "hub"):
        assert coded(findings(app, mode), "channel-action", BLOCKING) == [
            ("app/channels/application_cable/channel.rb", 3), ("app/channels/chat_channel.rb", 8)]
    assert coded(findings(app, "action_cable"), "channel-action") == []


def test_a_channel_that_inherits_through_another_app_channel_is_still_a_channel(tmp_path: Path) -> None:
    files = {
        **ACTION_CABLE_APP,
        "app/channels/admin/base_channel.rb": "module Admin\n  class BaseChannel < ApplicationCable::Channel\n  end\nend\n",
        "app/channels/admin/report_channel.rb": "module Admin\n  class ReportChannel < BaseChannel\n    def refresh; end\n\n"
                                                "    def subscribed = stream_from(\"report_#{current_user.id}\")\n  end\nend\n",
        "app/models/report.rb": "class Report < ApplicationRecord\n  def refresh; end\nend\n",
    }
    app = write_files(tmp_path / "app", files)
    found = findings(app, "integrated")
    assert coded(found, "channel-action") == [("app/channels/admin/report_channel.rb", 3)]
    assert coded(found, "stream-per-user") == [("app/channels/admin/report_channel.rb", 5)]


def test_client_perform_and_send_on_subscriptions_block_but_a_raw_websocket_send_does_not(tmp_path: Path) -> None:
    controller = """\
import consumer from "channels/consumer"

export default class extends Controller {
  connect() {
    this.subscription = consumer.subscriptions.create({ channel: "ScoresChannel" }, {
      connected() { this.perform("appear") }
    })
    this.subscription.send({ hello: 1 })
    // this.subscription.perform("commented")
    this.socket = new WebSocket("/cable")
    this.socket.send("raw")
  }
}
"""
    view = '<div>\n<script>\n  App.chat.perform("speak", { text: "<%= @text %>" })\n</script>\n</div>\n'
    app = write_files(tmp_path / "app", {**ACTION_CABLE_APP, "app/javascript/controllers/chat_controller.js": controller,
                                        "app/views/chat/show.html.erb": view})
    for mode in ("anycable", "integrated", "hub"):
        assert coded(findings(app, mode), "client-perform", BLOCKING) == [
            ("app/javascript/controllers/chat_controller.js", 6), ("app/javascript/controllers/chat_controller.js", 8),
            ("app/views/chat/show.html.erb", 3)]
    assert coded(findings(app, "action_cable"), "client-perform") == []


def test_client_code_nothing_loads_is_a_note_not_a_subscription(tmp_path: Path) -> None:
    files = {**ACTION_CABLE_APP, "app/javascript/channels/index.js": "// import \"channels/scores_channel\"\n"}
    app = write_files(tmp_path / "app", files)
    found = findings(app, "integrated")
    assert coded(found, "client-unused", INFO) == [("app/javascript/channels/consumer.js", 3),
                                                  ("app/javascript/channels/scores_channel.js", 3), ("config/importmap.rb", 2)]
    assert coded(found, "client-protocol") == []
    assert audit(app, None, "integrated").exit_status == 0


def test_command_output_leftovers_block_a_channel_that_runs_commands_and_its_token_registry(tmp_path: Path) -> None:
    channel = """\
require "open3"

class OutputChannel < ApplicationCable::Channel
  REGISTRY = Rails.root.join("tmp/tokens.yaml")

  def subscribed
    stream_from params[:stream]
  end

  private

  def run(command)
    # system("commented out")
    Open3.capture2(*command)
    `uptime`
    PTY.spawn(*command) { |read, write, pid| }
    puts "system(not a call)"
    pool.spawn(:later)
  end
end
"""
    job = 'class DeployJob < ApplicationJob\n  def perform\n    system("deploy")\n  end\nend\n'
    files = {**ACTION_CABLE_APP, "app/channels/output_channel.rb": channel, "app/jobs/deploy_job.rb": job,
             "tmp/tokens.yaml": "---\n{}\n", "lib/notes.rb": "# tokens.yaml is gone\n"}
    app = write_files(tmp_path / "app", files)
    found = findings(app, "integrated")
    assert coded(found, "channel-runs-commands", BLOCKING) == [
        ("app/channels/output_channel.rb", 14), ("app/channels/output_channel.rb", 15), ("app/channels/output_channel.rb", 16)]
    assert coded(found, "tokens-file", BLOCKING) == [("app/channels/output_channel.rb", 4), ("tmp/tokens.yaml", None)]
    assert coded(findings(app, "action_cable"), "channel-runs-commands") == []


def test_the_turbo_cable_gem_means_navigator_protocol_which_only_integrated_and_hub_speak(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", TURBO_CABLE_APP)
    view = ("app/views/scores/index.html.erb", 2)
    assert coded(findings(app, "action_cable"), "client-protocol", BLOCKING) == [view]
    assert coded(findings(app, "anycable"), "client-protocol", BLOCKING) == [view]
    assert coded(findings(app, "integrated"), "client-protocol") == []
    # The hub serves Navigator's protocol only to streams its policy lets through.
    assert coded(findings(app, "hub"), "hub-stream-refused", BLOCKING) == [view]
    assert coded(findings(app, "hub", inventory(tmp_path, "  public_streams: true\n")), "hub-stream-refused") == []
    mapped = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n")
    assert coded(findings(app, "hub", mapped), "hub-stream-refused") == []


def test_action_cable_clients_do_not_fit_the_integrated_mode(tmp_path: Path) -> None:
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)
    assert coded(findings(app, "integrated"), "client-protocol", BLOCKING) == [("app/javascript/channels/scores_channel.js", 3)]
    assert coded(findings(app, "anycable"), "channel-unsupported", BLOCKING) == [("app/javascript/channels/scores_channel.js", 3)]


def test_turbo_rails_streams_are_signed_action_cable_subscriptions(tmp_path: Path) -> None:
    files = {**TURBO_CABLE_APP, "Gemfile": 'gem "rails"\ngem "turbo-rails"\n',
             "app/views/users/show.html.erb": '<%= turbo_stream_from "config_update", @user.id %>\n'}
    app = write_files(tmp_path / "app", files)
    assert coded(findings(app, "integrated"), "client-protocol", BLOCKING) == [
        ("app/views/scores/index.html.erb", 2), ("app/views/users/show.html.erb", 1)]
    for mode in MODES:
        assert coded(findings(app, mode), "stream-per-user") == []
    # anycable-go takes Turbo::StreamsChannel only with --turbo_streams (websocket.turbo_streams).
    assert len(coded(findings(app, "anycable"), "channel-unsupported", BLOCKING)) == 2
    assert coded(findings(app, "anycable", inventory(tmp_path, "  turbo_streams: true\n")), "channel-unsupported") == []


def test_cable_ready_streams_fit_anycable_only_with_websocket_cable_ready(tmp_path: Path) -> None:
    client = ('import consumer from "channels/consumer"\n\n'
              'consumer.subscriptions.create({ channel: "CableReady::Stream", identifier: "signed" }, {})\n')
    files = {**ACTION_CABLE_APP, "app/javascript/channels/scores_channel.js": client}
    files.pop("app/channels/scores_channel.rb")
    app = write_files(tmp_path / "app", files)
    # anycable-go v1.5.1 routes CableReady::Stream only with --cable_ready (cli/cli.go:506-509).
    (blocking,) = [f for f in findings(app, "anycable") if f.code.value == "channel-unsupported"]
    assert (blocking.severity, blocking.where.file, blocking.where.line) == (BLOCKING, "app/javascript/channels/scores_channel.js", 3)
    assert "websocket.cable_ready is not set" in blocking.message and "cable_ready: true" in blocking.remedy
    assert coded(findings(app, "anycable", inventory(tmp_path, "  cable_ready: true\n")), "channel-unsupported") == []


def test_per_user_streams_warn_in_integrated_and_block_the_hub_unless_the_channel_is_signed(tmp_path: Path) -> None:
    channel = ('class ConfigUpdateChannel < ApplicationCable::Channel\n  def subscribed\n'
               '    stream_from "config_update_#{params[:database]}_#{params[:user_id]}"\n  end\nend\n')
    client = ('import consumer from "channels/consumer"\n'
              'consumer.subscriptions.create({ channel: "ConfigUpdateChannel", user_id: 1 }, {})\n')
    files = {**ACTION_CABLE_APP, "app/channels/config_update_channel.rb": channel,
             "app/javascript/controllers/config_controller.js": client}
    app = write_files(tmp_path / "app", files)
    assert coded(findings(app, "integrated"), "stream-per-user", WARNING) == [("app/channels/config_update_channel.rb", 3)]
    unsigned = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n"
                                   "    ConfigUpdateChannel: {stream: 'config_update_{database}_{user_id}'}\n")
    assert coded(findings(app, "hub", unsigned), "stream-per-user", BLOCKING) == [("app/channels/config_update_channel.rb", 3)]
    signed = inventory(tmp_path, "  channels:\n    ScoresChannel: {stream: 'live-scores-{database}'}\n"
                                 "    ConfigUpdateChannel: {stream: 'config_update_{database}_{user_id}', signed: true}\n")
    assert coded(findings(app, "hub", signed), "stream-per-user") == []
    assert audit(app, signed, "hub").exit_status == 0


def test_turbo_cable_streams_with_a_user_part_warn_in_integrated_and_cannot_be_signed_in_the_hub(tmp_path: Path) -> None:
    files = {**TURBO_CABLE_APP,
             "app/views/admin/apply.html.erb": "<% user = User.find_by(userid: @authuser) %>\n"
                                              '<%= turbo_stream_from "config_update_#{ENV[\'RAILS_APP_DB\']}_#{user&.id}" %>\n',
             "app/views/users/show.html.erb": '<%= turbo_stream_from "config_update", current_user.id %>\n',
             "app/views/events/show.html.erb": '<%= turbo_stream_from "offline_playlist_#{@request_id}" %>\n'}
    app = write_files(tmp_path / "app", files)
    expected = [("app/views/admin/apply.html.erb", 2), ("app/views/users/show.html.erb", 1)]
    integrated = audit(app, None, "integrated")
    assert coded(integrated, "stream-per-user", WARNING) == expected
    assert integrated.exit_status == 0
    public = inventory(tmp_path, "  public_streams: true\n")
    assert coded(findings(app, "hub", public), "stream-per-user", BLOCKING) == expected


def test_connection_authentication_and_stream_callbacks(tmp_path: Path) -> None:
    connection = """\
module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    def connect
      self.current_user = find_verified_user
    end
  end
end
"""
    channel = ('class TickerChannel < ApplicationCable::Channel\n  def subscribed\n'
               '    stream_from "ticker", coder: ActiveSupport::JSON do |message|\n      transmit message\n    end\n  end\nend\n')
    files = {**ACTION_CABLE_APP, "app/channels/application_cable/connection.rb": connection,
             "app/channels/ticker_channel.rb": channel}
    app = write_files(tmp_path / "app", files)
    found = findings(app, "hub")
    assert coded(found, "connection-auth", WARNING) == [("app/channels/application_cable/connection.rb", 3),
                                                        ("app/channels/application_cable/connection.rb", 5)]
    assert coded(found, "stream-callback", BLOCKING) == [("app/channels/ticker_channel.rb", 3)]
    assert coded(findings(app, "action_cable"), "connection-auth") == []


def test_redis_used_outside_action_cable_is_a_warning_except_in_the_action_cable_mode(tmp_path: Path) -> None:
    files = {
        **TURBO_CABLE_APP,
        "Gemfile": 'gem "rails"\ngem "turbo_cable"\ngem "sidekiq"\n# gem "kredis"\ngem "redis"\n',
        "lib/counter.rb": "class Counter\n  # Redis.new would be nice\n  def store = Redis.new(url: ENV['REDIS_URL'])\n"
                          "  def name = \"Kredis\"\nend\n",
        "config/environments/production.rb": "Rails.application.configure do\n  config.cache_store = :redis_cache_store\nend\n",
        "config/sidekiq.yml": "# REDIS_URL is read by sidekiq\n:url: <%= ENV['REDIS_URL'] %>\n",
    }
    app = write_files(tmp_path / "app", files)
    found = findings(app, "integrated")
    assert coded(found, "redis-in-use", WARNING) == [
        ("Gemfile", 3), ("config/environments/production.rb", 2), ("config/sidekiq.yml", 2), ("lib/counter.rb", 3),
        ("lib/counter.rb", 3)]
    assert [f.message.partition(": Redis is used")[0] for f in found if f.code.value == "redis-in-use"] == [
        'gem "sidekiq"', ":redis_cache_store", "REDIS_URL", "Redis.new", "REDIS_URL"]
    assert coded(findings(app, "action_cable"), "redis-in-use") == []


def test_cable_yml_environments_are_noted_and_keys_the_generated_file_drops_are_warnings(tmp_path: Path) -> None:
    cable = """\
default: &default
  adapter: redis
  url: <%= ENV.fetch("REDIS_URL") { "redis://localhost:6379/1" } %>

development:
  adapter: async

production:
  <<: *default
  channel_prefix: <%= ENV.fetch("RAILS_APP_REDIS") { "app_production" } %>

staging:
  <<: *default
"""
    app = write_files(tmp_path / "app", {**TURBO_CABLE_APP, "config/cable.yml": cable})
    found = findings(app, "integrated")
    assert coded(found, "cable-yml-lost", WARNING) == [("config/cable.yml", 1), ("config/cable.yml", 10), ("config/cable.yml", 12)]
    assert coded(found, "cable-yml", INFO) == [("config/cable.yml", 5), ("config/cable.yml", 8)]
    lost = next(f for f in found if f.where.line == 10)
    assert lost.message.startswith('production.channel_prefix (<%= ENV.fetch("RAILS_APP_REDIS")')
    broken = write_files(tmp_path / "broken", {**TURBO_CABLE_APP, "config/cable.yml": "production:\n  adapter: [redis\n"})
    assert coded(findings(broken, "integrated"), "cable-yml-unreadable", WARNING) == [("config/cable.yml", None)]


def test_large_files_and_dependency_directories_are_not_read(tmp_path: Path) -> None:
    perform = 'App.room.perform("speak")\n'
    files = {
        **ACTION_CABLE_APP,
        "app/javascript/vendor_bundle.js": "// " + "x" * MAX_FILE_BYTES + "\n" + perform,
        "app/javascript/node_modules/pkg/index.js": perform,
        "app/assets/builds/application.js": perform,
        "vendor/javascript/chat.js": perform,
    }
    app = write_files(tmp_path / "app", files)
    found = findings(app, "integrated")
    assert coded(found, "client-perform") == []
    assert coded(found, "file-skipped", WARNING) == [("app/javascript/vendor_bundle.js", None)]
