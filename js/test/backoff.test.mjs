// The reconnecting client against a real server that refuses its sessions
// after the upgrade: it backs off (at most 10 dials in 10 s, counted by the
// client and by the server's /metrics) and gets in once it may.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { connect, reconnect } from '../src/index.js'
import { serverFor, tokenServerFor, closeAfter, waitFor, metric, sleep, unique } from './helpers.mjs'

const WINDOW = 10_000
const MAX_DIALS = 10

/**
 * countDials counts, for WINDOW ms from t0, the dials of client (the first,
 * which reconnect made, and one a 'connect' event after) and the sessions
 * srv closed with code, and asserts that there were at most MAX_DIALS and
 * that the client did dial again.
 */
async function countDials (client, t0, srv, code) {
  const dials = [0]
  const disconnects = []
  client.on('connect', () => dials.push(Date.now() - t0))
  client.on('disconnect', (c) => disconnects.push(c))
  await sleep(WINDOW - (Date.now() - t0))
  const n = dials.filter((t) => t < WINDOW).length
  const closed = await metric(srv, `signalchannel_session_closes_total{code="${code}"}`)
  console.log(`# ${code}: ${n} dials in ${WINDOW / 1000} s (the server closed ${closed} sessions with ${code}), at ${dials.join(', ')} ms`)
  assert.ok(n <= MAX_DIALS, `${n} dials in ${WINDOW} ms`)
  assert.ok(closed <= MAX_DIALS, `the server closed ${closed} sessions with ${code}`)
  assert.ok(disconnects.length >= 2, 'the client dials again')
  return { dials, disconnects }
}

/** joins resolves once the client has an echo member in a namespace: its session is in. */
function joins (client, timeout) {
  return waitFor(async () => {
    const room = await client.echo(unique('in'))
    await room.close()
    return true
  }, { timeout, interval: 50, message: 'a session that stays open' })
}

describe('backoff while the server refuses', { concurrency: true }, () => {
  it('4401 with getToken: expired tokens back off, a fresh one gets in', async (t) => {
    const { srv, secret } = await tokenServerFor(t)
    let fresh = false
    let calls = 0
    const getToken = async () => {
      calls++
      return secret.token({ ttl: fresh ? 3600 : -60 })
    }
    const t0 = Date.now()
    const client = closeAfter(t, await reconnect(srv.url, { token: 'not-a-token', getToken }))
    const count = await countDials(client, t0, srv, 4401)
    assert.ok(count.disconnects.length >= 2, 'the client dials again with a token from getToken')
    for (const c of count.disconnects) assert.deepEqual(c, { code: 4401, reason: 'token expired' })
    assert.ok(calls >= count.dials.length, `getToken called ${calls} times for ${count.dials.length} dials`)

    fresh = true
    await joins(client, 15_000)
  })

  it('4429: the client backs off and gets in once a place is free', async (t) => {
    const srv = await serverFor(t, ['-max-sessions-per-ip', '1'])
    const hold = closeAfter(t, await connect(srv.url)) // the one session the address may have
    const t0 = Date.now()
    const client = closeAfter(t, await reconnect(srv.url))
    const count = await countDials(client, t0, srv, 4429)
    for (const c of count.disconnects) assert.deepEqual(c, { code: 4429, reason: 'sessions per address limit (1) reached' })

    await hold.close()
    await joins(client, 15_000)
  })
})
