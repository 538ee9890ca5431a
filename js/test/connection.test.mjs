// Connections over calls (PROTOCOL.md section 10, "Connections" and "The
// connection's bytes") in Node, against the real server: the relay path
// between two JS members, and between a JS member and a Go one (the peer
// example), bytes intact both ways, a clean end, and the frames' rules.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect, SignalChannelError } from '../src/index.js'
import { startServer, startGoPeer, unique, waitFor, within, pattern } from './helpers.mjs'

let srv
const channels = []

before(async () => {
  srv = await startServer()
})

after(async () => {
  await Promise.all(channels.map((ch) => ch.close()))
  await srv?.stop()
})

/** pair joins two members to a new room and returns both sides of an accepted call. */
async function pair () {
  const name = unique('conn')
  const rooms = []
  for (let i = 0; i < 2; i++) {
    const ch = await connect(srv.url)
    channels.push(ch)
    rooms.push(await ch.room(name))
  }
  const [a, b] = rooms
  const answered = new Promise((resolve) => b.once('request', (q) => resolve(q.accept())))
  await waitFor(() => a.members.has(b.id), { message: 'a sees b' })
  const ca = await within(a.call(b.id), 10_000, 'the call')
  const cb = await within(answered, 10_000, 'the answer')
  return [ca, cb]
}

/** readAll reads a readable to its end. */
async function readAll (readable) {
  const h = createHash('sha256')
  let n = 0
  for await (const chunk of readable) {
    h.update(chunk)
    n += chunk.length
  }
  return { n, digest: h.digest('hex') }
}

/** send writes data in pieces of odd sizes, then closes the writable. */
async function send (writable, data) {
  const w = writable.getWriter()
  for (let i = 0; i < data.length;) {
    const n = Math.min(data.length - i, 1 + ((i * 7919) % 70_000))
    await w.write(data.subarray(i, i + n))
    i += n
  }
  await w.close()
}

const digest = (data) => createHash('sha256').update(data).digest('hex')

test('two JS members over the relay: 6 MiB each way intact, then a clean end', { timeout: 120_000 }, async () => {
  const [ca, cb] = await pair()
  const [a, b] = await within(Promise.all([ca.connect({ forceRelay: true }), cb.connect({ forceRelay: true })]), 10_000, 'the connections')
  assert.equal(a.path, 'relay')
  assert.equal(b.path, 'relay')
  assert.equal(a.pc, null)
  const ab = pattern(6 << 20, 1)
  const ba = pattern(6 << 20, 2)
  const [gotB, gotA] = await within(Promise.all([readAll(b.readable), readAll(a.readable), send(a.writable, ab), send(b.writable, ba)]), 100_000, 'the transfer')
  assert.deepEqual(gotB, { n: ab.length, digest: digest(ab) })
  assert.deepEqual(gotA, { n: ba.length, digest: digest(ba) })
  await a.close()
  assert.equal(await within(a.closed, 5000, 'a closed'), null)
  // The other side's close ends b's connection with the call's reason.
  const why = await within(b.closed, 5000, 'b closed')
  assert.equal(why.code, 'closed')
  assert.match(why.message, /connection closed/)
})

test('close delivers the last bytes: the other side reads them all, then the end', async () => {
  const [ca, cb] = await pair()
  const [a, b] = await within(Promise.all([ca.connect({ forceRelay: true }), cb.connect({ forceRelay: true })]), 10_000, 'the connections')
  const data = pattern(100_003, 3)
  const w = a.writable.getWriter()
  await w.write(data)
  w.releaseLock()
  const got = readAll(b.readable)
  await a.close()
  assert.deepEqual(await within(got, 10_000, 'the read'), { n: data.length, digest: digest(data) })
  // b's side ends too; writing there fails.
  await within(b.closed, 5000, 'b closed')
  await assert.rejects(b.writable.getWriter().write(new Uint8Array(1)), SignalChannelError)
})

test('without WebRTC and without forceRelay, connect says what to pass', async () => {
  const [ca, cb] = await pair()
  await assert.rejects(ca.connect({}), /RTCPeerConnection/)
  cb.reset()
})

test('a JS member and a Go member over the relay: greeting, then 2 MiB of lines echoed intact', { timeout: 120_000 }, async (t) => {
  const name = unique('gojs')
  const ch = await connect(srv.url)
  channels.push(ch)
  const room = await ch.room(name)
  const go = await startGoPeer(['-url', srv.url, '-room', name, '-relay'])
  t.after(() => go.stop())
  const { id: goID } = await go.waitEvent((e) => e.event === 'joined', 60_000, 'joined')
  await waitFor(() => room.members.has(goID), { message: 'the Go member', timeout: 10_000 })
  assert.deepEqual(room.members.get(goID).meta, { name: 'go' })
  const call = await within(room.call(goID), 10_000, 'the call')
  const conn = await within(call.connect({ forceRelay: true }), 10_000, 'the connection')
  assert.equal(conn.path, 'relay')
  await go.waitEvent((e) => e.event === 'connected' && e.peer === room.id && e.path === 'relay', 10_000, 'connected over the relay')

  const lines = []
  for (let i = 0; lines.length * 1000 < 2 << 20; i++) lines.push(String(i).padStart(8, '0') + 'x'.repeat(991))
  const text = lines.join('\n') + '\n'
  const reading = (async () => {
    let got = ''
    const dec = new TextDecoder()
    for await (const chunk of conn.readable) got += dec.decode(chunk, { stream: true })
    return got
  })()
  const w = conn.writable.getWriter()
  await w.write(text)
  await waitFor(() => go.events.filter((e) => e.event === 'data').length === lines.length, { timeout: 60_000, message: 'the Go peer read every line' })
  // Closing ends what this side sends; the Go peer sees the end and closes
  // in turn, which ends what it sends after its echo.
  await w.close()
  const got = await within(reading, 30_000, 'the echo and its end')
  assert.equal(got, 'hello from go\n' + text)
  await go.waitEvent((e) => e.event === 'closed' && e.peer === room.id, 10_000, 'closed')
})
