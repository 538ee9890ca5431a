import { SignalChannelError, errorOf } from './errors.js'
import { ByteReader, toBytes } from './bytes.js'
import { Session } from './yamux.js'
import { Echo } from './echo.js'
import { Relay } from './relay.js'
import { Model, replicate } from './model.js'

/** SUBPROTOCOL is the WebSocket subprotocol the client offers. */
export const SUBPROTOCOL = 'signalchannel.v1'

/** MAX_HEADER_BYTES is the longest header line, newline included. */
export const MAX_HEADER_BYTES = 4096

/** MAX_REPLY_BYTES bounds a reply line. */
const MAX_REPLY_BYTES = 64 * 1024

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
 * connect opens a WebSocket to a signalchannel server (its /v1/channel URL)
 * and starts the yamux session. It resolves once the WebSocket is open.
 *
 * The token goes in an `Authorization: Bearer` header when the client uses
 * the `ws` package (Node), and in the `access_token` query parameter
 * otherwise (browsers cannot set headers).
 *
 * @param {string | URL} url
 * @param {import('./index.js').ConnectOptions} [options]
 * @returns {Promise<Channel>}
 */
export async function connect (url, options = {}) {
  const { token, signal } = options
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
  return new Channel(ws, options)
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

    /** @type {Promise<{code: number, reason: string}>} */
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
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
    const { stream, reader, reply } = await this.open({ endpoint: 'relay', namespace, local, remote }, options)
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
   * ping measures the round trip to the server in milliseconds.
   * @param {number} [timeoutMs]
   */
  ping (timeoutMs) {
    return this.session.ping(timeoutMs)
  }

  /**
   * close ends the session with code (default 1000); every stream ends.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close (code = 1000, reason = '') {
    this.session.close(code, reason)
    return this.closed
  }
}
