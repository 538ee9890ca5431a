// The reconnecting client against two real servers: when one goes away the
// client moves to the other, rejoins its echo namespace and replicates its
// model again.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, reconnect } from '../src/index.js'
import { startServer, waitFor, within } from './helpers.mjs'

const dec = new TextDecoder()

test('reconnect: a server goes away; echo rejoins and the model resyncs on the next', async () => {
  const a = await startServer()
  const b = await startServer()
  const events = []
  let client, peer
  try {
    client = await reconnect([a.url, b.url], { minBackoff: 10 })
    client.on('connect', (url) => events.push('connect ' + url))
    client.on('disconnect', (c) => events.push('disconnect ' + c.code))
    const room = await client.echo('room')
    const model = await client.model('presence', { id: 'client' })
    model.set('client', 'here')

    peer = await connect(b.url)
    const peerRoom = await peer.echo('room')
    const peerModel = await peer.model('presence', { id: 'peer' })
    peerModel.set('peer', 'on b')

    await a.stop() // SIGTERM: sessions are closed with 1001

    // The peer sends until the client, now on b, hears it.
    const heard = room.recv()
    let got = null
    heard.then((f) => { got = f }, () => {}) // a failure shows as the wait below timing out
    await waitFor(async () => {
      await peerRoom.send('hello from b')
      return got !== null
    }, { timeout: 10000, interval: 50, message: 'frame from b after the reconnect' })
    assert.equal(dec.decode(got), 'hello from b')
    await room.send('back')

    await waitFor(() => model.get('peer') === 'on b' && peerModel.get('client') === 'here',
      { timeout: 10000, message: 'models converge on b' })
    assert.deepEqual(events.slice(0, 2), ['disconnect 1001', 'connect ' + b.url])
    await within(room.close(), 5000, 'close')
  } finally {
    await client?.close()
    peer?.close()
    await a.stop()
    await b.stop()
  }
})
