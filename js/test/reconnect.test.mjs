// The reconnecting client against real servers: when one goes away the
// client moves to the next, rejoins its echo namespaces and replicates its
// models again; 4401 ends it unless it can get a new token (with one, its
// sessions refresh their tokens in band: see identity.test.mjs); a rejoin
// the server refuses for good ends that handle; a member refused for its
// publish budget rejoins after a backoff.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, reconnect, Model } from '../src/index.js'
import { startServer, serverFor, tokenServerFor, hs256Secret, closeAfter, waitFor, within, caught, expectCode, metric, unique } from './helpers.mjs'

const dec = new TextDecoder()

test('reconnect: a server goes away; echo rejoins and the model resyncs on the next', async () => {
  const a = await startServer()
  const b = await startServer()
  const events = []
  let client, peer
  try {
    client = await reconnect([a.url, b.url], { minBackoff: 10 })
    client.on('connect', (url) => events.push('connect ' + url))
    client.on('disconnect', (c) => events.push('disconnect ' + c.code))
    const room = await client.echo('room')
    const model = await client.model('presence', { id: 'client' })
    model.set('client', 'here')

    peer = await connect(b.url)
    const peerRoom = await peer.echo('room')
    const peerModel = await peer.model('presence', { id: 'peer' })
    peerModel.set('peer', 'on b')

    await a.stop() // SIGTERM: sessions are closed with 1001

    // The peer sends until the client, now on b, hears it.
    const heard = room.recv()
    let got = null
    heard.then((f) => { got = f }, () => {}) // a failure shows as the wait below timing out
    await waitFor(async () => {
      await peerRoom.send('hello from b')
      return got !== null
    }, { timeout: 10000, interval: 50, message: 'frame from b after the reconnect' })
    assert.equal(dec.decode(got), 'hello from b')
    await room.send('back')

    await waitFor(() => model.get('peer') === 'on b' && peerModel.get('client') === 'here',
      { timeout: 10000, message: 'models converge on b' })
    assert.deepEqual(events.slice(0, 2), ['disconnect 1001', 'connect ' + b.url])
    await within(room.close(), 5000, 'close')
  } finally {
    await client?.close()
    peer?.close()
    await a.stop()
    await b.stop()
  }
})

test('1001: the client moves to the next URL at once, without a backoff wait', async (t) => {
  const a = await serverFor(t)
  const b = await serverFor(t)
  // Any wait before dialling b would outlast the test.
  const client = closeAfter(t, await reconnect([a.url, b.url], { minBackoff: 600_000, maxBackoff: 600_000 }))
  const events = []
  const onB = new Promise((resolve) => client.on('connect', (url) => url === b.url && resolve()))
  client.on('connect', (url) => events.push('connect ' + url))
  client.on('disconnect', (c) => events.push(`disconnect ${c.code} ${c.reason}`))
  await a.stop() // SIGTERM: sessions are closed with 1001
  await within(onB, 10_000, 'the dial to the next URL')
  assert.deepEqual(events, ['disconnect 1001 server is shutting down', 'connect ' + b.url])
})

test('4401 without getToken ends the client: disconnect, closed, and every call says why', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const client = closeAfter(t, await reconnect(srv.url, { token: secret.token({ ttl: 2 }), minBackoff: 10 }))
  const room = await client.echo('room-1')
  const pending = caught(room.recv())
  const events = []
  client.on('connect', (url) => events.push('connect ' + url))
  client.on('disconnect', (c) => events.push(`disconnect ${c.code} ${c.reason}`))
  const closed = await within(client.closed, 10_000, 'the end of the client')
  assert.deepEqual(closed, { code: 4401, reason: 'token expired' })
  assert.deepEqual(events, ['disconnect 4401 token expired'])
  const calls = {
    'recv under way': pending,
    recv: caught(room.recv()),
    send: caught(room.send('x')),
    echo: caught(client.echo('room-2')),
    model: caught(client.model('presence')),
    relay: caught(client.relay('g', 'a', 'b'))
  }
  for (const [name, p] of Object.entries(calls)) {
    const err = await p
    assert.equal(err.name, 'SignalChannelError', name)
    assert.equal(err.code, 'closed', name)
    assert.equal(err.closeCode, 4401, name)
    assert.equal(err.closeReason, 'token expired', name)
    assert.equal(err.message, 'closed 4401 token expired', name)
  }
  assert.equal(client.channel, null)
  assert.deepEqual(await client.close(), closed)
  assert.equal(await metric(srv, 'signalchannel_session_closes_total{code="4401"}'), 1, 'one session, no dial after')
})

test('close() ends the client: closed resolves with 1000, calls reject with closed', async (t) => {
  const srv = await serverFor(t)
  const client = await reconnect(srv.url)
  const room = await client.echo('room')
  const closed = await client.close()
  assert.equal(closed.code, 1000)
  assert.deepEqual(await client.closed, closed)
  for (const p of [room.recv(), room.send('x'), client.echo('room')]) {
    const err = await expectCode(p, 'closed')
    assert.equal(err.message, 'the client is closed')
  }
})

test('a rejoin refused for good ends that member; the client goes on', async (t) => {
  const secret = hs256Secret()
  t.after(() => secret.remove())
  const a = await serverFor(t, ['-auth-secret-file', secret.file])
  const b = await serverFor(t, ['-auth-secret-file', secret.file])
  // The first token, for a, allows room-*; the next ones, for b, only other-*.
  let calls = 0
  const getToken = () => ++calls === 1
    ? secret.token({ allow: ['echo:room-*'] })
    : secret.token({ allow: ['echo:other-*'] })
  const client = closeAfter(t, await reconnect([a.url, b.url], { getToken, minBackoff: 10 }))
  const room = await client.echo('room-1')
  const reconnected = new Promise((resolve) => client.once('connect', resolve))
  await a.stop() // 1001: the client moves to b
  const err = await within(expectCode(room.recv(), 'forbidden'), 15_000, 'the member\'s end')
  assert.match(err.message, /echo:room-1/)
  await expectCode(room.send('x'), 'forbidden')
  await expectCode(room.recv(), 'forbidden')
  await reconnected
  const other = await client.echo('other-1')
  await other.send('still here')
  assert.equal(dec.decode(await within(other.recv(), 5000, 'echo')), 'still here')
})

test('a rejoin refused with limit is tried again on the same session', async (t) => {
  const a = await serverFor(t, ['-echo-max-members', '1'])
  const b = await serverFor(t, ['-echo-max-members', '1'])
  const client = closeAfter(t, await reconnect([a.url, b.url], { minBackoff: 20, maxBackoff: 200 }))
  const room = await client.echo('room')
  const peer = closeAfter(t, await connect(b.url))
  const seat = await peer.echo('room') // b's one place in the namespace
  const onB = new Promise((resolve) => client.on('connect', (url) => url === b.url && resolve()))
  await a.stop()
  await within(onB, 10_000, 'the move to b')
  const got = room.recv()
  await waitFor(() => metric(b, 'signalchannel_stream_errors_total{code="limit"}'), { timeout: 10_000, message: 'the rejoin refused with limit' })
  await seat.close()
  assert.equal(await seat.recv(), null)
  // The client's next try on b gets the place; its own frame comes back.
  await waitFor(async () => {
    await room.send('in again')
    return true
  }, { timeout: 10_000, interval: 20, message: 'the member back in' })
  assert.equal(dec.decode(await within(got, 5000, 'echo')), 'in again')
})

test('a member refused for its publish budget rejoins on the same session, after a backoff', async (t) => {
  const srv = await serverFor(t, ['-echo-max-frame', '1024', '-echo-publish-rate', '2048', '-echo-publish-burst', '4096'])
  const client = closeAfter(t, await reconnect(srv.url, { minBackoff: 1000, maxBackoff: 4000 }))
  const disconnects = []
  client.on('disconnect', (c) => disconnects.push(c))
  const ch = client.channel
  const room = await client.echo('room')
  const got = []
  const reading = (async () => {
    for await (const f of room) {
      got.push(f)
      if (dec.decode(f) === 'in again') return
    }
  })()
  await Promise.allSettled(Array.from({ length: 20 }, () => room.send(new Uint8Array(1000))))
  const sent = Date.now()
  // Until the rejoin, send() fails with the refusal.
  const err = await within(waitFor(async () => {
    const e = await caught(room.send('probe'))
    return e.code === 'limit' && e
  }, { timeout: 10_000, message: 'send refused with limit' }), 15_000, 'the refusal')
  assert.equal(err.message, 'echo publish budget (2048 bytes/s, burst 4096 bytes) exceeded')
  await waitFor(async () => {
    await room.send('in again')
    return true
  }, { timeout: 10_000, interval: 20, message: 'the member back in' })
  const waited = Date.now() - sent
  // The first wait is drawn from [500, 1000] ms.
  assert.ok(waited >= 400, `rejoined ${waited} ms after the refusal: no backoff`)
  await within(reading, 5000, 'the frame of the new member')
  assert.equal(client.channel, ch, 'the same session')
  assert.deepEqual(disconnects, [])
  assert.equal(await metric(srv, 'signalchannel_echo_publish_refused_total'), 1)
})

test('a replication the server ends mid-session is reported, and the model leaves the client', async (t) => {
  const check = async (t, args, fn) => {
    const srv = await serverFor(t, args)
    const client = closeAfter(t, await reconnect(srv.url))
    const m = await client.model(unique('mid'))
    const errors = []
    m.on('error', (e) => errors.push(e))
    fn(m)
    await waitFor(() => errors.length > 0, { timeout: 5000, message: 'the end reported' })
    await waitFor(() => !client.models.has(m), { timeout: 5000, message: 'the model out of the client' })
    return errors
  }
  await t.test('an error object: limit', async (t) => {
    const errors = await check(t, ['-scuttlebutt-max-keys', '2'], (m) => {
      m.set('a', 1)
      m.set('b', 2)
      m.set('c', 3) // the third key: the server answers limit and ends the stream
    })
    assert.deepEqual(errors.map((e) => e.code), ['limit'])
    assert.match(errors[0].message, /2/)
  })
  await t.test('a member too slow for the server: reset', async (t) => {
    const errors = await check(t, ['-scuttlebutt-queue-bytes', '100'], (m) => {
      m.set('a', 'v'.repeat(4000)) // its own update comes back: more than the queue holds
    })
    assert.deepEqual(errors.map((e) => e.code), ['reset'])
  })
})

test('a resync refused with limit is tried again and reported each time; one ended after SYNC is reported once', async (t) => {
  const a = await serverFor(t)
  const b = await serverFor(t, ['-scuttlebutt-max-members', '1', '-scuttlebutt-max-keys', '2'])
  const client = closeAfter(t, await reconnect([a.url, b.url], { minBackoff: 20, maxBackoff: 200 }))
  const ns = unique('resync')
  const m = await client.model(ns, { model: new Model({ id: 'client' }) })
  const errors = []
  m.on('error', (e) => errors.push(e))
  m.set('a', 1)
  m.set('b', 2)
  const peer = closeAfter(t, await connect(b.url))
  const seat = await peer.model(ns) // b's one member of the namespace
  await a.stop()
  await waitFor(() => errors.filter((e) => e.code === 'limit').length >= 2, { timeout: 10_000, message: 'resyncs refused with limit' })
  assert.match(errors.find((e) => e.code === 'limit').message, /members/)
  const synced = new Promise((resolve) => m.once('sync', resolve))
  await seat.close()
  await within(synced, 10_000, 'the resync on b once its place is free')
  assert.equal((await caught(peer.model(ns))).code, 'limit', 'the client holds the place now')

  // Past b's key limit the server ends the replication after SYNC: one error, the model leaves.
  const before = errors.length
  m.set('c', 3)
  await waitFor(() => errors.length === before + 1, { timeout: 5000, message: 'the key limit reported' })
  assert.match(errors.at(-1).message, /keys/)
  assert.equal(new Set(errors).size, errors.length, 'no failure reported twice')
  await waitFor(() => !client.models.has(m), { timeout: 5000, message: 'the model out of the client' })
})
