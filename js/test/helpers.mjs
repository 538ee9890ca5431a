// Test helpers: build and run the real Go server on 127.0.0.1, poll with
// deadlines.

import { spawn, execFile } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdtempSync, existsSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

/** repoRoot is the Go module's root, two levels above this file. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

let built = null

/**
 * goBuild builds the Go package pkg (relative to the repo root) into a
 * fresh temporary directory and returns the binary's path.
 */
export async function goBuild (pkg, name) {
  const dir = mkdtempSync(path.join(tmpdir(), 'signalchannel-js-'))
  const out = path.join(dir, name)
  try {
    await execFileP('go', ['build', '-o', out, pkg], { cwd: repoRoot, timeout: 300_000, maxBuffer: 16 << 20 })
  } catch (e) {
    throw new Error(`go build ${pkg} failed:\n${e.stderr || e.message}`)
  }
  return out
}

/**
 * serverBinary returns the server binary: SIGNALCHANNEL_BIN when the test
 * runner built it, or one built here once per process.
 */
export async function serverBinary () {
  const env = process.env.SIGNALCHANNEL_BIN
  if (env && existsSync(env)) return env
  if (!built) built = goBuild('./cmd/signalchannel', 'signalchannel')
  return built
}

/**
 * startServer runs `signalchannel serve -addr 127.0.0.1:0 -log-format json
 * ...args` and resolves once it logs "listening". stop() ends it.
 * options.bin replaces the server binary, options.argv its arguments
 * (without -addr), and options.prefix is a command that runs it (such as
 * ip netns exec NAME).
 * @param {string[]} [args]
 * @param {{bin?: string, argv?: string[], prefix?: string[]}} [options]
 */
export async function startServer (args = [], options = {}) {
  const bin = options.bin ?? await serverBinary()
  const argv = [...(options.argv ?? ['serve', '-log-format', 'json']), '-addr', '127.0.0.1:0', ...args]
  const prefix = options.prefix ?? []
  const cmd = prefix.length > 0 ? prefix[0] : bin
  const cmdArgs = prefix.length > 0 ? [...prefix.slice(1), bin, ...argv] : argv
  const proc = spawn(cmd, cmdArgs, {
    stdio: ['ignore', 'ignore', 'pipe']
  })
  const logs = []
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })))
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`server did not log "listening" within 20 s:\n${logs.join('\n')}`))
    }, 20_000)
    const rl = createInterface({ input: proc.stderr })
    rl.on('line', (line) => {
      logs.push(line)
      if (logs.length > 2000) logs.shift()
      let rec
      try {
        rec = JSON.parse(line)
      } catch {
        return
      }
      if (rec.msg === 'listening' && typeof rec.addr === 'string') {
        clearTimeout(timer)
        resolve(rec.addr)
      }
    })
    exited.then(({ code, sig }) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code ?? sig}) before listening:\n${logs.join('\n')}`))
    })
  })
  let stopping = null
  return {
    addr,
    url: `ws://${addr}/v1/channel`,
    httpURL: `http://${addr}`,
    logs,
    proc,
    /** stop ends the server: SIGTERM, then SIGKILL after 5 s. */
    stop () {
      if (stopping) return stopping
      if (proc.exitCode !== null || proc.signalCode !== null) return (stopping = exited)
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
      stopping = exited.finally(() => clearTimeout(timer))
      return stopping
    }
  }
}

/**
 * waitFor polls cond (sync or async) every interval ms until it returns a
 * truthy value, which it resolves with, or rejects after timeout ms with
 * the last error or message.
 */
export async function waitFor (cond, { timeout = 5000, interval = 5, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
    } catch (e) {
      last = e
    }
    if (Date.now() >= deadline) {
      throw new Error(`${message} not met within ${timeout} ms${last ? ': ' + (last.message ?? last) : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}

/** within rejects if p does not settle within ms. */
export function within (p, ms, what = 'operation') {
  let timer
  return Promise.race([
    p,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

/** unique returns a name no other test uses. */
let seq = 0
export function unique (prefix) {
  return `${prefix}-${process.pid}-${++seq}-${Date.now().toString(36)}`
}

/** pseudoRandom returns a deterministic generator of integers in [0, n). */
export function pseudoRandom (seed = 1) {
  let x = seed >>> 0 || 1
  return (n) => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x % n
  }
}

/** pattern returns n bytes of a pattern that depends on seed and position. */
export function pattern (n, seed = 0) {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >>> 11)) & 0xff
  return b
}

/** expectCode asserts that p rejects with a SignalChannelError of code. */
export async function expectCode (p, code) {
  try {
    await p
  } catch (e) {
    if (e?.name === 'SignalChannelError' && e.code === code && typeof e.message === 'string' && e.message.length > 0) return e
    throw new Error(`want SignalChannelError ${code}, got ${e?.name} ${e?.code}: ${e?.message}`)
  }
  throw new Error(`want SignalChannelError ${code}, got success`)
}

/** caught resolves with what p rejects with (handled at once), or with an Error when p resolves. */
export function caught (p) {
  return p.then(() => new Error('resolved'), (e) => e)
}

/**
 * hs256Secret writes a shared secret for `serve -auth-secret-file` and
 * mints tokens for it (PROTOCOL.md section 7): mint(claims) signs claims,
 * token({sub, allow, ttl, ...claims}) signs a token that expires ttl
 * seconds from now (negative: already expired), with any other claims
 * (meta, own) as given. remove() deletes the file.
 */
export function hs256Secret (secret = 'js-test-secret-'.repeat(4)) {
  const dir = mkdtempSync(path.join(tmpdir(), 'signalchannel-auth-'))
  const file = path.join(dir, 'secret')
  writeFileSync(file, secret)
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const mint = (claims, key = secret) => {
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`
    return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`
  }
  const token = ({ sub = 'js', allow = ['*:*'], ttl = 3600, ...claims } = {}) =>
    mint({ sub, allow, exp: Math.floor(Date.now() / 1000) + ttl, ...claims })
  return { file, secret, mint, token, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** serverFor starts a server (startServer's arguments) that stops after test t. */
export async function serverFor (t, args, options) {
  const srv = await startServer(args, options)
  t.after(() => srv.stop())
  return srv
}

/**
 * tokenServerFor starts a server for test t that requires tokens signed with
 * a new HS256 secret and ends them at their exp (-auth-leeway 0s). It
 * resolves with the server and the secret (hs256Secret).
 */
export async function tokenServerFor (t, args = []) {
  const secret = hs256Secret()
  t.after(() => secret.remove())
  const srv = await serverFor(t, ['-auth-secret-file', secret.file, '-auth-leeway', '0s', ...args])
  return { srv, secret }
}

/** closeAfter closes a channel or client (connect, reconnect) after test t, and returns it. */
export function closeAfter (t, c) {
  t.after(() => c.close())
  return c
}

/**
 * metric returns a sample from the server's /metrics, named with its labels
 * as the server writes them (`signalchannel_session_closes_total{code="4401"}`),
 * or 0 when the server has none yet.
 */
export async function metric (srv, sample) {
  const text = await (await fetch(`${srv.httpURL}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(sample + ' '))
  return line ? Number(line.slice(sample.length + 1)) : 0
}

/** sleep resolves after ms. */
export function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const helpCache = new Map()

/**
 * serverFlags returns the names of the flags `signalchannel serve` takes,
 * read from its -h output.
 */
export async function serverFlags (bin) {
  bin = bin ?? await serverBinary()
  if (!helpCache.has(bin)) {
    helpCache.set(bin, new Promise((resolve) => {
      execFile(bin, ['serve', '-h'], { timeout: 10_000 }, (err, stdout, stderr) => {
        const text = `${stdout}\n${stderr}`
        if (err && !text.includes('-addr')) return resolve(new Set())
        resolve(new Set([...text.matchAll(/^\s+-([a-z0-9-]+)/gm)].map((m) => m[1])))
      })
    }))
  }
  return helpCache.get(bin)
}

/** relayTimeoutFlag returns the server's flag for the relay pairing timeout, or null. */
export async function relayTimeoutFlag (bin) {
  const flags = await serverFlags(bin)
  if (flags.has('relay-pair-timeout')) return 'relay-pair-timeout'
  for (const f of flags) if (/^relay-pair.*timeout$/.test(f)) return f
  return null
}

let peerBuilt = null

/**
 * startGoPeer runs the Go peer example (examples/peer) with args and
 * collects the events it prints, one JSON object a line. waitEvent(pred)
 * resolves with the first event (past or future) that pred accepts.
 * options.prefix is a command that runs it (such as ip netns exec NAME).
 * @param {string[]} args
 * @param {{prefix?: string[]}} [options]
 */
export async function startGoPeer (args, options = {}) {
  if (!peerBuilt) peerBuilt = goBuild('./examples/peer', 'peer')
  const bin = await peerBuilt
  const prefix = options.prefix ?? []
  const cmd = prefix.length > 0 ? prefix[0] : bin
  const cmdArgs = prefix.length > 0 ? [...prefix.slice(1), bin, ...args] : args
  const proc = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] })
  const events = []
  const stderr = []
  let waiters = []
  createInterface({ input: proc.stdout }).on('line', (line) => {
    try {
      events.push(JSON.parse(line))
    } catch {
      return
    }
    const w = waiters
    waiters = []
    for (const f of w) f()
  })
  createInterface({ input: proc.stderr }).on('line', (line) => stderr.push(line))
  const exited = new Promise((resolve) => proc.once('exit', (code, sig) => resolve({ code, sig })))
  return {
    events,
    /** waitEvent resolves with the first event pred accepts, or rejects after timeout ms with what was seen. */
    async waitEvent (pred, timeout = 20_000, what = 'event') {
      const deadline = Date.now() + timeout
      for (;;) {
        const ev = events.find(pred)
        if (ev) return ev
        const left = deadline - Date.now()
        if (left <= 0 || proc.exitCode !== null) {
          throw new Error(`the Go peer printed no ${what} within ${timeout} ms; it printed:\n${events.map((e) => JSON.stringify(e)).join('\n')}\n${stderr.join('\n')}`)
        }
        await new Promise((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 500))
          waiters.push(() => { clearTimeout(t); resolve() })
        })
      }
    },
    /** stop ends the peer: SIGINT, then SIGKILL after 5 s. */
    async stop () {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGINT')
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
        await exited.finally(() => clearTimeout(t))
      }
    }
  }
}
