// Sessions against the real server: connecting, credentials on the wire,
// error codes of the stream header, limits, many streams, pings, closing.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocketServer, WebSocket as WS } from 'ws'
import { connect, SignalChannelError } from '../src/index.js'
import { ByteReader } from '../src/bytes.js'
import { readReply } from '../src/channel.js'
import { startServer, unique, waitFor, within, expectCode, caught, sleep } from './helpers.mjs'

const dec = new TextDecoder()

/** withServer runs fn with a server started with args, and stops it after. */
async function withServer (args, fn) {
  const srv = await startServer(args)
  const channels = []
  const dial = async (options) => {
    const ch = await connect(srv.url, options)
    channels.push(ch)
    return ch
  }
  try {
    return await fn(srv, dial)
  } finally {
    for (const ch of channels) ch.close()
    await srv.stop()
  }
}

test('header errors: bad_header, unknown_endpoint, bad_namespace', () => withServer([], async (srv, dial) => {
  const ch = await dial()
  assert.equal(ch.protocol, 'signalchannel.v1')
  await expectCode(ch.open('not json'), 'bad_header')
  await expectCode(ch.open('[1,2]'), 'bad_header')
  await expectCode(ch.open({ endpoint: 'echo' }), 'bad_header')
  await expectCode(ch.open({ namespace: 'x' }), 'bad_header')
  await expectCode(ch.open({ endpoint: 'echo', namespace: 5 }), 'bad_header')
  await expectCode(ch.open({ endpoint: 'echo', namespace: 'x', pad: 'p'.repeat(4100) }), 'bad_header')
  await expectCode(ch.open({ endpoint: 'nope', namespace: 'x' }), 'unknown_endpoint')
  await expectCode(ch.echo(''), 'bad_namespace')
  await expectCode(ch.echo('n'.repeat(257)), 'bad_namespace')
  await expectCode(ch.echo('tab\there'), 'bad_namespace')
  await expectCode(ch.echo('del\u007f'), 'bad_namespace')
  // 256 bytes of UTF-8 pass; unknown fields are ignored.
  await ch.echo('é'.repeat(128))
  await ch.open({ endpoint: 'echo', namespace: 'x', extra: { any: 1 } })
  // Failed streams are freed on both sides; the session goes on.
  await waitFor(() => ch.session.streams.size === 2, { message: 'failed streams freed' })
}))

test('limit: streams per session (-max-streams 4)', () => withServer(['-max-streams', '4'], async (srv, dial) => {
  const ch = await dial()
  const members = []
  for (let i = 0; i < 4; i++) members.push(await ch.echo(unique('m')))
  const err = await expectCode(ch.echo(unique('m')), 'limit')
  assert.match(err.message, /4/)
  // Another session has its own count.
  await (await dial()).echo(unique('other'))
  // Leaving frees a place, once the server has ended the stream.
  await members[0].close()
  assert.equal(await members[0].recv(), null)
  await waitFor(async () => {
    try {
      members.push(await ch.echo(unique('m')))
      return true
    } catch (e) {
      if (e.code === 'limit') return false
      throw e
    }
  }, { timeout: 5000, message: 'a place freed' })
}))

test('timeout: no header within -header-timeout', () => withServer(['-header-timeout', '200ms'], async (srv, dial) => {
  const ch = await dial()
  const stream = await ch.session.openStream()
  const reader = new ByteReader(stream)
  const t0 = Date.now()
  const reply = await within(readReply(reader), 5000, 'timeout reply')
  const took = Date.now() - t0
  assert.equal(reply.ok, false)
  assert.ok(reply.error instanceof SignalChannelError)
  assert.equal(reply.error.code, 'timeout')
  assert.ok(took >= 150 && took < 3000, `timeout reply after ${took} ms`)
  // A header sent in time still works on the same session.
  const e = await ch.echo(unique('intime'))
  await e.send('x')
  assert.equal(dec.decode(await e.recv()), 'x')
}))

// connect's session stream is one more open in the same second.
test('100 concurrent streams on one connection', () => withServer(['-max-streams', '128', '-max-stream-opens-per-second', '128'], async (srv, dial) => {
  const ch = await dial()
  const n = 100
  const t0 = performance.now()
  const members = await within(Promise.all(Array.from({ length: n }, (_, i) => ch.echo(unique('many') + '-' + i))), 20000, 'opening 100 streams')
  assert.equal(new Set(members.map((m) => m.stream.id)).size, n)
  await within(Promise.all(members.map(async (m, i) => {
    for (let k = 0; k < 5; k++) await m.send(`${i}:${k}`)
    for (let k = 0; k < 5; k++) assert.equal(dec.decode(await m.recv()), `${i}:${k}`)
    await m.close()
    assert.equal(await m.recv(), null)
  })), 30000, '100 streams round trip')
  console.log(`# 100 streams: opened, 500 frames round trip and closed in ${(performance.now() - t0).toFixed(0)} ms`)
  await waitFor(() => ch.session.streams.size === 0, { message: 'all streams freed' })
}))

test('pings from the server are answered and keep the session alive', () => withServer(['-keepalive', '50ms', '-write-timeout', '1s'], async (srv, dial) => {
  const ch = await dial()
  await waitFor(() => ch.session.pingsAnswered >= 10, { timeout: 5000, message: '10 pings answered' })
  assert.equal(ch.session.closed, false)
  const e = await ch.echo(unique('alive'))
  await e.send('still here')
  assert.equal(dec.decode(await e.recv()), 'still here')
  assert.ok(await ch.ping() >= 0)
}))

test('close: reads end, writes and new streams fail with `closed`; server shutdown is seen as 1001', () => withServer([], async (srv, dial) => {
  const ch = await dial()
  const e = await ch.echo(unique('c'))
  const pending = e.recv()
  const closed = await ch.close()
  assert.equal(closed.code, 1000)
  assert.equal(await pending, null, 'a read ends at a close the application asked for')
  await expectCode(e.send('x'), 'closed')
  await expectCode(ch.echo('x'), 'closed')

  const ch2 = await dial()
  const e2 = await ch2.echo(unique('c2'))
  const pending2 = caught(e2.recv())
  await srv.stop()
  const { code } = await within(ch2.closed, 10000, 'close on shutdown')
  assert.equal(code, 1001)
  const err = await pending2
  assert.equal(err.code, 'closed')
  assert.equal(err.closeCode, 1001)
}))

test('connect fails with `closed` when nothing listens', async () => {
  const srv = await startServer()
  const url = srv.url
  await srv.stop()
  await expectCode(connect(url), 'closed')
})

test('the token goes in the Authorization header with ws, in access_token otherwise', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => [...p][0] })
  await new Promise((resolve) => wss.once('listening', resolve))
  const seen = []
  // The server notes what arrived and closes: connect rejects with its code.
  wss.on('connection', (sock, req) => {
    seen.push({ url: req.url, auth: req.headers.authorization, proto: sock.protocol })
    sock.close(4000, 'seen')
  })
  const base = `ws://127.0.0.1:${wss.address().port}/v1/channel`
  const refused = async (p) => {
    const err = await within(expectCode(p, 'closed'), 5000, 'connect')
    assert.equal(err.closeCode, 4000)
    assert.equal(err.closeReason, 'seen')
  }
  try {
    await refused(connect(base, { token: 'tok-1' }))
    class BrowserLike extends WS {
      constructor (url, protocols) { super(url, protocols) }
    }
    await refused(connect(base, { token: 'tok 2&x', WebSocket: BrowserLike }))
    await refused(connect(base.replace('ws:', 'http:')))
    // getToken gives the token when there is none.
    await refused(connect(base, { getToken: async () => 'tok-3' }))
    assert.equal(seen.length, 4)
    const byAuth = seen.find((s) => s.auth)
    assert.equal(byAuth.auth, 'Bearer tok-1')
    assert.equal(byAuth.url, '/v1/channel')
    const byQuery = seen.find((s) => s.url.includes('access_token'))
    assert.equal(new URL(byQuery.url, 'http://x').searchParams.get('access_token'), 'tok 2&x')
    assert.equal(byQuery.auth, undefined)
    assert.equal(seen[3].auth, 'Bearer tok-3')
    for (const s of seen) assert.equal(s.proto, 'signalchannel.v1')
  } finally {
    for (const c of wss.clients) c.terminate()
    await new Promise((resolve) => wss.close(resolve))
  }
})

test('an aborted signal cancels connect and open', () => withServer([], async (srv, dial) => {
  await assert.rejects(connect(srv.url, { signal: AbortSignal.abort() }), (e) => e.name === 'AbortError')
  const ch = await dial()
  await assert.rejects(ch.echo('x', { signal: AbortSignal.abort() }), (e) => e.name === 'AbortError')
}))

test('aborting connect while the WebSocket opens leaves no error behind', () => withServer([], async (srv) => {
  for (let i = 0; i < 20; i++) {
    const ac = new AbortController()
    const p = connect(srv.url, { signal: ac.signal })
    setImmediate(() => ac.abort())
    await assert.rejects(p, (e) => e.name === 'AbortError')
  }
  // The sockets' late errors, if unheard, would be thrown in the next ticks.
  await sleep(50)
}))

test('credentials: a token opens what it allows; none is closed with 4401', async () => {
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { execFile } = await import('node:child_process')
  const { serverBinary } = await import('./helpers.mjs')
  const dir = await mkdtemp(join(tmpdir(), 'sc-auth-'))
  try {
    const secret = join(dir, 'secret')
    await writeFile(secret, 'js-test-secret-'.repeat(4))
    const bin = await serverBinary()
    const token = await new Promise((resolve, reject) => execFile(bin,
      ['token', '-auth-secret-file', secret, '-sub', 'js', '-allow', 'echo:room-*', '-ttl', '1h'],
      { timeout: 10_000 }, (err, stdout) => err ? reject(err) : resolve(stdout.trim())))
    await withServer(['-auth-secret-file', secret], async (srv, dial) => {
      // The token travels as access_token in browsers and as a header with ws.
      const ch = await dial({ token })
      const room = await ch.echo(unique('room-'))
      room.send('hi')
      assert.equal(dec.decode(await within(room.recv(), 5000, 'echo')), 'hi')
      const e = await expectCode(ch.echo('lobby'), 'forbidden')
      assert.match(e.message, /echo:lobby/)

      // connect rejects with the close code and reason of a refused session.
      const anon = await within(expectCode(dial(), 'closed'), 5000, 'close of an unauthenticated session')
      assert.equal(anon.closeCode, 4401)
      assert.equal(anon.closeReason, 'missing credentials')
      const bad = await within(expectCode(dial({ token: token.slice(0, -4) + 'AAAA' }), 'closed'), 5000, 'close of a forged token')
      assert.equal(bad.closeCode, 4401)
      assert.match(bad.closeReason, /^invalid token/)
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
