import { SignalChannelError } from './errors.js'
import { Emitter } from './emitter.js'
import { ByteReader, toBytes } from './bytes.js'
import { Model } from './model.js'
import { connectCall } from './connection.js'

/** MAX_MESSAGE_BYTES is the longest message of a call, newline included (PROTOCOL.md section 10). */
export const MAX_MESSAGE_BYTES = 65536

/** DEFAULT_MAX_PENDING is how many requests may wait for the application's answer at once. */
export const DEFAULT_MAX_PENDING = 8

/** DEFAULT_CALL_TIMEOUT is how long, in ms, a call waits for its answer. */
export const DEFAULT_CALL_TIMEOUT = 30_000

/** REASON_BUSY is the reason of a request rejected past maxPending. */
export const REASON_BUSY = 'busy'

/** DEFAULT_MAX_AGE is the record lifetime assumed when the server's reply names none. */
const DEFAULT_MAX_AGE = 60_000

/** MIN_REFRESH_MS bounds how often the member record is written again. */
const MIN_REFRESH_MS = 10

/**
 * QUEUE_HIGH_WATER is how many bytes of received messages a call holds for
 * the application before it stops reading the pipe; the relay's flow
 * control then holds the other side back.
 */
const QUEUE_HIGH_WATER = 1024 * 1024

/** CALL_ID is the form of a call id: 8 to 32 of A-Z a-z 0-9 _ -. */
const CALL_ID = /^[A-Za-z0-9_-]{8,32}$/

const encoder = new TextEncoder()

/**
 * compareIds compares two peer ids as byte strings (their UTF-8 encodings),
 * as the protocol orders them; JavaScript's own string order is by UTF-16
 * code units, which differs for characters past U+FFFF.
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, zero or positive
 */
export function compareIds (a, b) {
  const x = encoder.encode(a)
  const y = encoder.encode(b)
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i] - y[i]
  }
  return x.length - y.length
}

/** newCallId returns a random call id: 16 characters of base64url, 96 bits. */
export function newCallId () {
  const b = new Uint8Array(12)
  globalThis.crypto.getRandomValues(b)
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_')
}

/** isRecord reports whether value is a member record: a JSON object. */
function isRecord (value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** sameJSON reports whether two JSON values encode alike. */
function sameJSON (a, b) {
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * callKey splits a key of the room's namespace that announces a call to me
 * (`X/call/<me>/<c>`) into its caller and call id, or returns null.
 * @param {string} key
 * @param {string} me
 */
function callKey (key, me) {
  const parts = key.split('/')
  if (parts.length !== 4 || parts[1] !== 'call' || parts[2] !== me || parts[0] === me || parts[0] === '') return null
  if (!CALL_ID.test(parts[3])) return null
  return { from: parts[0], id: parts[3] }
}

/**
 * deadline returns a signal that aborts with reason after ms, or when
 * parent aborts; cancel() stops the timer.
 * @param {AbortSignal} parent
 * @param {number} ms
 * @param {() => unknown} reason
 */
function deadline (parent, ms, reason) {
  const ac = new AbortController()
  const onAbort = () => ac.abort(parent.reason)
  const timer = setTimeout(() => ac.abort(reason()), ms)
  if (parent.aborted) onAbort()
  else parent.addEventListener('abort', onAbort, { once: true })
  return {
    signal: ac.signal,
    cancel () {
      clearTimeout(timer)
      parent.removeEventListener('abort', onAbort)
    }
  }
}

/** roomClosed is the `closed` error of a room that was left or whose replication ended. */
function roomClosed (why = 'left the room') {
  return new SignalChannelError('closed', `room: ${why}`)
}

/**
 * rejectedError is the error of a call the callee rejected: code `rejected`,
 * the callee's reason in the message and in `reason`.
 * @param {string} to
 * @param {string} reason
 */
function rejectedError (to, reason) {
  const err = new SignalChannelError('rejected', `${to} rejected the call${reason ? ': ' + reason : ''}`)
  err.reason = reason
  return err
}

/**
 * joinRoom joins the room name on ch (PROTOCOL.md section 10): it
 * replicates the scuttlebutt namespace `room/<name>` ephemerally, writes
 * this member's record once the server's history has arrived, and resolves
 * with the Room.
 * @param {import('./channel.js').Channel} ch
 * @param {string} name
 * @param {import('./index.js').RoomOptions} [options]
 * @returns {Promise<Room>}
 */
export async function joinRoom (ch, name, options = {}) {
  if (typeof name !== 'string' || name === '') throw new TypeError('a room needs a name')
  if (!ch.id) throw new SignalChannelError('bad_reply', 'the session has no peer id')
  const room = new Room(ch, name, options)
  await room.join(options.signal)
  return room
}

/**
 * Room is a membership of a room: it keeps this member's record alive,
 * tracks the other members, answers incoming calls and places outgoing
 * ones.
 *
 * Events: `join`, `update` and `leave` (a member: {id, meta}) for the
 * other members, `request` (a Request) for each incoming call, `close`
 * (a SignalChannelError, or null after leave()) once the room has ended.
 */
export class Room extends Emitter {
  /**
   * @param {import('./channel.js').Channel} ch
   * @param {string} name
   * @param {import('./index.js').RoomOptions} options
   */
  constructor (ch, name, options) {
    super()
    this.channel = ch
    /** id is this member's peer id, the channel's. */
    this.id = ch.id
    this.name = name
    this.namespace = 'room/' + name
    this.maxPending = options.maxPending > 0 ? options.maxPending : DEFAULT_MAX_PENDING
    this.callTimeout = options.callTimeout > 0 ? options.callTimeout : DEFAULT_CALL_TIMEOUT
    this.record = { meta: options.meta ?? null }
    if (JSON.stringify(this.record) === undefined) throw new TypeError('member meta must be JSON')
    /** model is the room's replicated namespace. */
    this.model = new Model()
    /** @type {Map<string, {id: string, meta: any}>} the other members, by id */
    this.members = new Map()
    /** @type {Map<string, Outgoing>} calls placed without an answer yet, by callee */
    this.outgoing = new Map()
    /** @type {Map<string, Outgoing>} calls placed that gave way to the callee's (glare), by callee */
    this.yielded = new Map()
    /** @type {Map<string, Request>} requests the application has not decided, by caller */
    this.requests = new Map()
    /** @type {Map<string, Call>} the call with each member */
    this.byPeer = new Map()
    /** @type {Set<Call>} every call of the room that has not ended */
    this.calls = new Set()
    /** seen holds the call keys already handled. */
    this.seen = new Set()
    /** @type {Map<string, string>} call keys of callers not (yet) members, to their caller */
    this.early = new Map()
    this.stopping = new AbortController()
    this.ended = false
    this.timer = null
    this.model.on('change', (key, value) => this.onChange(key, value))
  }

  /**
   * join replicates the room's namespace, writes the member record and
   * starts writing it again every maxAge/3.
   * @param {AbortSignal} [signal]
   */
  async join (signal) {
    this.model.on('close', (err) => this.end(err ?? roomClosed('the replication ended')))
    try {
      await this.channel.replicate(this.namespace, { ephemeral: true, model: this.model, signal })
    } catch (e) {
      this.end(e)
      throw e
    }
    this.model.set(this.id, this.record)
    const every = Math.max((this.model.maxAge ?? DEFAULT_MAX_AGE) / 3, MIN_REFRESH_MS)
    this.timer = setInterval(() => this.writeRecord(), every)
    this.timer.unref?.()
  }

  /** writeRecord writes the member record again, so that it outlives the server's expiry. */
  writeRecord () {
    if (this.ended) return
    try {
      this.model.set(this.id, this.record)
    } catch {}
  }

  /**
   * setMeta changes this member's public metadata (any JSON; null for
   * none). The others get `update`.
   * @param {any} meta
   */
  setMeta (meta) {
    const record = { meta: meta ?? null }
    this.model.set(this.id, record)
    this.record = record
  }

  /**
   * tell emits event with arg. A listener that throws does not break the
   * room's replication, which delivers the changes: its error is reported
   * as an uncaught one.
   */
  tell (event, arg) {
    try {
      this.emit(event, arg)
    } catch (e) {
      if (typeof globalThis.reportError === 'function') globalThis.reportError(e)
      else queueMicrotask(() => { throw e })
    }
  }

  /** onChange turns the room's key changes into member events and incoming calls. */
  onChange (key, value) {
    if (this.ended) return
    if (!key.includes('/')) {
      if (key !== this.id) this.memberChange(key, value)
      else if (value === null && this.timer !== null) this.writeRecord()
      return
    }
    const c = callKey(key, this.id)
    if (c === null) return
    if (value === null) {
      this.seen.delete(key)
      this.early.delete(key)
      return
    }
    if (this.seen.has(key)) return
    if (!this.members.has(c.from)) {
      this.early.set(key, c.from)
      return
    }
    this.seen.add(key)
    this.incoming(c.from, c.id)
  }

  /** memberChange applies a change of the member key id. */
  memberChange (id, value) {
    const known = this.members.get(id)
    if (!isRecord(value)) {
      if (known) {
        this.members.delete(id)
        this.tell('leave', known)
      }
      return
    }
    const member = { id, meta: value.meta ?? null }
    this.members.set(id, member)
    if (!known) {
      this.tell('join', member)
      this.takeEarly(id)
    } else if (!sameJSON(known.meta, member.meta)) {
      this.tell('update', member)
    }
  }

  /** takeEarly handles the call keys of from that came before its member record. */
  takeEarly (from) {
    for (const [key, caller] of this.early) {
      if (caller !== from) continue
      this.early.delete(key)
      this.seen.add(key)
      this.incoming(from, key.slice(key.lastIndexOf('/') + 1))
    }
  }

  /**
   * glare applies the glare rule to a call from `from` while this member's
   * own call to it has no answer: the smaller id ignores the other's call
   * ('ignore'); the greater drops its own and returns it, for the other's
   * call to answer. Without such a call it returns null.
   * @param {string} from
   * @returns {'ignore' | Outgoing | null}
   */
  glare (from) {
    const out = this.outgoing.get(from)
    if (!out) return null
    if (compareIds(this.id, from) < 0) return 'ignore'
    this.outgoing.delete(from)
    this.yielded.set(from, out)
    out.drop()
    return out
  }

  /** incoming handles a call from `from` announced by its key. */
  incoming (from, callId) {
    const g = this.glare(from)
    if (g === 'ignore') return
    this.answer(from, callId, g)
  }

  /**
   * answer pairs with the call of `from`, checks the partner's id, and
   * reads its request; then it takes it as the answer to out (glare), leaves
   * it unanswered (glare, the smaller id), rejects it (busy) or emits it.
   * @param {string} from
   * @param {string} callId
   * @param {Outgoing | null} out
   */
  async answer (from, callId, out) {
    const d = deadline(this.stopping.signal, this.callTimeout, () => new SignalChannelError('timeout', `the call of ${from} sent no request within ${this.callTimeout} ms`))
    let pipe = null
    let meta
    try {
      const relay = await this.channel.relay(this.namespace, `${this.id}/sig/${from}/${callId}`, `${from}/sig/${this.id}/${callId}`, { signal: d.signal })
      if (relay.peer.id !== from) {
        relay.reset()
        throw new SignalChannelError('protocol', `the call announced by ${from} was placed by ${JSON.stringify(relay.peer.id)}`)
      }
      pipe = new Pipe(relay)
      const onAbort = () => pipe.fail(d.signal.reason)
      d.signal.addEventListener('abort', onAbort, { once: true })
      try {
        meta = await pipe.request()
      } finally {
        d.signal.removeEventListener('abort', onAbort)
      }
    } catch (e) {
      pipe?.reset()
      out?.giveUp(e)
      return
    } finally {
      d.cancel()
    }
    const request = new Request(this, from, callId, pipe, meta)
    if (out) {
      out.take(request.accept())
      return
    }
    const g = this.glare(from)
    if (g === 'ignore') {
      // The caller drops this call once it sees this member's; until then it waits.
      const timer = setTimeout(() => pipe.reset(), this.callTimeout)
      pipe.readEnded.then(() => clearTimeout(timer))
      return
    }
    if (g) {
      g.take(request.accept())
      return
    }
    if (this.ended) {
      pipe.reset()
      return
    }
    if (this.requests.has(from) || this.requests.size >= this.maxPending) {
      request.reject(REASON_BUSY).catch(() => {})
      return
    }
    if (this.listenerCount('request') === 0) {
      request.reject('this peer takes no calls').catch(() => {})
      return
    }
    this.requests.set(from, request)
    pipe.readEnded.then(() => request.gone())
    this.tell('request', request)
  }

  /**
   * call calls the member peerId and resolves with the Call once it
   * accepts. It rejects with `rejected` (the callee's reason in `reason`)
   * when the callee rejects, with `timeout` when no answer came within
   * options.timeout (default callTimeout) ms, and with signal's reason when
   * options.signal aborts. A call with peerId under way, or being placed,
   * is the answer; a request from peerId that waits is accepted instead;
   * when peerId calls at the same moment, the two end with one call.
   * @param {string} peerId
   * @param {import('./index.js').CallOptions} [options]
   * @returns {Promise<Call>}
   */
  call (peerId, options = {}) {
    if (this.ended) return Promise.reject(roomClosed())
    if (typeof peerId !== 'string' || peerId === '' || peerId.includes('/')) return Promise.reject(new TypeError('call needs a peer id'))
    if (peerId === this.id) return Promise.reject(new TypeError('a member cannot call itself'))
    const c = this.byPeer.get(peerId)
    if (c && !c.ending) return Promise.resolve(c)
    const q = this.requests.get(peerId)
    if (q) return q.accept()
    const pending = this.outgoing.get(peerId) ?? this.yielded.get(peerId)
    if (pending) return pending.promise
    const out = new Outgoing(this, peerId, options)
    this.outgoing.set(peerId, out)
    out.start(options.signal)
    return out.promise
  }

  /** track counts c as the call with its peer. */
  track (c) {
    this.calls.add(c)
    this.byPeer.set(c.peer.id, c)
  }

  /** forget drops c, which has ended or is ending. */
  forget (c) {
    this.calls.delete(c)
    if (this.byPeer.get(c.peer.id) === c) this.byPeer.delete(c.peer.id)
  }

  /**
   * leave ends the membership: calls under way say bye, calls being
   * placed give up, waiting requests are rejected, and the member record
   * is deleted. It resolves once the replication has ended.
   */
  async leave () {
    if (this.ended) return
    this.end(null)
    try {
      this.model.delete(this.id)
    } catch {}
    await this.model.close()
  }

  /**
   * end stops the room: after leave() (err null) or when its replication
   * ended (err says why).
   * @param {SignalChannelError | null} err
   */
  end (err) {
    if (this.ended) return
    this.ended = true
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    const why = err ?? roomClosed()
    this.stopping.abort(why)
    for (const out of [...this.outgoing.values(), ...this.yielded.values()]) out.giveUp(why)
    for (const q of [...this.requests.values()]) q.reject('left the room').catch(() => {})
    for (const c of [...this.calls]) c.close('left the room').catch(() => {})
    this.tell('close', err)
  }
}

/**
 * Outgoing is a call placed and not answered yet (PROTOCOL.md section 10,
 * rules 1 and 5): it waits for the callee on the relay, announces itself
 * with its call key, sends its request and reads the answer.
 */
class Outgoing {
  /**
   * @param {Room} room
   * @param {string} to
   * @param {import('./index.js').CallOptions} options
   */
  constructor (room, to, options) {
    this.room = room
    this.to = to
    this.id = newCallId()
    this.key = `${room.id}/call/${to}/${this.id}`
    this.meta = options.meta ?? null
    this.timeout = options.timeout > 0 ? options.timeout : room.callTimeout
    /** dropped is set when this call gave way to the callee's own (glare). */
    this.dropped = false
    this.settled = false
    this.keySet = false
    this.keyDeleted = false
    /** @type {Pipe | null} */
    this.pipe = null
    this.timer = null
    this.signal = null
    this.onAbort = null
    this.controller = new AbortController()
    /** @type {Promise<Call>} */
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }

  /**
   * start announces the call and waits for its answer, within the timeout
   * and until signal aborts.
   * @param {AbortSignal} [signal]
   */
  start (signal) {
    if (signal?.aborted) {
      this.giveUp(signal.reason)
      return
    }
    if (signal) {
      this.signal = signal
      this.onAbort = () => this.giveUp(signal.reason)
      signal.addEventListener('abort', this.onAbort, { once: true })
    }
    this.timer = setTimeout(() => this.giveUp(new SignalChannelError('timeout', `${this.to} did not answer the call within ${this.timeout} ms`)), this.timeout)
    this.dial()
    try {
      this.room.model.set(this.key, {})
      this.keySet = true
    } catch (e) {
      this.giveUp(e)
    }
  }

  async dial () {
    const { room, to, id } = this
    try {
      const relay = await room.channel.relay(room.namespace, `${room.id}/sig/${to}/${id}`, `${to}/sig/${room.id}/${id}`, { signal: this.controller.signal })
      this.deleteKey()
      if (this.controller.signal.aborted) {
        relay.reset()
        return
      }
      if (relay.peer.id !== to) {
        relay.reset()
        throw new SignalChannelError('protocol', `the call to ${to} was answered by ${JSON.stringify(relay.peer.id)}`)
      }
      this.pipe = new Pipe(relay)
      await this.pipe.send({ type: 'request', meta: this.meta })
      const answer = await this.pipe.answer()
      if (answer.type === 'accept') {
        this.succeed(new Call(room, id, this.pipe))
        return
      }
      // A rejected call ends gracefully: the callee half-closed, this side does too.
      this.pipe.closeWrite()
      if (!this.dropped) this.settle(rejectedError(to, answer.reason))
    } catch (e) {
      this.fail(e)
    }
  }

  /** deleteKey deletes the call key: the call is paired, or given up. */
  deleteKey () {
    if (this.keyDeleted || !this.keySet) return
    this.keyDeleted = true
    if (this.room.ended && this.room.model.replications.size === 0) return
    try {
      this.room.model.delete(this.key)
    } catch {}
  }

  /** stop ends this call's own pipe, paired or not, and deletes its key. */
  stop () {
    this.controller.abort(new SignalChannelError('closed', 'the call was given up'))
    this.pipe?.reset()
    this.deleteKey()
  }

  /** drop gives way to the callee's call (glare): its answer settles this one (take). */
  drop () {
    this.dropped = true
    this.stop()
  }

  /**
   * take settles this call, dropped for the callee's, with that call once
   * it is accepted.
   * @param {Promise<Call>} accepted
   */
  take (accepted) {
    accepted.then((c) => this.succeed(c), (e) => this.giveUp(e))
  }

  /** succeed resolves with c, or ends c when this call was given up meanwhile. */
  succeed (c) {
    if (this.settled) {
      c.close('the call was given up').catch(() => {})
      return
    }
    this.room.track(c)
    this.settle(null, c)
  }

  /** fail reports err, unless this call gave way to the callee's: its answer settles it. */
  fail (err) {
    if (!this.dropped) this.giveUp(err)
  }

  /** giveUp ends the call with err: timeout, abort, rejection, or the room's end. */
  giveUp (err) {
    if (this.settled) return
    this.stop()
    this.settle(err)
  }

  settle (err, c) {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    if (this.onAbort) this.signal.removeEventListener('abort', this.onAbort)
    if (this.room.outgoing.get(this.to) === this) this.room.outgoing.delete(this.to)
    if (this.room.yielded.get(this.to) === this) this.room.yielded.delete(this.to)
    if (err) this.reject(err)
    else this.resolve(c)
  }
}

/**
 * Request is an incoming call that waits for the application's answer.
 */
export class Request {
  /**
   * @param {Room} room
   * @param {string} from the caller's id, as the server vouches for it
   * @param {string} id the call id
   * @param {Pipe} pipe
   * @param {any} meta the request's meta
   */
  constructor (room, from, id, pipe, meta) {
    this.room = room
    /** id is the call id, the same on both sides. */
    this.id = id
    this.pipe = pipe
    /** from is the caller: its peer id and its member record's meta (null when unknown). */
    this.from = { id: from, meta: room.members.get(from)?.meta ?? null }
    /** peer is the caller as the server vouches for it: its id and its token's meta. */
    this.peer = pipe.peer
    /** meta is the request's meta, null when none. */
    this.meta = meta ?? null
    this.decided = false
    this.controller = new AbortController()
    /** signal aborts when the caller gives up (or the room ends) before an answer. */
    this.signal = this.controller.signal
  }

  /** decide takes the request off the waiting ones; false when it was decided already. */
  decide () {
    if (this.decided) return false
    this.decided = true
    if (this.room.requests.get(this.from.id) === this) this.room.requests.delete(this.from.id)
    return true
  }

  /**
   * accept answers accept and resolves with the Call. It rejects with
   * `closed` for a request already answered or whose caller gave up.
   * @returns {Promise<Call>}
   */
  async accept () {
    if (!this.decide()) throw answered()
    const c = new Call(this.room, this.id, this.pipe)
    this.room.track(c)
    try {
      await this.pipe.send({ type: 'accept' })
    } catch (e) {
      this.pipe.reset()
      this.room.forget(c)
      throw e
    }
    return c
  }

  /**
   * reject answers reject with reason and half-closes the pipe.
   * @param {string} [reason]
   */
  async reject (reason = '') {
    if (!this.decide()) throw answered()
    try {
      await this.pipe.send({ type: 'reject', reason: String(reason) })
    } finally {
      this.pipe.closeWrite()
    }
  }

  /** gone forgets a request whose caller gave up before an answer. */
  gone () {
    if (!this.decide()) return
    this.pipe.reset()
    this.controller.abort(new SignalChannelError('closed', `${this.from.id} gave up the call`))
  }
}

/** answered is the error of deciding a request twice. */
function answered () {
  return new SignalChannelError('closed', 'the request was answered already, or its caller gave up')
}

/**
 * Call is an accepted call: a private pipe between two members of a room
 * that carries JSON messages both ways until either side says bye.
 */
export class Call {
  /**
   * @param {Room} room
   * @param {string} id the call id
   * @param {Pipe} pipe
   */
  constructor (room, id, pipe) {
    this.room = room
    /** id is the call id, the same on both sides. */
    this.id = id
    this.pipe = pipe
    /** peer is the other side as the server vouches for it: its id and its token's meta. */
    this.peer = pipe.peer
    /** polite is true when this side's id is the greater byte string (perfect negotiation). */
    this.polite = compareIds(room.id, pipe.peer.id) > 0
    this.closeReason = null
    /**
     * closed resolves once the pipe has ended, with the reason of the first
     * bye ('' when none) and the error that ended it, if any (a `reset`,
     * say).
     * @type {Promise<{reason: string, error: SignalChannelError | null}>}
     */
    this.closed = pipe.closed.then((error) => ({ reason: this.reason(), error }))
    pipe.readEnded.then(() => room.forget(this))
  }

  /** reason returns the reason of the first bye: the other side's, or this side's; '' when none. */
  reason () {
    if (this.pipe.bye !== null && (this.closeReason === null || this.pipe.byeFirst)) return this.pipe.bye
    return this.closeReason ?? ''
  }

  /** ending reports whether either side has said bye, or the pipe ended. */
  get ending () {
    return this.closeReason !== null || this.pipe.readDone || this.pipe.error !== null
  }

  /**
   * send sends msg, a JSON object (with a `type`), as one message. It
   * rejects with `frame_too_large` past 65536 bytes with the newline, and
   * with `closed` after close().
   * @param {object} msg
   */
  send (msg) {
    return this.pipe.send(msg)
  }

  /**
   * recv resolves with the next message, or null once the other side said
   * bye or half-closed; it rejects when the pipe was reset.
   * @returns {Promise<any>}
   */
  recv () {
    return this.pipe.next()
  }

  async * [Symbol.asyncIterator] () {
    for (;;) {
      const msg = await this.recv()
      if (msg === null) return
      yield msg
    }
  }

  /**
   * close ends the call: it says bye with reason and half-closes. The
   * other side's recv() then ends; closed resolves once it has closed too.
   * @param {string} [reason]
   */
  async close (reason = '') {
    this.room.forget(this)
    if (this.closeReason !== null || this.pipe.writeClosed) return
    this.closeReason = String(reason)
    try {
      await this.pipe.send({ type: 'bye', reason: this.closeReason })
    } catch {
    } finally {
      await this.pipe.closeWrite()
    }
  }

  /** reset ends the call at once, both ways (RST). */
  reset () {
    this.room.forget(this)
    this.pipe.reset()
  }

  /**
   * connect sets up a connection over the call (PROTOCOL.md section 10,
   * "Connections") and resolves once its data can flow: over a WebRTC
   * data channel, or over the relay when none opens in time. Both sides of
   * the call connect; the call carries the connection's signalling from
   * then on.
   * @param {import('./index.js').ConnectOptions} [options]
   * @returns {Promise<import('./connection.js').Connection>}
   */
  connect (options) {
    return connectCall(this, options)
  }
}

/**
 * Pipe carries the messages of a call over a paired relay: newline-ended
 * JSON objects of at most MAX_MESSAGE_BYTES. It reads ahead, while less
 * than QUEUE_HIGH_WATER bytes of messages wait, so that it learns of the
 * pipe's end without the application's reads. The other side's bye, or its half-close, ends the messages; this
 * side then half-closes too, and the pipe ends once both directions have.
 */
class Pipe {
  /** @param {import('./relay.js').Relay} relay */
  constructor (relay) {
    this.relay = relay
    this.stream = relay.stream
    this.peer = relay.peer
    const r = relay.readable.getReader()
    this.reader = new ByteReader({
      read: async () => {
        const { value, done } = await r.read()
        return done ? null : value
      }
    })
    /** @type {{msg: any, size: number}[]} */
    this.queue = []
    this.queued = 0
    /** @type {{resolve: (m: any) => void, reject: (e: unknown) => void}[]} */
    this.waiters = []
    this.resume = null
    /** bye is the other side's bye reason, once it said bye. */
    this.bye = null
    /** byeFirst is whether the other side said bye before this side closed. */
    this.byeFirst = false
    this.readDone = false
    this.writeClosed = false
    this.finSent = false
    /** @type {SignalChannelError | null} */
    this.error = null
    this.resolveReadEnded = null
    /** readEnded resolves once no more messages come: bye, half-close, or an error. */
    this.readEnded = new Promise((resolve) => { this.resolveReadEnded = resolve })
    this.resolveClosed = null
    /** closed resolves once the pipe has ended, with the error that ended it or null. */
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve })
    this.pump()
  }

  /** pump reads messages into the queue until the pipe ends. */
  async pump () {
    try {
      for (;;) {
        while (this.queued >= QUEUE_HIGH_WATER) await new Promise((resolve) => { this.resume = resolve })
        let line
        try {
          line = await this.reader.readLine(MAX_MESSAGE_BYTES)
        } catch (e) {
          if (e instanceof SignalChannelError) throw e
          throw new SignalChannelError('protocol', `call message: ${e.message}`)
        }
        if (line === null) break
        if (this.bye !== null || this.error) continue
        const msg = parseMessage(line)
        if (msg.type === 'bye') {
          this.bye = typeof msg.reason === 'string' ? msg.reason : ''
          this.byeFirst = !this.writeClosed
          this.endRead()
          continue
        }
        this.queue.push({ msg, size: line.length })
        this.queued += line.length
        this.wake()
      }
      this.endRead()
      this.closeWrite()
    } catch (e) {
      this.fail(e)
    }
  }

  /** endRead marks the end of the messages. */
  endRead () {
    if (this.readDone) return
    this.readDone = true
    this.resolveReadEnded()
    this.wake()
    this.checkClosed()
  }

  /** wake hands queued messages, or the end, to waiting next() calls. */
  wake () {
    while (this.waiters.length > 0) {
      let m
      if (this.queue.length > 0) {
        m = this.take()
      } else if (this.readDone || this.error) {
        m = this.end()
      } else {
        return
      }
      const w = this.waiters.shift()
      if (m instanceof Error) w.reject(m)
      else w.resolve(m)
    }
  }

  take () {
    const { msg, size } = this.queue.shift()
    this.queued -= size
    if (this.resume && this.queued < QUEUE_HIGH_WATER) {
      const r = this.resume
      this.resume = null
      r()
    }
    return msg
  }

  /** end is what next() gives once the messages have ended: null, or the error. */
  end () {
    return this.bye === null && this.error ? this.error : null
  }

  /**
   * next resolves with the next message, or null at the end of the
   * messages; it rejects with the error that ended the pipe, if any.
   */
  next () {
    if (this.queue.length > 0) return Promise.resolve(this.take())
    if (this.readDone || this.error) {
      const m = this.end()
      return m instanceof Error ? Promise.reject(m) : Promise.resolve(null)
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
  }

  /**
   * request reads the caller's first message, a request, and resolves with
   * its meta; messages of other types before it are ignored.
   */
  async request () {
    for (;;) {
      const msg = await this.next()
      if (msg === null) throw new SignalChannelError('closed', 'the caller ended the call before its request')
      if (msg.type === 'request') return msg.meta ?? null
    }
  }

  /**
   * answer reads the callee's answer: accept or reject (as {type, reason});
   * messages of other types before it are ignored, and a bye counts as a
   * rejection with its reason.
   */
  async answer () {
    for (;;) {
      const msg = await this.next()
      if (msg === null) {
        if (this.bye !== null) return { type: 'reject', reason: this.bye }
        throw new SignalChannelError('closed', 'the callee ended the call without an answer')
      }
      if (msg.type === 'accept') return { type: 'accept' }
      if (msg.type === 'reject') return { type: 'reject', reason: typeof msg.reason === 'string' ? msg.reason : '' }
    }
  }

  /**
   * send writes msg, a JSON object, as one message.
   * @param {object} msg
   */
  send (msg) {
    if (!isRecord(msg)) return Promise.reject(new TypeError('a call message must be a JSON object'))
    const json = JSON.stringify(msg)
    const bytes = toBytes(json + '\n')
    if (bytes.length > MAX_MESSAGE_BYTES) return Promise.reject(new SignalChannelError('frame_too_large', `a call message of ${bytes.length} bytes with its newline, at most ${MAX_MESSAGE_BYTES}`))
    if (this.error) return Promise.reject(this.error)
    if (this.writeClosed) return Promise.reject(new SignalChannelError('closed', 'the call is closed for sending'))
    return this.stream.write(bytes)
  }

  /** closeWrite half-closes (FIN) after the pending writes; the pipe ends once the other side has too. */
  closeWrite () {
    if (this.writeClosed) return Promise.resolve()
    this.writeClosed = true
    return this.stream.closeWrite().then(() => {
      this.finSent = true
      this.checkClosed()
    }, (e) => this.fail(e))
  }

  /** reset ends the pipe at once, both ways. */
  reset () {
    this.fail(new SignalChannelError('reset', 'the call was reset locally'))
  }

  /** fail ends the pipe with err: the stream is reset. */
  fail (err) {
    if (this.error || (this.readDone && this.finSent)) return
    this.error = err instanceof SignalChannelError ? err : new SignalChannelError('reset', String(err?.message ?? err))
    this.stream.reset(this.error.message)
    this.readDone = true
    this.resolveReadEnded()
    this.wake()
    this.resolveClosed(this.error)
  }

  checkClosed () {
    if (this.readDone && this.finSent && !this.error) this.resolveClosed(null)
  }

  get ended () {
    return this.error !== null || (this.readDone && this.finSent)
  }
}

/**
 * parseMessage parses a message line: a JSON object.
 * @param {Uint8Array} line
 */
function parseMessage (line) {
  let msg
  try {
    msg = JSON.parse(new TextDecoder().decode(line))
  } catch {
    throw new SignalChannelError('protocol', 'a call message that is not JSON')
  }
  if (!isRecord(msg)) throw new SignalChannelError('protocol', 'a call message that is not a JSON object')
  return msg
}
