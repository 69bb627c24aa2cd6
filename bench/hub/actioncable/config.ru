# Minimal Rails 6.1 Action Cable server (no Rails app): one channel that streams
# from a param, and an HTTP broadcast endpoint with the hub's body format, so the
# same load generator and the same Node clients drive both servers.
require "logger"
require "json"
require "action_cable"

class BenchConnection < ActionCable::Connection::Base
  # ?reject=1 makes Rails answer {"type":"disconnect","reason":"unauthorized","reconnect":false},
  # which the end-to-end tests use to check their client against the real thing.
  def connect
    reject_unauthorized_connection if request.params["reject"]
  end
end

class StreamChannel < ActionCable::Channel::Base
  def subscribed
    stream = params[:stream] || params[:stream_name]
    if stream.is_a?(String) && !stream.empty?
      stream_from stream
    else
      reject
    end
  end
end

ActionCable.server.config.tap do |config|
  config.cable = { "adapter" => "async" }
  config.logger = Logger.new($stderr, level: ENV.fetch("CABLE_LOG_LEVEL", "warn"))
  config.connection_class = -> { BenchConnection }
  config.disable_request_forgery_protection = true
  config.worker_pool_size = Integer(ENV.fetch("CABLE_WORKER_POOL_SIZE", "4"))
end

# POST {"stream": S, "data": "<json string>"} or an array of them -> 201.
broadcast = lambda do |env|
  return [405, { "content-type" => "text/plain" }, ["method not allowed\n"]] unless env["REQUEST_METHOD"] == "POST"

  begin
    body = JSON.parse(env["rack.input"].read)
  rescue JSON::ParserError
    return [400, { "content-type" => "text/plain" }, ["bad json\n"]]
  end
  Array(body.is_a?(Array) ? body : [body]).each do |item|
    data = item["data"]
    message = begin
      JSON.parse(data)
    rescue JSON::ParserError, TypeError
      data
    end
    ActionCable.server.broadcast(item["stream"], message)
  end
  [201, { "content-type" => "text/plain" }, ["ok\n"]]
end

map("/cable") { run ActionCable.server }
map("/_broadcast") { run broadcast }
map("/up") { run ->(_env) { [200, { "content-type" => "text/plain" }, ["OK\n"]] } }
