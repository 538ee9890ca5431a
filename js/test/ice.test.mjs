// ICE servers handed out by the server (PROTOCOL.md section 11), with the
// embedded TURN server on: in the session's reply, renewed in band ahead
// of expiry, and at GET /v1/ice-servers.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { connect } from '../src/index.js'
import { startServer, waitFor } from './helpers.mjs'

let srv
let dir

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'signalchannel-ice-'))
  const secret = path.join(dir, 'turn-secret')
  writeFileSync(secret, 'x'.repeat(40))
  srv = await startServer(['-turn-secret-file', secret, '-turn-listen-udp', '127.0.0.1:0', '-stun', 'stun:127.0.0.1:3478', '-turn-ttl', '10s'])
})

after(async () => {
  await srv?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

test('the session reply carries ICE servers for this peer, renewed ahead of expiry', { timeout: 30_000 }, async () => {
  const ch = await connect(srv.url)
  try {
    const first = await ch.iceServers()
    assert.equal(first.iceServers.length, 2)
    assert.deepEqual(first.iceServers[0], { urls: ['stun:127.0.0.1:3478'] })
    const turn = first.iceServers[1]
    assert.match(turn.urls[0], /^turn:127\.0\.0\.1:\d+\?transport=udp$/)
    assert.ok(turn.username.endsWith(':' + ch.id), turn.username)
    assert.equal(typeof turn.credential, 'string')
    assert.equal(first.ttl, 10)
    assert.equal((await ch.iceServers()).expires, first.expires, 'renewed while more than half the lifetime is left')
    // Past half the lifetime the next call renews them.
    const renewed = await waitFor(async () => {
      const cur = await ch.iceServers()
      return cur.expires > first.expires && cur
    }, { timeout: 15_000, interval: 200, message: 'renewed credentials' })
    assert.ok(renewed.iceServers[1].username.endsWith(':' + ch.id))
  } finally {
    await ch.close()
  }
})

test('GET /v1/ice-servers answers the same JSON; a server without them answers 404', async (t) => {
  const res = await fetch(`${srv.httpURL}/v1/ice-servers`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const body = await res.json()
  assert.equal(body.iceServers.length, 2)
  assert.match(body.iceServers[1].username, /^\d+:.+/)
  const plain = await startServer()
  t.after(() => plain.stop())
  const none = await fetch(`${plain.httpURL}/v1/ice-servers`)
  assert.equal(none.status, 404)
  assert.equal((await none.json()).error.code, 'unknown_endpoint')
  const ch = await connect(plain.url)
  assert.equal(await ch.iceServers(), null)
  await ch.close()
})
