require "rails"
require "active_record/railtie"
require "active_job/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "action_cable/engine"

module CableBench
  class Application < Rails::Application
    config.load_defaults 6.1
    config.time_zone = "UTC"
  end
end
