// The reconnecting client against a real server that refuses its sessions
// after the upgrade: its first dial is refused, and it backs off (at most 10
// dials in 10 s, counted by the client's WebSocket and by the server's
// /metrics) and gets in once it may.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket as WS } from 'ws'
import { connect, reconnect } from '../src/index.js'
import { serverFor, tokenServerFor, closeAfter, waitFor, within, metric, sleep, unique } from './helpers.mjs'

const WINDOW = 10_000
const MAX_DIALS = 10

/** countingWebSocket returns a WebSocket class that notes when each one is made, in ms from t0, in dials. */
function countingWebSocket (t0, dials) {
  return class CountingWebSocket extends WS {
    constructor (url, protocols) {
      super(url, protocols)
      dials.push(Date.now() - t0)
    }
  }
}

/**
 * refusedDials starts reconnect(url, options) with a WebSocket that counts
 * its dials and, for WINDOW ms, counts them and the sessions srv closed with
 * code; it asserts that there were at most MAX_DIALS, and that the client
 * did dial again. It resolves with the count and the settled reconnect
 * (connected() waits for it). The dials stop after test t.
 */
async function refusedDials (t, srv, code, url, options = {}) {
  const t0 = Date.now()
  const dials = []
  const stop = new AbortController()
  t.after(() => stop.abort())
  let client = null
  const settled = reconnect(url, { ...options, WebSocket: countingWebSocket(t0, dials), signal: stop.signal })
    .then((c) => { client = c }, (e) => e)
  await sleep(WINDOW - (Date.now() - t0))
  const n = dials.filter((ms) => ms < WINDOW).length
  const closed = await metric(srv, `signalchannel_session_closes_total{code="${code}"}`)
  console.log(`# ${code}: ${n} dials in ${WINDOW / 1000} s (the server closed ${closed} sessions with ${code}), at ${dials.join(', ')} ms`)
  assert.equal(client, null, 'reconnect resolved while the server refused')
  assert.ok(n <= MAX_DIALS, `${n} dials in ${WINDOW} ms`)
  assert.ok(closed <= MAX_DIALS, `the server closed ${closed} sessions with ${code}`)
  assert.ok(n >= 2 && closed >= 2, 'the client dials again')
  /** connected resolves with the client once reconnect resolved, within ms. */
  const connected = async (ms) => {
    const err = await within(settled, ms, 'reconnect')
    if (err) throw err
    return closeAfter(t, client)
  }
  return { n, connected }
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
    const { n, connected } = await refusedDials(t, srv, 4401, srv.url, { token: 'not-a-token', getToken })
    assert.ok(calls >= n, `getToken called ${calls} times for ${n} dials`)

    fresh = true
    const client = await connected(15_000)
    await joins(client, 15_000)
  })

  it('4429: the client backs off and gets in once a place is free', async (t) => {
    const srv = await serverFor(t, ['-max-sessions-per-ip', '1'])
    const hold = closeAfter(t, await connect(srv.url)) // the one session the address may have
    const { connected } = await refusedDials(t, srv, 4429, srv.url)

    await hold.close()
    const client = await connected(15_000)
    await joins(client, 15_000)
  })
})
