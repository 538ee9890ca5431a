// The yamux session on its own: two sessions of this package joined by an
// in-memory transport that cuts the byte stream at random points (pair),
// checked by the wire monitor's frame parser.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  Session, encodeHeader, INITIAL_WINDOW, TYPE_DATA, TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY,
  FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST, CLOSE_PROTOCOL_ERROR
} from '../src/yamux.js'
import { WireMonitor, pair, readAll } from './wire.mjs'
import { waitFor, within, pattern, expectCode, sleep } from './helpers.mjs'

test('open, accept with ACK, data both ways, FIN both ways', async () => {
  const { client, server, monitor } = pair()
  const s = await client.openStream()
  assert.equal(s.id, 1)
  assert.equal((await client.openStream()).id, 3)
  const acc = await within(server.accept(), 2000, 'accept')
  assert.equal(acc.id, 1)
  await waitFor(() => s.acked, { message: 'ACK' })
  const big = pattern(600 * 1024, 1)
  const [, gotByServer] = await Promise.all([
    s.write(big).then(() => s.closeWrite()),
    readAll(acc)
  ])
  assert.deepEqual(gotByServer, big)
  const back = pattern(300 * 1024, 2)
  await Promise.all([acc.write(back).then(() => acc.closeWrite()), readAll(s).then((b) => assert.deepEqual(b, back))])
  await waitFor(() => !client.streams.has(1) && !server.streams.has(1), { message: 'streams forgotten after FIN both ways' })
  assert.deepEqual(monitor.violations, [])
  client.close()
})

test('flow control: a writer stops at the window until the reader consumes', async () => {
  const { client, server, monitor } = pair({ seed: 3 })
  const s = await client.openStream()
  const acc = await server.accept()
  const data = pattern(1024 * 1024, 3)
  let done = false
  const w = s.write(data).then(() => { done = true })
  await waitFor(() => s.bytesWritten === INITIAL_WINDOW, { message: 'window used up' })
  // Nothing is read: no window comes back, the writer stays stuck.
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(s.bytesWritten, INITIAL_WINDOW)
  assert.equal(done, false)
  assert.equal(monitor.windowUpdatesOut, 0)
  // Read one chunk at a time: the window reopens as data is consumed.
  let got = 0
  while (got < data.length) {
    const c = await within(acc.read(), 2000, 'read')
    got += c.length
    assert.ok(s.bytesWritten - got <= INITIAL_WINDOW, `writer ${s.bytesWritten} ahead of reader ${got} by more than the window`)
  }
  await w
  assert.ok(done)
  assert.deepEqual(monitor.violations, [])
  client.close()
})

test('RST fails pending reads and writes on both sides', async () => {
  const { client, server } = pair({ seed: 4 })
  const s = await client.openStream()
  const acc = await server.accept()
  const pendingWrite = s.write(pattern(INITIAL_WINDOW + 10))
  const pendingRead = acc.read()
  await pendingRead // the first data arrives
  acc.reset()
  const e1 = await expectCode(pendingWrite, 'reset')
  assert.match(e1.message, /peer/)
  await expectCode(acc.read(), 'reset')
  await expectCode(s.read(), 'reset')
  await expectCode(s.write('x'), 'reset')
  await waitFor(() => !client.streams.has(s.id) && !server.streams.has(acc.id), { message: 'streams forgotten after RST' })
  client.close()
})

test('pings are answered', async () => {
  const { client, server } = pair({ seed: 5 })
  const rtt = await within(client.ping(), 2000, 'ping')
  assert.ok(rtt >= 0)
  await within(server.ping(), 2000, 'ping from the server side')
  client.close()
})

test('go-away: no new streams, open ones go on', async () => {
  const { client, server } = pair({ seed: 6 })
  const s = await client.openStream()
  const acc = await server.accept()
  server.goAway()
  await waitFor(() => client.goAwayReceived, { message: 'go-away received' })
  await expectCode(client.openStream(), 'closed')
  await s.write('still here')
  await s.closeWrite()
  assert.equal(new TextDecoder().decode(await readAll(acc)), 'still here')
  client.close()
})

test('go-away with a protocol error ends the session with the close that follows it', async () => {
  const { client, server, closes } = pair({ seed: 7 })
  const s = await client.openStream()
  client.receive(encodeHeader(TYPE_GO_AWAY, 0, 0, 1))
  const opened = client.openStream()
  // The client waits for the peer's close message rather than closing first.
  await sleep(20)
  assert.equal(closes.length, 0)
  server.close(CLOSE_PROTOCOL_ERROR, 'receive window exceeded')
  for (const p of [s.read(), opened]) {
    const err = await expectCode(p, 'closed')
    assert.equal(err.closeCode, CLOSE_PROTOCOL_ERROR)
    assert.equal(err.closeReason, 'receive window exceeded')
    assert.equal(err.message, 'closed 4400 receive window exceeded')
  }
  assert.equal(client.closed, true)
})

test('a session whose transport is going away closes it itself after closeLingerMs', async () => {
  const failing = { bufferedAmount: 0, closes: [], send () { throw new Error('EPIPE') }, close (code) { this.closes.push(code) } }
  const client = new Session(failing, { client: true, closeLingerMs: 50 })
  const s = await client.openStream() // its SYN is the write that fails
  const read = s.read()
  await sleep(10)
  assert.equal(client.closed, false, 'the session waits for the transport to end')
  const err = await within(expectCode(read, 'closed'), 2000, 'the linger')
  assert.equal(err.message, 'transport write failed')
  assert.deepEqual(failing.closes, [1000])
})

test('a failed write waits for the transport to end with the peer\'s code', async () => {
  const failing = { bufferedAmount: 0, send () { throw new Error('EPIPE') }, close () {} }
  const client = new Session(failing, { client: true })
  const s = await client.openStream()
  const write = s.write('header\n')
  await sleep(10)
  client.transportClosed(4429, 'sessions per address limit (1) reached')
  for (const p of [s.read(), write.then(() => s.read()), client.openStream()]) {
    const err = await expectCode(p, 'closed')
    assert.equal(err.closeCode, 4429)
    assert.equal(err.message, 'closed 4429 sessions per address limit (1) reached')
  }
})

test('a frame of another version is a protocol violation (4400)', async () => {
  const { client, closes } = pair({ seed: 8 })
  const s = await client.openStream()
  const bad = encodeHeader(TYPE_DATA, 0, 1, 0)
  bad[0] = 1
  client.receive(bad)
  await expectCode(s.read(), 'protocol')
  assert.equal(closes[0].code, CLOSE_PROTOCOL_ERROR)
})

test('data past the receive window is a protocol violation', async () => {
  const { client, closes } = pair({ seed: 9 })
  const s = await client.openStream()
  client.receive(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0))
  client.receive(encodeHeader(TYPE_DATA, 0, 1, INITIAL_WINDOW + 1))
  await expectCode(s.read(), 'protocol')
  assert.equal(closes[0].code, CLOSE_PROTOCOL_ERROR)
})

test('frames cut byte by byte and frames joined in one chunk parse alike', () => {
  const sent = []
  const conn = { bufferedAmount: 0, send (d) { sent.push(d) }, close () {} }
  const sess = new Session(conn, { client: false })
  const payload = pattern(1000, 9)
  const frames = [
    encodeHeader(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
    encodeHeader(TYPE_DATA, 0, 1, payload.length), payload,
    encodeHeader(TYPE_PING, FLAG_SYN, 0, 77),
    encodeHeader(TYPE_DATA, FLAG_SYN, 3, 3), new Uint8Array([1, 2, 3]),
    encodeHeader(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0)
  ]
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
  let off = 0
  for (const f of frames) {
    all.set(f, off)
    off += f.length
  }
  // Byte by byte.
  for (let i = 0; i < all.length; i++) sess.receive(all.subarray(i, i + 1))
  const s1 = sess.acceptQueue[0]
  const s3 = sess.acceptQueue[1]
  assert.equal(s1.id, 1)
  assert.equal(s3.id, 3)
  assert.equal(s1.buffered, payload.length)
  assert.equal(s1.readClosed, true)
  assert.equal(s3.buffered, 3)
  // All at once, on a fresh session.
  const sess2 = new Session(conn, { client: false })
  sess2.receive(all)
  assert.equal(sess2.acceptQueue.length, 2)
  assert.equal(sess2.acceptQueue[0].buffered, payload.length)
  assert.equal(sess2.acceptQueue[0].readClosed, true)
})

test('incoming streams are acknowledged at once, the ping answered, past the backlog reset', async () => {
  const sent = []
  const conn = { bufferedAmount: 0, send (d) { sent.push(d) }, close () {} }
  const sess = new Session(conn, { client: true, acceptBacklog: 2 })
  for (const id of [2, 4, 6]) sess.receive(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0))
  sess.receive(encodeHeader(TYPE_PING, FLAG_SYN, 0, 1234))
  await new Promise((resolve) => queueMicrotask(resolve))
  const mon = new WireMonitor()
  const frames = []
  mon.out.onFrame = (h) => frames.push(h)
  for (const d of sent) mon.out.push(d)
  const seen = frames.map((h) => [h.type, h.flags, h.id, h.length])
  assert.deepEqual(seen, [
    [TYPE_WINDOW_UPDATE, FLAG_ACK, 2, 0],
    [TYPE_WINDOW_UPDATE, FLAG_ACK, 4, 0],
    [TYPE_WINDOW_UPDATE, FLAG_RST, 6, 0],
    [TYPE_PING, FLAG_ACK, 0, 1234]
  ])
})

test('writes wait while the transport holds more than the high-water mark', async () => {
  const sent = []
  const conn = { bufferedAmount: 0, send (d) { sent.push(d) }, close () {} }
  const sess = new Session(conn, { client: true, highWaterMark: 1000, lowWaterMark: 100 })
  const s = await sess.openStream()
  conn.bufferedAmount = 5000
  let done = false
  const w = s.write(pattern(10)).then(() => { done = true })
  await new Promise((resolve) => setTimeout(resolve, 30))
  assert.equal(done, false, 'write went through with a full transport')
  assert.equal(s.bytesWritten, 0)
  conn.bufferedAmount = 500 // below high, above low: still waiting
  await new Promise((resolve) => setTimeout(resolve, 30))
  assert.equal(done, false)
  conn.bufferedAmount = 50
  await within(w, 1000, 'write after drain')
  assert.equal(s.bytesWritten, 10)
  sess.close()
})

test('a reset stream ignores late frames; FIN after data keeps the data', async () => {
  const { client, server } = pair({ seed: 10 })
  const s = await client.openStream()
  const acc = await server.accept()
  await acc.write('abc')
  await acc.closeWrite()
  const got = await readAll(s)
  assert.equal(new TextDecoder().decode(got), 'abc')
  s.reset()
  client.receive(encodeHeader(TYPE_DATA, 0, s.id, 2))
  client.receive(new Uint8Array([1, 2]))
  client.receive(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_RST, s.id, 0))
  assert.equal(client.closed, false)
  await within(client.ping(), 2000, 'session still serves')
  client.close()
})

test('opens wait while synBacklog streams are unacknowledged', async () => {
  const sent = []
  const conn = { bufferedAmount: 0, send (d) { sent.push(d) }, close () {} }
  const sess = new Session(conn, { client: true, synBacklog: 2 })
  const a = await sess.openStream()
  await sess.openStream()
  let third = null
  const p = sess.openStream().then((s) => { third = s })
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(third, null, 'a third open went out before any ACK')
  sess.receive(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_ACK, a.id, 0))
  await within(p, 1000, 'open after ACK')
  assert.equal(third.id, 5)
  sess.close()
})
