/**
 * SignalChannelError is every error the client reports. `code` is one of the
 * protocol error codes of the server's failure replies (`bad_header`,
 * `unknown_endpoint`, `bad_namespace`, `bad_token`, `forbidden`, `limit`,
 * `timeout`, `conflict`, `internal`), a scuttlebutt error object's code
 * (`limit`, `bad_line`), an echo error record's (`limit`: a member past its
 * publish budget), or one of the client's own codes:
 *
 * - `closed`: the session is not open, or ended (`closeCode` and
 *   `closeReason` carry the WebSocket close code and reason, when known);
 * - `reset`: the stream was reset, by the peer or locally;
 * - `protocol`: the peer broke the yamux or stream protocol;
 * - `frame_too_large`: an echo frame is longer than the namespace's maxFrame,
 *   or a call message longer than 65536 bytes with its newline;
 * - `bad_reply`: the server's reply line is not the JSON object expected;
 * - `rejected`: the callee of a call rejected it (`reason` carries its reason).
 */
export class SignalChannelError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{closeCode?: number, closeReason?: string, cause?: unknown}} [details]
   */
  constructor (code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'SignalChannelError'
    this.code = code
    if (details.closeCode !== undefined) this.closeCode = details.closeCode
    if (details.closeReason !== undefined) this.closeReason = details.closeReason
  }
}

/**
 * closedError is the `closed` error of a connection the server ended with
 * a close code: "closed 4401 token expired", code and reason attached.
 * @param {number} code
 * @param {string} [reason]
 */
export function closedError (code, reason = '') {
  return new SignalChannelError('closed', `closed ${code}${reason ? ' ' + reason : ''}`, { closeCode: code, closeReason: reason })
}

/**
 * errorOf returns the SignalChannelError of a protocol error object
 * (`{"code": "limit", "message": "..."}`, as failure replies and error
 * lines carry one), or null when obj is not one.
 * @param {unknown} obj
 * @returns {SignalChannelError | null}
 */
export function errorOf (obj) {
  if (!obj || typeof obj !== 'object' || typeof obj.code !== 'string' || obj.code === '') return null
  return new SignalChannelError(obj.code, typeof obj.message === 'string' && obj.message ? obj.message : obj.code)
}
