import { SignalChannelError } from './errors.js'
import { toBytes } from './bytes.js'

/** DEFAULT_MAX_FRAME is the echo frame limit when the reply names none. */
export const DEFAULT_MAX_FRAME = 64 * 1024

/**
 * Echo is a member of an echo namespace: every frame any member sends
 * reaches every member, this one included, in one order. Frames are carried
 * with a 4-byte big-endian length prefix.
 *
 * send() may be called any number of times without waiting: frames go out
 * in call order. recv() and async iteration read the namespace's frames;
 * iteration ends after close(), once the server has sent what it had queued.
 */
export class Echo {
  /**
   * @param {string} namespace
   * @param {import('./yamux.js').Stream} stream
   * @param {import('./bytes.js').ByteReader} reader
   * @param {{maxFrame?: number}} reply
   */
  constructor (namespace, stream, reader, reply) {
    this.namespace = namespace
    this.stream = stream
    this.reader = reader
    /** maxFrame is the longest frame the server accepts, in bytes. */
    this.maxFrame = Number.isInteger(reply.maxFrame) && reply.maxFrame > 0 ? reply.maxFrame : DEFAULT_MAX_FRAME
  }

  /**
   * send writes one frame; strings are sent as UTF-8. It rejects with
   * `frame_too_large` (and sends nothing) when the frame is longer than
   * maxFrame. It resolves when the frame is queued on the connection.
   * @param {string | ArrayBuffer | ArrayBufferView} data
   */
  send (data) {
    const bytes = toBytes(data)
    if (bytes.length > this.maxFrame) {
      return Promise.reject(new SignalChannelError('frame_too_large', `echo frame of ${bytes.length} bytes is longer than maxFrame (${this.maxFrame})`))
    }
    const frame = new Uint8Array(4 + bytes.length)
    new DataView(frame.buffer).setUint32(0, bytes.length)
    frame.set(bytes, 4)
    return this.stream.write(frame)
  }

  /**
   * recv resolves with the next frame, or null when the stream has ended
   * (after close()). It rejects with `reset` when the server dropped this
   * member (too slow, or a frame too large), and with `closed` when the
   * session ended. One recv at a time.
   * @returns {Promise<Uint8Array | null>}
   */
  async recv () {
    let prefix
    try {
      prefix = await this.reader.readExact(4)
    } catch (e) {
      throw this.wrap(e)
    }
    if (prefix === null) return null
    const n = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0)
    if (n > this.maxFrame) {
      this.stream.reset('frame too large')
      throw new SignalChannelError('protocol', `the server sent an echo frame of ${n} bytes, over maxFrame (${this.maxFrame})`)
    }
    let body
    try {
      body = await this.reader.readExact(n)
    } catch (e) {
      throw this.wrap(e)
    }
    if (body === null) throw new SignalChannelError('protocol', 'the stream ended inside an echo frame')
    // A frame may be a view into a larger buffer; hand out its own copy.
    return body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : body.slice()
  }

  wrap (e) {
    if (e instanceof SignalChannelError) return e
    return new SignalChannelError('protocol', e.message)
  }

  /** Frames, until the stream ends. */
  async * [Symbol.asyncIterator] () {
    for (;;) {
      const f = await this.recv()
      if (f === null) return
      yield f
    }
  }

  /**
   * close leaves the namespace gracefully (FIN): the server delivers what it
   * had queued for this member, then ends the stream, and recv() returns
   * null.
   */
  close () {
    return this.stream.closeWrite()
  }

  /** reset leaves at once (RST). */
  reset () {
    this.stream.reset()
  }
}
