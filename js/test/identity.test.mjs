// Who a session is, against the real server: connect asks the session
// endpoint (PROTOCOL.md section 9) and sets ch.id, ch.meta and ch.expires;
// ch.refresh and getToken present fresh tokens in band; a session acts only
// as itself (relay tokens, owned scuttlebutt keys).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, reconnect } from '../src/index.js'
import { serverFor, tokenServerFor, closeAfter, waitFor, within, expectCode, caught, unique } from './helpers.mjs'

const dec = new TextDecoder()

/** roundTrip sends text on a new echo member of ch and resolves once it came back. */
async function roundTrip (ch, text) {
  const room = await ch.echo(unique('round'))
  await room.send(text)
  assert.equal(dec.decode(await within(room.recv(), 5000, 'the echo')), text)
  await room.close()
}

test('open server: every session has an id the server assigned, no meta, no expiry', async (t) => {
  const srv = await serverFor(t)
  const a = closeAfter(t, await connect(srv.url))
  const b = closeAfter(t, await connect(srv.url))
  assert.equal(typeof a.id, 'string')
  assert.ok(a.id.length > 0, 'an id')
  assert.notEqual(a.id, b.id)
  assert.equal(a.meta, null)
  assert.equal(a.expires, null)
  // The session stream is gone on this side once connect resolves.
  assert.equal(a.session.streams.size, 0)
  // There is no token to refresh: forbidden, and the session goes on.
  const err = await expectCode(a.refresh('a-token'), 'forbidden')
  assert.match(err.message, /no credentials/)
  await roundTrip(a, 'still here')
})

test('the session stream leaves its place free: one stream per session still opens', async (t) => {
  const srv = await serverFor(t, ['-max-streams', '1'])
  const ch = closeAfter(t, await connect(srv.url))
  await roundTrip(ch, 'the one stream')
})

test('credentials: id is the token\'s sub, meta its meta claim, expires its exp', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const exp = Math.floor(Date.now() / 1000) + 3600
  const meta = { name: 'Alice', color: '#0af', tags: ['a', 'b'], n: 1 }
  const ch = closeAfter(t, await connect(srv.url, { token: secret.mint({ sub: 'alice', allow: ['*:*'], exp, meta }) }))
  assert.equal(ch.id, 'alice')
  assert.deepEqual(ch.meta, meta)
  assert.ok(ch.expires instanceof Date)
  assert.equal(ch.expires.getTime(), exp * 1000)

  const plain = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'bob' }) }))
  assert.equal(plain.id, 'bob')
  assert.equal(plain.meta, null, 'no meta claim')
})

test('getToken alone: connect dials with its token', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  let calls = 0
  const ch = closeAfter(t, await connect(srv.url, {
    getToken: async () => {
      calls++
      return secret.token({ sub: 'carol' })
    }
  }))
  assert.equal(ch.id, 'carol')
  assert.equal(calls, 1, 'one token for the dial, none yet for a refresh an hour away')
})

test('refresh with getToken: 2-second tokens keep the session open for 6 s, every frame delivered', async (t) => {
  const { srv, secret } = await tokenServerFor(t) // -auth-leeway 0s: the session ends at exp
  let calls = 0
  const getToken = () => {
    calls++
    return secret.token({ sub: 'dave', ttl: 2 })
  }
  const ch = await connect(srv.url, { getToken })
  t.after(() => ch.close())
  let ended = null
  ch.closed.then((c) => { ended = c })
  const start = Date.now()
  const first = ch.expires.getTime()
  assert.ok(first - start <= 2000, `the first token expires ${first - start} ms from now`)

  const room = await ch.echo(unique('steady'))
  let sent = 0
  // One frame at a time, each back before the next: none may be lost while
  // the tokens change under the stream.
  while (Date.now() - start < 6000 || Date.now() < first + 1000) {
    const text = `frame ${sent}`
    await room.send(text)
    const got = await within(room.recv(), 5000, `the echo of ${text} (the session ${ended ? `closed ${ended.code} ${ended.reason}` : 'is open'})`)
    assert.equal(dec.decode(got), text)
    sent++
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(ended, null, 'the session is open')
  assert.ok(ch.expires.getTime() > first, 'the expiry moved')
  assert.ok(calls >= 4, `getToken called ${calls} times in ${Date.now() - start} ms`)
  console.log(`# 2-second tokens: ${sent} frames over ${Date.now() - start} ms, ${calls} tokens`)
  await ch.close()
  assert.equal(ch.refreshTimer, null, 'no refresh pending after close')
})

test('ch.refresh: a valid token moves the expiry; an expired one is forbidden and the channel goes on', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const ch = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'erin', ttl: 600 }) }))
  const before = ch.expires

  const expired = await expectCode(ch.refresh(secret.token({ sub: 'erin', ttl: -60 })), 'forbidden')
  assert.match(expired.message, /the session keeps its current token/)
  assert.equal(ch.expires, before, 'the expiry did not move')
  const forged = await expectCode(ch.refresh(secret.mint({ sub: 'erin', allow: ['*:*'], exp: Math.floor(Date.now() / 1000) + 3600 }, 'another-secret-'.repeat(4))), 'forbidden')
  assert.equal(forged.message, 'invalid token: signature: the session keeps its current token')
  await roundTrip(ch, 'usable')

  const exp = Math.floor(Date.now() / 1000) + 7200
  const next = await ch.refresh(secret.mint({ sub: 'erin', allow: ['*:*'], exp, meta: { role: 'host' } }))
  assert.equal(next.getTime(), exp * 1000)
  assert.equal(ch.expires.getTime(), exp * 1000)
  assert.deepEqual(ch.meta, { role: 'host' }, 'the new token\'s meta')
  assert.equal(ch.id, 'erin')
  await roundTrip(ch, 'refreshed')
  await waitFor(() => ch.session.streams.size === 0, { message: 'every stream freed' })
})

test('ch.refresh with a token for another sub: the server closes the session with 4401', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const ch = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'frank' }) }))
  const room = await ch.echo(unique('gone'))
  const pending = caught(room.recv())
  const err = await within(expectCode(ch.refresh(secret.token({ sub: 'mallory' })), 'closed'), 10_000, 'the refresh')
  assert.equal(err.closeCode, 4401)
  assert.equal(err.closeReason, 'token refresh for another sub')
  assert.equal(err.message, 'closed 4401 token refresh for another sub')
  assert.deepEqual(await within(ch.closed, 5000, 'the close'), { code: 4401, reason: 'token refresh for another sub' })
  assert.equal((await pending).closeCode, 4401, 'the streams end with the session')
})

test('getToken for another sub: the channel\'s own refresh ends the session with 4401, and its timer with it', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  let calls = 0
  const getToken = () => secret.token({ sub: ++calls === 1 ? 'grace' : 'mallory', ttl: 2 })
  const ch = closeAfter(t, await connect(srv.url, { getToken }))
  assert.equal(ch.id, 'grace')
  // The refresh comes before the token's end (at most 2 s away) and is refused at once.
  const closed = await within(ch.closed, 5000, 'the close after the refresh')
  assert.deepEqual(closed, { code: 4401, reason: 'token refresh for another sub' })
  assert.equal(calls, 2)
  assert.equal(ch.refreshTimer, null)
})

test('ownership: a relay pairs only with local tokens of the session\'s own id', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const alice = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'alice', meta: { name: 'Alice' } }) }))
  const bob = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'bob' }) }))
  const err = await expectCode(alice.relay('calls', 'bob/x', 'alice/x'), 'forbidden')
  assert.match(err.message, /"local" must be "alice"/)
  await expectCode(alice.relay('calls', 'alicex', 'bob/x'), 'forbidden')

  const [a, b] = await within(Promise.all([
    alice.relay('calls', alice.id + '/x', bob.id + '/x'),
    bob.relay('calls', bob.id + '/x', alice.id + '/x')
  ]), 10_000, 'the pairing')
  // Each side learns who is at the other end.
  assert.deepEqual(a.peer, { id: 'bob', meta: null })
  assert.deepEqual(b.peer, { id: 'alice', meta: { name: 'Alice' } })
  const w = a.writable.getWriter()
  await w.write('offer')
  await w.close()
  let text = ''
  for await (const chunk of b.readable) text += dec.decode(chunk)
  assert.equal(text, 'offer')
  b.reset()
})

test('ownership: in a namespace the token owns, a session writes only its own keys', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const ns = unique('presence')
  const ch = closeAfter(t, await connect(srv.url, { token: secret.token({ sub: 'heidi', own: [`scuttlebutt:${ns}`] }) }))
  const m = await ch.model(ns)
  const refused = new Promise((resolve) => m.once('error', resolve))
  m.set(ch.id, 'here')
  m.set(ch.id + '/tab-1', 'here too')
  m.set('ivan', 'forged')
  const err = await within(refused, 5000, 'the refusal')
  assert.equal(err.code, 'forbidden')
  // The keys it owns were taken before the forged one.
  const reader = await ch.model(ns)
  await waitFor(() => reader.get('heidi') === 'here' && reader.get('heidi/tab-1') === 'here too', { message: 'the owned keys' })
  assert.equal(reader.get('ivan'), undefined)
})

test('reconnect: a first dial refused with 4401 without getToken rejects with that error', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const err = await within(expectCode(reconnect(srv.url, { token: secret.token({ ttl: -60 }), minBackoff: 10 }), 'closed'), 10_000, 'reconnect')
  assert.equal(err.closeCode, 4401)
  assert.equal(err.closeReason, 'token expired')
})

test('reconnect with getToken: the session refreshes its token and outlives the first', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  const client = closeAfter(t, await reconnect(srv.url, { getToken: () => secret.token({ sub: 'judy', ttl: 2 }) }))
  const disconnects = []
  client.on('disconnect', (c) => disconnects.push(c))
  const ch = client.channel
  const first = ch.expires.getTime()
  assert.equal(ch.id, 'judy')
  // Past the first token's end, with a margin of a second.
  await waitFor(() => Date.now() > first + 1000 && ch.expires.getTime() > first, { timeout: 10_000, interval: 50, message: 'the first token outlived' })
  assert.deepEqual(disconnects, [])
  assert.equal(client.channel, ch, 'the same session')
  await roundTrip(ch, 'on the same session')
})
