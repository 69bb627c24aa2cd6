// @anycable/web (with @anycable/core) under Node, speaking actioncable-v1-json.
// Config (argv[2], JSON):
//   url        ws://host:port/cable
//   streams    list of {"label": "...", "signed": "<signed stream name>"} or {"label", "name"}
//   expect     exit 0 once this many messages arrived and every stream was
//              either confirmed or rejected
//   deadline   exit 1 after this many seconds (default 60)
import WebSocket from 'ws'
import { createCable } from '@anycable/web'
import lib from './lib.cjs'

const { emit, readConfig, finish, armDeadline } = lib
const config = readConfig()
armDeadline(config.deadline || 60)

const cable = createCable(config.url, {
  websocketImplementation: WebSocket,
  protocol: 'actioncable-v1-json',
  logLevel: config.logLevel || 'error'
})
cable.on('connect', (event) => emit('connected', { reconnect: Boolean(event && event.reconnect) }))
cable.on('disconnect', (event) => emit('disconnected', { reason: event && event.reason }))

let received = 0
let settled = 0

function maybeDone () {
  if (settled === config.streams.length && received >= (config.expect || 0)) finish('done')
}

for (const stream of config.streams) {
  const channel = stream.signed !== undefined
    ? cable.streamFromSigned(stream.signed)
    : cable.streamFrom(stream.name)
  channel.on('message', (data) => {
    received += 1
    emit('received', { label: stream.label, data })
    maybeDone()
  })
  channel.ensureSubscribed().then(
    () => { settled += 1; emit('subscribed', { label: stream.label }); maybeDone() },
    (error) => {
      settled += 1
      emit('rejected', { label: stream.label, error: String(error && error.message) })
      maybeDone()
    }
  )
}
