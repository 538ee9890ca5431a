// Rooms and calls (PROTOCOL.md section 10) through the client, against the
// real server: members, calls accepted, rejected, timed out and refused as
// busy, glare, a mesh, and forged calls.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect, SignalChannelError, MAX_MESSAGE_BYTES } from '../src/index.js'
import { compareIds } from '../src/room.js'
import { startServer, tokenServerFor, unique, waitFor, within, expectCode, caught } from './helpers.mjs'

let srv
const channels = []

before(async () => {
  srv = await startServer()
})

after(async () => {
  await Promise.all(channels.map((ch) => ch.close()))
  await srv?.stop()
})

/**
 * member connects to url and joins the room name; events records what it
 * hears of the others, requests the requests it is handed (when
 * options.onRequest is not given, they wait).
 */
async function member (name, options = {}, url = srv.url, connectOptions = {}) {
  const ch = await connect(url, connectOptions)
  channels.push(ch)
  const { onRequest, ...roomOptions } = options
  const room = await ch.room(name, roomOptions)
  const events = []
  for (const ev of ['join', 'update', 'leave']) room.on(ev, (m) => events.push({ ev, id: m.id, meta: m.meta }))
  const requests = []
  room.on('request', (q) => {
    requests.push(q)
    onRequest?.(q)
  })
  return { ch, room, events, requests }
}

/** heard waits until m has heard event ev of id (and meta, when given). */
function heard (m, ev, id, meta, timeout = 5000) {
  return waitFor(() => m.events.find((e) => e.ev === ev && e.id === id && (meta === undefined || JSON.stringify(e.meta) === JSON.stringify(meta))),
    { timeout, message: `${ev} of ${id}` })
}

/** sees waits until m counts id among the members. */
function sees (m, id) {
  return waitFor(() => m.room.members.has(id), { message: `${m.room.id} sees ${id}` })
}

/** callKeys returns the call keys of room's replica written by from. */
function callKeys (room, from) {
  return room.model.keys().filter((k) => k.startsWith(from + '/call/'))
}

/** ping sends a message each way over two sides of one call and checks both arrive. */
async function ping (x, y, n) {
  await x.send({ type: 'ping', n })
  assert.deepEqual(await within(y.recv(), 5000, 'ping'), { type: 'ping', n })
  await y.send({ type: 'pong', n })
  assert.deepEqual(await within(x.recv(), 5000, 'pong'), { type: 'pong', n })
}

/** hangUp closes a call from x's side and waits until both sides have ended. */
async function hangUp (x, y, reason = 'done') {
  await x.close(reason)
  assert.equal(await within(y.recv(), 5000, 'the end of the messages'), null)
  const [cx, cy] = await within(Promise.all([x.closed, y.closed]), 5000, 'both sides closed')
  assert.deepEqual(cx, { reason, error: null })
  assert.deepEqual(cy, { reason, error: null })
}

test('members see each other join, change their meta and leave', async () => {
  const name = unique('members')
  const a = await member(name, { meta: { name: 'A' } })
  const b = await member(name, { meta: { name: 'B' } })
  assert.equal(a.room.id, a.ch.id)
  assert.equal(a.room.name, name)
  // b found a in the room's history; a hears b join.
  assert.deepEqual(b.room.members.get(a.room.id), { id: a.room.id, meta: { name: 'A' } })
  await heard(a, 'join', b.room.id, { name: 'B' })
  assert.deepEqual([...a.room.members.keys()], [b.room.id])
  assert.ok(!b.room.members.has(b.room.id), 'a member is not among its own members')

  b.room.setMeta({ name: 'B', status: 'away' })
  await heard(a, 'update', b.room.id, { name: 'B', status: 'away' })
  assert.deepEqual(a.room.members.get(b.room.id).meta, { name: 'B', status: 'away' })

  const c = await member(name)
  await heard(a, 'join', c.room.id, null)
  assert.deepEqual(c.room.members.get(b.room.id), { id: b.room.id, meta: { name: 'B', status: 'away' } })

  await b.room.leave()
  await heard(a, 'leave', b.room.id)
  await heard(c, 'leave', b.room.id)
  assert.ok(!a.room.members.has(b.room.id))
  await expectCode(b.room.call(a.room.id), 'closed')

  // A member whose channel closes is gone at once (its keys are ephemeral).
  await c.ch.close()
  const t0 = Date.now()
  await heard(a, 'leave', c.room.id, undefined, 1000)
  assert.ok(Date.now() - t0 < 1000)
  assert.deepEqual(a.room.members.size, 0)
  assert.equal(a.events.filter((e) => e.ev === 'update').length, 1, 'the refreshes of a record are not updates')
})

test('a member record is written again every maxAge/3 and outlives the expiry', async (t) => {
  const maxAge = 900
  const short = await startServer(['-scuttlebutt-max-age', `${maxAge}ms`])
  t.after(() => short.stop())
  const name = unique('refresh')
  const a = await member(name, {}, short.url)
  const b = await member(name, { meta: 'b' }, short.url)
  await heard(a, 'join', b.room.id, 'b')
  // Count the writes of b's record a receives, until they span 2 maxAge.
  const writes = []
  a.room.model.on('change:' + b.room.id, (v) => writes.push({ at: Date.now(), v }))
  await waitFor(() => writes.length >= 2 && writes.at(-1).at - writes[0].at >= 2 * maxAge, { timeout: 20 * maxAge, message: 'b\'s record written again over 2 maxAge' })
  assert.ok(writes.every((w) => w.v !== null), 'b\'s record expired')
  assert.deepEqual(a.events.filter((e) => e.id === b.room.id).map((e) => e.ev), ['join'])
  assert.ok(a.room.members.has(b.room.id))
})

test('a call is accepted and carries messages both ways', async () => {
  const name = unique('accept')
  const accepted = []
  const a = await member(name, { meta: { name: 'A' } })
  const b = await member(name, { onRequest: (q) => accepted.push(q.accept()) })
  await sees(b, a.room.id)

  const ca = await within(a.room.call(b.room.id, { meta: { topic: 'hi' } }), 10000, 'the call')
  assert.equal(b.requests.length, 1)
  const q = b.requests[0]
  assert.deepEqual(q.from, { id: a.room.id, meta: { name: 'A' } })
  assert.equal(q.peer.id, a.room.id)
  assert.deepEqual(q.meta, { topic: 'hi' })
  const cb = await accepted[0]
  assert.equal(ca.id, cb.id)
  assert.equal(ca.id, q.id)
  assert.match(ca.id, /^[A-Za-z0-9_-]{8,32}$/)
  assert.deepEqual(ca.peer, { id: b.room.id, meta: null })
  assert.equal(cb.peer.id, a.room.id)
  assert.equal(ca.polite, compareIds(a.room.id, b.room.id) > 0)
  assert.equal(cb.polite, !ca.polite)
  // The caller deleted its call key once paired.
  await waitFor(() => callKeys(b.room, a.room.id).length === 0, { message: 'the call key deleted' })

  // Messages of any type, both ways, in order.
  const offer = { type: 'description', description: { type: 'offer', sdp: 'v=0\r\n' } }
  await ca.send(offer)
  await ca.send({ type: 'candidate', candidate: null })
  await ca.send({ type: 'custom', text: 'é 🎉' })
  assert.deepEqual(await cb.recv(), offer)
  assert.deepEqual(await cb.recv(), { type: 'candidate', candidate: null })
  assert.deepEqual(await cb.recv(), { type: 'custom', text: 'é 🎉' })
  await ping(cb, ca, 1)

  // The largest message fits; one byte more does not.
  const filler = (n) => ({ type: 'big', s: 'x'.repeat(n - JSON.stringify({ type: 'big', s: '' }).length - 1) })
  const big = filler(MAX_MESSAGE_BYTES)
  assert.equal(JSON.stringify(big).length + 1, MAX_MESSAGE_BYTES)
  await ca.send(big)
  assert.deepEqual(await cb.recv(), big)
  await expectCode(ca.send(filler(MAX_MESSAGE_BYTES + 1)), 'frame_too_large')
  await assert.rejects(ca.send(['not', 'an', 'object']), TypeError)

  // Two members have one call at a time: calling again gives the same.
  assert.equal(await a.room.call(b.room.id), ca)
  assert.equal(await b.room.call(a.room.id), cb)

  // for await ends at bye.
  const got = []
  const reading = (async () => { for await (const m of cb) got.push(m) })()
  await ca.send({ type: 'last' })
  await ca.close('bye now')
  await within(reading, 5000, 'reading to the end')
  assert.deepEqual(got, [{ type: 'last' }])
  assert.deepEqual(await within(ca.closed, 5000, 'caller closed'), { reason: 'bye now', error: null })
  assert.deepEqual(await within(cb.closed, 5000, 'callee closed'), { reason: 'bye now', error: null })
  await expectCode(ca.send({ type: 'late' }), 'closed')

  // The next call is a new one.
  const ca2 = await within(a.room.call(b.room.id), 10000, 'the second call')
  const cb2 = await accepted[1]
  assert.notEqual(ca2.id, ca.id)
  assert.equal(cb2.id, ca2.id)
  await ping(ca2, cb2, 2)
  await hangUp(cb2, ca2)
})

test('a rejection reaches the caller at once, with its reason', async () => {
  const name = unique('reject')
  const a = await member(name)
  const b = await member(name, { onRequest: (q) => q.reject('not now') })
  await sees(b, a.room.id)
  const t0 = Date.now()
  const err = await expectCode(a.room.call(b.room.id), 'rejected')
  const took = Date.now() - t0
  assert.ok(err instanceof SignalChannelError)
  assert.equal(err.reason, 'not now')
  assert.match(err.message, /not now/)
  assert.ok(took < 15000, `rejected after ${took} ms, with a call timeout of 30 s`)
  assert.equal(b.requests.length, 1)
  await expectCode(b.requests[0].accept(), 'closed')
  await waitFor(() => callKeys(b.room, a.room.id).length === 0, { message: 'the call key deleted' })
  assert.equal(a.room.outgoing.size, 0)
})

test('a callee that never answers: the call times out, or the caller aborts it', async () => {
  const name = unique('silent')
  const a = await member(name)
  const b = await member(name)
  await sees(b, a.room.id)

  const t0 = Date.now()
  const err = await expectCode(a.room.call(b.room.id, { timeout: 500 }), 'timeout')
  const took = Date.now() - t0
  assert.ok(took >= 450, `timed out after ${took} ms`)
  assert.match(err.message, /500 ms/)
  await waitFor(() => callKeys(b.room, a.room.id).length === 0 && callKeys(a.room, a.room.id).length === 0, { message: 'the call key deleted' })
  // A request that reached b meanwhile is gone with its caller.
  await waitFor(() => b.requests.every((q) => q.signal.aborted), { message: 'the request given up' })

  // Abort the call once b holds its request: b learns that its caller gave up.
  const ac = new AbortController()
  b.room.once('request', () => ac.abort(new Error('changed my mind')))
  const aborted = await caught(a.room.call(b.room.id, { signal: ac.signal }))
  assert.equal(aborted.message, 'changed my mind')
  const q = b.requests.at(-1)
  await waitFor(() => q.signal.aborted, { message: 'the request aborted' })
  assert.equal(q.signal.reason.code, 'closed')
  await expectCode(q.accept(), 'closed')
  assert.equal(b.room.requests.size, 0)
  await waitFor(() => callKeys(b.room, a.room.id).length === 0, { message: 'the call key deleted' })
})

test('past maxPending waiting requests, a call is rejected as busy at once', async () => {
  const name = unique('busy')
  const b = await member(name, { maxPending: 2 })
  const callers = await Promise.all([member(name), member(name), member(name)])
  await waitFor(() => b.room.members.size === 3, { message: 'b sees three members' })
  const first = callers.slice(0, 2).map((c) => c.room.call(b.room.id))
  await waitFor(() => b.requests.length === 2, { message: 'two waiting requests' })
  const t0 = Date.now()
  const err = await expectCode(callers[2].room.call(b.room.id), 'rejected')
  assert.equal(err.reason, 'busy')
  assert.ok(Date.now() - t0 < 15000)
  assert.equal(b.requests.length, 2, 'the busy request was not emitted')
  const from = (c) => b.requests.find((q) => q.from.id === c.room.id)
  // A decided request makes room for the next.
  await from(callers[0]).reject('later')
  await expectCode(first[0], 'rejected')
  const third = callers[2].room.call(b.room.id)
  await waitFor(() => b.requests.length === 3, { message: 'the third request' })
  const [c3, b3] = await Promise.all([third, from(callers[2]).accept()])
  assert.equal(c3.id, b3.id)
  const b2 = await from(callers[1]).accept()
  const c2 = await first[1]
  await ping(c2, b2, 1)
  await ping(b3, c3, 2)
})

test('glare: two members calling each other at once end with one call', async () => {
  const name = unique('glare')
  const a = await member(name)
  const b = await member(name)
  await heard(a, 'join', b.room.id)
  await sees(b, a.room.id)
  for (let round = 0; round < 10; round++) {
    const [ca, cb] = await within(Promise.all([a.room.call(b.room.id), b.room.call(a.room.id)]), 20000, `round ${round}`)
    assert.equal(ca.id, cb.id, `round ${round}: one call`)
    assert.equal(ca.peer.id, b.room.id)
    assert.equal(cb.peer.id, a.room.id)
    assert.equal(a.room.byPeer.get(b.room.id), ca)
    assert.equal(b.room.byPeer.get(a.room.id), cb)
    assert.equal(a.room.outgoing.size + b.room.outgoing.size + a.room.yielded.size + b.room.yielded.size, 0)
    await ping(ca, cb, round)
    await hangUp(round % 2 ? ca : cb, round % 2 ? cb : ca)
    assert.equal(a.room.calls.size + b.room.calls.size, 0)
  }
  assert.equal(a.requests.length + b.requests.length, 0, 'no request reached the application')
  await waitFor(() => a.room.model.keys().every((k) => !k.includes('/')), { message: 'every call key deleted' })
})

test('calling a member whose request waits accepts that request', async () => {
  const name = unique('answer-by-call')
  const a = await member(name)
  const b = await member(name)
  await sees(b, a.room.id)
  const calling = a.room.call(b.room.id)
  await waitFor(() => b.requests.length === 1, { message: 'the request' })
  const cb = await b.room.call(a.room.id)
  const ca = await calling
  assert.equal(cb.id, b.requests[0].id)
  assert.equal(ca.id, cb.id)
  await expectCode(b.requests[0].accept(), 'closed')
  await ping(ca, cb, 1)
})

test('a call placed while the other\'s call is being paired ends with one call', async () => {
  const name = unique('crossing')
  const a = await member(name)
  const b = await member(name)
  await sees(a, b.room.id)
  await sees(b, a.room.id)
  for (let round = 0; round < 6; round++) {
    // x calls y; y calls back as soon as it sees x's call key, while it
    // pairs with that call and before its request has arrived.
    const [x, y] = round % 2 ? [a, b] : [b, a]
    const calledBack = new Promise((resolve) => {
      const onChange = (key, value) => {
        if (value === null || !key.startsWith(`${x.room.id}/call/${y.room.id}/`)) return
        y.room.model.off('change', onChange)
        resolve(y.room.call(x.room.id))
      }
      y.room.model.on('change', onChange)
    })
    const [cx, cy] = await within(Promise.all([x.room.call(y.room.id), calledBack]), 20000, `round ${round}`)
    assert.equal(cx.id, cy.id, `round ${round}: one call`)
    await ping(cx, cy, round)
    await hangUp(cx, cy)
  }
  assert.equal(a.requests.length + b.requests.length, 0, 'no request reached the application')
})

test('a room of four: each calls each once', async () => {
  const name = unique('mesh')
  const accepted = new Map()
  const ms = []
  for (let i = 0; i < 4; i++) {
    const m = await member(name, {
      meta: { i },
      onRequest: (q) => accepted.set(`${q.from.id}>${m.room.id}`, q.accept())
    })
    ms.push(m)
  }
  await waitFor(() => ms.every((m) => m.room.members.size === 3), { message: 'everyone sees everyone' })
  const calls = []
  for (let i = 0; i < 4; i++) {
    for (let j = i + 1; j < 4; j++) calls.push({ i, j, call: ms[i].room.call(ms[j].room.id, { meta: { from: i } }) })
  }
  await within(Promise.all(calls.map((c) => c.call)), 20000, 'six calls')
  assert.equal(accepted.size, 6)
  await Promise.all(calls.map(async ({ i, j, call }) => {
    const x = await call
    const y = await accepted.get(`${ms[i].room.id}>${ms[j].room.id}`)
    assert.equal(x.id, y.id)
    assert.deepEqual(ms[j].requests.find((q) => q.id === x.id).meta, { from: i })
    assert.deepEqual(ms[j].requests.find((q) => q.id === x.id).from.meta, { i })
    await ping(x, y, i * 4 + j)
  }))
  for (const m of ms) assert.equal(m.room.calls.size, 3)
  // Leaving ends a member's calls: the others hear its bye.
  const cs = await Promise.all(calls.filter((c) => c.i === 0).map((c) => c.call))
  const peersOf0 = await Promise.all(calls.filter((c) => c.i === 0).map((c) => accepted.get(`${ms[0].room.id}>${ms[c.j].room.id}`)))
  await ms[0].room.leave()
  for (const y of peersOf0) {
    assert.equal(await within(y.recv(), 5000, 'bye'), null)
    assert.deepEqual(await within(y.closed, 5000, 'closed'), { reason: 'left the room', error: null })
  }
  for (const x of cs) await within(x.closed, 5000, 'closed')
  for (const m of ms.slice(1)) {
    await heard(m, 'leave', ms[0].room.id)
    assert.equal(m.room.calls.size, 2)
  }
})

test('a call from another peer than its key names is refused', async () => {
  const name = unique('impostor')
  const alice = await member(name)
  const bob = await member(name)
  const mallory = await connect(srv.url)
  channels.push(mallory)
  await sees(bob, alice.room.id)
  // Without ownership mallory can write alice's call key and take her relay
  // token, but the server names mallory as bob's partner.
  const model = await mallory.model('room/' + name)
  const cid = 'forged-call-0001'
  const piping = mallory.relay('room/' + name, `${alice.room.id}/sig/${bob.room.id}/${cid}`, `${bob.room.id}/sig/${alice.room.id}/${cid}`)
  model.set(`${alice.room.id}/call/${bob.room.id}/${cid}`, {})
  // bob resets the pipe as soon as it is paired: mallory may even lose the
  // open reply to the reset.
  const reading = piping.then((pipe) => {
    assert.equal(pipe.peer.id, bob.room.id)
    pipe.writable.getWriter().write('{"type":"request","meta":null}\n').catch(() => {})
    return pipe.readable.getReader().read()
  })
  await expectCode(within(reading, 10000, 'bob resets'), 'reset')
  assert.equal(bob.requests.length, 0)
})

test('with ownership, a forged call key is refused by the server', async (t) => {
  const { srv: authed, secret } = await tokenServerFor(t)
  const claims = { allow: ['scuttlebutt:room/*', 'relay:room/*'], own: ['scuttlebutt:room/*'] }
  const name = unique('owned')
  const join = (sub, meta) => member(name, { meta }, authed.url, { token: secret.token({ sub, ...claims }) })
  const alice = await join('alice', { name: 'Alice' })
  const bob = await join('bob')
  const mallory = await join('mallory')
  assert.equal(alice.room.id, 'alice')
  await waitFor(() => bob.room.members.size === 2, { message: 'bob sees alice and mallory' })

  // mallory writes alice's call key: the server refuses the update.
  const forged = await mallory.ch.model('room/' + name)
  const failed = new Promise((resolve) => forged.once('error', resolve))
  forged.set('alice/call/bob/forged-call-0001', {})
  const err = await within(failed, 5000, 'the forbidden error')
  assert.equal(err.code, 'forbidden')
  assert.match(err.message, /alice\/call\/bob/)
  // ... and cannot pair as alice.
  await expectCode(mallory.ch.relay('room/' + name, 'alice/sig/bob/forged-call-0001', 'bob/sig/alice/forged-call-0001'), 'forbidden')

  // alice's own call reaches bob, and is the only request bob sees.
  const calling = alice.room.call('bob')
  await waitFor(() => bob.requests.length === 1, { message: 'alice\'s request' })
  const q = bob.requests[0]
  assert.deepEqual(q.from, { id: 'alice', meta: { name: 'Alice' } })
  const [ca, cb] = await Promise.all([calling, q.accept()])
  assert.equal(ca.id, cb.id)
  assert.notEqual(ca.id, 'forged-call-0001')
  await ping(ca, cb, 1)
  assert.ok(!bob.room.model.has('alice/call/bob/forged-call-0001'))
  assert.equal(bob.requests.length, 1)
})
