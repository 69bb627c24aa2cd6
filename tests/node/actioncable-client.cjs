'use strict'
// The official @rails/actioncable consumer under Node.
// Config (argv[2], JSON):
//   url            ws://host:port/cable
//   subscriptions  list of identifier params, e.g. [{"channel": "$pubsub", "stream_name": "s"}]
//   expect         exit 0 once this many messages were received in total (optional)
//   linger         after a disconnect without reconnect, watch this many seconds for
//                  further socket attempts, then exit 0
//   stay           exit 0 after this many seconds (to watch a connection stay up)
//   deadline       exit 1 after this many seconds (default 60)
const WebSocket = require('ws')
const ActionCable = require('@rails/actioncable')
const { emit, readConfig, finish, armDeadline } = require('./lib.cjs')

const config = readConfig()
armDeadline(config.deadline || 60)

// What a browser would provide: the monitor listens for visibility changes.
globalThis.document = { visibilityState: 'visible', hidden: false }
globalThis.addEventListener = () => {}
globalThis.removeEventListener = () => {}

// Count every socket the consumer opens, so tests can see (re)connect attempts.
let attempts = 0
class CountingWebSocket extends WebSocket {
  constructor (url, protocols) {
    attempts += 1
    emit('socket_open_attempt', { attempt: attempts })
    super(url, protocols)
    this.on('upgrade', (response) => {
      emit('handshake', { protocol: response.headers['sec-websocket-protocol'] || null })
    })
    this.on('message', (raw) => {
      const message = JSON.parse(raw.toString())
      if (message.type === 'ping') emit('ping', { message: message.message })
      else if (message.type === 'welcome') emit('welcome', { sid: message.sid || null })
    })
    this.on('close', (code, reason) => {
      emit('socket_closed', { code, reason: reason.toString() })
    })
  }
}
ActionCable.adapters.WebSocket = CountingWebSocket

if (config.stay) setTimeout(() => finish('stayed'), config.stay * 1000)

const consumer = ActionCable.createConsumer(config.url)
let received = 0
let lingering = false

function stopWatching () {
  const attemptsAtStop = attempts
  lingering = true
  setTimeout(() => {
    emit('linger_done', {
      attempts_after_stop: attempts - attemptsAtStop,
      monitor_running: Boolean(consumer.connection.monitor.isRunning())
    })
    finish('no_reconnect')
  }, (config.linger || 8) * 1000)
}

for (const params of config.subscriptions) {
  const identifier = JSON.stringify(params)
  consumer.subscriptions.create(params, {
    connected () { emit('subscribed', { identifier }) },
    rejected () { emit('rejected', { identifier }) },
    received (data) {
      received += 1
      emit('received', { identifier, data })
      if (config.expect && received >= config.expect) finish('done')
    },
    disconnected ({ willAttemptReconnect } = {}) {
      emit('disconnected', { identifier, will_attempt_reconnect: Boolean(willAttemptReconnect) })
      if (willAttemptReconnect === false && !lingering) stopWatching()
    }
  })
}
