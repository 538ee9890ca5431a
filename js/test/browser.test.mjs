// The WebRTC demo in Chromium, driven by playwright-core: pages of the demo
// served by the real server, and the Go peer (examples/peer), join one room
// and connect: Chromium to Chromium and Go to Chromium, over a direct data
// channel both ways, through the relay when ICE is made to fail, and with a
// media track from Chromium's fake camera received by the other side;
// and a connection that heals over the relay when its direct path is cut.
//
// The server and Chromium run in a network namespace of their own, made
// here: 127.0.0.1 for the server, and one veth address (198.51.100.1, a
// documentation range) so that Chromium gathers a host ICE candidate; its
// default route leads to the veth peer in the same namespace, so nothing
// leaves it. Making the namespace takes root (ip netns).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, chmodSync, rmSync, readdirSync } from 'node:fs'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServer, startGoPeer, serverBinary, serverFlags, goBuild, unique, relayTimeoutFlag } from './helpers.mjs'

const execFileP = promisify(execFile)
// CHROMIUM_PATH names another Chromium binary.
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const here = path.dirname(fileURLToPath(import.meta.url))
const results = path.join(here, '..', 'test-results')
const netns = `sctest-${process.pid}`

const haveChromium = existsSync(CHROMIUM)
if (!haveChromium) {
  const line = '!'.repeat(78)
  console.warn(`\n${line}\n!! ${CHROMIUM} is missing: the browser tests of the WebRTC demo are SKIPPED.\n!! Install it with: apt-get update && apt-get install -y chromium\n${line}\n`)
}

let context
let channelServer
let pageServer
let pageBase
let scratch
let nsPrefix
let turnServer = null // with the embedded TURN server, started by the first test that needs it

async function ip (...args) {
  return execFileP('ip', args, { timeout: 10_000 })
}

/** makeNetns creates the namespace and removes those of test runs that are gone. */
async function makeNetns () {
  try {
    for (const name of readdirSync('/run/netns')) {
      const m = /^sctest-(\d+)$/.exec(name)
      if (m && !existsSync(`/proc/${m[1]}`)) await ip('netns', 'delete', name).catch(() => {})
    }
  } catch {}
  try {
    await ip('netns', 'add', netns)
  } catch (e) {
    throw new Error(`the browser test needs a network namespace of its own (run as root): ip netns add failed: ${e.stderr || e.message}`)
  }
  const inNs = (...args) => ip('netns', 'exec', netns, 'ip', ...args)
  await inNs('link', 'set', 'lo', 'up')
  await inNs('link', 'add', 'sc0', 'type', 'veth', 'peer', 'name', 'sc1')
  await inNs('addr', 'add', '198.51.100.1/24', 'dev', 'sc0')
  await inNs('link', 'set', 'sc0', 'up')
  await inNs('link', 'set', 'sc1', 'up')
  await inNs('route', 'add', 'default', 'via', '198.51.100.2', 'dev', 'sc0')
}

before(async () => {
  if (!haveChromium) return
  mkdirSync(results, { recursive: true })
  scratch = mkdtempSync(path.join(tmpdir(), 'signalchannel-browser-'))
  await makeNetns()
  const prefix = ['ip', 'netns', 'exec', netns]
  nsPrefix = prefix
  const bin = await serverBinary()
  const flags = await serverFlags(bin)
  const timeoutFlag = await relayTimeoutFlag(bin)
  const extra = timeoutFlag ? [`-${timeoutFlag}`, '10s'] : []
  if (flags.has('demo')) {
    channelServer = await startServer(['-demo', ...extra], { prefix })
    pageBase = `${channelServer.httpURL}/demo/?`
  } else {
    // A server without -demo: the page comes from the demo's own server
    // and names the channel in its URL.
    console.log('# the server has no -demo flag: serving the page with examples/webrtc/cmd/demoserver')
    channelServer = await startServer(extra, { prefix })
    const demo = await goBuild('./examples/webrtc/cmd/demoserver', 'demoserver')
    pageServer = await startServer([], { bin: demo, argv: [], prefix })
    pageBase = `${pageServer.httpURL}/demo/?server=${encodeURIComponent(channelServer.url)}&`
  }
  const wrapper = path.join(scratch, 'chromium-in-netns')
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${netns} ${CHROMIUM} "$@"\n`)
  chmodSync(wrapper, 0o755)
  const { chromium } = await import('playwright-core')
  context = await chromium.launchPersistentContext(path.join(scratch, 'profile'), {
    executablePath: wrapper,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Host candidates as addresses, not mDNS names that need multicast.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      // A camera that needs no device and no prompt.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required'
    ]
  })
})

after(async () => {
  await context?.close().catch(() => {})
  await turnServer?.stop()
  await pageServer?.stop()
  await channelServer?.stop()
  if (scratch) rmSync(scratch, { recursive: true, force: true })
  if (haveChromium) await ip('netns', 'delete', netns).catch(() => {})
})

/** openPage opens a page of the demo in room with the query's options; its id is its peer id. */
async function openPage (room, query = '', base = pageBase) {
  const page = await context.newPage()
  const errors = []
  page.on('pageerror', (e) => errors.push(e.message))
  page.errors = errors
  page.logs = []
  page.on('console', (m) => page.logs.push(m.text()))
  await page.goto(`${base}room=${room}${query}`)
  try {
    await page.locator('#self').filter({ hasText: /./ }).waitFor({ timeout: 30_000 })
  } catch {
    throw new Error(`the page did not connect within 30 s: ${await describe(page)}`)
  }
  page.id = await page.locator('#self').textContent()
  return page
}

/** describe is a page's state, for failure messages. */
async function describe (p) {
  return `console:\n${p.logs.join('\n')}\nstatus "${await p.locator('#status').textContent()}", error "${await p.locator('#error').textContent()}", peers ${JSON.stringify(await p.locator('#peers li').allTextContents())}, page errors ${JSON.stringify(p.errors)}`
}

/** expectPath waits until page shows path for the peer id. */
async function expectPath (page, id, path, timeout, other) {
  try {
    await page.locator(`#peers li[data-peer="${id}"] .path[data-path="${path}"]`).waitFor({ timeout })
  } catch (e) {
    const more = other ? `; the other page: ${await describe(other)}` : ''
    throw new Error(`path to ${id} is not "${path}" within ${timeout} ms: ${await describe(page)}${more}`)
  }
}

/** say sends text from page and waits for it in its log. */
async function say (page, text) {
  await page.locator('#text').fill(text)
  await page.locator('#send').click()
}

/** heard waits until page logs text from the peer id over path. */
async function heard (page, id, path, text, timeout = 10_000) {
  const got = page.locator(`#log li[data-from="peer"][data-peer="${id}"][data-path="${path}"] .text`, { hasText: text })
  await got.first().waitFor({ timeout })
  assert.equal(await got.first().textContent(), text)
}

/** exchange sends a message from each page and waits for it on the other. */
async function exchange (a, b, path) {
  for (const [from, to, text] of [[a, b, `hello from a via ${path}`], [b, a, `hello from b via ${path}`]]) {
    await say(from, text)
    await heard(to, from.id, path, text)
    await from.locator(`#log li[data-from="me"][data-peer="${to.id}"][data-path="${path}"] .text`, { hasText: text }).waitFor({ timeout: 1000 })
  }
}

/** goPeer starts the Go peer in the namespace, in room, and waits until it has joined. */
async function goPeer (t, room, args = [], url = channelServer.url) {
  const go = await startGoPeer(['-url', url, '-room', room, '-v', ...args], { prefix: nsPrefix })
  t.after(() => go.stop())
  go.id = (await go.waitEvent((e) => e.event === 'joined', 60_000, 'joined')).id
  return go
}

const browser = { skip: !haveChromium && 'Chromium is missing', timeout: 90_000 }

test('Chromium to Chromium: a direct data channel both ways', browser, async () => {
  const room = unique('room')
  const a = await openPage(room, '&name=a')
  const b = await openPage(room, '&name=b')
  const t0 = Date.now()
  await expectPath(a, b.id, 'direct', 20_000, b)
  await expectPath(b, a.id, 'direct', 20_000, a)
  console.log(`# demo: direct data channel ready ${Date.now() - t0} ms after the second page loaded`)
  await exchange(a, b, 'direct')
  await a.screenshot({ path: path.join(results, 'demo-direct-a.png') })
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  // b sees a leave.
  await b.locator(`#peers li[data-peer="${a.id}"]`).waitFor({ state: 'detached', timeout: 10_000 })
  await b.close()
})

test('Chromium to Chromium: with ICE made to fail, the data goes through the relay', browser, async () => {
  const room = unique('room')
  const a = await openPage(room, '&force=relay&timeout=1500')
  const b = await openPage(room, '&force=relay&timeout=1500')
  await expectPath(a, b.id, 'relay', 20_000, b)
  await expectPath(b, a.id, 'relay', 20_000, a)
  await exchange(a, b, 'relay')
  assert.equal(await a.locator('#log li[data-path="direct"]').count(), 0)
  await b.screenshot({ path: path.join(results, 'demo-relay-b.png') })
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  await b.close()
})

test('Chromium to Chromium: the fake camera of one page plays on the other', browser, async () => {
  const room = unique('room')
  const a = await openPage(room, '&media=1')
  const b = await openPage(room)
  await expectPath(b, a.id, 'direct', 20_000, a)
  try {
    await b.locator(`#peers li[data-peer="${a.id}"] video[data-playing="1"]`).waitFor({ timeout: 20_000 })
  } catch {
    throw new Error(`a's camera does not play on b: ${await describe(b)}; a: ${await describe(a)}`)
  }
  const size = await b.locator(`#peers li[data-peer="${a.id}"] video`).evaluate((v) => [v.videoWidth, v.videoHeight])
  assert.ok(size[0] > 0 && size[1] > 0, `video of ${size}`)
  await b.screenshot({ path: path.join(results, 'demo-media-b.png') })
  // The data channel carries on beside the media.
  await exchange(a, b, 'direct')
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  await b.close()
})

test('Go to Chromium: a direct data channel both ways', browser, async (t) => {
  const room = unique('room')
  const go = await goPeer(t, room)
  const page = await openPage(room, '&name=page')
  await go.waitEvent((e) => e.event === 'connected' && e.peer === page.id && e.path === 'direct', 20_000, 'connected directly')
  await expectPath(page, go.id, 'direct', 20_000)
  // Go to Chromium: its greeting; Chromium to Go and back: the echo.
  await heard(page, go.id, 'direct', 'hello from go')
  await say(page, 'hello from chromium')
  await go.waitEvent((e) => e.event === 'data' && e.from === page.id && e.text === 'hello from chromium' && e.path === 'direct', 10_000, 'the page\'s line')
  const echoed = page.locator(`#log li[data-from="peer"][data-peer="${go.id}"] .text`, { hasText: 'hello from chromium' })
  await echoed.waitFor({ timeout: 10_000 })
  assert.deepEqual(page.errors, [])
  await page.close()
  await go.waitEvent((e) => e.event === 'left' && e.id === page.id, 10_000, 'the page leaving')
})

test('Go to Chromium: with ICE made to fail, the data goes through the relay', browser, async (t) => {
  const room = unique('room')
  const go = await goPeer(t, room, ['-direct-timeout', '1500ms'])
  const page = await openPage(room, '&force=relay&timeout=1500')
  await expectPath(page, go.id, 'relay', 20_000)
  await go.waitEvent((e) => e.event === 'connected' && e.peer === page.id && e.path === 'relay', 20_000, 'connected over the relay')
  await heard(page, go.id, 'relay', 'hello from go')
  await say(page, 'over the relay')
  await go.waitEvent((e) => e.event === 'data' && e.from === page.id && e.text === 'over the relay' && e.path === 'relay', 10_000, 'the page\'s line')
  await heard(page, go.id, 'relay', 'over the relay')
  assert.deepEqual(page.errors, [])
  await page.close()
})

test('Go to Chromium: the Go peer receives the fake camera of the page', browser, async (t) => {
  const room = unique('room')
  const go = await goPeer(t, room)
  const page = await openPage(room, '&media=1')
  await expectPath(page, go.id, 'direct', 20_000)
  const ev = await go.waitEvent((e) => e.event === 'track' && e.peer === page.id, 20_000, 'a track')
  assert.equal(ev.kind, 'video')
  assert.ok(ev.packets >= 50)
  assert.deepEqual(page.errors, [])
  await page.close()
})

test('Go to Chromium: the direct path cut, the connection heals over the relay and loses nothing', browser, async (t) => {
  const room = unique('room')
  const go = await goPeer(t, room, ['-direct-timeout', '1500ms'])
  const page = await openPage(room, '&timeout=1500')
  await expectPath(page, go.id, 'direct', 20_000)
  await heard(page, go.id, 'direct', 'hello from go')
  // The address of both ICE candidates goes away; the server's, 127.0.0.1,
  // stays.
  await ip('netns', 'exec', netns, 'ip', 'addr', 'del', '198.51.100.1/24', 'dev', 'sc0')
  t.after(async () => {
    await ip('netns', 'exec', netns, 'ip', 'addr', 'add', '198.51.100.1/24', 'dev', 'sc0').catch(() => {})
    await ip('netns', 'exec', netns, 'ip', 'route', 'replace', 'default', 'via', '198.51.100.2', 'dev', 'sc0').catch(() => {})
  })
  // Written while the path is down: kept, and sent again on the next.
  await say(page, 'during the cut')
  await expectPath(page, go.id, 'relay', 60_000)
  await go.waitEvent((e) => e.event === 'path' && e.peer === page.id && e.path === 'relay', 20_000, 'the relay')
  await go.waitEvent((e) => e.event === 'data' && e.from === page.id && e.text === 'during the cut', 20_000, 'the line written during the cut')
  await heard(page, go.id, 'relay', 'during the cut')
  await say(page, 'after the cut')
  await go.waitEvent((e) => e.event === 'data' && e.from === page.id && e.text === 'after the cut' && e.path === 'relay', 10_000, 'the line after the cut')
  await heard(page, go.id, 'relay', 'after the cut')
  // Each line reached the Go peer once.
  const lines = go.events.filter((e) => e.event === 'data' && e.from === page.id).map((e) => e.text)
  assert.deepEqual(lines, ['during the cut', 'after the cut'])
  assert.deepEqual(page.errors, [])
  await page.close()
})


/** withTURN starts, once, a server with the embedded TURN server on the namespace's veth address, and returns its page base. */
async function withTURN () {
  if (!turnServer) {
    const secret = path.join(scratch, 'turn-secret')
    writeFileSync(secret, 'turn-secret-of-the-browser-tests-0123456789')
    turnServer = await startServer(['-demo', '-turn-secret-file', secret, '-turn-listen-udp', '198.51.100.1:0', '-turn-listen-tcp', '198.51.100.1:0'], { prefix: nsPrefix })
  }
  return `${turnServer.httpURL}/demo/?`
}

test('Chromium to Chromium through the embedded TURN server: data both ways and the camera', browser, async () => {
  const base = await withTURN()
  const room = unique('room')
  const a = await openPage(room, '&ice=turn&media=1', base)
  const b = await openPage(room, '&ice=turn', base)
  await expectPath(a, b.id, 'turn', 20_000, b)
  await expectPath(b, a.id, 'turn', 20_000, a)
  await exchange(a, b, 'turn')
  try {
    await b.locator(`#peers li[data-peer="${a.id}"] video[data-playing="1"]`).waitFor({ timeout: 20_000 })
  } catch {
    throw new Error(`a's camera does not play on b through TURN: ${await describe(b)}; a: ${await describe(a)}`)
  }
  const m = await metricsOf(b)
  assert.ok(m.allocations >= 2 && m.bytes > 0, JSON.stringify(m))
  await b.screenshot({ path: path.join(results, 'demo-turn-b.png') })
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  await b.close()
})

test('Go to Chromium through the embedded TURN server: data both ways and the camera', browser, async (t) => {
  const base = await withTURN()
  const room = unique('room')
  const go = await goPeer(t, room, ['-turn-only'], turnServer.url)
  const page = await openPage(room, '&ice=turn&media=1', base)
  await expectPath(page, go.id, 'turn', 20_000)
  await go.waitEvent((e) => e.event === 'connected' && e.peer === page.id && e.path === 'turn', 20_000, 'connected through TURN')
  await heard(page, go.id, 'turn', 'hello from go')
  await say(page, 'through turn')
  await go.waitEvent((e) => e.event === 'data' && e.from === page.id && e.text === 'through turn' && e.path === 'turn', 10_000, 'the page\'s line')
  await heard(page, go.id, 'turn', 'through turn')
  const ev = await go.waitEvent((e) => e.event === 'track' && e.peer === page.id, 20_000, 'the camera')
  assert.equal(ev.kind, 'video')
  assert.deepEqual(page.errors, [])
  await page.close()
})

/** metricsOf reads the embedded TURN server's counters from the /metrics of page's server (in the namespace, as the page is). */
async function metricsOf (page) {
  const text = await page.evaluate(() => fetch('/metrics').then((r) => r.text()))
  const value = (name) => Number((new RegExp(`^${name} (\\S+)$`, 'm').exec(text) ?? [])[1] ?? NaN)
  return { allocations: value('signalchannel_turn_allocations_total'), bytes: value('signalchannel_turn_bytes_relayed_total') }
}
