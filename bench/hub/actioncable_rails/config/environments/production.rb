Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false
  config.action_controller.perform_caching = true
  config.public_file_server.enabled = false
  config.cache_store = :memory_store

  # The benchmark runs many thousands of subscriptions; info-level lines for each
  # would measure the logger. run.py captures stdout into bench/results/tmp/.
  config.logger = ActiveSupport::Logger.new($stdout)
  config.log_level = ENV.fetch("RAILS_LOG_LEVEL", "warn").to_sym

  config.action_cable.disable_request_forgery_protection = true
  config.active_record.dump_schema_after_migration = false
  config.i18n.fallbacks = true
  config.active_support.deprecation = :silence
end
