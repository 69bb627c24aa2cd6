class StreamChannel < ApplicationCable::Channel
  def subscribed
    stream = params[:stream]
    if stream.is_a?(String) && !stream.empty?
      stream_from stream
    else
      reject
    end
  end
end
