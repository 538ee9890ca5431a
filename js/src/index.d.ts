// Type declarations of the signalchannel JavaScript client.

/** Error codes of the protocol's failure replies, scuttlebutt error objects and echo error records. */
export type ProtocolErrorCode =
  | 'bad_header' | 'unknown_endpoint' | 'bad_namespace' | 'bad_token' | 'forbidden'
  | 'limit' | 'timeout' | 'conflict' | 'internal' | 'bad_line'

/** Error codes of the client itself. */
export type ClientErrorCode = 'closed' | 'reset' | 'protocol' | 'frame_too_large' | 'bad_reply' | 'rejected'

/**
 * Every error the client reports. `code` is a protocol error code sent by
 * the server, or one of the client's own (see ClientErrorCode).
 */
export class SignalChannelError extends Error {
  constructor (code: string, message: string, details?: { closeCode?: number, closeReason?: string, cause?: unknown })
  readonly name: 'SignalChannelError'
  readonly code: ProtocolErrorCode | ClientErrorCode | (string & {})
  /** The WebSocket close code, for `closed` errors when known (1000, 1001, 4400, 4401, 4429, ...). */
  readonly closeCode?: number
  readonly closeReason?: string
  /** The callee's reason, for `rejected` errors (`busy` when it had too many requests waiting). */
  readonly reason?: string
}

/** ICE servers as the server hands them out: RTCIceServer's shape, and when their credentials expire. */
export interface ICEServers {
  iceServers: { urls: string[], username?: string, credential?: string }[]
  /** The credentials' lifetime in seconds; absent when none carry any. */
  ttl?: number
  /** When the credentials expire, in seconds since the Unix epoch; absent when none carry any. */
  expires?: number
}

export interface ConnectOptions {
  /**
   * Credentials: sent as `Authorization: Bearer <token>` when the client uses
   * the `ws` package (Node without a global WebSocket), and as the
   * `access_token` query parameter otherwise.
   */
  token?: string
  /**
   * Gives a token: the one to connect with when `token` is absent, and the
   * fresh ones the channel presents in band before its token expires (after
   * `left - min(left / 2, 60 s)`, `left` the time until the token's exp; a
   * failed refresh is tried again after `max(left / 4, 100 ms)` while the
   * token lives).
   */
  getToken?: () => string | Promise<string>
  /** A WebSocket class to use instead of the global one or the `ws` package. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket
  /** Aborts connecting. */
  signal?: AbortSignal
  /** Data writes wait while the WebSocket holds this many unsent bytes. Default 1 MiB. */
  highWaterMark?: number
  /** ... until it holds at most this many. Default 256 KiB. */
  lowWaterMark?: number
  /** The largest WebSocket message the client sends. Default 256 KiB. */
  maxMessageBytes?: number
}

/**
 * Connects to a signalchannel server's /v1/channel URL (ws:, wss:, http: or
 * https:) and resolves once the server has said who the session is (id,
 * meta, expires). A session the server closes instead (4401, 4429, ...)
 * rejects with a `closed` SignalChannelError carrying the close code and
 * reason.
 */
export function connect (url: string | URL, options?: ConnectOptions): Promise<Channel>

export const SUBPROTOCOL: 'signalchannel.v1'
export const MAX_HEADER_BYTES: 4096
export const DEFAULT_MAX_FRAME: 65536
export const INITIAL_WINDOW: 262144
/** The longest message of a call, newline included. */
export const MAX_MESSAGE_BYTES: 65536

export interface OpenOptions {
  /** Aborts waiting for the reply (a relay waiting for its partner, say): the stream is reset. */
  signal?: AbortSignal
}

export interface ModelOptions extends OpenOptions {
  /** Ask the server to delete this replica's keys as soon as the stream closes. */
  ephemeral?: boolean
  /** Replicate this Model instead of a new one. */
  model?: Model
  /** The replica id of a new Model. */
  id?: string
}

export interface ReconnectOptions extends ConnectOptions {
  /**
   * The wait before a dial, in ms: it doubles from minBackoff up to
   * maxBackoff, each wait drawn uniformly from [b/2, b], and goes back to
   * minBackoff only after a session stayed open for maxBackoff (never after
   * a 4429 or 1013). Defaults 100 and 5000.
   */
  minBackoff?: number
  maxBackoff?: number
  /**
   * Called before every dial, the first included, for the token to send
   * instead of `token`; each session also refreshes its token with it, as
   * ConnectOptions.getToken says. With it, a session closed or refused with
   * 4401 (a token expired, say) is dialled again, with backoff; without it,
   * 4401 ends the client.
   */
  getToken?: () => string | Promise<string>
}

/**
 * Connects to the first of urls that answers and keeps a session open: when
 * the server goes away it dials the next URL with backoff, rejoins its echo
 * namespaces and replicates its models again. While the servers refuse the
 * first session for now (4429, 1013, 1001, or 4401 with getToken) it dials
 * again with backoff until one takes it or `signal` aborts; any other
 * failure (4401 without getToken, no server answering) rejects.
 */
export function reconnect (urls: string | URL | Array<string | URL>, options?: ReconnectOptions): Promise<Client>

/**
 * A reconnecting connection. Events: `connect` (url), `disconnect` ({code, reason}).
 * Once it has ended (4401 without getToken, or close()), every call of the
 * client and its handles rejects with a `closed` SignalChannelError
 * carrying the close code and reason.
 */
export class Client {
  /** The open session, or null while reconnecting. */
  readonly channel: Channel | null
  /** Resolves with the close code and reason when the client ends for good: 4401 without getToken, or close(). */
  readonly closed: Promise<{ code: number, reason: string }>
  /** Joins an echo namespace and keeps it joined across reconnects. */
  echo (namespace: string, options?: OpenOptions): Promise<ReconnectingEcho>
  /** Replicates a Model with a namespace, again after every reconnect. */
  model (namespace: string, options?: ModelOptions): Promise<Model>
  /** A relay pipe on the current session; it ends with it. */
  relay (namespace: string, local: string, remote: string, options?: OpenOptions): Promise<Relay>
  on (event: 'connect', fn: (url: string) => void): this
  on (event: 'disconnect', fn: (closed: { code: number, reason: string }) => void): this
  off (event: string, fn: (...args: any[]) => void): this
  /** Ends the session and stops reconnecting; resolves as `closed` does. */
  close (): Promise<{ code: number, reason: string }>
}

/**
 * An echo member that rejoins after a reconnect or after the server dropped
 * it. A rejoin refused with `limit`, `timeout` or `internal` is tried again,
 * with backoff; one refused with `forbidden`, `bad_namespace`, `bad_header`,
 * `unknown_endpoint` or `bad_token` ends the member: its calls reject with
 * that error. A member refused for publishing past its budget (`limit`)
 * rejoins on the same session after a backoff (from minBackoff, doubling
 * with each refusal); until then `send` rejects with that `limit` error.
 */
export class ReconnectingEcho implements AsyncIterable<Uint8Array> {
  readonly namespace: string
  /** The refusal that ended this member, or null. */
  readonly error: SignalChannelError | null
  /** Sends one frame; rejects with `closed` while reconnecting, with `limit` while rejoining after a publish budget refusal. */
  send (data: string | ArrayBuffer | ArrayBufferView): Promise<void>
  /** The next frame, waiting across reconnects, or null after close(); rejects once the member or the client has ended. */
  recv (): Promise<Uint8Array | null>
  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array>
  /** Leaves for good. */
  close (): Promise<void>
}

/** One connection: a WebSocket carrying one yamux session. */
export class Channel {
  /** The subprotocol the server selected. */
  readonly protocol: string
  /**
   * The session's peer id, which the server vouches for: the sub of its
   * token, or an id the server assigned when it takes no credentials. A
   * session acts only as itself: its relay `local` tokens and its keys in
   * owned scuttlebutt namespaces are this id or begin with it and `/`.
   */
  readonly id: string
  /** The public `meta` claim of the session's token, or null when it has none. */
  readonly meta: { [key: string]: any } | null
  /** When the session's token expires, or null on a server without credentials. */
  readonly expires: Date | null
  /** The ICE servers of the last session reply, null when the server hands out none. */
  readonly ice: ICEServers | null
  /**
   * The ICE servers the server hands this peer (PROTOCOL.md section 11),
   * TURN credentials for its id; null when it hands out none. Credentials
   * with less than half their lifetime, or a minute, left are renewed
   * first, in band.
   */
  iceServers (signal?: AbortSignal): Promise<ICEServers | null>
  /**
   * Presents a fresh token for the session's sub in band: the server moves
   * the session's expiry to the new token's and applies its claims to the
   * streams opened from now on. Resolves with the new expiry. A token the
   * server does not take rejects with `forbidden` and changes nothing; one
   * for another sub makes the server close the session with 4401, and
   * rejects with that `closed` error.
   */
  refresh (token: string): Promise<Date>
  /** The yamux session. */
  readonly session: Session
  /** Resolves with the WebSocket close code and reason when the connection ends. */
  readonly closed: Promise<{ code: number, reason: string }>
  /** Joins an echo namespace. */
  echo (namespace: string, options?: OpenOptions): Promise<Echo>
  /** Replicates a Model with a scuttlebutt namespace; resolves once the server's history arrived. */
  model (namespace: string, options?: ModelOptions): Promise<Model>
  /** Waits for the partner (namespace, remote, local) and resolves with the pipe once paired. */
  relay (namespace: string, local: string, remote: string, options?: OpenOptions): Promise<Relay>
  /**
   * Joins a room: replicates the scuttlebutt namespace `room/<name>`
   * ephemerally, writes this member's record and resolves once the
   * server's history has arrived.
   */
  room (name: string, options?: RoomOptions): Promise<Room>
  /** Opens a stream with any header line and reads the reply (failure replies reject). */
  open (header: object | string, options?: OpenOptions): Promise<{ stream: Stream, reader: ByteReader, reply: any }>
  /** Round trip time to the server in milliseconds. */
  ping (timeoutMs?: number): Promise<number>
  /** Ends the session (default code 1000): reads of its streams end (recv gives null, loops end), writes and new streams fail with `closed`. */
  close (code?: number, reason?: string): Promise<{ code: number, reason: string }>
}

/**
 * A member of an echo namespace. A member that publishes past the server's
 * budget (bytes per second with a burst, per member) is refused: the frame
 * past it and what follows are not delivered, the member has left the
 * namespace, and `recv` rejects with a `limit` error whose message names
 * the budget (`echo publish budget (262144 bytes/s, burst 524288 bytes)
 * exceeded`), as do every later `recv` and `send`.
 */
export class Echo implements AsyncIterable<Uint8Array> {
  readonly namespace: string
  /** The largest frame the server accepts, from its reply. */
  readonly maxFrame: number
  readonly stream: Stream
  /** What ended this member while its stream was open (the server's `limit` refusal, a `protocol` error), or null. */
  readonly error: SignalChannelError | null
  /** Sends one frame (strings as UTF-8) to every member, this one included. Rejects with `frame_too_large` past maxFrame, and with `error` once set. */
  send (data: string | ArrayBuffer | ArrayBufferView): Promise<void>
  /**
   * The next frame, or null once the stream has ended (after close()).
   * Rejects with `limit` when the server refused this member for
   * publishing past its budget, `reset` when it dropped it (too slow, a
   * frame too large), `closed` when the session ended.
   */
  recv (): Promise<Uint8Array | null>
  [Symbol.asyncIterator] (): AsyncIterator<Uint8Array>
  /** Leaves gracefully (FIN): queued frames still arrive, then the iteration ends. */
  close (): Promise<void>
  /** Leaves at once (RST). */
  reset (): void
}

/** A paired relay stream. */
export class Relay {
  readonly namespace: string
  readonly stream: Stream
  /** The pair's caps: bytes per direction, lifetime in seconds; 0 means no cap. */
  readonly limit: { bytes: number, seconds: number }
  /** Who is at the other end, as the server vouches for it: the partner's peer id and its token's meta (null when none). */
  readonly peer: { id: string, meta: Record<string, any> | null }
  /** The partner's bytes. Cancelling it resets the stream. */
  readonly readable: ReadableStream<Uint8Array>
  /** Bytes for the partner. close() half-closes (FIN); abort() resets (RST). */
  readonly writable: WritableStream<Uint8Array | ArrayBuffer | ArrayBufferView | string>
  /** Resets the stream both ways. */
  reset (): void
}

/** An update on the wire: [[key, value], ts, source] or with a fourth element, a signature. */
export type Update = [[string, any], number, string] | [[string, any], number, string, any]

export interface ModelEvents {
  update: (kv: [string, any], ts: number, source: string, signature?: any) => void
  change: (key: string, value: any) => void
  sync: () => void
  /**
   * A replication stream failed after its history arrived: the server's
   * error object (`limit`, `bad_line`), `reset` (dropped as too slow), or
   * `closed` (the session ended). A failure before is Channel.model's
   * rejection; a Client reports the failures of its resyncs here.
   */
  error: (err: SignalChannelError) => void
  close: (err: SignalChannelError | null) => void
}

/**
 * A scuttlebutt Model (npm scuttlebutt 5.x semantics and wire format): a
 * replicated map. null deletes a key; the greater timestamp wins, and on
 * equal timestamps the greater source.
 */
export class Model {
  constructor (options?: { id?: string, maxAge?: number, maxKeyBytes?: number, maxValueBytes?: number })
  /** The replica id, source of local updates. */
  readonly id: string
  /** Records this many ms old are hidden (set from the server's reply by Channel.model). */
  maxAge: number | undefined
  /** The server replica's id, after Channel.model. */
  serverId?: string
  /** The clock: the greatest timestamp seen from each source. */
  readonly sources: Record<string, number>
  /** Writes a JSON value (null or undefined deletes). Throws a `limit` error past 256-byte keys or 8 KiB values. */
  set (key: string, value: any): this
  delete (key: string): this
  get (key: string): any
  has (key: string): boolean
  keys (): string[]
  forEach (fn: (value: any, key: string) => void): this
  toJSON (): Record<string, any>
  /** Updates newer than clock's entries, sorted by (ts, source). */
  history (clock?: Record<string, number>): Update[]
  /** Applies a remote update; true when it became the key's value. */
  applyUpdate (update: Update): boolean
  /** Ends the model's replication streams gracefully. */
  close (): Promise<void>
  on<E extends keyof ModelEvents> (event: E, fn: ModelEvents[E]): this
  on (event: `change:${string}`, fn: (value: any) => void): this
  once<E extends keyof ModelEvents> (event: E, fn: ModelEvents[E]): this
  off (event: string, fn: (...args: any[]) => void): this
  addListener (event: string, fn: (...args: any[]) => void): this
  removeListener (event: string, fn: (...args: any[]) => void): this
  emit (event: string, ...args: any[]): boolean
  listenerCount (event: string): number
}

/** Returns a random replica id: 32 upper-case hex digits. */
export function createId (): string

/** A yamux stream. */
export class Stream {
  readonly id: number
  /** Bytes received and not yet read. */
  readonly buffered: number
  readonly bytesRead: number
  readonly bytesWritten: number
  /** The next received bytes, or null after the peer's FIN. */
  read (): Promise<Uint8Array | null>
  /** Sends data within the peer's window; resolves once queued on the WebSocket. */
  write (data: string | ArrayBuffer | ArrayBufferView): Promise<void>
  /** Half-closes (FIN) after pending writes. */
  closeWrite (): Promise<void>
  /** Aborts both ways (RST). */
  reset (why?: string): void
}

/** Reads lines and exact byte counts from a stream. */
export interface ByteReader {
  readLine (max: number): Promise<Uint8Array | null>
  readExact (n: number): Promise<Uint8Array | null>
  readChunk (): Promise<Uint8Array | null>
}

/** A yamux session over any ordered byte transport. */
export class Session {
  constructor (
    conn: { send (data: Uint8Array): void, close (code: number, reason: string): void, readonly bufferedAmount: number },
    options?: {
      client?: boolean, maxFrameBytes?: number, maxMessageBytes?: number, highWaterMark?: number,
      lowWaterMark?: number, drainPollMs?: number, acceptBacklog?: number, synBacklog?: number,
      onStream?: (s: Stream) => void
    })
  readonly closed: boolean
  readonly error: SignalChannelError | null
  /** Pings the peer answered by this side. */
  readonly pingsAnswered: number
  readonly streams: Map<number, Stream>
  openStream (): Promise<Stream>
  accept (): Promise<Stream>
  ping (timeoutMs?: number): Promise<number>
  goAway (code?: number): void
  close (code?: number, reason?: string): void
  /** Feeds the transport's bytes, cut anywhere. */
  receive (chunk: Uint8Array): void
  /** Reports the transport's end. */
  transportClosed (code?: number, reason?: string): void
}

export interface RoomOptions extends OpenOptions {
  /** This member's public metadata, shown to the others with its id (any JSON). Default null. */
  meta?: any
  /** How many requests may wait for an answer at once; one more is rejected as `busy` at once. Default 8. */
  maxPending?: number
  /**
   * How long, in ms, a call waits for its answer (default for CallOptions.timeout),
   * and an incoming call for its pairing and request. Default 30000.
   */
  callTimeout?: number
}

export interface CallOptions {
  /** Shown to the callee with the request (any JSON). Default null. */
  meta?: any
  /** How long, in ms, to wait for the answer before giving up with `timeout`. Default RoomOptions.callTimeout. */
  timeout?: number
  /** Gives the call up, with the signal's reason. */
  signal?: AbortSignal
}

/** Another member of a room: its peer id and the meta of its member record (null when none). */
export interface Member {
  readonly id: string
  readonly meta: any
}

/** A peer as the server vouches for it: its id and its token's `meta` claim (null when none). */
export interface PeerInfo {
  readonly id: string
  readonly meta: Record<string, any> | null
}

/** A message of a call: a JSON object, with a `type` by convention. */
export interface CallMessage {
  type?: string
  [key: string]: any
}

export interface RoomEvents {
  join: (member: Member) => void
  update: (member: Member) => void
  leave: (member: Member) => void
  request: (request: Request) => void
  /** The room has ended: null after leave(), else why its replication ended. */
  close: (err: SignalChannelError | null) => void
}

/**
 * A membership of a room (`Channel.room`). It keeps this member's record
 * alive, tracks the other members, answers incoming calls (the `request`
 * event; without a listener, calls are rejected) and places outgoing ones.
 */
export class Room {
  /** This member's peer id (the channel's). */
  readonly id: string
  readonly name: string
  /** The scuttlebutt and relay namespace of the room: `room/<name>`. */
  readonly namespace: string
  /** The other members, by id. */
  readonly members: ReadonlyMap<string, Member>
  /** The room's replicated namespace. */
  readonly model: Model
  /** Changes this member's public metadata; the others get `update`. */
  setMeta (meta: any): void
  /**
   * Calls a member and resolves with the call once it accepts. Rejects with
   * `rejected` (the callee's reason in `reason`), `timeout`, or the signal's
   * reason. A call with the member under way is the answer; a request from
   * it that waits is accepted instead; when it calls at the same moment,
   * the two end with one call.
   */
  call (peerId: string, options?: CallOptions): Promise<Call>
  /** Ends the membership: calls say bye, waiting requests are rejected, the record is deleted. */
  leave (): Promise<void>
  on<E extends keyof RoomEvents> (event: E, fn: RoomEvents[E]): this
  once<E extends keyof RoomEvents> (event: E, fn: RoomEvents[E]): this
  off (event: string, fn: (...args: any[]) => void): this
}

/** An incoming call waiting for the application's answer. */
export class Request {
  /** The call id, the same on both sides. */
  readonly id: string
  /** The caller: its peer id, as the server vouches for it, and its member record's meta (null when unknown). */
  readonly from: Member
  /** The caller as the server vouches for it: its id and its token's meta. */
  readonly peer: PeerInfo
  /** The request's meta (null when none). */
  readonly meta: any
  /** Aborts when the caller gives up before an answer, or the room ends. */
  readonly signal: AbortSignal
  /** Answers accept. Rejects with `closed` for a request already answered or given up. */
  accept (): Promise<Call>
  /** Answers reject with reason and ends the pipe. */
  reject (reason?: string): Promise<void>
}

/** An accepted call: a private pipe carrying JSON messages both ways. */
export class Call implements AsyncIterable<CallMessage> {
  /** The call id, the same on both sides. */
  readonly id: string
  /** The other side, as the server vouches for it. */
  readonly peer: PeerInfo
  /** Whether this side is the polite peer of perfect negotiation: its id is the greater byte string. */
  readonly polite: boolean
  /** Resolves once the pipe has ended: the reason of the first bye ('' when none), and the error that ended it, if any. */
  readonly closed: Promise<{ reason: string, error: SignalChannelError | null }>
  /** Sends a JSON object as one message; rejects with `frame_too_large` past 65536 bytes with its newline, `closed` after close(). */
  send (msg: CallMessage): Promise<void>
  /** The next message (any type), or null once the other side said bye or half-closed; rejects when the pipe was reset. */
  recv (): Promise<CallMessage | null>
  [Symbol.asyncIterator] (): AsyncIterator<CallMessage>
  /** Says bye with reason and half-closes. */
  close (reason?: string): Promise<void>
  /** Ends the call at once, both ways (RST). */
  reset (): void
  /**
   * Sets up a connection over the call and resolves once its data can flow:
   * over a WebRTC data channel, or over the relay when none opens within
   * `directTimeout`. Both sides of the call connect.
   */
  connect (options?: ConnectOptions): Promise<Connection>
}

export interface ConnectOptions {
  /** The RTCPeerConnection implementation. Default globalThis.RTCPeerConnection (browsers); in Node, pass one, or use forceRelay. */
  RTCPeerConnection?: typeof RTCPeerConnection
  /** The peer connection's configuration (iceTransportPolicy and the like). */
  config?: RTCConfiguration
  /** STUN and TURN servers; they replace config.iceServers. Default, with none in config either: the server's (Channel.iceServers), renewed for every ICE restart. */
  iceServers?: RTCIceServer[]
  /** Gives the ICE servers of every ICE restart, so that a restart uses current TURN credentials. */
  iceServersFunc?: () => Promise<RTCIceServer[]>
  /** How long, in ms, to wait for the data channel before the data takes the relay. Default 10000. */
  directTimeout?: number
  /** How long, in ms, ICE may stay disconnected before the connection heals itself (ICE restart, then the relay). Default 5000. */
  disconnectGrace?: number
  /** Takes the relay at once, without WebRTC. */
  forceRelay?: boolean
  /** Gives the connection up before it is ready. */
  signal?: AbortSignal
  /** Receives the connection's debug logs (signalling, ICE states, paths): a message and its fields. */
  log?: (msg: string, fields: Record<string, unknown>) => void
}

/** How a connection's data travels: a data channel over a direct ICE path or through TURN, or the server's relay; '' before the first. */
export type Path = '' | 'direct' | 'turn' | 'relay'

export interface ConnectionEvents {
  /** The data took a new path. */
  path: (path: Path) => void
  /** The connection has ended: null after close(), else why. */
  close: (err: SignalChannelError | null) => void
}

/**
 * A connection between two members over an accepted call (`Call.connect`):
 * bytes both ways that survive a change of path, and the RTCPeerConnection
 * for media (renegotiation runs over the call by itself).
 */
export class Connection {
  readonly call: Call
  /** How the data travels now. */
  readonly path: Path
  /** The peer connection, to add and remove media tracks; null with forceRelay. */
  readonly pc: RTCPeerConnection | null
  /** The bytes the other side writes; it ends once the other side closed and all its bytes were read. */
  readonly readable: ReadableStream<Uint8Array>
  /** Bytes to the other side; closing it ends them (the other side's readable ends after the last). */
  readonly writable: WritableStream<Uint8Array | ArrayBuffer | ArrayBufferView | string>
  /** Resolves with the error that ended the connection, or null after close(). */
  readonly closed: Promise<SignalChannelError | null>
  /** Ends the data this side sends, waits (5 s at most) for the other side to have it all, then closes the peer connection and the call. */
  close (): Promise<void>
  on<E extends keyof ConnectionEvents> (event: E, fn: ConnectionEvents[E]): this
  once<E extends keyof ConnectionEvents> (event: E, fn: ConnectionEvents[E]): this
  off (event: string, fn: (...args: any[]) => void): this
}

export const DEFAULT_DIRECT_TIMEOUT: number
export const DEFAULT_DISCONNECT_GRACE: number
export const CLOSE_LINGER: number
