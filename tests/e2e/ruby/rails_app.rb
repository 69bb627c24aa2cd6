# A Rails 6.1 application process (Debian's railties and actioncable) booted on
# the files `orchestrate render` wrote: RAILS_DIR/config/cable.yml is read by
# Rails' own Action Cable engine (config_for, ERB included) and the adapter it
# names is required from RAILS_DIR/lib, which Rails puts on the load path. The
# environment is what the region's navigator.yml gives its Rails processes
# (RAILS_ENV, CABLE_ADAPTER, CABLE_URL, ...).
#
# Usage: ruby rails_app.rb RAILS_DIR SIGNING_SECRET_ENV
# Reads one JSON command per line on stdin and answers on stdout, one JSON
# object per line (`event` names it; `id` echoes the command's):
#   {"id": 1, "op": "sign", "streamables": [...]}
#       -> signed: the stream name and its signed name, as turbo-rails'
#          `signed_stream_name(streamables)` makes them (the verifier key is the
#          value of SIGNING_SECRET_ENV, which the hub verifies with)
#   {"id": 2, "op": "broadcast", "stream": S, "message": V}
#       -> broadcast: the value of `ActionCable.server.broadcast(S, V)`
#   {"id": 3, "op": "turbo_broadcast", "streamables": [...], "content": HTML}
#       -> broadcast: what turbo-rails' `Turbo::StreamsChannel.broadcast_stream_to`
#          does (Debian has no turbo-rails gem):
#          `ActionCable.server.broadcast(stream_name_from(streamables), content)`
# Rails' log lines come out on stdout too, as {"event": "log", "severity", "message"},
# so they are in order with the answers.
require "json"
require "logger"

$stdout.sync = true
Encoding.default_external = Encoding::UTF_8
$stdin.set_encoding(Encoding::UTF_8)

def emit(event, fields = {})
  $stdout.puts JSON.generate({ "event" => event }.merge(fields))
end

RAILS_DIR = File.expand_path(ARGV.fetch(0))
SIGNING_SECRET_ENV = ARGV.fetch(1)

require "rails"
require "action_cable/engine"

class E2eRailsApp < Rails::Application
  config.root = RAILS_DIR
  config.eager_load = false
  config.secret_key_base = "e2e-rails-app-secret-key-base-" * 3
  # Only broadcasts: no Action Cable server is mounted in this application.
  config.action_cable.mount_path = nil
  config.logger = Logger.new($stdout).tap do |logger|
    logger.formatter = proc do |severity, _time, _program, message|
      JSON.generate("event" => "log", "severity" => severity, "message" => message.to_s) + "\n"
    end
  end
end

Rails.application.initialize!

# turbo-rails, app/channels/turbo/streams/stream_name.rb
def stream_name_from(streamables)
  if streamables.is_a?(Array)
    streamables.map { |streamable| stream_name_from(streamable) }.join(":")
  else
    streamables.then { |streamable| streamable.try(:to_gid_param) || streamable.to_param }
  end
end

# turbo-rails, lib/turbo-rails.rb: Turbo.signed_stream_verifier
def signed_stream_verifier
  @signed_stream_verifier ||= ActiveSupport::MessageVerifier.new(
    ENV.fetch(SIGNING_SECRET_ENV), digest: "SHA256", serializer: JSON
  )
end

emit "ready",
     "rails" => Rails.version,
     "env" => Rails.env,
     "adapter" => ActionCable.server.pubsub.class.name,
     "cable" => ActionCable.server.config.cable.to_h

$stdin.each_line do |line|
  command = JSON.parse(line)
  id = command["id"]
  case command.fetch("op")
  when "sign"
    stream = stream_name_from(command.fetch("streamables"))
    emit "signed", "id" => id, "stream" => stream, "signed" => signed_stream_verifier.generate(stream)
  when "broadcast"
    result = ActionCable.server.broadcast(command.fetch("stream"), command.fetch("message"))
    emit "broadcast", "id" => id, "result" => result
  when "turbo_broadcast"
    stream = stream_name_from(command.fetch("streamables"))
    result = ActionCable.server.broadcast(stream, command.fetch("content"))
    emit "broadcast", "id" => id, "stream" => stream, "result" => result
  else
    emit "error", "id" => id, "message" => "unknown op #{command['op'].inspect}"
  end
rescue StandardError => error
  emit "error", "id" => id, "message" => "#{error.class}: #{error.message}"
end
