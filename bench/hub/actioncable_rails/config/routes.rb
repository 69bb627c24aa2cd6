Rails.application.routes.draw do
  post "/_broadcast", to: "broadcasts#create"
  get "/up", to: proc { [200, { "content-type" => "text/plain" }, ["OK\n"]] }
end
