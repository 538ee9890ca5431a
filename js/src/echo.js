import { SignalChannelError, errorOf } from './errors.js'
import { toBytes } from './bytes.js'

/** DEFAULT_MAX_FRAME is the echo frame limit when the reply names none. */
export const DEFAULT_MAX_FRAME = 64 * 1024

/**
 * ERROR_RECORD is the length prefix of an error record, a length no frame
 * can have: an error object line follows it, and then the server
 * half-closes the stream (PROTOCOL.md section 8).
 */
export const ERROR_RECORD = 0xffffffff

/** MAX_ERROR_LINE bounds an error record's line, newline included. */
export const MAX_ERROR_LINE = 16 * 1024

/**
 * Echo is a member of an echo namespace: every frame any member sends
 * reaches every member, this one included, in one order. Frames are carried
 * with a 4-byte big-endian length prefix.
 *
 * send() may be called any number of times without waiting: frames go out
 * in call order. recv() and async iteration read the namespace's frames;
 * iteration ends after close(), once the server has sent what it had queued.
 *
 * A member that publishes past the server's budget is refused: the server
 * sends an error record instead of a frame and the member has left the
 * namespace. recv() then rejects with the record's error (`limit`), and so
 * do later recv() and send() calls.
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
    /**
     * error is what ended this member while its stream was open: the
     * server's error record, or a `protocol` error; null until then.
     * @type {SignalChannelError | null}
     */
    this.error = null
  }

  /**
   * send writes one frame; strings are sent as UTF-8. It rejects with
   * `frame_too_large` (and sends nothing) when the frame is longer than
   * maxFrame, and with the member's error once it has ended (see recv).
   * It resolves when the frame is queued on the connection.
   * @param {string | ArrayBuffer | ArrayBufferView} data
   */
  send (data) {
    if (this.error) return Promise.reject(this.error)
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
   * member (too slow, or a frame too large), with `closed` when the session
   * ended, and with the error of the server's error record (`limit`: this
   * member published past its budget and has left the namespace); it then
   * half-closes the stream and rejects every later call with that error.
   * One recv at a time.
   * @returns {Promise<Uint8Array | null>}
   */
  async recv () {
    if (this.error) throw this.error
    const prefix = await this.read(() => this.reader.readExact(4))
    if (prefix === null) return null
    const n = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0)
    if (n === ERROR_RECORD) throw await this.readErrorRecord()
    if (n > this.maxFrame) {
      throw this.broken(`the server sent an echo frame of ${n} bytes, over maxFrame (${this.maxFrame})`)
    }
    const body = await this.read(() => this.reader.readExact(n))
    if (body === null) throw new SignalChannelError('protocol', 'the stream ended inside an echo frame')
    // A frame may be a view into a larger buffer; hand out its own copy.
    return body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : body.slice()
  }

  /**
   * readErrorRecord reads the line of an error record, whose prefix was
   * read, and returns its error, which ends this member: the write side is
   * half-closed (the server discards what comes until then) and later
   * calls fail with it. A line that is too long, cut short or not an error
   * object is a `protocol` error, and the stream is reset.
   */
  async readErrorRecord () {
    let line
    try {
      line = await this.reader.readLine(MAX_ERROR_LINE)
    } catch (e) {
      if (e instanceof SignalChannelError) return e
      return this.broken(e instanceof RangeError
        ? `the server sent an error record longer than ${MAX_ERROR_LINE} bytes`
        : 'the stream ended inside an error record')
    }
    if (line === null) return this.broken('the stream ended inside an error record')
    let err = null
    try {
      err = errorOf(JSON.parse(new TextDecoder().decode(line))?.error)
    } catch {}
    if (!err) return this.broken('the server sent an error record without an error object')
    this.error = err
    this.stream.closeWrite().catch(() => {})
    return err
  }

  /**
   * read runs a read of the reader, turning what it throws into a
   * SignalChannelError.
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async read (fn) {
    try {
      return await fn()
    } catch (e) {
      if (e instanceof SignalChannelError) throw e
      throw new SignalChannelError('protocol', e.message)
    }
  }

  /** broken ends this member on a `protocol` error: the stream is reset. */
  broken (message) {
    const err = new SignalChannelError('protocol', message)
    this.error = err
    this.stream.reset(message)
    return err
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

  /** reset leaves at once (RST); after an error the member has left already. */
  reset () {
    if (this.error) return
    this.stream.reset()
  }
}
