import { connect } from './channel.js'
import { Emitter } from './emitter.js'
import { SignalChannelError } from './errors.js'
import { Model } from './model.js'

/**
 * reconnect connects to the first of urls that answers and returns a Client
 * that keeps a session open: when the server goes away it dials the next
 * URL, and the next, with backoff, and rejoins its echo namespaces and
 * replicates its models again.
 *
 * @param {string | URL | Array<string | URL>} urls
 * @param {import('./index.js').ReconnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function reconnect (urls, options = {}) {
  const c = new Client(Array.isArray(urls) ? urls : [urls], options)
  await c.dial(options.signal)
  c.watch()
  return c
}

/**
 * Client is a reconnecting connection. Events: `connect` (url) after every
 * session that opens, `disconnect` ({code, reason}) when one ends.
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
    this.minBackoff = options.minBackoff ?? 100
    this.maxBackoff = options.maxBackoff ?? 5000
    /** @type {import('./channel.js').Channel | null} the open session, null while reconnecting */
    this.channel = null
    this.next = 0
    this.ended = false
    /** @type {Set<ReconnectingEcho>} */
    this.echoes = new Set()
    /** @type {Map<Model, {namespace: string, options: object}>} */
    this.models = new Map()
    this.changed = deferred()
  }

  /** dial tries every URL once, from the next one on. */
  async dial (signal) {
    let last
    for (let i = 0; i < this.urls.length; i++) {
      const url = this.urls[this.next % this.urls.length]
      try {
        const ch = await connect(url, { ...this.options, signal })
        this.setChannel(ch)
        this.emit('connect', String(url))
        return
      } catch (e) {
        last = e
        this.next++
        if (signal?.aborted) break
      }
    }
    throw last
  }

  setChannel (ch) {
    this.channel = ch
    const changed = this.changed
    this.changed = deferred()
    changed.resolve()
  }

  /** watch waits for each session to end, dials again and rejoins. */
  async watch () {
    while (!this.ended) {
      const ch = this.channel
      const closed = await ch.closed
      if (this.ended) return
      this.setChannel(null)
      this.emit('disconnect', closed)
      let backoff = this.minBackoff
      while (!this.ended) {
        try {
          await this.dial()
          break
        } catch {
          await sleep(backoff / 2 + Math.random() * backoff / 2)
          backoff = Math.min(2 * backoff, this.maxBackoff)
        }
      }
      if (this.ended) {
        this.channel?.close()
        return
      }
      for (const e of this.echoes) e.rejoin(null)
      for (const [model, { namespace, options }] of this.models) {
        this.channel.model(namespace, { ...options, model }).catch((err) => model.emit('error', err))
      }
    }
  }

  current () {
    if (this.ended) throw new SignalChannelError('closed', 'the client is closed')
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
   * and resolves once the first history has arrived.
   * @param {string} namespace
   * @param {import('./index.js').ModelOptions} [options]
   */
  async model (namespace, options = {}) {
    const model = await this.current().model(namespace, options)
    const { signal, ...rest } = options
    this.models.set(model, { namespace, options: rest })
    return model
  }

  /** relay opens a relay pipe on the current session; it ends with it. */
  relay (namespace, local, remote, options) {
    return this.current().relay(namespace, local, remote, options)
  }

  /** close ends the session and stops reconnecting. */
  close () {
    this.ended = true
    this.changed.resolve()
    for (const m of this.models.keys()) m.close()
    return this.channel ? this.channel.close() : Promise.resolve()
  }
}

/** ReconnectingEcho is an echo member that rejoins after a reconnect or a drop. */
export class ReconnectingEcho {
  constructor (client, namespace, echo) {
    this.client = client
    this.namespace = namespace
    this.cur = echo
    this.curChannel = client.channel // the session cur belongs to
    this.closing = false
    this.joining = null
  }

  /** send writes one frame; while reconnecting it rejects with `closed`. */
  send (data) {
    if (!this.cur) return Promise.reject(new SignalChannelError('closed', 'disconnected, reconnecting'))
    return this.cur.send(data)
  }

  /**
   * recv resolves with the next frame, waiting across reconnects (frames
   * sent meanwhile are lost), or null after close().
   */
  async recv () {
    for (;;) {
      if (this.closing && !this.cur) return null
      const cur = this.cur
      if (cur) {
        try {
          const f = await cur.recv()
          if (f !== null || this.closing) return f
        } catch (e) {
          if (this.closing) return null
        }
        await this.rejoin(cur)
        continue
      }
      if (this.client.ended) throw new SignalChannelError('closed', 'the client is closed')
      // No member: wait for the rejoin in flight, or start one on the
      // open session; only when there is none, for the next session.
      if (this.joining) {
        await this.joining
        continue
      }
      if (this.client.channel) {
        await this.rejoin(null)
        if (this.cur) continue
      }
      await this.client.changed.promise
    }
  }

  /** rejoin opens a new member, unless another call already replaced failed. */
  rejoin (failed) {
    if (this.closing || (failed && this.cur !== failed)) return Promise.resolve()
    if (this.joining) return this.joining
    const ch = this.client.channel
    if (!failed && this.cur && this.curChannel === ch) return Promise.resolve() // already rejoined
    if (this.cur) this.cur.reset()
    this.cur = null
    if (!ch) return Promise.resolve()
    this.joining = ch.echo(this.namespace).then((e) => {
      this.cur = e
      this.curChannel = ch
    }, () => {}).finally(() => { this.joining = null })
    return this.joining
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

function deferred () {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
