// Compiled by types.test.mjs against the package's declarations: the
// snippets of README.md, typed.
import { connect, reconnect, Model, SignalChannelError, MAX_MESSAGE_BYTES, DEFAULT_DIRECT_TIMEOUT, DEFAULT_DISCONNECT_GRACE, CLOSE_LINGER, type Update, type Call, type Member, type Request, type Connection, type Path, type Channel, type ICEServers } from 'signalchannel'

export async function usage (token: string): Promise<void> {
  const ch = await connect('ws://127.0.0.1:8080/v1/channel', { token })
  const room = await ch.echo('room-1')
  await room.send('hello')
  await room.send(new Uint8Array([1, 2, 3]))
  try {
    for await (const frame of room) {
      const n: number = frame.byteLength
      if (n > room.maxFrame) break
    }
  } catch (e) {
    // Past the server's publish budget: the member has left.
    const refused: SignalChannelError | null = room.error
    if (e instanceof SignalChannelError && e.code === 'limit') void refused
  }
  const presence = await ch.model('presence', { ephemeral: true })
  presence.set('alice', { status: 'online' })
  presence.on('update', (kv, ts, source) => { const k: string = kv[0]; void ts; void source; void k })
  presence.on('change:alice', (v) => { void v })
  const all: Record<string, any> = presence.toJSON()
  void all
  const m = new Model({ id: 'me' })
  const h: Update[] = m.history({})
  void h
  const pipe = await ch.relay('calls', 'tokA', 'tokB', { signal: AbortSignal.timeout(30_000) })
  const w = pipe.writable.getWriter()
  await w.write('offer')
  await w.close()
  for await (const chunk of pipe.readable) void chunk
  try {
    await ch.echo('')
  } catch (e) {
    if (e instanceof SignalChannelError && e.code === 'bad_namespace') void e.message
  }
  const { code } = await ch.close()
  void code
}

export async function identity (fetchToken: () => Promise<string>): Promise<void> {
  const ch = await connect('ws://127.0.0.1:8080/v1/channel', { getToken: fetchToken })
  const id: string = ch.id
  const name: unknown = ch.meta?.name
  const expires: Date | null = ch.expires
  void name
  void expires
  const next: Date = await ch.refresh(await fetchToken())
  void next.getTime()
  try {
    await ch.refresh('an expired token')
  } catch (e) {
    if (e instanceof SignalChannelError && e.code === 'forbidden') void e.message
  }
  const pipe = await ch.relay('calls', `${id}/call-1`, 'bob/call-1')
  pipe.reset()
  await ch.close()
}

export async function reconnecting (fetchToken: () => Promise<string>): Promise<void> {
  const client = await reconnect(['ws://a.example:8080/v1/channel', 'ws://b.example:8080/v1/channel'], { getToken: fetchToken })
  client.on('disconnect', ({ code, reason }) => { void code; void reason })
  const room = await client.echo('room-1')
  try {
    for await (const frame of room) void frame.byteLength
  } catch (e) {
    if (e instanceof SignalChannelError && e.code === 'closed') {
      const code: number | undefined = e.closeCode
      const reason: string | undefined = e.closeReason
      void code
      void reason
    }
  }
  const fixed = await reconnect('ws://127.0.0.1:8080/v1/channel', { token: 'a token', minBackoff: 100, maxBackoff: 5000, getToken: () => 'a token' })
  const { code, reason } = await fixed.closed
  void code
  void reason
  const closed: { code: number, reason: string } = await fixed.close()
  void closed
}

export async function rooms (token: string): Promise<void> {
  const ch = await connect('ws://127.0.0.1:8080/v1/channel', { token })
  const room = await ch.room('lobby', { meta: { name: 'Alice' }, maxPending: 4, callTimeout: 20_000 })
  const me: string = room.id
  void me
  for (const [id, m] of room.members) void (id === m.id)
  room.on('join', (m: Member) => { void m.meta })
  room.on('update', (m) => { void m.id })
  room.on('leave', (m) => { void m.id })
  room.on('request', (q: Request) => {
    const caller: string = q.from.id
    void caller
    void q.meta
    q.signal.addEventListener('abort', () => void 0)
    if (q.from.meta?.name === 'Mallory') q.reject('not you').catch(() => {})
    else q.accept().then((call) => call.close('hello and goodbye')).catch(() => {})
  })
  room.setMeta({ name: 'Alice', status: 'away' })
  const first = [...room.members.keys()][0]
  if (first === undefined) return
  let call: Call
  try {
    call = await room.call(first, { meta: { topic: 'hi' }, timeout: 10_000, signal: AbortSignal.timeout(15_000) })
  } catch (e) {
    if (e instanceof SignalChannelError && e.code === 'rejected') void e.reason
    if (e instanceof SignalChannelError && e.code === 'timeout') void e.message
    return
  }
  const polite: boolean = call.polite
  const peerName: unknown = call.peer.meta?.name
  void polite
  void peerName
  await call.send({ type: 'description', description: { type: 'offer', sdp: '' } })
  await call.send({ type: 'chat', text: 'x'.repeat(MAX_MESSAGE_BYTES - 40) })
  const msg = await call.recv()
  if (msg !== null && msg.type === 'candidate') void msg.candidate
  for await (const m of call) void m.type
  await call.close('done')
  const { reason, error } = await call.closed
  void reason
  void (error?.code)
  await room.leave()
  await ch.close()
}

export async function connections (call: Call): Promise<void> {
  const conn: Connection = await call.connect({
    iceServers: [{ urls: 'stun:stun.example.org:3478' }],
    iceServersFunc: async () => [{ urls: 'turn:turn.example.org', username: 'u', credential: 'c' }],
    config: { iceTransportPolicy: 'all' },
    directTimeout: 5000,
    disconnectGrace: DEFAULT_DISCONNECT_GRACE,
    signal: AbortSignal.timeout(CLOSE_LINGER + DEFAULT_DIRECT_TIMEOUT)
  })
  const path: Path = conn.path
  conn.on('path', (p) => { void (p === 'turn') })
  conn.on('close', (err) => { void err?.code })
  void path
  conn.pc?.addTransceiver('video', { direction: 'recvonly' })
  const w = conn.writable.getWriter()
  await w.write('hello')
  await w.write(new Uint8Array([1]))
  await w.close()
  for await (const chunk of conn.readable) void chunk.byteLength
  await conn.close()
  const why: SignalChannelError | null = await conn.closed
  void why
  const relayed = await call.connect({ forceRelay: true })
  await relayed.close()
}

export async function iceServers (ch: Channel): Promise<void> {
  const servers: ICEServers | null = await ch.iceServers(AbortSignal.timeout(5000))
  const list: RTCIceServer[] = servers?.iceServers ?? []
  void list
  void ch.ice?.expires
}
