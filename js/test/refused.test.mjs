// Refused sessions against the real server: a connection the server
// upgrades and then closes with 4429 or 4401 makes connect reject with that
// code and reason, every time, even though connect opens its session stream
// at once and its frames cross the server's close message (PROTOCOL.md
// section 8: the server half-closes and reads on, so the close message is
// not lost to a TCP reset).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from '../src/index.js'
import { serverFor, tokenServerFor, closeAfter, within } from './helpers.mjs'

const DIALS = 200

/**
 * expectRefused dials url DIALS times, one after the other, and asserts that
 * every connect rejected with `closed`, the code and reason as closeCode and
 * closeReason and in its message.
 */
async function expectRefused (url, token, code, reason) {
  const seen = new Map()
  for (let i = 0; i < DIALS; i++) {
    const refused = connect(url, { token }).then((ch) => {
      ch.close()
      return new Error('connected')
    }, (e) => e)
    const err = await within(refused, 10_000, 'a refused connect')
    const what = `${err.code} ${err.closeCode} ${err.closeReason}: ${err.message}`
    seen.set(what, (seen.get(what) ?? 0) + 1)
  }
  const want = `closed ${code} ${reason}: closed ${code} ${reason}`
  const lost = [...seen].reduce((n, [what, k]) => what.startsWith(`closed ${code} ${reason}:`) ? n : n + k, 0)
  const report = [...seen].map(([what, n]) => `${n} × ${what}`).join('\n')
  console.log(`# ${DIALS} refused dials (${code} ${reason}): ${lost} lost the code\n# ${report.replaceAll('\n', '\n# ')}`)
  assert.equal(lost, 0, `${lost} of ${DIALS} refused dials did not report ${code} ${reason}:\n${report}`)
  assert.equal(seen.get(want), DIALS, `connect's error:\n${report}`)
}

test('4429: every refused session reports the sessions per address limit', async (t) => {
  const srv = await serverFor(t, ['-max-sessions-per-ip', '1'])
  closeAfter(t, await connect(srv.url)) // the one session the address may have
  await expectRefused(srv.url, undefined, 4429, 'sessions per address limit (1) reached')
})

test('4401: every session without a valid token reports why', async (t) => {
  const { srv, secret } = await tokenServerFor(t)
  await t.test('missing credentials', () => expectRefused(srv.url, undefined, 4401, 'missing credentials'))
  await t.test('badly signed token', () => {
    const forged = secret.mint({ sub: 'js', allow: ['echo:*'], exp: Math.floor(Date.now() / 1000) + 3600 }, 'another-secret-'.repeat(4))
    return expectRefused(srv.url, forged, 4401, 'invalid token: signature')
  })
})
