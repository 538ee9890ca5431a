// wss:// without a proxy: the server run with -tls-cert-file and
// -tls-key-file (a self-signed certificate made here with openssl), and the
// client over it.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import WebSocket from 'ws'
import { connect } from '../src/index.js'
import { startServer, unique, within } from './helpers.mjs'

const execFileP = promisify(execFile)
let srv
let dir
let ca

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'signalchannel-tls-'))
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  try {
    await execFileP('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { timeout: 30_000 })
  } catch (e) {
    throw new Error(`the TLS test makes its certificate with openssl (apt-get install openssl): ${e.message}`)
  }
  ca = readFileSync(cert)
  srv = await startServer(['-tls-cert-file', cert, '-tls-key-file', key])
})

after(async () => {
  await srv?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** TrustingWebSocket is ws that trusts the test's certificate. */
class TrustingWebSocket extends WebSocket {
  constructor (url, protocols, options = {}) {
    super(url, protocols, { ...options, ca })
  }
}

test('the client connects over wss:// to a server with a TLS certificate', async () => {
  const url = srv.url.replace('ws://', 'wss://')
  const ch = await connect(url, { WebSocket: TrustingWebSocket })
  try {
    const room = await ch.echo(unique('tls'))
    await room.send('over tls')
    const it = room[Symbol.asyncIterator]()
    const { value } = await within(it.next(), 5000, 'the echo')
    assert.equal(new TextDecoder().decode(value), 'over tls')
  } finally {
    await ch.close()
  }
})

test('a client that does not trust the certificate is refused', async () => {
  const url = srv.url.replace('ws://', 'wss://')
  await assert.rejects(connect(url, { WebSocket }), (e) => e.code === 'closed')
})
