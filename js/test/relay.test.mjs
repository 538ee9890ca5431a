// The relay endpoint through the client, against the real server.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect, SignalChannelError } from '../src/index.js'
import { startServer, unique, waitFor, within, expectCode, pattern, relayTimeoutFlag } from './helpers.mjs'
import { splittingWebSocket } from './wire.mjs'

const MiB = 1024 * 1024
let srv
let timeoutFlag
const channels = []

before(async () => {
  timeoutFlag = await relayTimeoutFlag()
  srv = await startServer(timeoutFlag ? [`-${timeoutFlag}`, '1s'] : [])
})

after(async () => {
  for (const ch of channels) ch.close()
  await srv?.stop()
})

async function dial (options) {
  const ch = await connect(srv.url, options)
  channels.push(ch)
  return ch
}

async function pairUp (ns, options) {
  const a = await dial(options)
  const b = await dial(options)
  const [ra, rb] = await within(Promise.all([a.relay(ns, 'A', 'B'), b.relay(ns, 'B', 'A')]), 10000, 'pairing')
  return { a, b, ra, rb }
}

/** send writes n bytes of pattern(seed) in chunks of varying size, then closes. */
async function send (writable, n, seed) {
  const data = pattern(n, seed)
  const w = writable.getWriter()
  let off = 0
  let k = 0
  while (off < n) {
    const size = Math.min(n - off, [1000, 65536, 300000, 7][k++ % 4])
    await w.write(data.subarray(off, off + size))
    off += size
  }
  await w.close()
}

/** receive reads a readable to its end and checks it against pattern(n, seed). */
async function receive (readable, n, seed) {
  const want = pattern(n, seed)
  let off = 0
  for await (const c of readable) {
    assert.ok(off + c.length <= n, `received more than ${n} bytes`)
    for (let i = 0; i < c.length; i++) {
      if (c[i] !== want[off + i]) assert.fail(`byte ${off + i} differs`)
    }
    off += c.length
  }
  return off
}

test('10 MiB each way at once, frames split across messages, windows never exceeded', async () => {
  const { WebSocket, monitors } = splittingWebSocket({ seed: 21 })
  const { a, b, ra, rb } = await pairUp(unique('bulk'), { WebSocket })
  assert.deepEqual(ra.limit, { bytes: 0, seconds: 0 })
  const n = 10 * MiB
  const t0 = performance.now()
  const [, , gotB, gotA] = await within(Promise.all([
    send(ra.writable, n, 1),
    send(rb.writable, n, 2),
    receive(rb.readable, n, 1),
    receive(ra.readable, n, 2)
  ]), 60000, '10 MiB each way')
  const secs = (performance.now() - t0) / 1000
  assert.equal(gotB, n)
  assert.equal(gotA, n)
  console.log(`# relay: 2 x 10 MiB through the server in ${secs.toFixed(2)} s (${(2 * n / MiB / secs).toFixed(1)} MiB/s), frames split across messages`)
  for (const m of monitors) {
    assert.deepEqual(m.violations, [])
    assert.ok(m.maxOutstandingOut <= 256 * 1024)
    assert.ok(m.splitOut > 0, 'a client sent no message that ended inside a frame')
  }
  assert.ok(monitors.some((m) => m.joinedIn > 0), 'no server bytes were joined across messages')
  // Both directions closed: both streams are gone on both sessions.
  await waitFor(() => a.session.streams.size === 0 && b.session.streams.size === 0, { message: 'streams freed' })
})

test('a reader that stops holds the writer back (flow control through the relay)', async () => {
  const { WebSocket, monitors } = splittingWebSocket({ seed: 22, split: false })
  const { ra, rb } = await pairUp(unique('stall'), { WebSocket })
  const n = 4 * MiB
  const writer = ra.writable.getWriter()
  const data = pattern(n, 3)
  let written = 0
  const writing = (async () => {
    for (let off = 0; off < n; off += 64 * 1024) {
      await writer.write(data.subarray(off, off + 64 * 1024))
      written = off + 64 * 1024
    }
    await writer.close()
  })()
  // The writer fills every window and buffer on the way, then stalls.
  let last = -1
  await waitFor(async () => {
    const now = ra.stream.bytesWritten
    const still = now === last && now > 0
    last = now
    if (!still) await new Promise((resolve) => setTimeout(resolve, 100))
    return still
  }, { timeout: 10000, interval: 1, message: 'writer stalled' })
  assert.ok(ra.stream.bytesWritten < n, 'the writer sent everything to a reader that does not read')
  assert.ok(written < n)
  const bMon = monitors[1]
  assert.ok(rb.stream.buffered <= 256 * 1024, `reader buffered ${rb.stream.buffered} bytes`)
  assert.equal(bMon.windowUpdatesOut, 0, 'the reader granted window before reading anything')
  console.log(`# relay: writer stalled after ${ra.stream.bytesWritten} of ${n} bytes; reader holds ${rb.stream.buffered}`)
  const got = await within(receive(rb.readable, n, 3), 30000, 'reading after the stall')
  await writing
  assert.equal(got, n)
  for (const m of monitors) assert.deepEqual(m.violations, [])
})

test('half-close passes through: each side ends its direction with writer.close()', async () => {
  const { a, b, ra, rb } = await pairUp(unique('half'))
  const enc = new TextEncoder()
  const dec = new TextDecoder()
  const wa = ra.writable.getWriter()
  await wa.write(enc.encode('from a'))
  await wa.close()
  const readAll = async (r) => {
    let s = ''
    for await (const c of r) s += dec.decode(c)
    return s
  }
  assert.equal(await within(readAll(rb.readable), 5000, 'b reads to the end'), 'from a')
  // b's direction is still open.
  const wb = rb.writable.getWriter()
  await wb.write(enc.encode('from b, after a closed'))
  await wb.close()
  assert.equal(await within(readAll(ra.readable), 5000, 'a reads to the end'), 'from b, after a closed')
  await waitFor(() => a.session.streams.size === 0 && b.session.streams.size === 0, { message: 'streams freed' })
})

test('abort resets both sides', async () => {
  const { ra, rb } = await pairUp(unique('abort'))
  const reader = rb.readable.getReader()
  const w = ra.writable.getWriter()
  await w.write(new Uint8Array([1, 2, 3]))
  const first = await reader.read()
  assert.deepEqual([...first.value], [1, 2, 3])
  await w.abort(new Error('give up'))
  await expectCode(reader.read(), 'reset')
  const wb = rb.writable.getWriter()
  await waitFor(() => rb.stream.error !== null, { message: 'b reset' })
  await expectCode(wb.write(new Uint8Array([4])), 'reset')
})

test('conflict: the same tokens twice while one waits', async () => {
  const ns = unique('conflict')
  const ch = await dial()
  const acs = [new AbortController(), new AbortController()]
  // Streams of one session are served concurrently: either may arrive first.
  const tries = acs.map((ac) => ch.relay(ns, 'A', 'B', { signal: ac.signal }).then(
    (r) => ({ r }), (e) => ({ e })))
  const first = await within(Promise.race(tries.map((p, i) => p.then((v) => ({ ...v, i })))), 5000, 'one reply')
  assert.ok(first.e instanceof SignalChannelError, `want an error, got ${first.r ? 'a pair' : first.e}`)
  assert.equal(first.e.code, 'conflict')
  assert.match(first.e.message, /already waiting/)
  const other = 1 - first.i
  acs[other].abort()
  const second = await tries[other]
  assert.equal(second.e?.name, 'AbortError')
  // A waiting stream that is reset is forgotten at once: the tokens pair again.
  const peer = await dial()
  await within(Promise.all([ch.relay(ns, 'A', 'B'), peer.relay(ns, 'B', 'A')]), 5000, 'pairing after abort')
})

test('timeout: no partner within the pairing timeout', async (t) => {
  if (!timeoutFlag) {
    t.skip('the server has no relay pairing timeout flag: the 30 s default is too long for this suite')
    return
  }
  const ch = await dial()
  const t0 = Date.now()
  const err = await expectCode(ch.relay(unique('lonely'), 'A', 'B'), 'timeout')
  const took = Date.now() - t0
  assert.ok(took >= 900 && took < 5000, `timeout after ${took} ms with -${timeoutFlag} 1s`)
  assert.match(err.message, /partner/)
})

test('bad_token: equal, empty, too long or missing tokens', async () => {
  const ch = await dial()
  await expectCode(ch.relay('g', 'same', 'same'), 'bad_token')
  await expectCode(ch.relay('g', '', 'B'), 'bad_token')
  await expectCode(ch.relay('g', 'A', 'x'.repeat(129)), 'bad_token')
  await expectCode(ch.relay('g', 'A\u0001', 'B'), 'bad_token')
  await expectCode(ch.open({ endpoint: 'relay', namespace: 'g', local: 'A' }), 'bad_token')
})
