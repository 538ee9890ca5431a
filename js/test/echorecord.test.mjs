// The echo member's parser of error records (PROTOCOL.md section 8, Echo),
// with the server's part played by a yamux session of this package joined
// to the client's in memory.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ByteReader, concat } from '../src/bytes.js'
import { Echo, MAX_ERROR_LINE } from '../src/echo.js'
import { SignalChannelError } from '../src/errors.js'
import { pair, readAll } from './wire.mjs'
import { waitFor, within, expectCode, caught } from './helpers.mjs'

const enc = new TextEncoder()
const dec = new TextDecoder()

const LIMIT_LINE = '{"error":{"code":"limit","message":"echo publish budget (2048 bytes/s, burst 4096 bytes) exceeded"}}\n'

/** frame returns data with its 4-byte length prefix. */
function frame (data) {
  const bytes = enc.encode(data)
  const out = new Uint8Array(4 + bytes.length)
  new DataView(out.buffer).setUint32(0, bytes.length)
  out.set(bytes, 4)
  return out
}

/** record returns an error record: the prefix FF FF FF FF, then line. */
function record (line) {
  return concat([new Uint8Array([0xff, 0xff, 0xff, 0xff]), enc.encode(line)])
}

/**
 * join opens a stream from the client session and returns the client's Echo
 * on it and the server's end of it.
 */
async function join (sessions) {
  const s = await sessions.client.openStream()
  const peer = await within(sessions.server.accept(), 2000, 'accept')
  return { echo: new Echo('room', s, new ByteReader(s), { maxFrame: 65536 }), peer }
}

test('an error record cut at every byte: recv rejects with its code and message, then send; the stream is half-closed and freed', async () => {
  const sessions = pair({ seed: 21, maxPiece: 7 })
  const bytes = concat([frame('before'), record(LIMIT_LINE)])
  for (let cut = 1; cut < bytes.length; cut++) {
    const { echo, peer } = await join(sessions)
    peer.write(bytes.subarray(0, cut))
    peer.write(bytes.subarray(cut)).then(() => peer.closeWrite())
    assert.equal(dec.decode(await within(echo.recv(), 2000, 'the frame')), 'before')
    const err = await expectCode(echo.recv(), 'limit')
    assert.ok(err instanceof SignalChannelError)
    assert.equal(err.message, 'echo publish budget (2048 bytes/s, burst 4096 bytes) exceeded', `cut at ${cut}`)
    assert.equal(echo.error, err)
    assert.equal(await caught(echo.recv()), err, 'a later recv')
    assert.equal(await caught(echo.send('after')), err, 'a later send')
    const iterated = await caught((async () => { for await (const f of echo) assert.fail(`frame ${f} after the record`) })())
    assert.equal(iterated, err, 'iteration')
    // The client half-closed and sent nothing more: the server reads its FIN.
    assert.equal((await within(readAll(peer), 2000, 'the client\'s FIN')).length, 0)
    await waitFor(() => !sessions.client.streams.has(echo.stream.id), { message: 'the stream freed' })
    echo.reset() // the member has left: no RST
  }
  assert.equal(sessions.server.streams.size, 0)
})

test('frames written before the record still go out; the FIN follows them', async () => {
  const sessions = pair({ seed: 22 })
  const { echo, peer } = await join(sessions)
  const sent = echo.send('queued')
  await peer.write(record(LIMIT_LINE))
  await expectCode(echo.recv(), 'limit')
  await sent
  assert.deepEqual(await within(readAll(peer), 2000, 'the client\'s bytes'), frame('queued'))
})

test('an error record line of 16 KiB is read; one byte more is a protocol error that resets the stream', async () => {
  const sessions = pair({ seed: 23, maxPiece: 3000 })
  const lineOf = (n) => {
    const head = '{"error":{"code":"limit","message":"'
    const tail = '"}}\n'
    return head + 'm'.repeat(n - head.length - tail.length) + tail
  }
  const { echo, peer } = await join(sessions)
  await peer.write(record(lineOf(MAX_ERROR_LINE)))
  const err = await expectCode(echo.recv(), 'limit')
  assert.equal(err.message.length, MAX_ERROR_LINE - '{"error":{"code":"limit","message":""}}\n'.length)

  for (const [line, what] of [[lineOf(MAX_ERROR_LINE + 1), 'in one write'], ['{"error":' + ' '.repeat(MAX_ERROR_LINE + 100), 'without a newline']]) {
    const { echo, peer } = await join(sessions)
    const bytes = record(line)
    for (let off = 0; off < bytes.length; off += 1000) peer.write(bytes.subarray(off, off + 1000)).catch(() => {})
    const err = await expectCode(echo.recv(), 'protocol')
    assert.match(err.message, /longer than 16384 bytes/, what)
    await expectCode(peer.read(), 'reset')
    assert.equal(await caught(echo.send('x')), err)
  }
})

test('an error record that is not an error object, or cut short, is a protocol error', async () => {
  const sessions = pair({ seed: 24, maxPiece: 5 })
  const cases = [
    ['not JSON\n', /without an error object/],
    ['{"ok":true}\n', /without an error object/],
    ['{"error":{"message":"no code"}}\n', /without an error object/],
    ['null\n', /without an error object/],
    ['{"error":{"code":"limit"', /ended inside an error record/],
    ['', /ended inside an error record/]
  ]
  for (const [line, want] of cases) {
    const { echo, peer } = await join(sessions)
    await peer.write(record(line))
    await peer.closeWrite()
    const err = await expectCode(echo.recv(), 'protocol')
    assert.match(err.message, want, JSON.stringify(line))
    await expectCode(peer.read(), 'reset')
  }
})

test('the line bound holds when a longer line arrives in one chunk', async () => {
  const chunks = [enc.encode('x'.repeat(MAX_ERROR_LINE) + '\n')]
  const reader = new ByteReader({ read: async () => chunks.shift() ?? null })
  await assert.rejects(reader.readLine(MAX_ERROR_LINE), RangeError)
  const exact = [enc.encode('x'.repeat(MAX_ERROR_LINE - 1) + '\nrest')]
  const ok = new ByteReader({ read: async () => exact.shift() ?? null })
  assert.equal((await ok.readLine(MAX_ERROR_LINE)).length, MAX_ERROR_LINE - 1)
})
