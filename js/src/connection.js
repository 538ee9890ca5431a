import { Emitter } from './emitter.js'
import { SignalChannelError } from './errors.js'
import { ByteReader, toBytes } from './bytes.js'

// A connection over an accepted call (PROTOCOL.md section 10,
// "Connections"): a WebRTC peer connection set up with perfect
// negotiation over the call, whose data travels over a data channel, or
// over the relay when no ICE path forms. The bytes travel in frames with
// offsets and acknowledgements, so that a change of path loses and
// repeats nothing.

/** DEFAULT_DIRECT_TIMEOUT is how long, in ms, a connection waits for its data channel before its data takes the relay. */
export const DEFAULT_DIRECT_TIMEOUT = 10_000
/** DEFAULT_DISCONNECT_GRACE is how long, in ms, ICE may stay disconnected before the connection heals itself. */
export const DEFAULT_DISCONNECT_GRACE = 5_000
/** CLOSE_LINGER is how long, in ms, close() waits for the other side to acknowledge every byte written. */
export const CLOSE_LINGER = 5_000

const FRAME_DATA = 1
const FRAME_ACK = 2
const FRAME_FIN = 3
const HEADER = 13
const MAX_PAYLOAD = 16 << 10
const WINDOW = 4 << 20
const ACK_EVERY = 64 << 10
const ACK_DELAY = 20
// The data channel's send buffer: writes wait while it holds more.
const DC_HIGH_WATER = 1 << 20
const DC_LOW_WATER = 256 << 10
// The remote candidates kept before the remote description.
const MAX_EARLY_CANDIDATES = 64

/**
 * frame encodes one frame.
 * @param {number} kind
 * @param {number} offset
 * @param {Uint8Array} [payload]
 */
function frame (kind, offset, payload) {
  const len = payload ? payload.length : 0
  const b = new Uint8Array(HEADER + len)
  const v = new DataView(b.buffer)
  b[0] = kind
  v.setBigUint64(1, BigInt(offset))
  v.setUint32(9, len)
  if (payload) b.set(payload, HEADER)
  return b
}

/**
 * parseHeader decodes a frame's header.
 * @param {Uint8Array} b
 */
function parseHeader (b) {
  const v = new DataView(b.buffer, b.byteOffset, HEADER)
  const offset = v.getBigUint64(1)
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new SignalChannelError('protocol', 'a frame offset past 2^53')
  return { kind: b[0], offset: Number(offset), length: v.getUint32(9) }
}

/** later resolves after ms. */
function later (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Signal is a promise that can be resolved from outside, again and again:
 * wait() resolves at the next wake().
 */
class Signal {
  constructor () {
    this.waiters = []
  }

  wait () {
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  wake () {
    const w = this.waiters
    this.waiters = []
    for (const r of w) r()
  }
}

/**
 * DataChannelPath carries frames over an RTCDataChannel, one frame a
 * message. It listens from the channel's creation: the other side may
 * send as soon as the channel opens, before this side has taken it as its
 * path, and those messages are kept for start().
 */
class DataChannelPath {
  /** @param {RTCDataChannel} dc */
  constructor (dc) {
    /** @type {'direct' | 'turn'} set when the channel opens */
    this.kind = 'direct'
    this.dc = dc
    this.closed = false
    this.low = new Signal()
    /** @type {any[] | null} messages before start() */
    this.early = []
    this.onFrame = null
    this.onEnd = null
    dc.bufferedAmountLowThreshold = DC_LOW_WATER
    this.onLow = () => this.low.wake()
    this.onMessage = (ev) => {
      if (this.early) this.early.push(ev.data)
      else this.take(ev.data)
    }
    this.onClose = () => {
      if (!this.onEnd) return
      this.close()
      this.onEnd(new SignalChannelError('closed', 'the data channel closed'))
    }
    dc.addEventListener('bufferedamountlow', this.onLow)
    dc.addEventListener('message', this.onMessage)
    dc.addEventListener('close', this.onClose)
    dc.addEventListener('error', this.onClose)
  }

  /** start hands each frame to onFrame, those that came before first, and calls onEnd once the channel ends. */
  start (onFrame, onEnd) {
    this.onFrame = onFrame
    this.onEnd = onEnd
    const early = this.early
    this.early = null
    for (const data of early) this.take(data)
    if (this.dc.readyState !== 'open') this.onClose()
  }

  /** take parses one message as a frame. */
  take (data) {
    if (this.closed) return
    try {
      const b = data instanceof ArrayBuffer ? new Uint8Array(data) : toBytes(data)
      if (b.length < HEADER) throw new SignalChannelError('protocol', 'a malformed frame')
      const h = parseHeader(b)
      if (h.length !== b.length - HEADER) throw new SignalChannelError('protocol', 'a malformed frame')
      this.onFrame(h.kind, h.offset, b.subarray(HEADER))
    } catch (e) {
      this.close()
      this.onEnd(e)
    }
  }

  /** send sends a frame; it resolves once the channel's buffer has room again. */
  async send (b) {
    if (this.closed || this.dc.readyState !== 'open') return
    try {
      this.dc.send(b)
    } catch {
      return // the close event follows
    }
    while (!this.closed && this.dc.readyState === 'open' && this.dc.bufferedAmount > DC_HIGH_WATER) await this.low.wait()
  }

  close () {
    if (this.closed) return
    this.closed = true
    this.low.wake()
    this.early = null
    this.dc.removeEventListener('bufferedamountlow', this.onLow)
    this.dc.removeEventListener('message', this.onMessage)
    this.dc.removeEventListener('close', this.onClose)
    this.dc.removeEventListener('error', this.onClose)
    try {
      this.dc.close()
    } catch {}
  }
}

/** RelayPath carries frames one after another over a paired relay. */
class RelayPath {
  /** @param {import('./relay.js').Relay} relay */
  constructor (relay) {
    this.kind = 'relay'
    this.relay = relay
    this.closed = false
    this.tail = Promise.resolve()
  }

  start (onFrame, onEnd) {
    const r = this.relay.readable.getReader()
    const reader = new ByteReader({
      read: async () => {
        const { value, done } = await r.read()
        return done ? null : value
      }
    })
    ;(async () => {
      try {
        for (;;) {
          const head = await reader.readExact(HEADER)
          if (head === null) throw new SignalChannelError('closed', 'the relay ended')
          const h = parseHeader(head)
          if (h.length > MAX_PAYLOAD) throw new SignalChannelError('protocol', `a frame of ${h.length} bytes`)
          const payload = h.length > 0 ? await reader.readExact(h.length) : new Uint8Array(0)
          if (payload === null) throw new SignalChannelError('closed', 'the relay ended inside a frame')
          if (this.closed) return
          onFrame(h.kind, h.offset, payload)
        }
      } catch (e) {
        if (this.closed) return
        this.close()
        onEnd(e)
      }
    })()
  }

  /** send sends a frame after those before it; it resolves once the relay took it. */
  send (b) {
    if (this.closed) return Promise.resolve()
    this.tail = this.tail.then(() => this.closed ? undefined : this.relay.stream.write(b)).catch(() => {})
    return this.tail
  }

  close () {
    if (this.closed) return
    this.closed = true
    this.relay.reset()
  }
}

/**
 * FrameStream is the connection's byte stream over its current path.
 */
class FrameStream {
  /** @param {(err: unknown) => void} onError called when a path breaks the protocol */
  constructor (onError) {
    this.onError = onError
    /** @type {DataChannelPath | RelayPath | null} */
    this.cur = null
    this.changed = new Signal()
    /** @type {SignalChannelError | null} */
    this.error = null

    // sending
    this.acked = 0 // offset of unsent[0]
    /** @type {{off: number, bytes: Uint8Array}[]} written, not acknowledged, as sent */
    this.unsent = []
    this.unsentBytes = 0
    this.written = 0
    this.finOut = false

    // receiving
    this.delivered = 0
    this.ackSent = 0
    this.ackTimer = null
    /** @type {Uint8Array[]} */
    this.recv = []
    this.recvBytes = 0
    this.finIn = -1
    this.readWake = new Signal()
  }

  /** use makes p the path: what is not acknowledged is sent again on it. */
  use (p) {
    const old = this.cur
    this.cur = p
    if (old) old.close()
    p.start((kind, off, payload) => this.onFrame(p, kind, off, payload), (err) => this.pathEnded(p, err))
    for (const { off, bytes } of this.unsent) p.send(frame(FRAME_DATA, off, bytes))
    if (this.finOut) p.send(frame(FRAME_FIN, this.written))
    if (this.delivered > this.ackSent) this.ackSoon(true)
    this.changed.wake()
  }

  /** pathEnded is set by the connection: told when a path's reader stops. */
  pathEnded (p, err) {}

  onFrame (p, kind, off, payload) {
    try {
      switch (kind) {
        case FRAME_DATA:
          this.receive(off, payload)
          break
        case FRAME_ACK:
          this.ack(off)
          break
        case FRAME_FIN:
          this.fin(off)
          break
      }
    } catch (e) {
      p.close()
      this.onError(e)
    }
  }

  receive (off, payload) {
    const end = off + payload.length
    if (end <= this.delivered) return
    if (off > this.delivered) throw new SignalChannelError('protocol', `bytes from ${this.delivered} missing before ${off}`)
    if (this.finIn >= 0 && end > this.finIn) throw new SignalChannelError('protocol', `bytes past the fin at ${this.finIn}`)
    const fresh = payload.slice(this.delivered - off)
    this.recv.push(fresh)
    this.recvBytes += fresh.length
    this.delivered = end
    this.readWake.wake()
    this.ackSoon(this.delivered - this.ackSent >= ACK_EVERY)
  }

  fin (off) {
    if (off < this.delivered || (this.finIn >= 0 && off !== this.finIn)) throw new SignalChannelError('protocol', `a fin at ${off} after ${this.delivered} bytes`)
    this.finIn = off
    this.readWake.wake()
    this.ackSoon(true)
  }

  /** ackSoon acknowledges what arrived: now, or within ACK_DELAY. */
  ackSoon (now) {
    if (now) {
      this.sendAck()
    } else if (this.ackTimer === null) {
      this.ackTimer = setTimeout(() => this.sendAck(), ACK_DELAY)
    }
  }

  sendAck () {
    if (this.ackTimer !== null) {
      clearTimeout(this.ackTimer)
      this.ackTimer = null
    }
    // Held while the application has a window of bytes unread.
    if (this.recvBytes >= WINDOW || !this.cur || this.delivered <= this.ackSent) return
    this.ackSent = this.delivered
    this.cur.send(frame(FRAME_ACK, this.delivered))
  }

  ack (off) {
    if (off <= this.acked || off > this.written) return
    while (this.unsent.length > 0) {
      const c = this.unsent[0]
      const end = c.off + c.bytes.length
      if (end <= off) {
        this.unsent.shift()
        this.unsentBytes -= c.bytes.length
      } else {
        if (c.off < off) {
          const cut = off - c.off
          this.unsent[0] = { off, bytes: c.bytes.subarray(cut) }
          this.unsentBytes -= cut
        }
        break
      }
    }
    this.acked = off
    this.changed.wake()
  }

  /**
   * read resolves with the next bytes received, or null at the other
   * side's fin; it rejects once the stream has ended otherwise.
   */
  async read () {
    for (;;) {
      if (this.recv.length > 0) {
        const b = this.recv.shift()
        this.recvBytes -= b.length
        if (this.recvBytes < WINDOW && this.delivered > this.ackSent) this.ackSoon(false)
        return b
      }
      if (this.finIn >= 0 && this.delivered === this.finIn) return null
      if (this.error) throw this.error
      await this.readWake.wait()
    }
  }

  /** write keeps bytes until acknowledged and sends them on the current path. */
  async write (bytes) {
    for (let i = 0; i < bytes.length;) {
      while ((this.unsentBytes >= WINDOW || !this.cur) && !this.error && !this.finOut) await this.changed.wait()
      if (this.error) throw this.error
      if (this.finOut) throw new SignalChannelError('closed', 'write after the stream was closed')
      const n = Math.min(bytes.length - i, MAX_PAYLOAD, WINDOW - this.unsentBytes)
      const chunk = bytes.slice(i, i + n)
      const off = this.written
      this.unsent.push({ off, bytes: chunk })
      this.unsentBytes += n
      this.written += n
      i += n
      // A failed send is not an error of write: the bytes are kept, and
      // the next path sends them.
      await this.cur.send(frame(FRAME_DATA, off, chunk))
    }
  }

  /** closeWrite sends the fin after the bytes written. */
  closeWrite () {
    if (this.finOut || this.error) return
    this.finOut = true
    if (this.cur) this.cur.send(frame(FRAME_FIN, this.written))
    this.changed.wake()
  }

  /** flush resolves once every byte written is acknowledged, the stream ends, or ms pass; with whether all were. */
  async flush (ms) {
    const deadline = Date.now() + ms
    while (this.acked < this.written && !this.error) {
      const left = deadline - Date.now()
      if (left <= 0) break
      await Promise.race([this.changed.wait(), later(Math.min(left, 100))])
    }
    return this.acked === this.written
  }

  /** end ends the stream with err. */
  end (err) {
    if (!this.error) this.error = err
    if (this.ackTimer !== null) {
      clearTimeout(this.ackTimer)
      this.ackTimer = null
    }
    if (this.cur) this.cur.close()
    this.changed.wake()
    this.readWake.wake()
  }
}

/**
 * Connection is a connection between two members over an accepted call
 * (call.connect()). Its data is `readable` and `writable`, byte streams,
 * over the WebRTC data channel or over the relay; `pc` is the
 * RTCPeerConnection, for media tracks (renegotiation runs over the call by
 * itself); `path` says how the data travels: 'direct', 'turn' or 'relay'.
 *
 * Events: `path` (the new path) each time the data takes one, `close` (a
 * SignalChannelError, or null after close()) once the connection ended.
 */
export class Connection extends Emitter {
  /**
   * @param {import('./room.js').Call} call
   * @param {import('./index.js').ConnectOptions} options
   */
  constructor (call, options) {
    super()
    this.call = call
    this.options = options
    this.polite = call.polite
    /** log receives the connection's debug logs: a message and its fields. */
    this.log = typeof options.log === 'function' ? options.log : () => {}
    this.directTimeout = options.directTimeout > 0 ? options.directTimeout : DEFAULT_DIRECT_TIMEOUT
    this.disconnectGrace = options.disconnectGrace > 0 ? options.disconnectGrace : DEFAULT_DISCONNECT_GRACE
    /** @type {'' | 'direct' | 'turn' | 'relay'} */
    this.path = ''
    /** @type {RTCPeerConnection | null} */
    this.pc = null
    this.relaying = false
    this.makingOffer = false
    this.ignoreOffer = false
    this.graceTimer = null
    this.iceTimer = null
    this.restarts = 0
    /** @type {any[] | null} local candidates waiting for their description to be sent */
    this.localCands = null
    /** @type {any[]} remote candidates that came before the remote description */
    this.remoteCands = []
    /** @type {SignalChannelError | null} */
    this.error = null
    this.ended = false
    this.timers = new Set()
    this.abort = new AbortController()
    this.stream = new FrameStream((e) => this.end(e))
    this.stream.pathEnded = (p, err) => this.pathFailed(p, err)
    this.resolveReady = null
    this.rejectReady = null
    /** ready resolves once the first path is up. */
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve
      this.rejectReady = reject
    })
    this.ready.catch(() => {})
    this.resolveClosed = null
    /** closed resolves once the connection has ended, with the error that ended it (null after close()). */
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve })

    const stream = this.stream
    /** @type {ReadableStream<Uint8Array>} the bytes the other side writes; it ends at the other side's close. */
    this.readable = new ReadableStream({
      async pull (controller) {
        const b = await stream.read()
        if (b === null) controller.close()
        else controller.enqueue(b)
      }
    }, { highWaterMark: 0 })
    /** @type {WritableStream<Uint8Array | ArrayBuffer | ArrayBufferView | string>} bytes to the other side; close() ends them (the other side's readable ends once it has read them). */
    this.writable = new WritableStream({
      write: (chunk) => this.ready.then(() => stream.write(toBytes(chunk))),
      close: async () => {
        await this.ready
        stream.closeWrite()
        await stream.flush(CLOSE_LINGER)
      },
      abort: () => this.end(new SignalChannelError('reset', 'the writable was aborted'))
    }, { highWaterMark: 1 })
  }

  /** start begins the connection: WebRTC unless forceRelay, the signals, the fallback timer. */
  start () {
    if (!this.options.forceRelay) this.startWebRTC()
    this.signals()
    if (this.options.forceRelay) {
      this.toRelay(true)
    } else {
      this.after(this.directTimeout, () => {
        if (!this.polite && !this.stream.cur) this.toRelay(true)
      })
    }
  }

  /** after runs fn after ms unless the connection ends first. */
  after (ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t)
      if (!this.ended) fn()
    }, ms)
    this.timers.add(t)
    return t
  }

  clear (t) {
    if (t === null) return null
    clearTimeout(t)
    this.timers.delete(t)
    return null
  }

  startWebRTC () {
    const PC = this.options.RTCPeerConnection ?? globalThis.RTCPeerConnection
    if (typeof PC !== 'function') throw new TypeError('no WebRTC here: pass RTCPeerConnection in the options, or forceRelay')
    const config = { ...(this.options.config ?? {}) }
    if (this.options.iceServers) config.iceServers = this.options.iceServers
    const pc = new PC(config)
    this.pc = pc
    const dc = pc.createDataChannel('data', { negotiated: true, id: 0, ordered: true })
    dc.binaryType = 'arraybuffer'
    const path = new DataChannelPath(dc)
    dc.addEventListener('open', async () => {
      path.kind = await this.iceKind()
      if (this.relaying || this.ended) {
        path.close()
        return
      }
      this.usePath(path)
    })
    pc.addEventListener('negotiationneeded', () => this.negotiate())
    pc.addEventListener('signalingstatechange', () => this.log('signaling state', { state: pc.signalingState }))
    pc.addEventListener('icecandidate', (ev) => {
      this.log('local candidate', { candidate: ev.candidate?.candidate ?? null })
      const msg = { type: 'candidate', candidate: ev.candidate ? ev.candidate.toJSON() : null }
      // A candidate goes after the description it belongs to.
      if (this.localCands) this.localCands.push(msg)
      else this.send(msg)
    })
    pc.addEventListener('iceconnectionstatechange', () => this.iceState(pc.iceConnectionState))
  }

  /** iceKind says whether the selected candidate pair goes through TURN. */
  async iceKind () {
    try {
      const stats = await this.pc.getStats()
      let pair = null
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId)
      })
      if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = pair ?? s })
      if (pair) {
        const local = stats.get(pair.localCandidateId)
        const remote = stats.get(pair.remoteCandidateId)
        if (local?.candidateType === 'relay' || remote?.candidateType === 'relay') return 'turn'
      }
    } catch {}
    return 'direct'
  }

  send (msg) {
    if (this.ended) return
    this.call.send(msg).catch(() => {})
  }

  /**
   * negotiate is perfect negotiation's negotiationneeded. The polite side
   * does not offer: it asks the impolite side for an offer (negotiate),
   * naming the kinds of the tracks it added that no negotiation has placed
   * yet, so that the offer has a section for each. Offers then never
   * collide, and no side rolls back, which Chromium does not do cleanly
   * for a first offer (its candidates are never gathered again).
   */
  async negotiate () {
    if (this.ended) return
    if (this.polite) {
      const receive = this.pc.getTransceivers()
        .filter((t) => t.mid === null && t.sender.track && t.direction !== 'inactive' && t.direction !== 'recvonly')
        .map((t) => t.sender.track.kind)
      this.log('asking for an offer', { receive })
      this.send(receive.length > 0 ? { type: 'negotiate', receive } : { type: 'negotiate' })
      return
    }
    try {
      this.makingOffer = true
      await this.setLocal()
      this.log('offer sent', {})
    } catch (e) {
      this.log('offer failed', { error: String(e?.message ?? e) })
    } finally {
      this.makingOffer = false
    }
  }

  /** onDescription is perfect negotiation's handling of a remote description. */
  async onDescription (description) {
    const pc = this.pc
    const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable')
    this.ignoreOffer = !this.polite && collision
    this.log('remote description', { type: description.type, state: pc.signalingState, ignored: this.ignoreOffer })
    if (this.ignoreOffer) return
    await pc.setRemoteDescription(description)
    if (description.type === 'offer') {
      await this.setLocal()
    }
  }

  /** setLocal sets the local description and sends it, then the candidates gathered meanwhile. */
  async setLocal () {
    this.localCands = this.localCands ?? []
    try {
      await this.pc.setLocalDescription()
      this.send({ type: 'description', description: this.pc.localDescription.toJSON() })
    } finally {
      const cands = this.localCands
      this.localCands = null
      for (const m of cands) this.send(m)
    }
  }

  /** signals reads the call's messages until it ends. */
  async signals () {
    // Messages are handled in order: a description waits for the one before.
    let chain = Promise.resolve()
    try {
      for (;;) {
        const msg = await this.call.recv()
        if (msg === null) {
          this.end(new SignalChannelError('closed', `the call ended: ${this.call.reason() || 'bye'}`))
          return
        }
        chain = chain.then(() => this.onSignal(msg)).catch((e) => this.log('signal not applied', { type: msg.type, error: String(e?.message ?? e) }))
      }
    } catch (e) {
      this.end(e instanceof SignalChannelError ? e : new SignalChannelError('closed', `the call ended: ${e.message ?? e}`))
    }
  }

  async onSignal (msg) {
    if (this.ended) return
    switch (msg.type) {
      case 'description':
        if (!this.pc || !msg.description) break
        await this.onDescription(msg.description)
        if (this.pc.remoteDescription) {
          const early = this.remoteCands
          this.remoteCands = []
          for (const c of early) await this.pc.addIceCandidate(c).catch((e) => this.log('remote candidate', { error: String(e?.message ?? e) }))
        }
        break
      case 'candidate':
        if (!this.pc || !msg.candidate) break
        if (!this.pc.remoteDescription) {
          // Sent before its description by a peer that does not wait:
          // kept until the description comes.
          if (this.remoteCands.length < MAX_EARLY_CANDIDATES) this.remoteCands.push(msg.candidate)
          break
        }
        try {
          await this.pc.addIceCandidate(msg.candidate)
        } catch (e) {
          if (!this.ignoreOffer) throw e
        }
        break
      case 'negotiate':
        // The other side cannot roll back, and asks for an offer.
        if (!this.pc || this.polite) break
        for (const kind of Array.isArray(msg.receive) ? msg.receive : []) {
          if (kind === 'audio' || kind === 'video') this.pc.addTransceiver(kind, { direction: 'recvonly' })
        }
        if (!this.makingOffer && this.pc.signalingState === 'stable') await this.negotiate()
        break
      case 'path':
        if (msg.path === 'relay') this.toRelay(false)
        break
    }
  }

  /** toRelay moves the data to the call's relay pair, unless it is there or on its way. */
  async toRelay (announce) {
    if (this.relaying || this.ended) return
    this.relaying = true
    if (announce) this.send({ type: 'path', path: 'relay' })
    const room = this.call.room
    const me = room.id
    const other = this.call.peer.id
    let relay
    try {
      relay = await room.channel.relay(room.namespace, `${me}/data/${other}/${this.call.id}`, `${other}/data/${me}/${this.call.id}`, { signal: this.abort.signal })
    } catch (e) {
      this.end(e instanceof SignalChannelError ? e : new SignalChannelError('closed', `relay: ${e.message ?? e}`))
      return
    }
    if (relay.peer.id !== other) {
      relay.reset()
      this.end(new SignalChannelError('forbidden', `the relay paired with "${relay.peer.id}", not "${other}"`))
      return
    }
    this.usePath(new RelayPath(relay))
  }

  usePath (p) {
    if (this.ended) {
      p.close()
      return
    }
    this.log('connection path', { path: p.kind })
    this.stream.use(p)
    this.path = p.kind
    this.resolveReady(this)
    this.emit('path', p.kind)
  }

  /** pathFailed: the relay failing ends the connection; the data channel failing sends the data to the relay. */
  pathFailed (p, err) {
    if (this.ended || this.stream.cur !== p) return
    if (p.kind === 'relay') {
      this.end(err instanceof SignalChannelError ? err : new SignalChannelError('closed', `the relay ended: ${err?.message ?? err}`))
      return
    }
    this.toRelay(!this.polite)
  }

  /** iceState heals the connection: an ICE restart, then the relay. */
  iceState (state) {
    this.log('ICE', { state })
    switch (state) {
      case 'connected':
      case 'completed':
        this.graceTimer = this.clear(this.graceTimer)
        this.iceTimer = this.clear(this.iceTimer)
        this.restarts = 0
        break
      case 'disconnected':
        if (this.graceTimer === null) this.graceTimer = this.after(this.disconnectGrace, () => this.iceState('failed'))
        break
      case 'failed':
        if (this.iceTimer !== null || this.relaying || this.ended) return
        if (this.restarts === 0 && !this.polite) {
          this.restarts++
          this.restartICE()
        }
        this.iceTimer = this.after(this.directTimeout, () => {
          if (!this.polite) this.toRelay(true)
        })
        break
    }
  }

  /** restartICE restarts ICE with fresh ICE servers when iceServersFunc gives them. */
  async restartICE () {
    const f = this.options.iceServersFunc
    if (f) {
      try {
        const iceServers = await f()
        if (this.ended) return
        this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers })
      } catch {}
    }
    this.pc.restartIce()
  }

  /** end records why the connection ended and stops it. */
  end (err) {
    if (this.ended) return
    this.log('connection ended', { error: err?.message ?? null })
    this.ended = true
    this.error = err
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.abort.abort()
    this.stream.end(err ?? new SignalChannelError('closed', 'the connection is closed'))
    try {
      this.pc?.close()
    } catch {}
    this.rejectReady(this.stream.error)
    // A call the other side ended with bye is closed in turn; one that
    // failed is reset.
    if (err && !this.call.ending) this.call.reset()
    else this.call.close('connection closed').catch(() => {})
    this.resolveClosed(err)
    this.emit('close', err)
  }

  /**
   * close ends the connection: it ends the data this side sends, waits
   * (CLOSE_LINGER at most) for the other side to have every byte written,
   * then closes the peer connection and the call.
   */
  async close () {
    if (this.ended) return
    if (this.stream.cur && !this.stream.error) {
      this.stream.closeWrite()
      await this.stream.flush(CLOSE_LINGER)
    }
    this.end(null)
  }
}

/**
 * connectCall sets up the connection of an accepted call and resolves once
 * its data can flow. Both sides of the call connect.
 * @param {import('./room.js').Call} call
 * @param {import('./index.js').ConnectOptions} [options]
 * @returns {Promise<Connection>}
 */
export async function connectCall (call, options = {}) {
  if (!options.forceRelay && !options.iceServers && !options.iceServersFunc && !options.config?.iceServers) {
    // The server's, renewed for every ICE restart.
    const ch = call.room.channel
    const servers = await ch.iceServers(options.signal)
    if (servers) {
      options = { ...options, iceServers: servers.iceServers, iceServersFunc: async () => (await ch.iceServers())?.iceServers ?? [] }
    }
  }
  const conn = new Connection(call, options)
  const onAbort = () => conn.end(new SignalChannelError('aborted', 'connect was aborted'))
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    conn.start()
    return await conn.ready
  } catch (e) {
    conn.end(e instanceof SignalChannelError ? e : new SignalChannelError('closed', String(e?.message ?? e)))
    throw e
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
}
