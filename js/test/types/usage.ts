// Compiled by types.test.mjs against the package's declarations: the
// snippets of README.md, typed.
import { connect, reconnect, Model, SignalChannelError, type Update } from 'signalchannel'

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
