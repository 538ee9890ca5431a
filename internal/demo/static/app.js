// The demo page: a room of any size on the peer API of the JavaScript
// client. Each page joins the room, calls every member already there (the
// members that come later call it), connects over each call (a WebRTC
// data channel, or the relay when none forms) and shows each peer's path.
// Messages go to every connected peer; the camera, once on, goes to every
// peer too.
//
// URL query options:
//   room=NAME        the room (default "lobby")
//   name=TEXT        this page's name, shown to the others (default "browser")
//   server=URL       the channel URL (default /v1/channel on this host)
//   token=JWT        credentials, for a server that requires them
//   force=relay      iceTransportPolicy "relay" with no TURN server: ICE
//                    cannot succeed, so the relay carries the data
//   ice=turn         iceTransportPolicy "relay" with the server's TURN
//                    servers: the connection goes through TURN
//   timeout=MS       how long to wait for a data channel (default 5000)
//   media=1          turn the camera on at once

import { connect } from './signalchannel/index.js'

const params = new URLSearchParams(location.search)
const roomName = params.get('room') || 'lobby'
const myName = params.get('name') || 'browser'
const forceRelay = params.get('force') === 'relay'
const onlyTURN = params.get('ice') === 'turn'
const directTimeout = Number(params.get('timeout')) > 0 ? Number(params.get('timeout')) : 5000
const serverURL = params.get('server') || new URL('/v1/channel', location.href).href
const token = params.get('token') || undefined

const $ = (id) => document.getElementById(id)
const enc = new TextEncoder()

/** @type {import('./signalchannel/index.js').Room} */
let room
/** The camera's stream, once on. */
let camera = null
/** @type {Map<string, {li: HTMLElement, conn: any, writer: any}>} the other members, by id */
const peers = new Map()

function setStatus (text) {
  $('status').textContent = text
}

function showError (err) {
  $('error').textContent = err ? `${err.code ? err.code + ': ' : ''}${err.message ?? err}` : ''
}

function countConnected () {
  let n = 0
  for (const p of peers.values()) if (p.conn) n++
  $('send').disabled = n === 0
  $('text').disabled = n === 0
  setStatus(`in room "${roomName}" with ${peers.size} other${peers.size === 1 ? '' : 's'}, ${n} connected`)
}

function addMessage (text, from, peerId, via) {
  const li = document.createElement('li')
  li.dataset.from = from
  li.dataset.peer = peerId
  li.dataset.path = via
  const who = document.createElement('strong')
  who.textContent = from === 'me' ? 'you: ' : `${peers.get(peerId)?.name ?? peerId}: `
  const body = document.createElement('span')
  body.className = 'text'
  body.textContent = text
  const tag = document.createElement('span')
  tag.className = 'via'
  tag.textContent = via
  li.append(who, body, tag)
  $('log').prepend(li)
}

/** peerEntry returns the entry of member m, adding its row. */
function peerEntry (m) {
  let p = peers.get(m.id)
  if (p) return p
  const li = document.createElement('li')
  li.dataset.peer = m.id
  const name = document.createElement('strong')
  name.textContent = m.meta?.name ?? 'peer'
  const id = document.createElement('code')
  id.textContent = m.id
  const path = document.createElement('span')
  path.className = 'path'
  path.dataset.path = 'none'
  path.textContent = 'not connected'
  const video = document.createElement('video')
  video.autoplay = true
  video.muted = true
  video.playsInline = true
  video.hidden = true
  li.append(name, ' ', id, ' ', path, video)
  $('peers').append(li)
  p = { li, name: m.meta?.name ?? 'peer', conn: null, writer: null, path, video }
  peers.set(m.id, p)
  countConnected()
  return p
}

function showPath (p, path) {
  p.path.dataset.path = path || 'none'
  p.path.textContent = path || 'not connected'
}

/** connectCall connects over an accepted call and serves it until it ends. */
async function connectCall (call) {
  const id = call.peer.id
  const p = peerEntry(room.members.get(id) ?? { id, meta: null })
  showPath(p, 'connecting')
  let conn
  try {
    conn = await call.connect({
      // The server's ICE servers unless ICE is made to fail.
      config: forceRelay ? { iceServers: [], iceTransportPolicy: 'relay' } : { iceTransportPolicy: onlyTURN ? 'relay' : 'all' },
      directTimeout,
      log: (msg, fields) => console.debug(`[${id.slice(0, 8)}] ${msg}`, JSON.stringify(fields))
    })
  } catch (e) {
    showPath(p, '')
    showError(e)
    return
  }
  p.conn = conn
  p.writer = conn.writable.getWriter()
  showPath(p, conn.path)
  conn.on('path', (path) => showPath(p, path))
  conn.pc?.addEventListener('track', (ev) => {
    p.video.hidden = false
    p.video.srcObject = ev.streams[0] ?? new MediaStream([ev.track])
    p.video.addEventListener('loadeddata', () => { p.video.dataset.playing = '1' }, { once: true })
  })
  if (camera) addCamera(conn)
  countConnected()
  // The other side's lines, one message each.
  const dec = new TextDecoder()
  let buf = ''
  try {
    for await (const chunk of conn.readable) {
      buf += dec.decode(chunk, { stream: true })
      let i
      while ((i = buf.indexOf('\n')) >= 0) {
        addMessage(buf.slice(0, i), 'peer', id, conn.path)
        buf = buf.slice(i + 1)
      }
    }
  } catch (e) {
    if (peers.has(id)) showError(e)
  }
  await conn.close()
  if (p.conn === conn) {
    p.conn = null
    p.writer = null
    showPath(p, '')
    countConnected()
  }
}

function addCamera (conn) {
  if (!conn.pc) return
  for (const track of camera.getTracks()) conn.pc.addTrack(track, camera)
}

async function startCamera () {
  if (camera) return
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: false })
  } catch (e) {
    showError(e)
    return
  }
  $('camera').disabled = true
  $('self-video').srcObject = camera
  $('self-video').hidden = false
  for (const p of peers.values()) if (p.conn) addCamera(p.conn)
}

async function placeCall (id) {
  try {
    await connectCall(await room.call(id, { meta: { name: myName } }))
  } catch (e) {
    showError(e)
  }
}

async function main () {
  $('room').textContent = roomName
  setStatus('connecting')
  const ch = await connect(serverURL, { token })
  $('self').textContent = ch.id
  room = await ch.room(roomName, { meta: { name: myName } })
  room.on('request', async (q) => {
    try {
      await connectCall(await q.accept())
    } catch (e) {
      showError(e)
    }
  })
  room.on('join', (m) => peerEntry(m))
  room.on('update', (m) => {
    const p = peers.get(m.id)
    if (p) p.li.querySelector('strong').textContent = p.name = m.meta?.name ?? 'peer'
  })
  room.on('leave', (m) => {
    const p = peers.get(m.id)
    peers.delete(m.id)
    p?.conn?.close()
    p?.li.remove()
    countConnected()
  })
  room.on('close', (err) => {
    setStatus('left the room')
    showError(err)
  })
  // The members here before this page call it no more: it calls them.
  for (const m of room.members.values()) {
    peerEntry(m)
    placeCall(m.id)
  }
  countConnected()
  $('form').addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const text = $('text').value
    if (!text) return
    $('text').value = ''
    for (const [id, p] of peers) {
      if (!p.writer) continue
      try {
        await p.writer.write(enc.encode(text.replaceAll('\n', ' ') + '\n'))
        addMessage(text, 'me', id, p.conn.path)
      } catch (e) {
        showError(e)
      }
    }
  })
  $('camera').addEventListener('click', () => startCamera())
  if (params.get('media') === '1') startCamera()
}

main().catch((e) => {
  setStatus('failed')
  showError(e)
})
