'use strict'
// A client of Navigator's own cable protocol (no subprotocol), with plain ws.
// Config (argv[2], JSON): url, streams (list of names), expect (messages), deadline.
const WebSocket = require('ws')
const { emit, readConfig, finish, armDeadline } = require('./lib.cjs')

const config = readConfig()
armDeadline(config.deadline || 30)

const socket = new WebSocket(config.url)
let received = 0

socket.on('upgrade', (response) => {
  emit('handshake', { protocol: response.headers['sec-websocket-protocol'] || null })
})
socket.on('open', () => {
  emit('open')
  for (const stream of config.streams) socket.send(JSON.stringify({ type: 'subscribe', stream }))
})
socket.on('message', (raw) => {
  const message = JSON.parse(raw.toString())
  if (message.type === 'ping') {
    socket.send(JSON.stringify({ type: 'pong' }))
    emit('ping')
  } else if (message.type === 'subscribed') {
    emit('subscribed', { stream: message.stream })
  } else if (message.type === 'message') {
    received += 1
    emit('received', { stream: message.stream, data: message.data })
    if (config.expect && received >= config.expect) {
      socket.close(1000)
      finish('done')
    }
  } else {
    emit('other', { message })
  }
})
socket.on('close', (code, reason) => emit('socket_closed', { code, reason: reason.toString() }))
socket.on('error', (error) => emit('error', { message: error.message }))
