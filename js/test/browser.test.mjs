// The WebRTC demo in Chromium, driven by playwright-core: two pages of the
// demo served by the real server meet by presence and exchange messages,
// (a) over a direct data channel and (b) through the relay when ICE is made
// to fail.
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
import { startServer, serverBinary, serverFlags, goBuild, unique, relayTimeoutFlag } from './helpers.mjs'

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
      '--disable-features=WebRtcHideLocalIpsWithMdns'
    ]
  })
})

after(async () => {
  await context?.close().catch(() => {})
  await pageServer?.stop()
  await channelServer?.stop()
  if (scratch) rmSync(scratch, { recursive: true, force: true })
  if (haveChromium) await ip('netns', 'delete', netns).catch(() => {})
})

/** openPair opens two pages of the demo in one room. */
async function openPair (query) {
  const room = unique('room')
  const pages = []
  for (let i = 0; i < 2; i++) {
    const page = await context.newPage()
    const errors = []
    page.on('pageerror', (e) => errors.push(e.message))
    page.errors = errors
    await page.goto(`${pageBase}room=${room}${query}`)
    pages.push(page)
  }
  return pages
}

async function expectPath (page, path, timeout, other) {
  try {
    await page.locator(`#path[data-path="${path}"]`).waitFor({ timeout })
  } catch (e) {
    // Both pages' state: a page waiting for its peer is often the other
    // page's story.
    const describe = async (p) => `status "${await p.locator('#status').textContent()}", error "${await p.locator('#error').textContent()}", page errors ${JSON.stringify(p.errors)}`
    throw new Error(`path is not "${path}" within ${timeout} ms: ${await describe(page)}; the other page: ${await describe(other)}`)
  }
}

/** exchange sends a message from each page and waits for it on the other. */
async function exchange (a, b, path) {
  for (const [from, to, text] of [[a, b, `hello from a via ${path}`], [b, a, `hello from b via ${path}`]]) {
    await from.locator('#text').fill(text)
    await from.locator('#send').click()
    const got = to.locator(`#log li[data-from="peer"][data-path="${path}"] .text`, { hasText: text })
    await got.waitFor({ timeout: 10_000 })
    assert.equal(await got.textContent(), text)
    await from.locator(`#log li[data-from="me"][data-path="${path}"] .text`, { hasText: text }).waitFor({ timeout: 1000 })
  }
}

test('demo: two pages talk over a direct WebRTC data channel', { skip: !haveChromium && 'Chromium is missing', timeout: 60_000 }, async () => {
  const [a, b] = await openPair('')
  const t0 = Date.now()
  await expectPath(a, 'direct', 15_000, b)
  await expectPath(b, 'direct', 15_000, a)
  console.log(`# demo: direct data channel open ${Date.now() - t0} ms after both pages loaded`)
  await exchange(a, b, 'direct')
  assert.match(await a.locator('#status').textContent(), /directly/)
  await a.screenshot({ path: path.join(results, 'demo-direct-a.png') })
  await b.screenshot({ path: path.join(results, 'demo-direct-b.png') })
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  await b.close()
})

test('demo: with ICE made to fail, the messages go through the relay', { skip: !haveChromium && 'Chromium is missing', timeout: 60_000 }, async () => {
  const [a, b] = await openPair('&force=relay&timeout=1500')
  await expectPath(a, 'relay', 15_000, b)
  await expectPath(b, 'relay', 15_000, a)
  await exchange(a, b, 'relay')
  assert.match(await b.locator('#status').textContent(), /relay/)
  assert.equal(await a.locator('#log li[data-path="direct"]').count(), 0)
  await a.screenshot({ path: path.join(results, 'demo-relay-a.png') })
  await b.screenshot({ path: path.join(results, 'demo-relay-b.png') })
  assert.deepEqual([...a.errors, ...b.errors], [])
  await a.close()
  await b.close()
})
