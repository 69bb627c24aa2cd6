'use strict'
// Shared by the client scripts: one JSON object per line on stdout, and a
// hard deadline so no script can outlive the test that started it.

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, t: Date.now(), ...fields }) + '\n')
}

function readConfig () {
  const raw = process.argv[2]
  if (!raw) {
    process.stderr.write('usage: node SCRIPT \'{"url": "ws://...", ...}\'\n')
    process.exit(2)
  }
  return JSON.parse(raw)
}

function finish (reason, code = 0) {
  emit('exit', { reason })
  // Let stdout drain before exiting: a pipe write can be asynchronous.
  process.stdout.write('', () => process.exit(code))
}

function armDeadline (seconds) {
  const timer = setTimeout(() => finish('deadline', 1), seconds * 1000)
  timer.unref()
}

module.exports = { emit, readConfig, finish, armDeadline }
