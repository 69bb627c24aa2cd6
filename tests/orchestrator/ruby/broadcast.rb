# Broadcasts one message the way a Rails app does, through the rendered Rails
# settings: config/cable.yml (ERB evaluated, as Rails does) and the adapter that
# cable.yml names, found on the load path like Rails finds it in lib/.
# Usage: ruby broadcast.rb RAILS_DIR STREAM JSON_MESSAGE [raw]
# With `raw` the message is broadcast with `coder: nil`, so the adapter gets it unencoded.
require "erb"
require "json"
require "logger"
require "yaml"
# A Rails app has all of Active Support loaded before Action Cable starts.
require "active_support/all"
require "action_cable"

rails_dir, stream, message = ARGV.fetch(0), ARGV.fetch(1), ARGV.fetch(2)
coder = ARGV[3] == "raw" ? nil : ActiveSupport::JSON
$LOAD_PATH.unshift(File.join(rails_dir, "lib"))
settings = YAML.safe_load(ERB.new(File.read(File.join(rails_dir, "config", "cable.yml"))).result).fetch("production")

server = ActionCable::Server::Base.new
server.config.cable = settings.with_indifferent_access
server.config.logger = Logger.new($stderr)
puts "adapter=#{server.pubsub.class.name}"
puts "result=#{server.broadcast(stream, JSON.parse(message), coder: coder).inspect}"
