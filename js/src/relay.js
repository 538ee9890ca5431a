import { toBytes } from './bytes.js'

/**
 * Relay is a paired relay stream: bytes written to `writable` reach the
 * partner's `readable`, and the other way round. `writable.close()` (or
 * `getWriter().close()`) half-closes (FIN): the partner's readable ends,
 * and this side can go on reading. `writable.abort()` and
 * `readable.cancel()` reset the stream (RST): both sides fail.
 *
 * `readable` pulls from the connection only as it is read, so a partner
 * that writes faster than this side reads is held back by flow control.
 */
export class Relay {
  /**
   * @param {string} namespace
   * @param {import('./yamux.js').Stream} stream
   * @param {import('./bytes.js').ByteReader} reader
   * @param {{limit?: {bytes: number, seconds: number}, peer?: {id: string, meta?: Record<string, any>}}} reply
   */
  constructor (namespace, stream, reader, reply) {
    this.namespace = namespace
    this.stream = stream
    /** limit is the pair's caps: bytes per direction and lifetime in seconds (0: no cap). */
    this.limit = { bytes: reply.limit?.bytes ?? 0, seconds: reply.limit?.seconds ?? 0 }
    /**
     * peer is who is at the other end, as the server vouches for it: the
     * partner's peer id and the public meta claim of its token (null when
     * none); id is '' against a server that does not say.
     */
    this.peer = { id: typeof reply.peer?.id === 'string' ? reply.peer.id : '', meta: reply.peer?.meta ?? null }

    /** @type {ReadableStream<Uint8Array>} */
    this.readable = new ReadableStream({
      async pull (controller) {
        const c = await reader.readChunk()
        if (c === null) controller.close()
        else controller.enqueue(c)
      },
      cancel () {
        stream.reset('readable cancelled')
      }
    }, { highWaterMark: 0 })

    /** @type {WritableStream<Uint8Array | ArrayBuffer | ArrayBufferView | string>} */
    this.writable = new WritableStream({
      write (chunk) {
        return stream.write(toBytes(chunk))
      },
      close () {
        return stream.closeWrite()
      },
      abort () {
        stream.reset('writable aborted')
      }
    }, { highWaterMark: 1 })
  }

  /** reset aborts the pipe both ways (RST). */
  reset () {
    this.stream.reset()
  }
}
