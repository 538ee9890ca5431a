// The scuttlebutt Model: its rules on their own, and replication through the
// real server, with this client and with the npm scuttlebutt package.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { connect, Model, SignalChannelError } from '../src/index.js'
import { digestLine, MAX_LINE_BYTES } from '../src/model.js'
import { startServer, unique, waitFor, within, expectCode } from './helpers.mjs'

const require = createRequire(import.meta.url)

test('local timestamps strictly increase, even within one millisecond', () => {
  const m = new Model({ id: 'A' })
  const seen = []
  m.on('update', (kv, ts, source) => {
    if (source === 'A') seen.push(ts)
  })
  for (let i = 0; i < 50; i++) m.set('k' + (i % 3), i)
  assert.equal(seen.length, 50)
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `ts ${seen[i]} after ${seen[i - 1]}`)
  // A local write wins over a remote record from a clock that runs ahead.
  m.applyUpdate([['k0', 'remote'], Date.now() + 10000, 'Z'])
  m.set('k0', 'mine')
  assert.equal(m.get('k0'), 'mine')
  assert.ok(m.store.get('k0')[1] > Date.now() + 9000)
})

test('ties go to the greater source; stale updates are ignored', () => {
  const m = new Model({ id: 'self' })
  const changes = []
  m.on('change', (k, v) => changes.push([k, v]))
  assert.equal(m.applyUpdate([['k', 'from-b'], 1000, 'b']), true)
  assert.equal(m.applyUpdate([['k', 'from-a'], 1000, 'a']), false, 'smaller source won a tie')
  assert.equal(m.applyUpdate([['k', 'from-c'], 1000, 'c']), true, 'greater source lost a tie')
  assert.equal(m.applyUpdate([['k', 'old'], 999, 'd']), false)
  assert.equal(m.sources.d, 999, 'a fresh update that loses still advances the clock')
  assert.equal(m.applyUpdate([['x', 1], 999, 'd']), false, 'not newer than the clock of its source')
  assert.equal(m.applyUpdate([['k', 'newer'], 1001, 'a']), true)
  assert.equal(m.get('k'), 'newer')
  assert.equal(m.applyUpdate([['k', null], 1002, 'a']), true)
  assert.equal(m.get('k'), undefined)
  assert.equal(m.has('k'), false)
  assert.deepEqual(m.keys(), [])
  assert.deepEqual(changes, [['k', 'from-b'], ['k', 'from-c'], ['k', 'newer'], ['k', null]])
  assert.equal(m.applyUpdate(['not', 'an', 'update']), false)
  assert.equal(m.applyUpdate([['k', 1], 'ts', 'a']), false)
})

test('history: updates newer than a clock, sorted by (ts, source), deletions included', () => {
  const m = new Model({ id: 'self' })
  m.applyUpdate([['a', 1], 3000, 'y'])
  m.applyUpdate([['b', 2], 2000, 'x'])
  m.applyUpdate([['c', 3], 3000, 'x'])
  m.applyUpdate([['d', null], 1000, 'z'])
  m.applyUpdate([['e', 5], 4000, 'y', 'sig'])
  const h = m.history({})
  assert.deepEqual(h.map((u) => u[0][0]), ['d', 'b', 'c', 'a', 'e'])
  assert.deepEqual(h[4], [['e', 5], 4000, 'y', 'sig'], 'the signature is kept')
  assert.deepEqual(m.history({ y: 3000, x: 5000 }).map((u) => u[0][0]), ['d', 'e'])
  assert.deepEqual(m.toJSON(), { a: 1, b: 2, c: 3, e: 5 })
  assert.equal(JSON.stringify(h[0]), '[["d",null],1000,"z"]')
})

test('expiry hides old records; the digest fits the line limit', () => {
  const m = new Model({ id: 'self', maxAge: 1000 })
  m.applyUpdate([['old', 1], Date.now() - 500, 'a'])
  assert.equal(m.get('old'), 1)
  m.store.get('old')[1] = Date.now() - 2000
  assert.equal(m.get('old'), undefined)
  assert.deepEqual(m.history({}), [])
  assert.equal(m.applyUpdate([['older', 1], Date.now() - 5000, 'b']), false)

  const big = new Model({ id: 'self' })
  for (let i = 0; i < 2000; i++) big.sources['source-' + i] = 1e12 + i
  big.sources.self = 5
  const line = digestLine(big)
  assert.ok(new TextEncoder().encode(line).length <= MAX_LINE_BYTES)
  const d = JSON.parse(line)
  assert.equal(d.id, 'self')
  assert.equal(d.clock.self, 5, 'the own entry is kept')
  assert.equal(d.clock['source-1999'], 1e12 + 1999, 'the newest entries are kept')
})

test('set refuses keys and values over the limits', () => {
  const m = new Model()
  assert.throws(() => m.set('k'.repeat(257), 1), (e) => e instanceof SignalChannelError && e.code === 'limit')
  assert.throws(() => m.set('k', 'v'.repeat(9000)), (e) => e.code === 'limit')
  assert.throws(() => m.set(5, 1), TypeError)
  m.set('k', { nested: [1, 'two'] })
  assert.deepEqual(m.get('k'), { nested: [1, 'two'] })
})

describeServer()

function describeServer () {
  let srv
  const channels = []
  before(async () => {
    srv = await startServer()
  })
  after(async () => {
    for (const ch of channels) ch.close()
    await srv?.stop()
  })
  const dial = async () => {
    const ch = await connect(srv.url)
    channels.push(ch)
    return ch
  }

  test('two clients replicate sets and deletes through the server', async () => {
    const ns = unique('presence')
    const a = await (await dial()).model(ns)
    const b = await (await dial()).model(ns)
    assert.equal(typeof a.serverId, 'string')
    assert.ok(a.maxAge > 0)
    const updates = []
    b.on('update', (kv, ts, source) => updates.push([kv, source]))
    a.set('alice', { status: 'here' })
    await waitFor(() => b.get('alice')?.status === 'here', { message: 'b sees alice' })
    b.set('bob', 1)
    await waitFor(() => a.get('bob') === 1, { message: 'a sees bob' })
    a.delete('alice')
    await waitFor(() => !b.has('alice'), { message: 'b sees the deletion' })
    assert.deepEqual(a.toJSON(), { bob: 1 })
    assert.deepEqual(b.toJSON(), { bob: 1 })
    assert.deepEqual(updates.filter((u) => u[1] === a.id).map((u) => u[0]), [['alice', { status: 'here' }], ['alice', null]])
  })

  test('a late joiner has the history when model() resolves (after SYNC)', async () => {
    const ns = unique('history')
    const a = await (await dial()).model(ns)
    for (let i = 0; i < 20; i++) a.set('k' + i, i)
    const b = await (await dial()).model(ns)
    await waitFor(() => b.keys().length === 20, { message: 'a late joiner gets every key' })
    const c = await (await dial()).model(ns)
    assert.equal(c.keys().length, 20, 'the history arrived before model() resolved')
    assert.equal(c.get('k7'), 7)
  })

  test('ephemeral: keys of a stream go when it closes', async () => {
    const ns = unique('ephemeral')
    const watcher = await (await dial()).model(ns)
    const ch = await dial()
    const p = await ch.model(ns, { ephemeral: true })
    p.set('me', 'online')
    await waitFor(() => watcher.get('me') === 'online', { message: 'watcher sees the key' })
    const deletions = []
    watcher.on('update', (kv, ts, source) => { if (kv[1] === null) deletions.push(source) })
    ch.close()
    await waitFor(() => !watcher.has('me'), { timeout: 5000, message: 'key deleted when the stream closed' })
    assert.deepEqual(deletions, [watcher.serverId], 'the deletion comes from the server replica')
  })

  test('model.close() ends replication; an ephemeral stream\'s keys go', async () => {
    const ns = unique('close')
    const watcher = await (await dial()).model(ns)
    const m = await (await dial()).model(ns, { ephemeral: true })
    m.set('x', 1)
    await waitFor(() => watcher.get('x') === 1, { message: 'watcher sees x' })
    const closed = new Promise((resolve) => m.once('close', resolve))
    await m.close()
    assert.equal(await within(closed, 5000, 'close event'), null)
    await waitFor(() => !watcher.has('x'), { message: 'x deleted after close' })
    m.set('y', 2) // local only now
    assert.equal(m.get('y'), 2)
  })

  test('a line over the server\'s limit: the server answers limit and closes the stream', async () => {
    const ns = unique('limit')
    const m = new Model({ maxValueBytes: 1 << 20 })
    const ch = await dial()
    await ch.model(ns, { model: m })
    const failed = new Promise((resolve) => m.once('error', resolve))
    m.set('big', 'v'.repeat(9000))
    const err = await within(failed, 5000, 'error event')
    assert.ok(err instanceof SignalChannelError)
    assert.equal(err.code, 'limit')
    assert.match(err.message, /8192|16384/)
    assert.equal(m.replications.size, 0)
    // The session is unaffected.
    await (await ch.echo(unique('after'))).send('ok')
  })

  test('a replication that fails before the history arrives rejects, and is not also an error event', async () => {
    const m = new Model({ id: 'x'.repeat(MAX_LINE_BYTES) }) // its digest is over the line limit
    const errors = []
    m.on('error', (e) => errors.push(e))
    const err = await expectCode((await dial()).model(unique('early'), { model: m }), 'limit')
    assert.match(err.message, /16384/)
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(errors, [])
  })

  test('wire-compatible with npm scuttlebutt 5.x through the server', async () => {
    const NpmModel = require('scuttlebutt/model')
    const ns = unique('npm')
    const npm = new NpmModel()
    const ch = await dial()
    // The npm model's stream, piped to a raw stream after the reply line.
    const { stream, reader } = await ch.open({ endpoint: 'scuttlebutt', namespace: ns })
    const s = npm.createStream()
    s.on('data', (line) => { stream.write(line).catch(() => {}) })
    const pump = (async () => {
      for (;;) {
        const c = await reader.readChunk()
        if (c === null) break
        s.write(Buffer.from(c))
      }
    })().catch(() => {})
    const ours = await (await dial()).model(ns)
    npm.set('from-npm', { n: 1 })
    await waitFor(() => ours.get('from-npm')?.n === 1, { message: 'ours sees the npm update' })
    ours.set('from-ours', [1, 2, 3])
    await waitFor(() => JSON.stringify(npm.get('from-ours')) === '[1,2,3]', { message: 'npm sees our update' })
    ours.delete('from-npm')
    await waitFor(() => npm.get('from-npm') === null, { message: 'npm sees our deletion' })
    // npm's own update carries its id as source and a millisecond timestamp.
    const u = ours.store.get('from-ours')
    assert.equal(u[2], ours.id)
    stream.reset()
    await pump
  })

  test('errors from the scuttlebutt header', async () => {
    const ch = await dial()
    await expectCode(ch.model(''), 'bad_namespace')
    await expectCode(ch.open({ endpoint: 'scuttlebutt', namespace: 'x', ephemeral: 'yes' }), 'bad_header')
  })
}
