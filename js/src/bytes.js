const encoder = new TextEncoder()

/**
 * toBytes returns data as a Uint8Array: strings are encoded as UTF-8, views
 * and ArrayBuffers are wrapped without a copy.
 * @param {string | ArrayBuffer | ArrayBufferView} data
 * @returns {Uint8Array}
 */
export function toBytes (data) {
  if (typeof data === 'string') return encoder.encode(data)
  if (data instanceof Uint8Array) return data
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  throw new TypeError('expected a string, an ArrayBuffer or an ArrayBufferView')
}

/**
 * concat joins chunks into one Uint8Array of total bytes.
 * @param {Uint8Array[]} chunks
 * @param {number} [total]
 */
export function concat (chunks, total) {
  if (chunks.length === 1) return chunks[0]
  if (total === undefined) total = chunks.reduce((n, c) => n + c.length, 0)
  const out = new Uint8Array(total)
  let off = 0
  for (const c of chunks) {
    out.set(c, off)
    off += c.length
  }
  return out
}

/**
 * ByteReader reads lines, exact byte counts and chunks from a source whose
 * read() resolves to the next Uint8Array, or null at the end. It keeps what
 * it read past a line or a count for the next call.
 */
export class ByteReader {
  /** @param {{read(): Promise<Uint8Array | null>}} source */
  constructor (source) {
    this.source = source
    /** @type {Uint8Array[]} */
    this.chunks = []
    this.length = 0
    this.eof = false
  }

  /** @returns {Promise<boolean>} false at the end of the source */
  async fill () {
    if (this.eof) return false
    const c = await this.source.read()
    if (c === null) {
      this.eof = true
      return false
    }
    if (c.length > 0) {
      this.chunks.push(c)
      this.length += c.length
    }
    return true
  }

  /** take removes and returns the first n buffered bytes (n <= length). */
  take (n) {
    if (n === 0) return new Uint8Array(0)
    const first = this.chunks[0]
    if (first.length === n) {
      this.chunks.shift()
      this.length -= n
      return first
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n)
      this.length -= n
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const c = this.chunks[0]
      const k = Math.min(c.length, n - off)
      out.set(c.subarray(0, k), off)
      off += k
      if (k === c.length) this.chunks.shift()
      else this.chunks[0] = c.subarray(k)
    }
    this.length -= n
    return out
  }

  /**
   * readLine returns the next line without its newline, or null at the end
   * of the source before any byte of a line. It throws a RangeError when no
   * newline comes within max bytes (newline included), and an Error when the
   * source ends inside a line.
   * @param {number} max
   */
  async readLine (max) {
    let scanned = 0 // bytes already searched for a newline
    for (;;) {
      let pos = 0
      for (const c of this.chunks) {
        if (pos + c.length > scanned) {
          const from = Math.max(0, scanned - pos)
          const i = c.indexOf(10, from)
          if (i >= 0) {
            if (pos + i + 1 > max) throw new RangeError(`line longer than ${max} bytes`)
            const line = this.take(pos + i + 1)
            return line.subarray(0, line.length - 1)
          }
        }
        pos += c.length
      }
      scanned = this.length
      if (this.length >= max) throw new RangeError(`line longer than ${max} bytes`)
      if (!(await this.fill())) {
        if (this.length === 0) return null
        throw new Error('stream ended inside a line')
      }
    }
  }

  /**
   * readExact returns the next n bytes, or null when the source ends before
   * any of them; it throws an Error when it ends part way.
   * @param {number} n
   */
  async readExact (n) {
    while (this.length < n) {
      if (!(await this.fill())) {
        if (this.length === 0) return null
        throw new Error(`stream ended ${n - this.length} bytes short`)
      }
    }
    return this.take(n)
  }

  /** readChunk returns buffered bytes if any, else the source's next chunk (null at the end). */
  async readChunk () {
    if (this.length > 0) return this.take(this.length)
    if (this.eof) return null
    return this.source.read()
  }
}
