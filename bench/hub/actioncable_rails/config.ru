# Like a Rails app's standalone cable server (cable/config.ru): boot the whole
# application, then serve Action Cable. Other paths go to the application's
# routes (the broadcast endpoint and /up), which a pure cable process would not
# need but the load generator does.
require_relative "config/environment"
Rails.application.eager_load!

map("/cable") { run ActionCable.server }
map("/") { run Rails.application }
