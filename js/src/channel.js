import { SignalChannelError, closedError, errorOf } from './errors.js'
import { ByteReader, toBytes } from './bytes.js'
import { Session } from './yamux.js'
import { Echo } from './echo.js'
import { Relay } from './relay.js'
import { Model, replicate } from './model.js'
import { joinRoom } from './room.js'

/** SUBPROTOCOL is the WebSocket subprotocol the client offers. */
export const SUBPROTOCOL = 'signalchannel.v1'

/** MAX_HEADER_BYTES is the longest header line, newline included. */
export const MAX_HEADER_BYTES = 4096

/** MAX_REPLY_BYTES bounds a reply line. */
const MAX_REPLY_BYTES = 64 * 1024

/** SESSION_ENDPOINT tells a session who it is and takes a fresh token. */
const SESSION_ENDPOINT = 'session'

/** MAX_REFRESH_LEAD_MS is the most a scheduled refresh comes before the token's expiry. */
const MAX_REFRESH_LEAD_MS = 60_000

/** MIN_REFRESH_RETRY_MS is the least wait before a failed refresh is tried again. */
const MIN_REFRESH_RETRY_MS = 100

/** MAX_TIMER_MS is the longest wait setTimeout takes; longer ones are cut in pieces. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * CLOSE_WAIT_MS bounds the wait for the server's close message after a
 * session stream was reset or ended with the session: a server that ends a
 * session resets its streams and sends the close message at once.
 */
const CLOSE_WAIT_MS = 1000

/**
 * loadWebSocket returns the WebSocket class to use and whether it takes
 * headers (the `ws` package does; the browser's does not).
 * @param {any} given
 */
async function loadWebSocket (given) {
  if (given) return { WS: given, headers: false }
  if (typeof globalThis.WebSocket === 'function') return { WS: globalThis.WebSocket, headers: false }
  // Node without a global WebSocket: the optional peer dependency `ws`. The
  // specifier is a variable so that bundlers for browsers leave it alone.
  const name = 'ws'
  let mod
  try {
    mod = await import(name)
  } catch (e) {
    throw new SignalChannelError('closed', 'no WebSocket available: install the "ws" package (npm install ws) or pass options.WebSocket', { cause: e })
  }
  return { WS: mod.WebSocket ?? mod.default, headers: true }
}

/**
 * channelURL resolves url against the page in a browser, turns http(s) into
 * ws(s), and adds the token as access_token when it cannot go in a header.
 * @param {string | URL} url
 * @param {string | undefined} token
 * @param {boolean} queryToken
 */
function channelURL (url, token, queryToken) {
  const base = typeof globalThis.location === 'object' && globalThis.location ? globalThis.location.href : undefined
  const u = new URL(String(url), base)
  if (u.protocol === 'http:') u.protocol = 'ws:'
  if (u.protocol === 'https:') u.protocol = 'wss:'
  if (token && queryToken) u.searchParams.set('access_token', token)
  return u
}

/**
 * connect opens a WebSocket to a signalchannel server (its /v1/channel URL),
 * starts the yamux session and asks the server who the session is (the
 * `session` endpoint). It resolves once the server has answered: the
 * channel's id, meta and expires are set. A session the server closes
 * instead (4401 for credentials, 4429 for a limit) rejects with a `closed`
 * error carrying the close code and reason.
 *
 * The token, options.token or else one from options.getToken, goes in an
 * `Authorization: Bearer` header when the client uses the `ws` package
 * (Node), and in the `access_token` query parameter otherwise (browsers
 * cannot set headers). With options.getToken the channel refreshes its
 * token in band before it expires (see Channel.refresh).
 *
 * @param {string | URL} url
 * @param {import('./index.js').ConnectOptions} [options]
 * @returns {Promise<Channel>}
 */
export async function connect (url, options = {}) {
  const { signal } = options
  let token = options.token
  if (!token && typeof options.getToken === 'function') token = await options.getToken()
  const { WS, headers } = await loadWebSocket(options.WebSocket)
  const u = channelURL(url, token, !headers)
  signal?.throwIfAborted()
  const ws = headers && token
    ? new WS(u.href, [SUBPROTOCOL], { headers: { Authorization: `Bearer ${token}` } })
    : new WS(u.href, [SUBPROTOCOL])
  ws.binaryType = 'arraybuffer'

  await new Promise((resolve, reject) => {
    let done = false
    const finish = (err) => {
      if (done) return
      done = true
      ws.removeEventListener('open', onOpen)
      ws.removeEventListener('error', onError)
      ws.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      // A socket given up on may still report an error (the ws package
      // does, a tick after close() while connecting); unheard, Node throws it.
      if (err) ws.addEventListener('error', () => {})
      err ? reject(err) : resolve()
    }
    const onOpen = () => finish()
    const onError = (ev) => finish(new SignalChannelError('closed', `could not connect to ${u.origin}${u.pathname}${ev && ev.message ? ': ' + ev.message : ''}`))
    const onClose = (ev) => finish(new SignalChannelError('closed', `connection to ${u.origin}${u.pathname} closed before it opened (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`, { closeCode: ev.code, closeReason: ev.reason }))
    const onAbort = () => {
      try { ws.close() } catch {}
      finish(signal.reason)
    }
    ws.addEventListener('open', onOpen)
    ws.addEventListener('error', onError)
    ws.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
  const ch = new Channel(ws, options)
  try {
    await ch.hello('', signal)
  } catch (e) {
    ch.close()
    throw e
  }
  return ch
}

/**
 * readReply reads a stream's reply line. It resolves with the reply object;
 * for a failure reply, with {ok: false, error} where error is a
 * SignalChannelError carrying the reply's code. It rejects with `bad_reply`
 * when the line is missing or malformed.
 * @param {ByteReader} reader
 */
export async function readReply (reader) {
  let line
  try {
    line = await reader.readLine(MAX_REPLY_BYTES)
  } catch (e) {
    if (e instanceof SignalChannelError) throw e
    throw new SignalChannelError('bad_reply', `reading the reply: ${e.message}`)
  }
  if (line === null) throw new SignalChannelError('bad_reply', 'the stream ended without a reply')
  let reply
  try {
    reply = JSON.parse(new TextDecoder().decode(line))
  } catch {
    throw new SignalChannelError('bad_reply', 'the reply is not JSON')
  }
  if (reply === null || typeof reply !== 'object' || Array.isArray(reply)) throw new SignalChannelError('bad_reply', 'the reply is not a JSON object')
  if (reply.ok === true) return reply
  const error = errorOf(reply.error)
  if (!error) throw new SignalChannelError('bad_reply', 'a failure reply without an error object')
  return { ok: false, error }
}

/**
 * drain reads reader to the end of its stream and drops what it reads.
 * @param {ByteReader} reader
 */
async function drain (reader) {
  let chunk
  do chunk = await reader.readChunk()
  while (chunk !== null)
}

/**
 * Channel is an open connection: one WebSocket carrying one yamux session.
 * Its methods open one stream each.
 */
export class Channel {
  /**
   * @param {WebSocket} ws an open WebSocket with binaryType 'arraybuffer'
   * @param {import('./index.js').ConnectOptions} [options]
   */
  constructor (ws, options = {}) {
    this.ws = ws
    this.protocol = ws.protocol
    this.session = new Session({
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      get bufferedAmount () { return ws.bufferedAmount }
    }, {
      client: true,
      maxMessageBytes: options.maxMessageBytes,
      highWaterMark: options.highWaterMark,
      lowWaterMark: options.lowWaterMark,
      // Servers of protocol version 1 never open streams.
      onStream: (s) => s.reset('this client accepts no streams')
    })

    /**
     * id is the session's peer id, which the server vouches for: the sub of
     * its token, or an id the server assigned when it takes no credentials.
     * Relay tokens and owned scuttlebutt keys of the session begin with it.
     * Set by connect.
     */
    this.id = ''
    /** @type {Record<string, any> | null} the public meta claim of the session's token, null when it has none */
    this.meta = null
    /** @type {Date | null} when the session's token expires, null on a server without credentials */
    this.expires = null
    /** @type {{iceServers: {urls: string[], username?: string, credential?: string}[], ttl?: number, expires?: number} | null} the ICE servers of the last session reply (PROTOCOL.md section 11), null when the server hands out none */
    this.ice = null
    /** @type {(() => string | Promise<string>) | null} gives the tokens of the refreshes this channel makes by itself */
    this.getToken = typeof options.getToken === 'function' ? options.getToken : null
    /** refreshTimer runs until the next refresh with getToken, due at refreshDue (ms since the epoch). */
    this.refreshTimer = null
    this.refreshDue = 0
    /** refreshing serialises the session streams that present a token. */
    this.refreshing = Promise.resolve()

    /** @type {Promise<{code: number, reason: string}>} */
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
        this.stopRefresh()
        this.session.transportClosed(ev.code, ev.reason)
        resolve({ code: ev.code, reason: ev.reason })
      })
    })
    ws.addEventListener('message', (ev) => {
      const data = ev.data
      if (typeof data === 'string') {
        this.session.shutdown(new SignalChannelError('protocol', 'the server sent a text message'))
        try { ws.close(1003, 'text messages are not allowed') } catch {}
        return
      }
      this.session.receive(data instanceof ArrayBuffer ? new Uint8Array(data) : toBytes(data))
    })
    ws.addEventListener('error', () => {})
  }

  /**
   * open opens a stream, sends header as its first line (an object, encoded
   * as JSON, or a string sent as it is) and reads the reply. A failure reply
   * rejects with a SignalChannelError carrying its code. Aborting signal
   * before the reply resets the stream.
   *
   * @param {object | string} header
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{stream: import('./yamux.js').Stream, reader: ByteReader, reply: any}>}
   */
  async open (header, options = {}) {
    const { signal } = options
    signal?.throwIfAborted()
    const line = toBytes((typeof header === 'string' ? header : JSON.stringify(header)) + '\n')
    const stream = await this.session.openStream()
    const reader = new ByteReader(stream)
    const onAbort = () => stream.reset('open aborted')
    signal?.addEventListener('abort', onAbort)
    try {
      await stream.write(line)
      const reply = await readReply(reader)
      if (reply.ok !== true) {
        // The server half-closed; close this side too so the stream is freed.
        stream.closeWrite().catch(() => {})
        throw reply.error
      }
      return { stream, reader, reply }
    } catch (e) {
      if (signal?.aborted) {
        stream.reset('open aborted')
        throw signal.reason
      }
      if (!(e instanceof SignalChannelError) || e.code === 'bad_reply' || e.code === 'protocol') stream.reset()
      throw e
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * hello opens a stream of the session endpoint, presenting token unless
   * it is empty, and records what the reply says: the session's id and
   * meta, and its token's expiry. It waits for the server's FIN after the
   * reply: the server frees the stream's place under the streams limit
   * first. A failure reply rejects with its error (`forbidden`: a token
   * the server did not take); a session the server ended instead rejects
   * with the `closed` error of its close code and reason.
   * @param {string} token
   * @param {AbortSignal} [signal]
   * @returns {Promise<any>} the reply
   */
  async hello (token, signal) {
    const header = { endpoint: SESSION_ENDPOINT }
    if (token) header.token = token
    let opened
    try {
      opened = await this.open(header, { signal })
    } catch (e) {
      throw await this.closeCause(e)
    }
    const { stream, reader, reply } = opened
    const onAbort = () => stream.reset('open aborted')
    signal?.addEventListener('abort', onAbort)
    try {
      await stream.closeWrite()
      await drain(reader)
    } catch (e) {
      if (signal?.aborted) throw signal.reason
      throw await this.closeCause(e)
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    this.learn(reply)
    return reply
  }

  /**
   * iceServers resolves with the ICE servers the server hands this peer
   * (PROTOCOL.md section 11): `{iceServers, ttl, expires}`, the list in
   * RTCIceServer's shape, TURN credentials for this peer's id; null when
   * the server hands out none. Credentials with less than half their
   * lifetime, or a minute, left are renewed first, in band, so that what
   * it gives serves a new connection or an ICE restart.
   * @param {AbortSignal} [signal]
   */
  async iceServers (signal) {
    const cur = this.ice
    if (!cur || !cur.expires) return cur
    const left = cur.expires * 1000 - Date.now()
    if (left > Math.min((cur.ttl ?? 0) * 500, 60_000)) return cur
    await this.hello('', signal)
    return this.ice
  }

  /**
   * learn takes the session endpoint's reply: id, meta and exp. With
   * getToken it schedules the next refresh.
   * @param {any} reply
   */
  learn (reply) {
    if (typeof reply.id !== 'string' || reply.id === '') throw new SignalChannelError('bad_reply', 'a session reply without an id')
    const meta = reply.meta
    if (meta !== undefined && meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) throw new SignalChannelError('bad_reply', 'a session reply whose meta is not a JSON object')
    this.id = reply.id
    this.meta = meta ?? null
    this.ice = reply.ice && Array.isArray(reply.ice.iceServers) ? reply.ice : null
    this.expires = typeof reply.exp === 'number' && reply.exp > 0 ? new Date(reply.exp * 1000) : null
    if (this.expires && this.getToken) {
      const left = this.expires.getTime() - Date.now()
      this.scheduleRefresh(left - Math.min(left / 2, MAX_REFRESH_LEAD_MS))
    }
  }

  /**
   * closeCause returns what a session stream that failed with err failed
   * for: when the session ended, or is ending, the `closed` error of the
   * server's close code and reason; otherwise err.
   * @param {unknown} err
   */
  async closeCause (err) {
    if (!(err instanceof SignalChannelError) || (err.code !== 'reset' && err.code !== 'closed') || err.closeCode !== undefined) return err
    let timer
    const closed = await Promise.race([
      this.closed,
      new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS, null) })
    ])
    clearTimeout(timer)
    return closed && closed.code ? closedError(closed.code, closed.reason) : err
  }

  /**
   * refresh presents token, a fresh token for the session's sub, in band:
   * the server moves the session's expiry to the new token's and applies
   * its claims to the streams opened from now on; nothing is interrupted.
   * It resolves with the new expiry (also in expires; meta is the new
   * token's too). A token the server does not take rejects with
   * `forbidden` and changes nothing; a token for another sub makes the
   * server close the session with 4401, and rejects with that `closed`
   * error. With options.getToken the channel refreshes by itself.
   * @param {string} token
   * @returns {Promise<Date>}
   */
  refresh (token) {
    if (typeof token !== 'string' || token === '') return Promise.reject(new TypeError('refresh needs a token'))
    const p = this.refreshing.then(() => this.hello(token))
    this.refreshing = p.catch(() => {})
    return p.then(() => {
      if (!this.expires) throw new SignalChannelError('bad_reply', 'a refresh reply without an expiry')
      return this.expires
    })
  }

  /**
   * scheduleRefresh arms the next refresh with getToken, ms from now, unless
   * the session has ended. setTimeout's longest wait is taken in pieces.
   * @param {number} ms
   */
  scheduleRefresh (ms) {
    this.stopRefresh()
    if (!this.getToken || this.session.closed) return
    this.refreshDue = Date.now() + Math.max(ms, 0)
    this.armRefresh()
  }

  armRefresh () {
    const wait = Math.min(Math.max(this.refreshDue - Date.now(), 0), MAX_TIMER_MS)
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null
      if (Date.now() < this.refreshDue) this.armRefresh()
      else this.autoRefresh()
    }, wait)
    // The timer alone keeps no process alive (Node; browsers return a number).
    this.refreshTimer?.unref?.()
  }

  /** stopRefresh clears the timer of the next refresh. */
  stopRefresh () {
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer)
    this.refreshTimer = null
  }

  /**
   * autoRefresh gets a token from getToken and presents it; the reply
   * schedules the next. On failure it tries again after a quarter of the
   * time the token has left (at least MIN_REFRESH_RETRY_MS), while it lives.
   */
  async autoRefresh () {
    try {
      await this.refresh(await this.getToken())
      return
    } catch {}
    if (this.session.closed || this.refreshTimer !== null || !this.expires) return
    const left = this.expires.getTime() - Date.now()
    if (left > 0) this.scheduleRefresh(Math.max(left / 4, MIN_REFRESH_RETRY_MS))
  }

  /**
   * echo joins an echo namespace.
   * @param {string} namespace
   * @param {{signal?: AbortSignal}} [options]
   */
  async echo (namespace, options = {}) {
    const { stream, reader, reply } = await this.open({ endpoint: 'echo', namespace }, options)
    return new Echo(namespace, stream, reader, reply)
  }

  /**
   * relay waits for the partner stream (namespace, local=remote,
   * remote=local) and resolves with the pipe once paired.
   * @param {string} namespace
   * @param {string} local
   * @param {string} remote
   * @param {{signal?: AbortSignal}} [options]
   */
  async relay (namespace, local, remote, options = {}) {
    const { stream, reader, reply } = await this.open({ endpoint: 'relay', namespace, local, remote, peer: true }, options)
    if (reply.open !== true) {
      stream.reset()
      throw new SignalChannelError('bad_reply', 'relay reply without "open":true')
    }
    return new Relay(namespace, stream, reader, reply)
  }

  /**
   * model replicates a scuttlebutt Model with a namespace and resolves once
   * the server's history has arrived ("SYNC").
   * @param {string} namespace
   * @param {import('./index.js').ModelOptions} [options]
   * @returns {Promise<Model>}
   */
  async model (namespace, options = {}) {
    return (await this.replicate(namespace, options)).model
  }

  /**
   * replicate is model(), resolving with the Replication: its model, and
   * its end (done).
   * @param {string} namespace
   * @param {import('./index.js').ModelOptions} [options]
   * @returns {Promise<import('./model.js').Replication>}
   */
  async replicate (namespace, options = {}) {
    const header = { endpoint: 'scuttlebutt', namespace }
    if (options.ephemeral) header.ephemeral = true
    const { stream, reader, reply } = await this.open(header, options)
    const model = options.model ?? new Model({ id: options.id })
    if (model.maxAge === undefined && typeof reply.maxAge === 'number' && reply.maxAge > 0) model.maxAge = reply.maxAge
    model.serverId = typeof reply.id === 'string' ? reply.id : undefined
    const rep = replicate(model, stream, reader)
    try {
      await rep.synced(options.signal)
    } catch (e) {
      rep.stop(true)
      throw e
    }
    return rep
  }

  /**
   * room joins the room name (PROTOCOL.md section 10): it replicates the
   * scuttlebutt namespace `room/<name>` ephemerally, writes this member's
   * record ({"meta": options.meta}) and resolves with the Room once the
   * server's history has arrived.
   * @param {string} name
   * @param {import('./index.js').RoomOptions} [options]
   * @returns {Promise<import('./room.js').Room>}
   */
  room (name, options = {}) {
    return joinRoom(this, name, options)
  }

  /**
   * ping measures the round trip to the server in milliseconds.
   * @param {number} [timeoutMs]
   */
  ping (timeoutMs) {
    return this.session.ping(timeoutMs)
  }

  /**
   * close ends the session with code (default 1000): reads of its streams end
   * (recv gives null, loops over them end, readables close), writes and new
   * streams fail with `closed`.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close (code = 1000, reason = '') {
    this.stopRefresh()
    this.session.close(code, reason)
    return this.closed
  }
}
