# POST {"stream": S, "data": "<json string>"} or an array of them -> 201, the
# body format of the hub's broadcast endpoint, so one load generator drives both.
class BroadcastsController < ApplicationController
  skip_forgery_protection

  def create
    body = JSON.parse(request.raw_post)
    (body.is_a?(Array) ? body : [body]).each do |item|
      ActionCable.server.broadcast(item["stream"], decoded(item["data"]))
    end
    head :created
  rescue JSON::ParserError
    render plain: "bad json\n", status: :bad_request
  end

  private

  def decoded(data)
    JSON.parse(data)
  rescue JSON::ParserError, TypeError
    data
  end
end
