package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// yamux framing (hashicorp/yamux spec.md, version 0).
const (
	yamuxHeaderSize = 12
	yamuxVersion    = 0

	typeData         = 0
	typeWindowUpdate = 1
	typePing         = 2
	typeGoAway       = 3

	flagSYN = 1
	flagACK = 2
	flagFIN = 4
	flagRST = 8

	// goAwayProtocolError is the go-away code for a protocol error.
	goAwayProtocolError = 1

	// streamWindow is the yamux stream window: no data frame may be longer.
	streamWindow = 256 << 10
)

// WebSocket close codes of PROTOCOL.md section 6.
const (
	CloseNormal        = websocket.CloseNormalClosure   // 1000
	CloseGoingAway     = websocket.CloseGoingAway       // 1001
	CloseUnsupported   = websocket.CloseUnsupportedData // 1003
	CloseProtocolError = 4400
	CloseUnauthorized  = 4401
	CloseLimit         = 4429

	// closeTryAgainLater is RFC 6455's 1013: a server overloaded for now.
	closeTryAgainLater = websocket.CloseTryAgainLater
)

// resetRing is how many recently reset stream ids a conn remembers, to drop
// frames yamux still sends for them.
const resetRing = 32

// wsConn is a session's WebSocket: one binary message per yamux frame, and
// the close handshake with its code and reason (both sides).
//
// On a client it is also the byte stream a hashicorp/yamux session runs on.
// yamux's receive goroutine is its one reader and yamux's send goroutine its
// one writer; Stream.Reset also writes, under the same lock. It scans the
// frames going both ways: to send each frame (header and body, which yamux
// writes separately) as one message, to refuse protocol violations before
// yamux sees them, to tell streams that they were reset, and to reset a
// stream, which hashicorp/yamux cannot do by itself: an RST goes to the peer
// and a copy is handed to the local yamux as if the peer had sent it. The
// server runs its own multiplexer (muxSession) on nextMessage and writeFrame.
type wsConn struct {
	ws           *websocket.Conn
	writeTimeout time.Duration

	// read side, owned by yamux's receive goroutine
	msg io.Reader // the WebSocket message being read, nil between messages
	in  frameScan

	injectMu  sync.Mutex
	inject    []byte // whole frames for yamux, handed over at a frame boundary
	hasInject atomic.Bool

	// write side
	wmu     sync.Mutex // serialises WebSocket data writes
	pending []byte     // the frame yamux is writing, until it is whole
	resets  [resetRing]uint32
	resetAt int

	watchMu sync.Mutex
	watches map[uint32]*watch
	closed  chan struct{}

	peerMu    sync.Mutex
	peerClose *websocket.CloseError // the close message the peer sent, if any

	closeOnce   sync.Once
	statusMu    sync.Mutex
	closeCode   int
	closeReason string
	readerGone  atomic.Bool // Read has returned its last error

	// client marks a client's conn: every close waits for the server's
	// close message, whatever ended the session (a failed write, say), so
	// that the code and reason the server sent are read.
	client bool
}

// closeLinger is how long a close the server starts with a code waits for
// the peer's close message, reading and discarding meanwhile: closing a
// socket with unread input makes the kernel reset it, and the peer could
// lose the close message and its reason.
const closeLinger = time.Second

func newWSConn(ws *websocket.Conn, writeTimeout time.Duration) *wsConn {
	return &wsConn{
		ws:           ws,
		writeTimeout: writeTimeout,
		closed:       make(chan struct{}),
	}
}

// frameScan follows frame boundaries in a byte stream.
type frameScan struct {
	hdr  [yamuxHeaderSize]byte
	n    int    // header bytes seen
	body uint32 // body bytes still to come
}

func (f *frameScan) atBoundary() bool { return f.n == 0 && f.body == 0 }

// Read hands yamux the bytes of the binary messages, never more than up to
// the next frame boundary, so that frames to inject can be slotted in.
func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.in.atBoundary() && c.hasInject.Load() {
			if n := c.takeInject(p); n > 0 {
				return n, nil
			}
		}
		if c.msg == nil {
			r, err := c.nextMessage()
			if err != nil {
				return 0, err
			}
			c.msg = r
		}
		want := len(p)
		if c.in.body > 0 {
			want = int(min(uint32(want), c.in.body))
		} else {
			want = min(want, yamuxHeaderSize-c.in.n)
		}
		n, err := c.msg.Read(p[:want])
		if err == io.EOF {
			c.msg = nil
			err = nil
		}
		if n > 0 {
			if verr := c.scanIn(p[:n]); verr != nil {
				return 0, c.fail(verr)
			}
			return n, nil
		}
		if err != nil {
			return 0, c.readFailed(err)
		}
	}
}

// nextMessage returns a reader for the next message, which must be binary.
func (c *wsConn) nextMessage() (io.Reader, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return nil, c.readFailed(err)
	}
	if mt != websocket.BinaryMessage {
		c.setCloseStatus(CloseUnsupported, "text messages are not allowed: send binary messages")
		return nil, c.fail(ErrTextMessage)
	}
	return r, nil
}

// readFailed ends reading on err, keeping the peer's close message if that
// is what err is.
func (c *wsConn) readFailed(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.peerMu.Lock()
		c.peerClose = ce
		c.peerMu.Unlock()
	}
	return c.readerDone(err)
}

// writeFrame sends one whole frame as one binary message.
func (c *wsConn) writeFrame(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeMessage(frame)
}

// scanIn follows the inbound frames in p, which never crosses a boundary.
func (c *wsConn) scanIn(p []byte) error {
	f := &c.in
	if f.body > 0 {
		f.body -= uint32(len(p))
		return nil
	}
	f.n += copy(f.hdr[f.n:], p)
	if f.n < yamuxHeaderSize {
		return nil
	}
	f.n = 0
	h := f.hdr[:]
	version, typ, flags := h[0], h[1], binary.BigEndian.Uint16(h[2:4])
	id, length := binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint32(h[8:12])
	if version != yamuxVersion {
		return c.violation(fmt.Sprintf("unsupported yamux version %d", version))
	}
	switch typ {
	case typeData:
		if length > streamWindow {
			return c.violation(fmt.Sprintf("yamux data frame of %d bytes exceeds the %d byte stream window", length, streamWindow))
		}
		f.body = length
		if flags&flagSYN != 0 {
			c.watchOpen(id)
		}
		if length > 0 && !c.spend(id, length) {
			return c.violation(fmt.Sprintf("yamux stream %d sent past its receive window", id))
		}
	case typeWindowUpdate:
	case typePing:
		return nil
	case typeGoAway:
		return nil
	default:
		return c.violation(fmt.Sprintf("unknown yamux frame type %d", typ))
	}
	if flags&flagSYN != 0 {
		if typ != typeData {
			c.watchOpen(id)
		}
	}
	if flags&flagFIN != 0 {
		c.watchFIN(id)
	}
	if flags&flagRST != 0 {
		c.watchFire(id, false)
	}
	return nil
}

// fail ends reading because of the peer's fault: it closes with the code
// already set, discards what the peer still sends until its close message
// or the linger deadline, and returns err.
func (c *wsConn) fail(err error) error {
	c.Close()
	for {
		_, r, rerr := c.ws.NextReader()
		if rerr != nil {
			break
		}
		if _, rerr := io.Copy(io.Discard, r); rerr != nil {
			break
		}
	}
	return c.readerDone(err)
}

// refuse closes a connection that never carried a session with code and
// reason, as a session's close with a code does: it half-closes after the
// close message and discards what the client still sends (the frames of a
// stream it opened at once, say) until the client's close message or the
// linger deadline, so that unread input does not make the kernel reset the
// connection and lose the close message. It blocks until then.
func (c *wsConn) refuse(code int, reason string) {
	c.setCloseStatus(code, reason)
	c.fail(nil)
}

// readerDone records that reading is over and closes the socket, unless a
// close is still to be sent (Close does it then).
func (c *wsConn) readerDone(err error) error {
	c.readerGone.Store(true)
	select {
	case <-c.closed:
		c.ws.Close()
	default:
	}
	return err
}

func (c *wsConn) violation(reason string) error {
	c.setCloseStatus(CloseProtocolError, reason)
	return fmt.Errorf("%w: %s", ErrProtocol, reason)
}

func (c *wsConn) takeInject(p []byte) int {
	c.injectMu.Lock()
	defer c.injectMu.Unlock()
	n := copy(p, c.inject)
	c.inject = c.inject[n:]
	if len(c.inject) == 0 {
		c.inject = nil
		c.hasInject.Store(false)
	}
	return n
}

// bigFrames holds frame buffers large enough for a whole data frame, so a
// busy stream does not allocate one per frame and an idle session keeps none.
var bigFrames = sync.Pool{New: func() any {
	b := make([]byte, 0, yamuxHeaderSize+streamWindow)
	return &b
}}

// smallFrame is the largest frame buffer a session keeps for itself.
const smallFrame = 4 << 10

// Write takes what yamux's send goroutine writes (a frame's header, then its
// body) and sends every whole frame as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	if need := len(c.pending) + len(p); need > cap(c.pending) && need > smallFrame && need <= yamuxHeaderSize+streamWindow {
		big := (*bigFrames.Get().(*[]byte))[:len(c.pending)]
		copy(big, c.pending)
		c.pending = big
	}
	c.pending = append(c.pending, p...)
	for len(c.pending) >= yamuxHeaderSize {
		h := c.pending[:yamuxHeaderSize]
		size := yamuxHeaderSize
		if h[1] == typeData {
			size += int(binary.BigEndian.Uint32(h[8:12]))
		}
		if len(c.pending) < size {
			break
		}
		if err := c.sendFrame(c.pending[:size]); err != nil {
			return 0, err
		}
		rest := copy(c.pending, c.pending[size:])
		c.pending = c.pending[:rest]
	}
	if len(c.pending) == 0 && cap(c.pending) > smallFrame {
		if cap(c.pending) == yamuxHeaderSize+streamWindow {
			b := c.pending[:0]
			bigFrames.Put(&b)
		}
		c.pending = nil // an idle session keeps no large buffer
	}
	return len(p), nil
}

func (c *wsConn) sendFrame(frame []byte) error {
	typ, flags := frame[1], binary.BigEndian.Uint16(frame[2:4])
	id := binary.BigEndian.Uint32(frame[4:8])
	if typ == typeData || typ == typeWindowUpdate {
		if flags&flagSYN != 0 {
			c.watchOpen(id)
		}
		if typ == typeWindowUpdate {
			c.grant(id, binary.BigEndian.Uint32(frame[8:12]))
		}
		if flags&flagRST != 0 {
			// yamux resets a stream by itself only when it cannot take
			// it (resetStream writes directly).
			c.watchFire(id, true)
		}
	}
	if typ == typeGoAway && binary.BigEndian.Uint32(frame[8:12]) == goAwayProtocolError {
		// yamux found a fault only it can see (a stream's receive window
		// overrun, a duplicate stream) and ends the session.
		c.setCloseStatus(CloseProtocolError, "yamux protocol violation: receive window exceeded or duplicate stream")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if id != 0 && (typ == typeData || typ == typeWindowUpdate) && c.wasReset(id) {
		return nil // the peer was told the stream is gone
	}
	return c.writeMessage(frame)
}

// writeMessage sends one binary message; wmu must be held.
func (c *wsConn) writeMessage(b []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// wasReset reports whether id was reset lately; wmu must be held.
func (c *wsConn) wasReset(id uint32) bool {
	for _, r := range c.resets {
		if r == id {
			return true
		}
	}
	return false
}

// resetStream sends an RST for stream id to the peer, hands one to the local
// yamux at the next inbound frame boundary, and fires the stream's watch.
// It may block while the WebSocket write completes (up to the write timeout).
func (c *wsConn) resetStream(id uint32) error {
	var rst [yamuxHeaderSize]byte
	rst[1] = typeWindowUpdate
	binary.BigEndian.PutUint16(rst[2:4], flagRST)
	binary.BigEndian.PutUint32(rst[4:8], id)

	c.injectMu.Lock()
	c.inject = append(c.inject, rst[:]...)
	c.hasInject.Store(true)
	c.injectMu.Unlock()
	c.watchFire(id, false)

	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.resets[c.resetAt] = id
	c.resetAt = (c.resetAt + 1) % resetRing
	return c.writeMessage(rst[:])
}

// watch follows one stream's fate as the frames show it.
type watch struct {
	done chan struct{} // closed on RST either way or when the conn closes
	fin  atomic.Bool   // the peer sent FIN: what it wrote is all here
	// credit is how many bytes the peer may still send: the initial
	// window plus the window updates sent, less the data received.
	credit atomic.Int64
}

// spend takes n bytes of stream id's receive credit; false means the peer
// sent past its window. Streams no longer watched are not checked.
func (c *wsConn) spend(id, n uint32) bool {
	c.watchMu.Lock()
	w := c.watches[id]
	c.watchMu.Unlock()
	return w == nil || w.credit.Add(-int64(n)) >= 0
}

// grant adds a window update we send to stream id's receive credit.
func (c *wsConn) grant(id, n uint32) {
	if n == 0 {
		return
	}
	c.watchMu.Lock()
	w := c.watches[id]
	c.watchMu.Unlock()
	if w != nil {
		w.credit.Add(int64(n))
	}
}

func (w *watch) fire() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}

// watchOpen starts watching stream id, on the SYN that opens it.
func (c *wsConn) watchOpen(id uint32) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if c.watches == nil {
		select {
		case <-c.closed:
			return
		default:
		}
		c.watches = make(map[uint32]*watch)
	}
	if _, ok := c.watches[id]; !ok {
		w := &watch{done: make(chan struct{})}
		w.credit.Store(streamWindow)
		c.watches[id] = w
	}
}

// watchOf returns stream id's watch. Call it only for a stream that yamux
// handed over; its SYN was seen, so it has an entry unless the conn closed.
func (c *wsConn) watchOf(id uint32) *watch {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if w, ok := c.watches[id]; ok {
		return w
	}
	w := &watch{done: make(chan struct{})}
	close(w.done)
	return w
}

// watchFIN records the peer's FIN on stream id.
func (c *wsConn) watchFIN(id uint32) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if w, ok := c.watches[id]; ok {
		w.fin.Store(true)
	}
}

// watchFire closes stream id's watch. An RST we send ends our interest in
// the stream (forget); one the peer sends keeps the entry, closed, until the
// stream is released, since its owner may not have asked for it yet.
func (c *wsConn) watchFire(id uint32, forget bool) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	w, ok := c.watches[id]
	if !ok {
		return
	}
	w.fire()
	if forget {
		delete(c.watches, id)
	}
}

// release forgets stream id's watch.
func (c *wsConn) release(id uint32) {
	c.watchMu.Lock()
	delete(c.watches, id)
	c.watchMu.Unlock()
}

// setCloseStatus records the close code to send; the first one set wins.
func (c *wsConn) setCloseStatus(code int, reason string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
}

// Close sends a close message with the recorded code (1000 if none) and
// fires every watch; it does not wait for the peer's close message. A
// server's close without a code closes the connection at once. A close with
// a code, and every close of a client, lingers: the reader goes on, reading
// and discarding, until the peer's close message or closeLinger, and closes
// the connection when it ends. yamux calls Close when the session ends.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.statusMu.Lock()
		code, reason := c.closeCode, c.closeReason
		c.statusMu.Unlock()
		linger := (code != 0 || c.client) && !c.readerGone.Load()
		if code == 0 {
			code = CloseNormal
		}
		if len(reason) > 120 {
			reason = reason[:120]
		}
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		if linger {
			// A close with a reason waits for the peer's close message:
			// the reader discards until it comes or the deadline passes,
			// then closes the socket. A server half-closes: its close
			// message is the last it sends.
			if hc, ok := c.ws.UnderlyingConn().(interface{ CloseWrite() error }); ok && !c.client {
				hc.CloseWrite()
			}
			c.ws.SetReadDeadline(time.Now().Add(closeLinger))
		} else {
			err = c.ws.Close()
		}
		c.watchMu.Lock()
		close(c.closed)
		for _, w := range c.watches {
			w.fire()
		}
		c.watches = nil
		c.watchMu.Unlock()
		if linger && c.readerGone.Load() {
			c.ws.Close() // the reader ended meanwhile
		}
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// peerCloseError returns the close message the peer sent, or nil.
func (c *wsConn) peerCloseError() *websocket.CloseError {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	return c.peerClose
}

// closeStatus returns the close code and reason the conn sent or will send.
func (c *wsConn) closeStatus() (int, string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	return c.closeCode, c.closeReason
}
