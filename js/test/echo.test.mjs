// The echo endpoint through the client, against the real server.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect, SignalChannelError } from '../src/index.js'
import { ByteReader } from '../src/bytes.js'
import { readReply } from '../src/channel.js'
import { startServer, serverFor, closeAfter, unique, within, waitFor, expectCode, caught, metric, pattern } from './helpers.mjs'
import { splittingWebSocket } from './wire.mjs'

const dec = new TextDecoder()
let srv
const channels = []

before(async () => {
  srv = await startServer()
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

test('a frame reaches every member, the sender included; strings and bytes', async () => {
  const ns = unique('room')
  const a = await (await dial()).echo(ns)
  const b = await (await dial()).echo(ns)
  assert.equal(a.maxFrame, 65536)
  await a.send('hello')
  assert.equal(dec.decode(await within(a.recv(), 5000, 'own frame')), 'hello')
  assert.equal(dec.decode(await within(b.recv(), 5000, 'frame at b')), 'hello')
  const bytes = pattern(1000, 5)
  await b.send(bytes)
  assert.deepEqual(await a.recv(), bytes)
  assert.deepEqual(await b.recv(), bytes)
  await b.send(new Uint8Array(0))
  assert.equal((await a.recv()).length, 0)
  assert.equal((await b.recv()).length, 0)
})

test('frames of several writers arrive whole, unmixed, in one order for all (frames split across messages)', async () => {
  const ns = unique('order')
  const { WebSocket, monitors } = splittingWebSocket({ seed: 11 })
  const members = []
  for (let i = 0; i < 3; i++) members.push(await (await dial({ WebSocket })).echo(ns))
  const perWriter = 20
  const total = perWriter * members.length
  const frameOf = (w, k) => {
    const b = pattern(1000 + w * 3000 + k * 97, w * 100 + k)
    b[0] = w
    b[1] = k
    return b
  }
  const sends = members.map((m, w) => Promise.all(Array.from({ length: perWriter }, (_, k) => m.send(frameOf(w, k)))))
  const received = await within(Promise.all(members.map(async (m) => {
    const got = []
    for await (const f of m) {
      got.push(f)
      if (got.length === total) break
    }
    return got
  })), 20000, 'all frames')
  await Promise.all(sends)
  const order = received[0].map((f) => `${f[0]}/${f[1]}`)
  for (const got of received) {
    assert.deepEqual(got.map((f) => `${f[0]}/${f[1]}`), order, 'members saw different orders')
    const next = [0, 0, 0]
    for (const f of got) {
      assert.equal(f[1], next[f[0]]++, 'a writer\'s frames out of order')
      assert.deepEqual(f, frameOf(f[0], f[1]))
    }
  }
  for (const m of monitors) assert.deepEqual(m.violations, [])
  assert.ok(monitors.every((m) => m.splitOut > 0), 'a client sent no message that ended inside a frame')
  assert.ok(monitors.some((m) => m.joinedIn > 0), 'no server bytes were joined across messages')
})

test('maxFrame: the limit passes, one byte more is refused by the client', async () => {
  const ns = unique('max')
  const e = await (await dial()).echo(ns)
  await e.send(new Uint8Array(e.maxFrame))
  assert.equal((await e.recv()).length, e.maxFrame)
  const err = await expectCode(e.send(new Uint8Array(e.maxFrame + 1)), 'frame_too_large')
  assert.ok(err instanceof SignalChannelError)
  await e.send('after')
  assert.equal(dec.decode(await e.recv()), 'after')
})

test('a frame over maxFrame written on the wire resets the writer only', async () => {
  const ns = unique('toolarge')
  const ch = await dial()
  const other = await ch.echo(ns)
  const { stream, reader, reply } = await ch.open({ endpoint: 'echo', namespace: ns })
  assert.equal(reply.ok, true)
  const prefix = new Uint8Array(4)
  new DataView(prefix.buffer).setUint32(0, reply.maxFrame + 1)
  await stream.write(prefix)
  await expectCode(reader.readChunk(), 'reset')
  await other.send('still')
  assert.equal(dec.decode(await within(other.recv(), 5000, 'frame after the reset')), 'still')
})

test('close: queued frames are delivered, then the iteration ends', async () => {
  const ns = unique('close')
  const a = await (await dial()).echo(ns)
  const b = await (await dial()).echo(ns)
  for (let i = 0; i < 5; i++) await a.send(`m${i}`)
  // Once a has its own five frames back, the server has queued them for b too.
  const own = []
  for (let i = 0; i < 5; i++) own.push(dec.decode(await a.recv()))
  assert.deepEqual(own, ['m0', 'm1', 'm2', 'm3', 'm4'])
  await b.close()
  const got = []
  for await (const f of b) got.push(dec.decode(f))
  assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4'])
  assert.equal(await b.recv(), null)
  await a.send('after b left')
  assert.equal(dec.decode(await a.recv()), 'after b left')
})

test('a member that does not read is dropped by the server; window is granted only as frames are read', async (t) => {
  // One writer fills the queue of a member that does not read only past
  // the publish budget: the budget is off here.
  const unbudgeted = await serverFor(t, ['-echo-publish-rate', '0'])
  const ns = unique('slow')
  const fast = await closeAfter(t, await connect(unbudgeted.url)).echo(ns)
  const slow = await closeAfter(t, await connect(unbudgeted.url)).echo(ns)
  const frame = pattern(60000, 3)
  const n = 40 // 2.4 MB: past the slow member's window and the server's 1 MiB queue
  const fastGot = (async () => {
    let k = 0
    for await (const f of fast) {
      assert.equal(f.length, frame.length)
      if (++k === n) return k
    }
    return k
  })()
  for (let i = 0; i < n; i++) await fast.send(frame)
  assert.equal(await within(fastGot, 20000, 'fast member frames'), n, 'the fast member missed frames')
  // The slow member read nothing: it holds at most one window of data.
  assert.ok(slow.stream.buffered <= 256 * 1024, `slow member buffered ${slow.stream.buffered} bytes`)
  let got = 0
  const err = await within((async () => {
    try {
      for (;;) {
        const f = await slow.recv()
        if (f === null) return null
        got++
      }
    } catch (e) {
      return e
    }
  })(), 20000, 'slow member drained')
  assert.ok(err instanceof SignalChannelError && err.code === 'reset', `want reset, got ${err}`)
  assert.ok(got < n, `slow member got all ${got} frames: it was not dropped`)
  await fast.send('fine')
  assert.equal(dec.decode(await fast.recv()), 'fine')
})

test('a writer past its publish budget gets limit from recv(); a reader that keeps up gets every frame accepted, in order', async (t) => {
  const srv = await serverFor(t, ['-echo-max-frame', '1024', '-echo-publish-rate', '2048', '-echo-publish-burst', '4096'])
  const ns = unique('budget')
  const readerCh = closeAfter(t, await connect(srv.url))
  const writerCh = closeAfter(t, await connect(srv.url))
  const reader = await readerCh.echo(ns)
  const writer = await writerCh.echo(ns)
  assert.equal(writer.maxFrame, 1024)
  const n = 40 // 40 frames of 1004 bytes with their prefixes, the burst holds 4
  const frameOf = (k) => {
    const b = pattern(1000, k)
    b[0] = k
    return b
  }
  const readerGot = (async () => {
    const got = []
    for await (const f of reader) {
      if (dec.decode(f) === 'end') return got
      got.push(f)
    }
    return got
  })()
  const writerGot = []
  const refused = (async () => {
    try {
      for (;;) writerGot.push(await writer.recv())
    } catch (e) {
      return e
    }
  })()
  const sends = await Promise.allSettled(Array.from({ length: n }, (_, k) => writer.send(frameOf(k))))
  const err = await within(refused, 10_000, 'the refusal')
  assert.equal(err.code, 'limit', `want limit, got ${err.code}: ${err.message}`)
  assert.equal(err.message, 'echo publish budget (2048 bytes/s, burst 4096 bytes) exceeded')
  for (const s of sends) if (s.status === 'rejected') assert.equal(s.reason, err)
  assert.equal(await caught(writer.send('after')), err)
  assert.equal(await caught(writer.recv()), err)
  // The client half-closed; with the server's FIN the stream is gone.
  await waitFor(() => !writerCh.session.streams.has(writer.stream.id), { message: 'the writer\'s stream freed' })

  // The refusal came after every frame accepted: a frame sent now follows them.
  await reader.send('end')
  const got = await within(readerGot, 10_000, 'the reader\'s frames')
  assert.ok(got.length >= 4 && got.length < n, `the reader got ${got.length} of ${n} frames`)
  got.forEach((f, k) => assert.deepEqual(f, frameOf(k), `frame ${k}`))
  // The writer's own frames queued before the refusal may have been dropped.
  assert.ok(writerGot.length <= got.length)
  writerGot.forEach((f, k) => assert.deepEqual(f, frameOf(k), `own frame ${k}`))
  assert.equal(await metric(srv, 'signalchannel_echo_publish_refused_total'), 1)
})

test('readReply maps a failure reply to its code', async () => {
  const ch = await dial()
  const stream = await ch.session.openStream()
  const reader = new ByteReader(stream)
  await stream.write('{"endpoint":"echo","namespace":""}\n')
  const reply = await readReply(reader)
  assert.equal(reply.ok, false)
  assert.equal(reply.error.code, 'bad_namespace')
  assert.equal(await reader.readChunk(), null, 'the server half-closes after a failure reply')
})

test('a close the application asked for ends a for await over an echo namespace cleanly; a dropped session throws', async () => {
  const ch = await dial()
  const room = await ch.echo(unique('close-loop'))
  await room.send('one')
  const seen = []
  const loop = (async () => {
    for await (const f of room) seen.push(dec.decode(f))
    return 'ended'
  })()
  await waitFor(() => seen.length === 1)
  ch.close()
  assert.equal(await within(loop, 5000, 'the loop'), 'ended')
  assert.deepEqual(seen, ['one'])
  await expectCode(room.send('after close'), 'closed')

  // The server ending the session is no close the application asked for.
  const other = await connect(srv.url)
  const room2 = await other.echo(unique('close-loop'))
  const loop2 = (async () => { for await (const f of room2) void f })()
  other.session.transportClosed(4401, 'token expired')
  await expectCode(within(loop2, 5000, 'the loop'), 'closed')
  other.close()
})
