// A yamux session (hashicorp/yamux spec.md, version 0) over any transport
// that carries bytes in order. Frames may be split across transport messages
// and several may share one: the session parses a byte stream.

import { SignalChannelError, closedError } from './errors.js'
import { toBytes } from './bytes.js'

export const HEADER_SIZE = 12
export const VERSION = 0

export const TYPE_DATA = 0
export const TYPE_WINDOW_UPDATE = 1
export const TYPE_PING = 2
export const TYPE_GO_AWAY = 3

export const FLAG_SYN = 1
export const FLAG_ACK = 2
export const FLAG_FIN = 4
export const FLAG_RST = 8

/** INITIAL_WINDOW is every stream's window, each way (256 KiB). */
export const INITIAL_WINDOW = 256 * 1024

export const GO_AWAY_NORMAL = 0
export const GO_AWAY_PROTOCOL = 1
export const GO_AWAY_INTERNAL = 2

/** CLOSE_PROTOCOL_ERROR is the WebSocket close code for a yamux violation. */
export const CLOSE_PROTOCOL_ERROR = 4400

const DEFAULTS = {
  client: true,
  // The largest data frame written. A smaller frame lets streams share the
  // transport more evenly.
  maxFrameBytes: 64 * 1024,
  // The largest transport message written: queued frames are joined up to it.
  maxMessageBytes: 256 * 1024,
  // Data frames wait while the transport holds this many unsent bytes
  // (its bufferedAmount plus frames queued here) ...
  highWaterMark: 1024 * 1024,
  // ... until it holds at most this many.
  lowWaterMark: 256 * 1024,
  // How often a waiting writer looks at bufferedAmount again, in ms.
  drainPollMs: 4,
  // Streams the peer opened that wait for accept(); more are reset.
  acceptBacklog: 64,
  // Streams this side opened that the peer has not acknowledged yet; more
  // opens wait (the peer resets streams past its accept backlog).
  synBacklog: 64,
  // How long a session whose transport is going away (a write failed, or
  // the peer sent go-away with an error) waits for the transport's end and
  // the peer's close code before it closes the transport itself, in ms.
  closeLingerMs: 1000
}

/**
 * encodeHeader returns the 12-byte header of a frame.
 * @param {number} type
 * @param {number} flags
 * @param {number} id
 * @param {number} length
 */
export function encodeHeader (type, flags, id, length) {
  const h = new Uint8Array(HEADER_SIZE)
  const v = new DataView(h.buffer)
  v.setUint8(0, VERSION)
  v.setUint8(1, type)
  v.setUint16(2, flags)
  v.setUint32(4, id)
  v.setUint32(8, length)
  return h
}

/**
 * decodeHeader parses a 12-byte header.
 * @param {Uint8Array} h
 */
export function decodeHeader (h) {
  const v = new DataView(h.buffer, h.byteOffset, HEADER_SIZE)
  return {
    version: v.getUint8(0),
    type: v.getUint8(1),
    flags: v.getUint16(2),
    id: v.getUint32(4),
    length: v.getUint32(8)
  }
}

/**
 * Session is one yamux session. The owner feeds it the transport's bytes
 * with receive() and reports the transport's end with transportClosed(); the
 * session writes with conn.send(bytes), ends the transport with
 * conn.close(code, reason), and reads conn.bufferedAmount for backpressure.
 *
 * All methods run on the caller's event loop; nothing blocks.
 */
export class Session {
  /**
   * @param {{send(data: Uint8Array): void, close(code: number, reason: string): void, readonly bufferedAmount: number}} conn
   * @param {Partial<typeof DEFAULTS> & {onStream?: (s: Stream) => void}} [options]
   */
  constructor (conn, options = {}) {
    this.conn = conn
    this.opts = { ...DEFAULTS }
    for (const k of Object.keys(DEFAULTS)) {
      if (options[k] !== undefined) this.opts[k] = options[k]
    }
    this.client = this.opts.client
    this.nextId = this.client ? 1 : 2
    /** @type {Map<number, Stream>} */
    this.streams = new Map()
    /** onStream, if set, receives each stream the peer opens, already acknowledged. */
    this.onStream = options.onStream ?? null

    this.closed = false
    /** @type {SignalChannelError | null} */
    this.error = null
    /** lingerTimer runs while the session waits for its transport's end (see linger). */
    this.lingerTimer = null
    this.goAwayReceived = false
    this.goAwaySent = false

    // inbound parser
    this.hdr = new Uint8Array(HEADER_SIZE)
    this.hdrN = 0
    this.bodyLeft = 0
    /** @type {Stream | null} */
    this.bodyStream = null
    this.bodyFlags = 0

    // outbound queue
    /** @type {Uint8Array[]} */
    this.out = []
    this.outBytes = 0
    this.flushScheduled = false
    /** @type {{resolve: () => void, reject: (e: Error) => void}[]} */
    this.drainWaiters = []
    this.drainTimer = null

    this.pingSeq = 0
    /** @type {Map<number, {resolve: (rtt: number) => void, reject: (e: Error) => void, start: number, timer: any}>} */
    this.pings = new Map()

    this.synPending = 0
    /** @type {{resolve: () => void, reject: (e: Error) => void}[]} */
    this.synWaiters = []
    /** pingsAnswered counts the peer's pings this side answered. */
    this.pingsAnswered = 0

    /** @type {Stream[]} */
    this.acceptQueue = []
    /** @type {{resolve: (s: Stream) => void, reject: (e: Error) => void}[]} */
    this.acceptWaiters = []

    /** @type {((err: SignalChannelError) => void)[]} */
    this.closeListeners = []
  }

  checkOpen () {
    if (this.closed) throw this.error ?? new SignalChannelError('closed', 'session is closed')
    if (this.goAwayReceived) throw new SignalChannelError('closed', 'the peer is going away: no new streams')
    if (this.goAwaySent) throw new SignalChannelError('closed', 'session is going away: no new streams')
  }

  /**
   * openStream opens a stream: it sends SYN and resolves with the stream;
   * data may be written before the peer's ACK arrives. When synBacklog
   * streams wait for their ACK, it waits for one of them first.
   * @returns {Promise<Stream>}
   */
  async openStream () {
    // While the transport is going away, the open fails with what ended
    // the session: the peer's close code, once it has arrived.
    if (this.lingerTimer !== null) await new Promise((resolve) => this.onClose(resolve))
    this.checkOpen()
    while (this.synPending >= this.opts.synBacklog) {
      await new Promise((resolve, reject) => this.synWaiters.push({ resolve, reject }))
      this.checkOpen()
    }
    const id = this.nextId
    if (id > 0xffffffff - 2) throw new SignalChannelError('closed', 'stream ids exhausted')
    this.nextId += 2
    const s = new Stream(this, id)
    s.synPending = true
    this.synPending++
    this.streams.set(id, s)
    this.sendFrame(TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0)
    return s
  }

  /** releaseSyn frees s's place among the unacknowledged opens. */
  releaseSyn (s) {
    if (!s.synPending) return
    s.synPending = false
    this.synPending--
    const w = this.synWaiters.shift()
    if (w) w.resolve()
  }

  /**
   * accept resolves with the next stream the peer opens (when no onStream
   * is set).
   * @returns {Promise<Stream>}
   */
  accept () {
    if (this.acceptQueue.length > 0) return Promise.resolve(this.acceptQueue.shift())
    if (this.closed) return Promise.reject(this.error)
    return new Promise((resolve, reject) => this.acceptWaiters.push({ resolve, reject }))
  }

  /**
   * ping sends a ping and resolves with the round trip time in ms.
   * @param {number} [timeoutMs]
   */
  ping (timeoutMs = 10000) {
    if (this.closed) return Promise.reject(this.error)
    const opaque = (this.pingSeq = (this.pingSeq + 1) >>> 0)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(opaque)
        reject(new SignalChannelError('timeout', `no ping answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pings.set(opaque, { resolve, reject, start: Date.now(), timer })
      this.sendFrame(TYPE_PING, FLAG_SYN, 0, opaque)
    })
  }

  /**
   * goAway tells the peer that no new streams will be accepted; open
   * streams go on.
   */
  goAway (code = GO_AWAY_NORMAL) {
    if (this.closed || this.goAwaySent) return
    this.goAwaySent = true
    this.sendFrame(TYPE_GO_AWAY, 0, 0, code)
  }

  /**
   * close sends go-away, then ends the transport with code and reason; every
   * stream fails with a `closed` error, but reads, which end as at the
   * stream's end: a close the application asked for ends its loops over
   * streams cleanly.
   */
  close (code = 1000, reason = '') {
    if (this.closed) return
    this.goAway(GO_AWAY_NORMAL)
    this.flush()
    const err = new SignalChannelError('closed', 'session closed', { closeCode: code, closeReason: reason })
    err.local = true
    this.shutdown(err)
    try {
      this.conn.close(code, reason)
    } catch {}
  }

  /** onClose registers fn to run once with the error that ended the session. */
  onClose (fn) {
    if (this.closed) queueMicrotask(() => fn(this.error))
    else this.closeListeners.push(fn)
  }

  /**
   * transportClosed is called by the owner when the transport has ended,
   * with the close code and reason the peer sent: every stream fails with a
   * `closed` error that carries them.
   * @param {number} [code]
   * @param {string} [reason]
   */
  transportClosed (code, reason) {
    this.shutdown(code ? closedError(code, reason) : new SignalChannelError('closed', 'session closed', { closeCode: code, closeReason: reason }))
  }

  /**
   * linger ends a session whose transport is going away: nothing more is
   * written, and the session waits for the transport's end, whose close
   * code and reason (transportClosed) are what the streams fail with. The
   * peer's close message may be waiting behind the fault; closing the
   * transport here would lose it. A transport that has not ended within
   * closeLingerMs is closed here, and the streams fail with err.
   * @param {SignalChannelError} err
   */
  linger (err) {
    if (this.closed || this.lingerTimer !== null) return
    this.out = []
    this.outBytes = 0
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null
      this.shutdown(err)
      try {
        this.conn.close(1000, '')
      } catch {}
    }, this.opts.closeLingerMs)
  }

  /** protocolError ends the session after a violation by the peer. */
  protocolError (reason) {
    if (this.closed) return
    this.goAway(GO_AWAY_PROTOCOL)
    this.flush()
    this.shutdown(new SignalChannelError('protocol', `yamux protocol violation by the peer: ${reason}`, { closeCode: CLOSE_PROTOCOL_ERROR, closeReason: reason }))
    try {
      this.conn.close(CLOSE_PROTOCOL_ERROR, reason.slice(0, 120))
    } catch {}
  }

  /** @param {SignalChannelError} err */
  shutdown (err) {
    if (this.closed) return
    this.closed = true
    this.error = err
    if (this.lingerTimer !== null) {
      clearTimeout(this.lingerTimer)
      this.lingerTimer = null
    }
    this.out = []
    this.outBytes = 0
    for (const s of this.streams.values()) s.fail(err)
    this.streams.clear()
    for (const p of this.pings.values()) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    this.pings.clear()
    for (const w of this.acceptWaiters) w.reject(err)
    this.acceptWaiters = []
    for (const w of this.synWaiters) w.reject(err)
    this.synWaiters = []
    for (const s of this.acceptQueue) s.fail(err)
    this.acceptQueue = []
    this.wakeDrainWaiters(err)
    const listeners = this.closeListeners
    this.closeListeners = []
    for (const fn of listeners) fn(err)
  }

  // ---- outbound ----

  /**
   * sendFrame queues one frame; data, if given, is copied.
   * @param {number} type
   * @param {number} flags
   * @param {number} id
   * @param {number} length
   * @param {Uint8Array} [data]
   */
  sendFrame (type, flags, id, length, data) {
    if (this.closed || this.lingerTimer !== null) return
    const frame = new Uint8Array(HEADER_SIZE + (data ? data.length : 0))
    const v = new DataView(frame.buffer)
    v.setUint8(1, type)
    v.setUint16(2, flags)
    v.setUint32(4, id)
    v.setUint32(8, length)
    if (data) frame.set(data, HEADER_SIZE)
    this.out.push(frame)
    this.outBytes += frame.length
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(() => this.flush())
    }
  }

  /** flush writes the queued frames, joined into messages of at most maxMessageBytes. */
  flush () {
    this.flushScheduled = false
    if (this.closed || this.lingerTimer !== null) return
    const max = this.opts.maxMessageBytes
    while (this.out.length > 0) {
      let n = 0
      let total = 0
      while (n < this.out.length && (n === 0 || total + this.out[n].length <= max)) {
        total += this.out[n].length
        n++
      }
      let msg
      if (n === 1) {
        msg = this.out[0]
      } else {
        msg = new Uint8Array(total)
        let off = 0
        for (let i = 0; i < n; i++) {
          msg.set(this.out[i], off)
          off += this.out[i].length
        }
      }
      this.out.splice(0, n)
      this.outBytes -= total
      try {
        this.conn.send(msg)
      } catch (e) {
        this.linger(new SignalChannelError('closed', 'transport write failed', { cause: e }))
        return
      }
    }
  }

  /** unsent returns the bytes written but not yet on the wire. */
  unsent () {
    let buffered = 0
    try {
      buffered = this.conn.bufferedAmount || 0
    } catch {}
    return buffered + this.outBytes
  }

  /**
   * waitDrain resolves when the transport holds fewer than highWaterMark
   * unsent bytes; when it holds more, it waits until they drop to
   * lowWaterMark. It rejects when the session ends.
   * @returns {Promise<void> | null} null when there is room now
   */
  waitDrain () {
    if (this.closed) return Promise.reject(this.error)
    if (this.drainWaiters.length === 0 && this.unsent() < this.opts.highWaterMark) return null
    const p = new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }))
    if (this.drainTimer === null) this.pollDrain()
    return p
  }

  pollDrain () {
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null
      if (this.closed) return
      if (this.unsent() <= this.opts.lowWaterMark) this.wakeDrainWaiters(null)
      else this.pollDrain()
    }, this.opts.drainPollMs)
  }

  /** @param {Error | null} err */
  wakeDrainWaiters (err) {
    if (this.drainTimer !== null && err) {
      clearTimeout(this.drainTimer)
      this.drainTimer = null
    }
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) err ? w.reject(err) : w.resolve()
  }

  // ---- inbound ----

  /**
   * receive parses bytes from the transport: any part of the byte stream,
   * frames split or joined in any way.
   * @param {Uint8Array} chunk
   */
  receive (chunk) {
    let off = 0
    while (off < chunk.length && !this.closed) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - off)
        const piece = chunk.subarray(off, off + n)
        off += n
        this.bodyLeft -= n
        const s = this.bodyStream
        if (s) s.push(piece)
        if (this.bodyLeft === 0) {
          this.bodyStream = null
          if (s) s.remoteFlags(this.bodyFlags)
        }
        continue
      }
      const n = Math.min(HEADER_SIZE - this.hdrN, chunk.length - off)
      this.hdr.set(chunk.subarray(off, off + n), this.hdrN)
      this.hdrN += n
      off += n
      if (this.hdrN < HEADER_SIZE) return
      this.hdrN = 0
      this.handleHeader(decodeHeader(this.hdr))
    }
  }

  /** @param {{version: number, type: number, flags: number, id: number, length: number}} h */
  handleHeader (h) {
    if (h.version !== VERSION) return this.protocolError(`unsupported yamux version ${h.version}`)
    switch (h.type) {
      case TYPE_DATA:
      case TYPE_WINDOW_UPDATE:
        return this.handleStreamFrame(h)
      case TYPE_PING:
        if (h.id !== 0) return this.protocolError('ping on a stream id')
        if (h.flags & FLAG_SYN) {
          this.pingsAnswered++
          this.sendFrame(TYPE_PING, FLAG_ACK, 0, h.length)
        } else if (h.flags & FLAG_ACK) {
          const p = this.pings.get(h.length)
          if (p) {
            this.pings.delete(h.length)
            clearTimeout(p.timer)
            p.resolve(Date.now() - p.start)
          }
        }
        return
      case TYPE_GO_AWAY:
        if (h.length === GO_AWAY_NORMAL) {
          this.goAwayReceived = true
          return
        }
        return this.shutdownGoAway(h.length)
      default:
        return this.protocolError(`unknown frame type ${h.type}`)
    }
  }

  /** shutdownGoAway ends the session on the peer's go-away with an error; its close message follows. */
  shutdownGoAway (code) {
    const what = code === GO_AWAY_PROTOCOL ? 'a protocol error' : code === GO_AWAY_INTERNAL ? 'an internal error' : `code ${code}`
    this.goAwayReceived = true
    this.linger(new SignalChannelError('closed', `the peer ended the session with ${what}`))
  }

  handleStreamFrame (h) {
    const isData = h.type === TYPE_DATA
    let s = this.streams.get(h.id)
    if (h.flags & FLAG_SYN) {
      if (s || h.id === 0) return this.protocolError(`SYN for stream ${h.id}, which is in use`)
      if ((h.id % 2 === 1) === this.client) return this.protocolError(`SYN for stream ${h.id}, an id of this side`)
      s = this.incoming(h.id)
      if (!s) {
        // Refused: the body, if any, is discarded.
        if (isData && h.length > 0) this.discard(h.length)
        return
      }
    }
    if (!s) {
      // A stream already gone (reset or closed both ways): drop the frame.
      if (isData && h.length > 0) this.discard(h.length)
      return
    }
    if (h.flags & FLAG_ACK) {
      s.acked = true
      this.releaseSyn(s)
    }
    if (h.flags & FLAG_RST) {
      if (isData && h.length > 0) this.discard(h.length)
      s.remoteFlags(FLAG_RST)
      return
    }
    if (!isData) {
      if (h.length > 0) s.grantSend(h.length)
      s.remoteFlags(h.flags)
      return
    }
    if (h.length > s.recvWindow) {
      return this.protocolError(`stream ${h.id}: ${h.length} bytes of data exceed the receive window of ${s.recvWindow}`)
    }
    s.recvWindow -= h.length
    if (h.length === 0) {
      s.remoteFlags(h.flags)
      return
    }
    this.bodyLeft = h.length
    this.bodyStream = s
    this.bodyFlags = h.flags
  }

  discard (n) {
    this.bodyLeft = n
    this.bodyStream = null
    this.bodyFlags = 0
  }

  /** incoming sets up a stream the peer opened and acknowledges it, or refuses it. */
  incoming (id) {
    if (this.goAwaySent) {
      this.sendFrame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0)
      return null
    }
    if (!this.onStream && this.acceptQueue.length >= this.opts.acceptBacklog) {
      this.sendFrame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0)
      return null
    }
    const s = new Stream(this, id)
    s.acked = true
    this.streams.set(id, s)
    this.sendFrame(TYPE_WINDOW_UPDATE, FLAG_ACK, id, 0)
    if (this.onStream) {
      queueMicrotask(() => this.onStream(s))
    } else if (this.acceptWaiters.length > 0) {
      this.acceptWaiters.shift().resolve(s)
    } else {
      this.acceptQueue.push(s)
    }
    return s
  }

  /** forget drops a finished stream. */
  forget (s) {
    this.releaseSyn(s)
    if (this.streams.get(s.id) === s) this.streams.delete(s.id)
    const i = this.acceptQueue.indexOf(s)
    if (i >= 0) this.acceptQueue.splice(i, 1)
  }
}

/**
 * Stream is one yamux stream. read() hands out received data and grants
 * the peer window as it does so; write() never sends past the peer's window
 * and waits for the transport to drain; closeWrite() half-closes (FIN);
 * reset() aborts both ways (RST).
 */
export class Stream {
  /**
   * @param {Session} session
   * @param {number} id
   */
  constructor (session, id) {
    this.session = session
    this.id = id
    this.acked = false
    this.synPending = false
    /** Bytes this side may still send. */
    this.sendWindow = INITIAL_WINDOW
    /** Bytes the peer may still send. */
    this.recvWindow = INITIAL_WINDOW
    /** @type {Uint8Array[]} */
    this.chunks = []
    this.buffered = 0
    this.readClosed = false // FIN received
    this.writeClosed = false // FIN sent
    /** @type {SignalChannelError | null} */
    this.error = null
    /** @type {{resolve: (c: Uint8Array | null) => void, reject: (e: Error) => void} | null} */
    this.reader = null
    /** @type {{resolve: () => void, reject: (e: Error) => void}[]} */
    this.windowWaiters = []
    /** @type {Promise<void>} */
    this.writeChain = Promise.resolve()
    /** Bytes handed to the application and to the peer. */
    this.bytesRead = 0
    this.bytesWritten = 0
  }

  // ---- reading ----

  /**
   * read resolves with the next received bytes, or null once the peer
   * half-closed and everything before was read. It rejects after a reset or
   * when the session ends. One read at a time.
   * @returns {Promise<Uint8Array | null>}
   */
  read () {
    if (this.chunks.length > 0) return Promise.resolve(this.take())
    if (this.error) return this.error.local ? Promise.resolve(null) : Promise.reject(this.error)
    if (this.readClosed) return Promise.resolve(null)
    if (this.reader) return Promise.reject(new Error('stream: concurrent read'))
    return new Promise((resolve, reject) => { this.reader = { resolve, reject } })
  }

  take () {
    const c = this.chunks.shift()
    this.buffered -= c.length
    this.bytesRead += c.length
    this.grantRecv(false)
    return c
  }

  /**
   * grantRecv sends the peer a window update for what the application has
   * consumed, once that is at least half the window (or always, when force
   * is set and there is any).
   */
  grantRecv (force) {
    if (this.error || this.readClosed) return
    const credit = INITIAL_WINDOW - this.buffered - this.recvWindow
    if (credit <= 0 || (!force && credit < INITIAL_WINDOW / 2)) return
    this.recvWindow += credit
    this.session.sendFrame(TYPE_WINDOW_UPDATE, 0, this.id, credit)
  }

  /** push takes received data (already counted against recvWindow). */
  push (piece) {
    if (this.error || this.readClosed) return
    if (this.reader) {
      const r = this.reader
      this.reader = null
      this.bytesRead += piece.length
      // The data is consumed at once: grant as if it had been buffered and read.
      this.grantRecv(false)
      r.resolve(piece)
      return
    }
    this.chunks.push(piece)
    this.buffered += piece.length
  }

  // ---- writing ----

  /**
   * write sends data, in frames that fit the peer's window; it resolves when
   * the last byte is queued on the transport. Writes run in call order.
   * @param {Uint8Array | ArrayBuffer | ArrayBufferView | string} data
   * @returns {Promise<void>}
   */
  write (data) {
    const bytes = toBytes(data)
    const p = this.writeChain.then(() => this.writeNow(bytes))
    this.writeChain = p.catch(() => {})
    return p
  }

  checkWritable () {
    if (this.error) throw this.error
    if (this.writeClosed) throw new SignalChannelError('closed', 'stream is closed for writing')
  }

  /** @param {Uint8Array} bytes */
  async writeNow (bytes) {
    const max = this.session.opts.maxFrameBytes
    let off = 0
    do {
      this.checkWritable()
      if (this.sendWindow === 0) {
        await new Promise((resolve, reject) => this.windowWaiters.push({ resolve, reject }))
        continue
      }
      const drain = this.session.waitDrain()
      if (drain) {
        await drain
        continue // the window or the stream may have changed meanwhile
      }
      const n = Math.min(bytes.length - off, this.sendWindow, max)
      this.sendWindow -= n
      this.bytesWritten += n
      this.session.sendFrame(TYPE_DATA, 0, this.id, n, bytes.subarray(off, off + n))
      off += n
    } while (off < bytes.length)
  }

  /** grantSend adds window the peer granted. */
  grantSend (delta) {
    this.sendWindow += delta
    if (this.sendWindow > 0xffffffff) {
      this.session.protocolError(`stream ${this.id}: window grows past 2^32`)
      return
    }
    const waiters = this.windowWaiters
    this.windowWaiters = []
    for (const w of waiters) w.resolve()
  }

  /**
   * closeWrite half-closes the stream (FIN) after the pending writes; reading
   * goes on.
   * @returns {Promise<void>}
   */
  closeWrite () {
    const p = this.writeChain.then(() => {
      if (this.error) throw this.error
      if (this.writeClosed) return
      this.writeClosed = true
      this.session.sendFrame(TYPE_WINDOW_UPDATE, FLAG_FIN, this.id, 0)
      this.maybeDone()
    })
    this.writeChain = p.catch(() => {})
    return p
  }

  /**
   * reset aborts the stream both ways: the peer gets RST, pending and later
   * reads and writes fail with a `reset` error.
   * @param {string} [why]
   */
  reset (why = 'stream reset locally') {
    if (this.error) return
    if (this.writeClosed && this.readClosed) return
    this.session.sendFrame(TYPE_WINDOW_UPDATE, FLAG_RST, this.id, 0)
    this.fail(new SignalChannelError('reset', why))
    this.session.forget(this)
  }

  // ---- state ----

  /** remoteFlags applies FIN and RST from the peer, after the frame's data. */
  remoteFlags (flags) {
    if (flags & FLAG_RST) {
      this.fail(new SignalChannelError('reset', 'stream reset by the peer'))
      this.session.forget(this)
      return
    }
    if (flags & FLAG_FIN && !this.readClosed) {
      this.readClosed = true
      if (this.reader && this.chunks.length === 0) {
        const r = this.reader
        this.reader = null
        r.resolve(null)
      }
      this.maybeDone()
    }
  }

  maybeDone () {
    if (this.readClosed && this.writeClosed) this.session.forget(this)
  }

  /** fail ends the stream with err: pending reads and writes reject. */
  fail (err) {
    if (this.error) return
    this.error = err
    if (!this.session.closed) this.session.releaseSyn(this)
    this.chunks = []
    this.buffered = 0
    if (this.reader) {
      const r = this.reader
      this.reader = null
      if (err.local) r.resolve(null)
      else r.reject(err)
    }
    const waiters = this.windowWaiters
    this.windowWaiters = []
    for (const w of waiters) w.reject(err)
  }
}
