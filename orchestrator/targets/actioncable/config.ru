# Local stand-in for the app's Action Cable process (`bundle exec puma cable/config.ru`
# in production): Rails 6.1 Action Cable without a Rails app, run by
# `python -m orchestrator.targets.localctl` for a local fleet region.
#
# Environment (set by localctl): REDIS_URL, CABLE_PATH (the region's full cable path:
# Navigator's reverse proxy passes the path through), BROADCAST_PATH,
# CABLE_SIGNING_SECRET_ENV (the NAME of the variable holding the signing secret),
# optional CABLE_CHANNEL_PREFIX and CABLE_LOG_LEVEL.
require "logger"
require "json"
require "ipaddr"
require "action_cable"
require "active_support/message_verifier"

# Read at boot, so a missing secret makes the process fail to start instead of
# rejecting every subscription later. KeyError names the variable, never its value.
STREAM_VERIFIER = ActiveSupport::MessageVerifier.new(
  ENV.fetch(ENV.fetch("CABLE_SIGNING_SECRET_ENV")), digest: "SHA256", serializer: JSON
)

module Turbo
  # turbo-rails' channel: the stream name comes only from a verified signed_stream_name.
  class StreamsChannel < ActionCable::Channel::Base
    def subscribed
      stream = verified_stream_name
      if stream
        stream_from stream
      else
        reject
      end
    end

    private

    def verified_stream_name
      signed = params[:signed_stream_name]
      return nil unless signed.is_a?(String) && !signed.empty?

      name = STREAM_VERIFIER.verified(signed)
      name if name.is_a?(String) && !name.empty?
    rescue StandardError # a malformed message must be a rejection, not a crashed subscription
      nil
    end
  end
end

ActionCable.server.config.tap do |config|
  config.cable = {
    "adapter" => "redis",
    "url" => ENV.fetch("REDIS_URL"),
    "channel_prefix" => ENV.fetch("CABLE_CHANNEL_PREFIX", "local_fleet"),
  }
  config.logger = Logger.new($stdout, level: ENV.fetch("CABLE_LOG_LEVEL", "info"))
  config.connection_class = -> { ActionCable::Connection::Base }
  # Local clients (tests, probes) send no Origin header; the stand-in listens on loopback only.
  config.disable_request_forgery_protection = true
end

# Helpers in a module: config.ru is evaluated inside Rack::Builder blocks, where a
# top-level `def` would be visible from some blocks and not from others.
module LocalCable
  module_function

  def loopback?(address)
    ip = IPAddr.new(address.to_s)
    ip = ip.native if ip.ipv4_mapped?
    ip.loopback?
  rescue IPAddr::Error
    false
  end

  def plain(status, text)
    [status, { "content-type" => "text/plain" }, [text]]
  end
end

# Navigator's broadcast format: POST {"stream": S, "data": <any JSON>}, data forwarded as is.
# REMOTE_ADDR, not Rack's #ip: X-Forwarded-For must not make a remote peer look local.
broadcast = lambda do |env|
  return LocalCable.plain(405, "method not allowed\n") unless env["REQUEST_METHOD"] == "POST"
  return LocalCable.plain(403, "forbidden\n") unless LocalCable.loopback?(env["REMOTE_ADDR"])

  begin
    body = JSON.parse(env["rack.input"].read)
  rescue JSON::ParserError
    return LocalCable.plain(400, "invalid JSON\n")
  end
  stream = body["stream"] if body.is_a?(Hash)
  return LocalCable.plain(400, "stream required\n") unless stream.is_a?(String) && !stream.empty?

  ActionCable.server.broadcast(stream, body["data"])
  [200, { "content-length" => "0" }, []]
end

map(ENV.fetch("CABLE_PATH")) { run ActionCable.server }
map(ENV.fetch("BROADCAST_PATH", "/_broadcast")) { run broadcast }
map("/up") { run ->(_env) { LocalCable.plain(200, "OK") } }
