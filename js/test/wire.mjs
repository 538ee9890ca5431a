// A WebSocket for tests: it wraps the `ws` package's WebSocket, splits what
// the client sends into several messages at random points (inside frame
// headers too), re-cuts what the server sends (splitting and joining
// messages), and checks the yamux flow control of both directions with a
// frame parser of its own. And an in-memory pair of yamux sessions, for
// tests that play the server's part themselves.

import { WebSocket as WS } from 'ws'
import { Session } from '../src/yamux.js'
import { concat } from '../src/bytes.js'
import { pseudoRandom } from './helpers.mjs'

const WINDOW = 256 * 1024

/** FrameScanner follows yamux frames in a byte stream, without the client's code. */
class FrameScanner {
  constructor (onFrame) {
    this.hdr = new Uint8Array(12)
    this.n = 0
    this.body = 0
    this.onFrame = onFrame
    this.frames = 0
    this.bytes = 0
  }

  push (b) {
    this.bytes += b.length
    let off = 0
    while (off < b.length) {
      if (this.body > 0) {
        const k = Math.min(this.body, b.length - off)
        this.body -= k
        off += k
        continue
      }
      const k = Math.min(12 - this.n, b.length - off)
      this.hdr.set(b.subarray(off, off + k), this.n)
      this.n += k
      off += k
      if (this.n < 12) continue
      this.n = 0
      const v = new DataView(this.hdr.buffer)
      const h = { version: v.getUint8(0), type: v.getUint8(1), flags: v.getUint16(2), id: v.getUint32(4), length: v.getUint32(8) }
      if (h.type === 0) this.body = h.length
      this.frames++
      this.onFrame(h)
    }
  }

  /** atBoundary reports whether the bytes so far end on a frame boundary. */
  atBoundary () {
    return this.n === 0 && this.body === 0
  }
}

/**
 * WireMonitor checks, per stream, that neither side sends more data than the
 * other has granted: 256 KiB plus the window updates it sent.
 */
export class WireMonitor {
  constructor () {
    /** @type {Map<number, {out: number, outGrant: number, in: number, inGrant: number}>} */
    this.streams = new Map()
    this.violations = []
    this.out = new FrameScanner((h) => this.frame(h, 'out'))
    this.in = new FrameScanner((h) => this.frame(h, 'in'))
    this.messagesOut = 0
    this.messagesIn = 0
    this.splitOut = 0 // client messages that ended inside a frame
    this.joinedIn = 0 // messages handed to the client that held parts of two frames or more
    this.maxOutstandingOut = 0
    this.maxOutstandingIn = 0
    this.windowUpdatesOut = 0
  }

  stream (id) {
    let s = this.streams.get(id)
    if (!s) {
      s = { out: 0, outGrant: WINDOW, in: 0, inGrant: WINDOW }
      this.streams.set(id, s)
    }
    return s
  }

  frame (h, dir) {
    if (h.type !== 0 && h.type !== 1) return
    const s = this.stream(h.id)
    if (h.type === 1) {
      if (dir === 'out') {
        s.inGrant += h.length
        if (h.length > 0) this.windowUpdatesOut++
      } else {
        s.outGrant += h.length
      }
      return
    }
    if (dir === 'out') {
      s.out += h.length
      this.maxOutstandingOut = Math.max(this.maxOutstandingOut, s.out - (s.outGrant - WINDOW))
      if (s.out > s.outGrant) this.violations.push(`client sent ${s.out} bytes on stream ${h.id}, granted ${s.outGrant}`)
    } else {
      s.in += h.length
      this.maxOutstandingIn = Math.max(this.maxOutstandingIn, s.in - (s.inGrant - WINDOW))
      if (s.in > s.inGrant) this.violations.push(`server sent ${s.in} bytes on stream ${h.id}, granted ${s.inGrant}`)
    }
  }
}

/**
 * splittingWebSocket returns a WebSocket class for connect()'s WebSocket
 * option, and the monitors of the sockets it makes.
 * @param {{seed?: number, split?: boolean}} [options]
 */
export function splittingWebSocket (options = {}) {
  const rand = pseudoRandom(options.seed ?? 7)
  const split = options.split !== false
  const monitors = []

  class SplittingWebSocket extends EventTarget {
    constructor (url, protocols) {
      super()
      this.monitor = new WireMonitor()
      monitors.push(this.monitor)
      this.ws = new WS(url, protocols)
      this.ws.binaryType = 'arraybuffer'
      /** @type {Uint8Array | null} inbound bytes held back to join with the next message */
      this.held = null
      this.holdTimer = null
      this.ws.addEventListener('open', () => this.dispatchEvent(new Event('open')))
      this.ws.addEventListener('error', (e) => {
        const ev = new Event('error')
        ev.message = e.message
        this.dispatchEvent(ev)
      })
      this.ws.addEventListener('close', (e) => {
        this.release()
        const ev = new Event('close')
        ev.code = e.code
        ev.reason = e.reason
        ev.wasClean = e.wasClean
        this.dispatchEvent(ev)
      })
      this.ws.addEventListener('message', (e) => this.inbound(new Uint8Array(e.data)))
    }

    get protocol () { return this.ws.protocol }
    get readyState () { return this.ws.readyState }
    get bufferedAmount () { return this.ws.bufferedAmount }
    get binaryType () { return 'arraybuffer' }
    set binaryType (v) {}

    deliver (bytes) {
      const ev = new Event('message')
      ev.data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
      this.dispatchEvent(ev)
    }

    release () {
      if (this.holdTimer) clearTimeout(this.holdTimer)
      this.holdTimer = null
      if (this.held) {
        const h = this.held
        this.held = null
        this.deliver(h)
      }
    }

    inbound (bytes) {
      this.monitor.messagesIn++
      this.monitor.in.push(bytes)
      if (!split) return this.deliver(bytes)
      if (this.held) {
        const joined = new Uint8Array(this.held.length + bytes.length)
        joined.set(this.held)
        joined.set(bytes, this.held.length)
        this.held = null
        bytes = joined
        this.monitor.joinedIn++
      }
      if (this.holdTimer) clearTimeout(this.holdTimer)
      this.holdTimer = null
      let off = 0
      while (off < bytes.length) {
        const rest = bytes.length - off
        const n = rest <= 1 ? rest : 1 + rand(Math.min(rest, rand(4) === 0 ? 20 : 70000))
        if (off + n === bytes.length && n > 1 && rand(2) === 0) {
          // Hold the tail back: it is joined with the next message, or
          // delivered on its own shortly.
          this.held = bytes.slice(off)
          this.holdTimer = setTimeout(() => this.release(), 5)
          return
        }
        this.deliver(bytes.subarray(off, off + n))
        off += n
      }
    }

    send (data) {
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
      this.monitor.out.push(bytes)
      if (!split) {
        this.monitor.messagesOut++
        if (!this.monitor.out.atBoundary()) this.monitor.splitOut++
        return this.ws.send(bytes)
      }
      const scan = new FrameScanner(() => {})
      let off = 0
      while (off < bytes.length) {
        const rest = bytes.length - off
        const n = rest <= 1 ? rest : 1 + rand(Math.min(rest, rand(3) === 0 ? 13 : 100000))
        const piece = bytes.slice(off, off + n)
        scan.push(piece)
        this.monitor.messagesOut++
        if (!scan.atBoundary()) this.monitor.splitOut++
        this.ws.send(piece)
        off += n
      }
    }

    close (code, reason) {
      this.ws.close(code, reason)
    }
  }
  return { WebSocket: SplittingWebSocket, monitors }
}

/**
 * pair joins a client and a server session. Bytes travel asynchronously,
 * re-cut into pieces of random size; the monitor sees the client's side.
 */
export function pair ({ seed = 1, maxPiece = 5000, serverOptions = {}, clientOptions = {} } = {}) {
  const rand = pseudoRandom(seed)
  const monitor = new WireMonitor()
  const closes = []
  let client, server
  const link = (from, deliver, dir) => ({
    bufferedAmount: 0,
    send (data) {
      const bytes = data.slice()
      if (dir === 'out') monitor.out.push(bytes)
      else monitor.in.push(bytes)
      let off = 0
      while (off < bytes.length) {
        const n = 1 + rand(Math.min(bytes.length - off, maxPiece))
        const piece = bytes.subarray(off, off + n)
        setImmediate(() => deliver().receive(piece))
        off += n
      }
    },
    close (code, reason) {
      closes.push({ from, code, reason })
      setImmediate(() => {
        client.transportClosed(code, reason)
        server.transportClosed(code, reason)
      })
    }
  })
  client = new Session(link('client', () => server, 'out'), { client: true, ...clientOptions })
  server = new Session(link('server', () => client, 'in'), { client: false, ...serverOptions })
  return { client, server, monitor, closes }
}

/** readAll reads stream s to its end and returns its bytes. */
export async function readAll (s) {
  const chunks = []
  for (;;) {
    const c = await s.read()
    if (c === null) return concat(chunks)
    chunks.push(c)
  }
}
