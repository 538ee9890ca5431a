import { SignalChannelError } from './errors.js'
import { Emitter } from './emitter.js'

/** Protocol defaults of the scuttlebutt endpoint (key and value limits, line limit). */
export const MAX_KEY_BYTES = 256
export const MAX_VALUE_BYTES = 8192
export const MAX_LINE_BYTES = 16384

const encoder = new TextEncoder()
const byteLength = (s) => encoder.encode(s).length

/** createId returns a random replica id: 32 upper-case hex digits. */
export function createId () {
  const b = new Uint8Array(16)
  globalThis.crypto.getRandomValues(b)
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('').toUpperCase()
}

/**
 * isUpdate reports whether u has the shape of an update:
 * [[key, value], ts, source] or [[key, value], ts, source, signature].
 */
export function isUpdate (u) {
  return Array.isArray(u) && (u.length === 3 || u.length === 4) &&
    Array.isArray(u[0]) && u[0].length === 2 && typeof u[0][0] === 'string' &&
    typeof u[1] === 'number' && Number.isFinite(u[1]) &&
    typeof u[2] === 'string'
}

/**
 * isNewer reports whether update is newer than clock's entry for its
 * source (scuttlebutt's filter): what a peer with that clock lacks.
 */
export function isNewer (update, clock) {
  const seen = clock[update[2]]
  return seen === undefined || seen < update[1]
}

/** sortHistory sorts updates by timestamp, then source. */
export function sortHistory (h) {
  return h.sort((a, b) => a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0))
}

/** wins reports whether update u beats v as the value of their key. */
function wins (u, v) {
  return u[1] > v[1] || (u[1] === v[1] && u[2] > v[2])
}

/**
 * Model is a scuttlebutt Model (the npm package scuttlebutt 5.x) with the
 * rules of the signalchannel server: a value of null deletes the key; on
 * equal timestamps the greater source wins; local timestamps strictly
 * increase; records older than maxAge (when set) are hidden.
 *
 * Events: `update` ([key, value], ts, source), `change` (key, value),
 * `change:<key>` (value), `sync` (once a replication stream has received the
 * server's history), `error` (SignalChannelError: a replication stream
 * failed after its history arrived, with the code of the server's error
 * object (`limit`, `bad_line`), `reset` when the server dropped it as too
 * slow, or `closed` when the session ended; a failure before is the
 * rejection of Channel.model instead), `close` (a replication stream
 * ended).
 */
export class Model extends Emitter {
  /**
   * @param {{id?: string, maxAge?: number, maxKeyBytes?: number, maxValueBytes?: number}} [options]
   */
  constructor (options = {}) {
    super()
    /** id is the replica id, the source of local updates. */
    this.id = options.id ?? createId()
    /** maxAge, in ms: records this old are hidden. undefined: no expiry. */
    this.maxAge = options.maxAge
    this.maxKeyBytes = options.maxKeyBytes ?? MAX_KEY_BYTES
    this.maxValueBytes = options.maxValueBytes ?? MAX_VALUE_BYTES
    /** @type {Map<string, any[]>} the current update of each key, deletions included */
    this.store = new Map()
    /** sources is the clock: the greatest timestamp seen from each source. */
    this.sources = Object.create(null)
    this.lastLocal = 0
    /** @type {Set<Replication>} */
    this.replications = new Set()
  }

  /**
   * set writes value under key as a local update and returns the model.
   * null or undefined deletes the key. The value must be JSON; it is stored
   * as JSON.parse(JSON.stringify(value)). Throws a `limit` error for a key
   * or value over the limits (256 bytes, 8 KiB of JSON by default).
   * @param {string} key
   * @param {any} value
   */
  set (key, value) {
    if (typeof key !== 'string') throw new TypeError('model key must be a string')
    if (byteLength(key) > this.maxKeyBytes) throw new SignalChannelError('limit', `key longer than ${this.maxKeyBytes} bytes`)
    let v = null
    if (value !== undefined && value !== null) {
      const json = JSON.stringify(value)
      if (json === undefined) throw new TypeError('model value must be JSON')
      if (byteLength(json) > this.maxValueBytes) throw new SignalChannelError('limit', `value larger than ${this.maxValueBytes} bytes`)
      v = JSON.parse(json)
    }
    const cur = this.store.get(key)
    let ts = Date.now()
    const last = Math.max(this.lastLocal, this.sources[this.id] ?? 0, cur ? cur[1] : 0)
    if (ts <= last) {
      ts = last + 0.001
      if (ts <= last) ts = last + 1
    }
    this.lastLocal = ts
    this.commit([[key, v], ts, this.id], null)
    return this
  }

  /** delete deletes key (an update with value null) and returns the model. */
  delete (key) {
    return this.set(key, null)
  }

  /**
   * get returns the value of key, or undefined when it is absent, deleted or
   * expired.
   * @param {string} key
   */
  get (key) {
    const u = this.live(key)
    return u ? u[0][1] : undefined
  }

  /** has reports whether key has a value. */
  has (key) {
    return this.live(key) !== null
  }

  live (key) {
    const u = this.store.get(key)
    if (!u || u[0][1] === null || this.expired(u, Date.now())) return null
    return u
  }

  expired (u, now) {
    return this.maxAge !== undefined && u[1] <= now - this.maxAge
  }

  /** keys returns the keys that have a value. */
  keys () {
    const now = Date.now()
    const out = []
    for (const [k, u] of this.store) if (u[0][1] !== null && !this.expired(u, now)) out.push(k)
    return out
  }

  /** forEach calls fn(value, key) for each key that has a value. */
  forEach (fn) {
    for (const k of this.keys()) fn(this.store.get(k)[0][1], k)
    return this
  }

  /** toJSON returns the keys that have a value, as an object. */
  toJSON () {
    return Object.fromEntries(this.keys().map((k) => [k, this.store.get(k)[0][1]]))
  }

  /**
   * history returns every update (deletions included, expired ones not)
   * newer than clock's entry for its source, sorted by (ts, source).
   * @param {Record<string, number>} [clock]
   */
  history (clock = {}) {
    const now = Date.now()
    const h = []
    for (const u of this.store.values()) if (!this.expired(u, now) && isNewer(u, clock)) h.push(u)
    return sortHistory(h)
  }

  /**
   * applyUpdate applies a remote update and reports whether it became the
   * current value of its key. An update not newer than the clock's entry for
   * its source, or already expired, is ignored; one that is newer but loses
   * to the key's current value advances the clock only.
   * @param {any[]} update
   * @param {Replication | null} [origin]
   */
  applyUpdate (update, origin = null) {
    if (!isUpdate(update)) return false
    const ts = update[1]
    const source = update[2]
    const latest = this.sources[source]
    if (latest !== undefined && latest >= ts) return false
    if (this.expired(update, Date.now())) return false
    this.sources[source] = ts
    const cur = this.store.get(update[0][0])
    if (cur && !wins(update, cur)) return false
    if (source === this.id) this.lastLocal = Math.max(this.lastLocal, ts)
    this.commit(update, origin)
    return true
  }

  commit (update, origin) {
    const [[key, value], ts, source] = update
    this.sources[source] = Math.max(this.sources[source] ?? ts, ts)
    this.store.set(key, update)
    for (const r of this.replications) r.onUpdate(update, origin)
    this.emit('update', ...update)
    this.emit('change', key, value)
    this.emit('change:' + key, value)
  }

  /**
   * close ends every replication stream of the model gracefully (FIN). With
   * an ephemeral stream the server then deletes this replica's keys.
   */
  async close () {
    await Promise.all([...this.replications].map((r) => r.stop(false)))
  }
}

/**
 * digestLine returns the digest {"id":..,"clock":{..}} as a line of at most
 * max bytes: when the clock does not fit, the own entry and the newest
 * others are kept (any subset of a clock is a correct digest; the peer then
 * sends again what the missing entries would have spared).
 */
export function digestLine (model, max = MAX_LINE_BYTES) {
  const line = JSON.stringify({ id: model.id, clock: model.sources }) + '\n'
  if (byteLength(line) <= max) return line
  const entries = Object.entries(model.sources).sort((a, b) => {
    if ((a[0] === model.id) !== (b[0] === model.id)) return a[0] === model.id ? -1 : 1
    return b[1] - a[1]
  })
  const clock = {}
  let size = byteLength(JSON.stringify({ id: model.id, clock: {} })) + 1
  for (const [src, ts] of entries) {
    const n = byteLength(JSON.stringify(src)) + 2 + String(ts).length
    if (size + n > max) break
    size += n
    clock[src] = ts
  }
  return JSON.stringify({ id: model.id, clock }) + '\n'
}

const MAX_READ_LINE = 1024 * 1024

/**
 * Replication runs the scuttlebutt stream protocol between a Model and a
 * stream: digest first, then on the peer's digest the history it lacks and
 * "SYNC", then live updates both ways.
 */
export class Replication {
  /**
   * @param {Model} model
   * @param {import('./yamux.js').Stream} stream
   * @param {import('./bytes.js').ByteReader} reader
   */
  constructor (model, stream, reader) {
    this.model = model
    this.stream = stream
    this.reader = reader
    /** The peer's clock, as far as this side knows. */
    this.peer = Object.create(null)
    this.gotDigest = false
    this.isSynced = false
    this.stopped = false
    /** @type {SignalChannelError | null} */
    this.error = null
    this.syncWaiters = []
    this.decoder = new TextDecoder()
  }

  start () {
    this.model.replications.add(this)
    this.send(digestLine(this.model))
    this.done = this.readLoop()
  }

  send (line) {
    if (this.stopped) return
    this.stream.write(line).catch((e) => this.fail(e))
  }

  /** onUpdate sends a live update the peer lacks. */
  onUpdate (update, origin) {
    if (this.stopped || !isNewer(update, this.peer)) return
    this.peer[update[2]] = update[1]
    if (origin === this) return
    this.send(JSON.stringify(update) + '\n')
  }

  async readLoop () {
    try {
      for (;;) {
        let bytes
        try {
          bytes = await this.reader.readLine(MAX_READ_LINE)
        } catch (e) {
          if (e instanceof SignalChannelError) throw e
          throw new SignalChannelError('bad_line', e.message)
        }
        if (bytes === null) break
        if (this.stopped) continue
        let msg
        try {
          msg = JSON.parse(this.decoder.decode(bytes))
        } catch {
          throw new SignalChannelError('bad_line', 'the server sent a line that is not JSON')
        }
        this.handle(msg)
      }
      this.end(null)
    } catch (e) {
      this.fail(e)
    }
  }

  handle (msg) {
    if (Array.isArray(msg)) {
      if (!isUpdate(msg)) return
      this.model.applyUpdate(msg, this)
      if (isNewer(msg, this.peer)) this.peer[msg[2]] = msg[1]
      return
    }
    if (msg === 'SYNC') {
      this.isSynced = true
      const waiters = this.syncWaiters
      this.syncWaiters = []
      for (const w of waiters) w.resolve()
      this.model.emit('sync')
      return
    }
    if (msg && typeof msg === 'object') {
      if (msg.error && typeof msg.error === 'object') {
        throw new SignalChannelError(String(msg.error.code ?? 'internal'), String(msg.error.message ?? msg.error.code ?? 'error'))
      }
      if (msg.clock && typeof msg.clock === 'object' && !this.gotDigest) {
        this.gotDigest = true
        for (const [src, ts] of Object.entries(msg.clock)) {
          if (typeof ts === 'number' && (this.peer[src] === undefined || this.peer[src] < ts)) this.peer[src] = ts
        }
        const lines = []
        for (const u of this.model.history(this.peer)) {
          this.peer[u[2]] = Math.max(this.peer[u[2]] ?? u[1], u[1])
          lines.push(JSON.stringify(u) + '\n')
        }
        lines.push('"SYNC"\n')
        this.send(lines.join(''))
      }
    }
  }

  /**
   * synced resolves once the peer's "SYNC" has arrived, and rejects if the
   * stream ends first or signal aborts.
   * @param {AbortSignal} [signal]
   */
  synced (signal) {
    if (this.isSynced) return Promise.resolve()
    if (this.error) return Promise.reject(this.error)
    if (this.stopped) return Promise.reject(new SignalChannelError('closed', 'replication ended before the server sent its history'))
    return new Promise((resolve, reject) => {
      const w = { resolve, reject }
      this.syncWaiters.push(w)
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
    })
  }

  fail (e) {
    if (this.closeEmitted) return
    if (this.stopped) {
      // Stopped locally: the stream's end is expected.
      this.end(null)
      return
    }
    const err = e instanceof SignalChannelError ? e : new SignalChannelError('closed', String(e?.message ?? e))
    this.error = err
    this.stream.reset()
    // Before the history has arrived the failure is synced()'s rejection
    // (Channel.model rejects with it); after, the model reports it.
    if (this.isSynced) this.model.emit('error', err)
    this.end(err)
  }

  end (err) {
    this.stopped = true
    this.model.replications.delete(this)
    const waiters = this.syncWaiters
    this.syncWaiters = []
    for (const w of waiters) w.reject(err ?? new SignalChannelError('closed', 'replication ended before the server sent its history'))
    if (!this.closeEmitted) {
      this.closeEmitted = true
      this.model.emit('close', err)
    }
  }

  /**
   * stop ends the replication: gracefully (FIN) or with a reset.
   * @param {boolean} reset
   */
  async stop (reset) {
    if (this.stopped) return
    this.stopped = true
    this.model.replications.delete(this)
    if (reset) {
      this.stream.reset()
      return
    }
    try {
      await this.stream.closeWrite()
    } catch {}
  }
}

/**
 * replicate starts replicating model over a stream whose reply line was
 * read, and returns the Replication.
 */
export function replicate (model, stream, reader) {
  const r = new Replication(model, stream, reader)
  r.start()
  return r
}
