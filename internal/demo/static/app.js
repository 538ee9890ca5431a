// The demo page: presence in a scuttlebutt namespace, signalling and
// fallback over a relay stream, data over an RTCPeerConnection data channel.
//
// URL query options:
//   room=NAME        peers meet in this room (default "lobby"); two per room
//   server=URL       the channel URL (default /v1/channel on this host)
//   token=JWT        credentials, for a server that requires them
//   force=relay      iceTransportPolicy "relay" with no TURN server: ICE
//                    cannot succeed, so the relay carries the data
//   timeout=MS       how long to wait for a direct connection (default 5000)

import { connect } from './signalchannel/index.js'

const params = new URLSearchParams(location.search)
const room = params.get('room') || 'lobby'
const forceRelay = params.get('force') === 'relay'
const directTimeoutMs = Number(params.get('timeout')) > 0 ? Number(params.get('timeout')) : 5000
const serverURL = params.get('server') || new URL('/v1/channel', location.href).href
const token = params.get('token') || undefined

const namespace = 'webrtc-demo/' + room
/** This peer's id, which the server vouches for (ch.id): its relay token and presence key. */
let me = ''
const joined = Date.now()

const $ = (id) => document.getElementById(id)
const enc = new TextEncoder()
const dec = new TextDecoder()

/** @type {import('./signalchannel/index.js').Channel} */
let ch
/** @type {import('./signalchannel/index.js').Model} */
let presence
/** The peer being talked to: its id, relay stream, peer connection and path. */
let peer = null

function setStatus (text) {
  $('status').textContent = text
}

function showError (err) {
  $('error').textContent = err ? `${err.code ? err.code + ': ' : ''}${err.message ?? err}` : ''
}

function showPath (path) {
  $('path').textContent = path
  $('path').dataset.path = path
  const ready = path === 'direct' || path === 'relay'
  $('text').disabled = !ready
  $('send').disabled = !ready
}

function addMessage (text, from, via) {
  const li = document.createElement('li')
  li.dataset.from = from
  li.dataset.path = via
  const who = document.createElement('strong')
  who.textContent = from === 'me' ? 'you: ' : 'peer: '
  const body = document.createElement('span')
  body.className = 'text'
  body.textContent = text
  const tag = document.createElement('span')
  tag.className = 'via'
  tag.textContent = via
  li.append(who, body, tag)
  $('log').append(li)
}

async function main () {
  $('room').textContent = room
  showPath('none')
  setStatus('connecting to the server')
  ch = await connect(serverURL, { token })
  me = ch.id
  $('self').textContent = me
  ch.closed.then(({ code, reason }) => {
    setStatus(`disconnected from the server (${code}${reason ? ' ' + reason : ''})`)
    showPath('none')
  })
  addEventListener('pagehide', () => ch.close())

  presence = await ch.model(namespace, { ephemeral: true })
  presence.on('change', onPresence)
  presence.on('error', showError)
  const announce = () => presence.set(me, { since: joined, seen: Date.now() })
  announce()
  setInterval(announce, Math.max(1000, (presence.maxAge ?? 60000) / 3))
  setStatus('waiting for a peer in this room')
  pickPeer()
}

function onPresence (key, value) {
  if (key === me) return
  if (peer && key === peer.id && value === null) {
    endPeer(peer, 'the peer left')
    return
  }
  if (!peer && value !== null) pickPeer()
}

function pickPeer () {
  if (peer) return
  const others = presence.keys().filter((k) => k !== me).sort()
  if (others.length > 0) startPeer(others[0], 0)
}

async function startPeer (id, attempt) {
  const p = { id, path: 'none', relay: null, writer: null, pc: null, dc: null, timer: null, pending: [] }
  peer = p
  $('peer').textContent = id
  setStatus('pairing a relay stream with the peer')
  try {
    p.relay = await ch.relay(namespace, me, id)
  } catch (err) {
    if (peer !== p) return
    peer = null
    showError(err)
    // The partner may still be setting up, or an old pair still closing.
    if ((err.code === 'timeout' || err.code === 'conflict') && attempt < 5 && presence.has(id)) {
      setTimeout(() => { if (!peer) startPeer(id, attempt + 1) }, 1000)
    }
    return
  }
  if (peer !== p) {
    p.relay.reset()
    return
  }
  showError(null)
  p.writer = p.relay.writable.getWriter()
  try {
    await setupPeerConnection(p)
  } catch (err) {
    showError(err)
    fallback(p, 'WebRTC is not available')
  }
  readSignals(p)
}

/** signal sends one message to the peer over the relay stream. */
function signal (p, msg) {
  p.writer.write(enc.encode(JSON.stringify(msg) + '\n')).catch(() => {})
}

async function readSignals (p) {
  const reader = p.relay.readable.getReader()
  let buf = ''
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += dec.decode(value, { stream: true })
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        if (line) await handleSignal(p, JSON.parse(line))
      }
    }
  } catch (err) {
    if (peer === p) showError(err)
  }
  if (peer === p) endPeer(p, 'the relay stream ended')
}

async function setupPeerConnection (p) {
  const pc = new RTCPeerConnection({ iceServers: [], iceTransportPolicy: forceRelay ? 'relay' : 'all' })
  p.pc = pc
  pc.onicecandidate = ({ candidate }) => {
    if (candidate && candidate.candidate) signal(p, { type: 'candidate', candidate: candidate.toJSON() })
  }
  pc.oniceconnectionstatechange = () => {
    if (pc.iceConnectionState === 'failed') fallback(p, 'ICE failed')
  }
  p.timer = setTimeout(() => fallback(p, `no direct connection within ${directTimeoutMs} ms`), directTimeoutMs)
  setStatus('connecting directly (WebRTC)')
  if (me < p.id) {
    attachDataChannel(p, pc.createDataChannel('chat'))
    await pc.setLocalDescription(await pc.createOffer())
    signal(p, { type: 'offer', sdp: pc.localDescription.sdp })
  } else {
    pc.ondatachannel = (e) => attachDataChannel(p, e.channel)
  }
}

function attachDataChannel (p, dc) {
  p.dc = dc
  dc.onopen = () => {
    if (peer !== p) return
    clearTimeout(p.timer)
    p.path = 'direct'
    showPath('direct')
    setStatus('connected directly: WebRTC data channel')
  }
  dc.onmessage = (e) => {
    const msg = JSON.parse(e.data)
    addMessage(String(msg.text), 'peer', 'direct')
  }
  dc.onclose = () => fallback(p, 'the data channel closed')
}

async function handleSignal (p, msg) {
  const pc = p.pc
  switch (msg.type) {
    case 'offer':
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp })
      await addPending(p)
      await pc.setLocalDescription(await pc.createAnswer())
      signal(p, { type: 'answer', sdp: pc.localDescription.sdp })
      break
    case 'answer':
      await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp })
      await addPending(p)
      break
    case 'candidate':
      if (pc.remoteDescription) await pc.addIceCandidate(msg.candidate).catch(showError)
      else p.pending.push(msg.candidate)
      break
    case 'data':
      addMessage(String(msg.text), 'peer', 'relay')
      break
  }
}

async function addPending (p) {
  const list = p.pending
  p.pending = []
  for (const c of list) await p.pc.addIceCandidate(c).catch(showError)
}

/** fallback carries the data over the relay stream, unless the data channel is open. */
function fallback (p, why) {
  if (peer !== p || p.dc?.readyState === 'open' || p.path === 'relay') return
  clearTimeout(p.timer)
  p.path = 'relay'
  showPath('relay')
  setStatus(`connected through the relay: ${why}`)
}

function endPeer (p, why) {
  if (peer !== p) return
  peer = null
  clearTimeout(p.timer)
  p.pc?.close()
  p.relay?.reset()
  $('peer').textContent = '-'
  showPath('none')
  setStatus(`${why}; waiting for a peer in this room`)
  pickPeer()
}

$('form').addEventListener('submit', (e) => {
  e.preventDefault()
  const text = $('text').value
  const p = peer
  if (!text || !p || p.path === 'none') return
  if (p.path === 'direct' && p.dc?.readyState === 'open') {
    p.dc.send(JSON.stringify({ text }))
    addMessage(text, 'me', 'direct')
  } else {
    signal(p, { type: 'data', text })
    addMessage(text, 'me', 'relay')
  }
  $('text').value = ''
})

main().catch((err) => {
  showError(err)
  setStatus('failed')
})
