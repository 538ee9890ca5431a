import { connect } from './channel.js'
import { Emitter } from './emitter.js'
import { SignalChannelError, closedError } from './errors.js'
import { Model } from './model.js'

/** Close codes the reconnecting client treats apart (PROTOCOL.md section 6). */
const GOING_AWAY = 1001
const TRY_AGAIN_LATER = 1013
const UNAUTHORIZED = 4401
const LIMIT = 4429

/**
 * PERMANENT_REFUSALS are the stream refusals that every later try would
 * meet again: a handle refused so when it rejoins ends with the error.
 */
const PERMANENT_REFUSALS = new Set(['forbidden', 'bad_namespace', 'bad_header', 'unknown_endpoint', 'bad_token'])

/** TRANSIENT_REFUSALS are tried again, with backoff, on the same session. */
const TRANSIENT_REFUSALS = new Set(['limit', 'timeout', 'internal'])

/**
 * reconnect connects to the first of urls that answers and returns a Client
 * that keeps a session open: when the server goes away it dials the next
 * URL, and the next, with backoff, and rejoins its echo namespaces and
 * replicates its models again.
 *
 * When no server answers it rejects with the error. When the servers refuse
 * the session for now (4429 or 1013 for a limit, 1001 going away, 4401 when
 * options.getToken can get another token) it dials again, with backoff,
 * until one takes it or options.signal aborts.
 *
 * @param {string | URL | Array<string | URL>} urls
 * @param {import('./index.js').ReconnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function reconnect (urls, options = {}) {
  const c = new Client(Array.isArray(urls) ? urls : [urls], options)
  const signal = options.signal ?? c.stopping.signal
  try {
    for (;;) {
      try {
        await c.dial(signal)
        break
      } catch (e) {
        if (signal.aborted || !c.refusedForNow(e)) throw e
      }
      await c.pause(signal)
      signal.throwIfAborted()
    }
  } catch (e) {
    c.end(e)
    throw e
  }
  c.watch()
  return c
}

/**
 * Client is a reconnecting connection. Events: `connect` (url) after every
 * session that opens, `disconnect` ({code, reason}) when one ends.
 *
 * Between two dials it waits a backoff, jittered, that doubles from
 * minBackoff to maxBackoff and goes back to minBackoff only after a session
 * stayed open for maxBackoff. A server that is shutting down (1001) is left
 * for the next URL at once; one that refuses the session (4429, 1013) is
 * dialled again after the backoff. 4401 ends the client, unless
 * options.getToken gives a new token for each dial; each session also
 * refreshes its token in band with it, before the token expires.
 *
 * Frames sent while disconnected are refused (`closed`); a model resyncs
 * through the scuttlebutt digest, so what changed on either side meanwhile
 * reaches the other. Relay pipes end with their session.
 */
export class Client extends Emitter {
  constructor (urls, options) {
    super()
    if (urls.length === 0) throw new TypeError('reconnect needs at least one URL')
    this.urls = urls
    this.options = options
    this.getToken = typeof options.getToken === 'function' ? options.getToken : null
    this.minBackoff = options.minBackoff ?? 100
    this.maxBackoff = options.maxBackoff ?? 5000
    /** backoff is the wait before the next dial, before jitter. */
    this.backoff = this.minBackoff
    /** @type {import('./channel.js').Channel | null} the open session, null while reconnecting */
    this.channel = null
    this.openedAt = 0
    this.next = 0
    this.ended = false
    /** @type {SignalChannelError | null} what handles' calls fail with once the client has ended */
    this.endError = null
    /** stopping aborts at the end: waits and dials under way stop. */
    this.stopping = new AbortController()
    /** @type {Set<ReconnectingEcho>} */
    this.echoes = new Set()
    /** @type {Map<Model, {namespace: string, options: object, rep: import('./model.js').Replication}>} */
    this.models = new Map()
    this.changed = deferred()
    const closed = deferred()
    this.resolveClosed = closed.resolve
    /**
     * closed resolves with {code, reason} once the client has ended for
     * good: refused with 4401 (without getToken), or close().
     * @type {Promise<{code: number, reason: string}>}
     */
    this.closed = closed.promise
  }

  /**
   * dial tries every URL once, from the next one on, each with a new token
   * from getToken; the session then refreshes its token with getToken. When
   * every URL failed it rejects with the first refusal that may pass
   * (refusedForNow), else the first 4401, else the last error.
   */
  async dial (signal = this.stopping.signal) {
    const errors = []
    for (let i = 0; i < this.urls.length; i++) {
      const url = this.urls[this.next % this.urls.length]
      try {
        const token = this.getToken ? await this.getToken() : this.options.token
        const ch = await connect(url, { ...this.options, token, signal })
        this.setChannel(ch)
        this.emit('connect', String(url))
        return
      } catch (e) {
        errors.push(e)
        this.next++
        if (signal?.aborted) break
      }
    }
    throw errors.find((e) => this.refusedForNow(e)) ?? errors.find((e) => e?.closeCode === UNAUTHORIZED) ?? errors.at(-1)
  }

  /**
   * refusedForNow reports whether err, from dial, is a refusal that may
   * pass: a server at a limit (4429, 1013) or going away (1001), or refused
   * credentials (4401) when getToken can get others.
   * @param {unknown} err
   */
  refusedForNow (err) {
    switch (err?.closeCode) {
      case LIMIT:
      case TRY_AGAIN_LATER:
      case GOING_AWAY:
        return true
      case UNAUTHORIZED:
        return this.getToken !== null
    }
    return false
  }

  setChannel (ch) {
    this.channel = ch
    this.openedAt = Date.now()
    const changed = this.changed
    this.changed = deferred()
    changed.resolve()
  }

  /** watch waits for each session to end, dials again and rejoins. */
  async watch () {
    while (!this.ended) {
      const closed = await this.channel.closed
      if (this.ended) return
      const lasted = Date.now() - this.openedAt
      this.setChannel(null)
      this.emit('disconnect', closed)
      if (closed.code === UNAUTHORIZED && !this.getToken) {
        this.end(closedError(closed.code, closed.reason))
        this.resolveClosed(closed)
        return
      }
      const refused = closed.code === LIMIT || closed.code === TRY_AGAIN_LATER
      if (lasted >= this.maxBackoff && !refused) this.backoff = this.minBackoff
      // A server shutting down: the next one at once.
      let wait = closed.code !== GOING_AWAY
      if (!wait) this.next++
      while (!this.ended) {
        if (wait) await this.pause()
        wait = true
        if (this.ended) break
        try {
          await this.dial()
          break
        } catch (e) {
          // Credentials refused, and no getToken for others: the end.
          if (e?.closeCode === UNAUTHORIZED && !this.getToken && !this.ended) {
            this.end(e)
            this.resolveClosed({ code: e.closeCode, reason: e.closeReason ?? '' })
          }
        }
      }
      if (this.ended) {
        this.channel?.close()
        return
      }
      for (const e of this.echoes) e.rejoin(null)
      for (const [model, how] of this.models) this.replicate(model, how)
    }
  }

  /** pause waits the backoff, jittered, and doubles it for the next time. */
  pause (signal) {
    const b = this.backoff
    this.backoff = Math.min(2 * b, this.maxBackoff)
    return this.sleep(jitter(b), signal)
  }

  /** sleep waits ms, or until signal aborts (by default: until the client ends). */
  sleep (ms, signal = this.stopping.signal) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      signal.addEventListener('abort', done)
      if (signal.aborted) done()
    })
  }

  /**
   * reopen runs open() for a handle on session ch: a transient refusal
   * (limit, timeout, internal) is reported to failed and tried again after
   * a backoff, on the same session. The first try waits first (wait ms,
   * when given): the handle before was refused by the server. It resolves
   * with what open resolved with, or null once the session changed or
   * gone() is true, and rejects with any other error.
   * @template T
   * @param {import('./channel.js').Channel} ch
   * @param {() => Promise<T>} open
   * @param {() => boolean} gone
   * @param {(err: SignalChannelError) => void} [failed]
   * @param {number} [wait]
   * @returns {Promise<T | null>}
   */
  async reopen (ch, open, gone, failed, wait = 0) {
    let backoff = this.minBackoff
    for (;;) {
      if (wait > 0) {
        await this.sleep(wait)
        if (this.channel !== ch || this.ended || gone()) return null
      }
      try {
        return await open()
      } catch (e) {
        if (!TRANSIENT_REFUSALS.has(e?.code)) throw e
        failed?.(e)
      }
      wait = jitter(backoff)
      backoff = Math.min(2 * backoff, this.maxBackoff)
    }
  }

  /**
   * replicate replicates model again on the new session. Each failure is
   * reported to the model ('error'); a permanent refusal ends its
   * replication through this client.
   */
  replicate (model, { namespace, options }) {
    const ch = this.channel
    const report = (err) => model.emit('error', err)
    this.reopen(ch, () => ch.replicate(namespace, { ...options, model }), () => !this.models.has(model), report).then((rep) => {
      if (rep) this.follow(rep, ch, namespace, options)
    }, (err) => {
      if (PERMANENT_REFUSALS.has(err?.code)) this.models.delete(model)
      report(err)
    })
  }

  /**
   * follow keeps rep's model in the client, to replicate again after the
   * next reconnect, as long as rep ends only with its session ch. A
   * replication that ends while its session lives (the server's error
   * object, a reset, or model.close()) takes the model out.
   */
  follow (rep, ch, namespace, options) {
    const model = rep.model
    this.models.set(model, { namespace, options, rep })
    rep.done.then(() => {
      if (!ch.session.closed && this.models.get(model)?.rep === rep) this.models.delete(model)
    })
  }

  current () {
    if (this.ended) throw this.endError
    if (!this.channel) throw new SignalChannelError('closed', 'disconnected, reconnecting')
    return this.channel
  }

  /**
   * echo joins namespace and keeps it joined across reconnects.
   * @param {string} namespace
   */
  async echo (namespace, options = {}) {
    const e = new ReconnectingEcho(this, namespace, await this.current().echo(namespace, options))
    this.echoes.add(e)
    return e
  }

  /**
   * model replicates a Model with namespace, again after every reconnect,
   * and resolves once the first history has arrived. A replication the
   * server ends while the session lives (an error object, a reset) is
   * reported by the model ('error') and not replicated again: call model()
   * again to go on.
   * @param {string} namespace
   * @param {import('./index.js').ModelOptions} [options]
   */
  async model (namespace, options = {}) {
    const ch = this.current()
    const rep = await ch.replicate(namespace, options)
    const { signal, ...rest } = options
    this.follow(rep, ch, namespace, rest)
    return rep.model
  }

  /** relay opens a relay pipe on the current session; it ends with it. */
  async relay (namespace, local, remote, options) {
    return this.current().relay(namespace, local, remote, options)
  }

  /** end stops the client for good: handles' calls fail with err from now on. */
  end (err) {
    if (this.ended) return
    this.ended = true
    this.endError = err
    this.stopping.abort()
    this.changed.resolve()
  }

  /** close ends the session and stops reconnecting; it resolves as closed does. */
  close () {
    if (this.ended) return this.closed
    const ch = this.channel
    this.end(new SignalChannelError('closed', 'the client is closed'))
    for (const m of this.models.keys()) m.close()
    this.resolveClosed(ch ? ch.close() : { code: 1000, reason: '' })
    return this.closed
  }
}

/**
 * ReconnectingEcho is an echo member that rejoins after a reconnect or a
 * drop. A rejoin the server refuses for good (forbidden, say) ends it: its
 * calls fail with that error.
 *
 * A member the server ended with a transient error (the error record of a
 * member past its publish budget: `limit`) is rejoined on the same session
 * after a backoff, as a refused rejoin is: from minBackoff, doubling with
 * each such end up to maxBackoff, and back to minBackoff once a member
 * stayed joined for maxBackoff. Until the rejoin, send() rejects with that
 * error.
 */
export class ReconnectingEcho {
  constructor (client, namespace, echo) {
    this.client = client
    this.namespace = namespace
    this.cur = echo
    this.curChannel = client.channel // the session cur belongs to
    this.joinedAt = Date.now()
    this.closing = false
    this.joining = null
    /** @type {SignalChannelError | null} the permanent refusal that ended this member */
    this.error = null
    /** @type {SignalChannelError | null} the transient error of the member before, while a rejoin waits */
    this.refusal = null
    /** backoff is the wait, before jitter, before rejoining after a transient error. */
    this.backoff = client.minBackoff
  }

  /** send writes one frame; while reconnecting it rejects with `closed`, while rejoining after a refusal with that refusal. */
  send (data) {
    if (this.error) return Promise.reject(this.error)
    if (this.client.ended) return Promise.reject(this.client.endError)
    if (!this.cur) return Promise.reject(this.refusal ?? new SignalChannelError('closed', 'disconnected, reconnecting'))
    return this.cur.send(data)
  }

  /**
   * recv resolves with the next frame, waiting across reconnects (frames
   * sent meanwhile are lost), or null after close(). It rejects once the
   * client has ended, or a rejoin was refused for good.
   */
  async recv () {
    for (;;) {
      if (this.error) throw this.error
      if (this.closing && !this.cur) return null
      const cur = this.cur
      if (cur) {
        let ended = null
        try {
          const f = await cur.recv()
          if (f !== null || this.closing) return f
        } catch (e) {
          if (this.closing) return null
          ended = e
        }
        await this.rejoin(cur, ended)
        continue
      }
      if (this.client.ended) throw this.client.endError
      // No member: wait for the rejoin in flight, or start one on the
      // open session; only when there is none, for the next session.
      if (this.joining) {
        await this.joining
        continue
      }
      const changed = this.client.changed.promise
      if (this.client.channel) {
        await this.rejoin(null)
        if (this.cur || this.error) continue
      }
      await changed
    }
  }

  /**
   * rejoin opens a new member, unless another call already replaced failed;
   * after a backoff when failed ended with a transient error (err).
   */
  rejoin (failed, err = null) {
    if (this.closing || this.error || (failed && this.cur !== failed)) return Promise.resolve()
    if (this.joining) return this.joining
    const ch = this.client.channel
    if (!failed && this.cur && this.curChannel === ch) return Promise.resolve() // already rejoined
    if (this.cur) this.cur.reset()
    this.cur = null
    if (!ch) return Promise.resolve()
    const refused = failed !== null && this.curChannel === ch && TRANSIENT_REFUSALS.has(err?.code)
    const wait = refused ? this.refusedWait() : 0
    if (refused) this.refusal = err
    this.joining = this.client.reopen(ch, () => ch.echo(this.namespace), () => this.closing, undefined, wait).then((e) => {
      if (!e) return
      if (this.closing) {
        e.close().catch(() => {})
        return
      }
      this.cur = e
      this.curChannel = ch
      this.joinedAt = Date.now()
    }, (err) => {
      if (!PERMANENT_REFUSALS.has(err?.code)) return // the session went: the next one rejoins
      this.error = err
      this.client.echoes.delete(this)
    }).finally(() => {
      this.joining = null
      this.refusal = null
    })
    return this.joining
  }

  /** refusedWait returns the wait before rejoining after a transient error, and doubles the backoff. */
  refusedWait () {
    const { minBackoff, maxBackoff } = this.client
    if (Date.now() - this.joinedAt >= maxBackoff) this.backoff = minBackoff
    const b = this.backoff
    this.backoff = Math.min(2 * b, maxBackoff)
    return jitter(b)
  }

  async * [Symbol.asyncIterator] () {
    for (;;) {
      const f = await this.recv()
      if (f === null) return
      yield f
    }
  }

  /** close leaves the namespace for good. */
  close () {
    this.closing = true
    this.client.echoes.delete(this)
    return this.cur ? this.cur.close() : Promise.resolve()
  }
}

/** jitter returns a wait drawn uniformly from [b/2, b]. */
function jitter (b) {
  return b / 2 + Math.random() * b / 2
}

function deferred () {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}
