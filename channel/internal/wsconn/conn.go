// Package wsconn is the Go client's WebSocket under the multiplexer: one
// binary message per yamux frame, and the close handshake with its code and
// reason (PROTOCOL.md section 6). The server's side is package wsraw.
package wsconn

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
)

// Conn is a client session's WebSocket, under the multiplexer: one binary
// message per yamux frame, and the close handshake with its code and
// reason. The multiplexer's read loop is its one reader (NextMessage);
// frames are written whole, under one lock (WriteFrame).
type Conn struct {
	// WS is the socket. Its reader is the multiplexer's; besides, the
	// client closes it once its read loop has ended.
	WS           *websocket.Conn
	writeTimeout time.Duration

	wmu    sync.Mutex // serialises WebSocket data writes
	closed chan struct{}

	peerMu    sync.Mutex
	peerClose *websocket.CloseError // the close message the peer sent, if any

	closeOnce   sync.Once
	statusMu    sync.Mutex
	closeCode   int
	closeReason string
	readerGone  atomic.Bool // the reader has returned its last error
}

// closeLinger is how long a close waits for the server's close message,
// reading and discarding meanwhile, so that the code and reason the server
// sent are read whatever ended the session (a failed write, say).
const closeLinger = time.Second

// New wraps ws, a client's WebSocket.
func New(ws *websocket.Conn, writeTimeout time.Duration) *Conn {
	return &Conn{
		WS:           ws,
		writeTimeout: writeTimeout,
		closed:       make(chan struct{}),
	}
}

// NextMessage returns a reader for the next message, which must be binary.
func (c *Conn) NextMessage() (io.Reader, error) {
	mt, r, err := c.WS.NextReader()
	if err != nil {
		return nil, c.ReadFailed(err)
	}
	if mt != websocket.BinaryMessage {
		c.SetCloseStatus(channel.CloseUnsupported, "text messages are not allowed: send binary messages")
		return nil, c.Fail(channel.ErrTextMessage)
	}
	return r, nil
}

// ReadFailed ends reading on err, keeping the peer's close message if that
// is what err is.
func (c *Conn) ReadFailed(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.peerMu.Lock()
		c.peerClose = ce
		c.peerMu.Unlock()
	}
	return c.readerDone(err)
}

// WriteFrame sends one whole frame as one binary message.
func (c *Conn) WriteFrame(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WS.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	return c.WS.WriteMessage(websocket.BinaryMessage, frame)
}

// Fail ends reading because of the peer's fault: it closes with the code
// already set, discards what the peer still sends until its close message
// or the linger deadline, and returns err.
func (c *Conn) Fail(err error) error {
	c.Close()
	for {
		_, r, rerr := c.WS.NextReader()
		if rerr != nil {
			break
		}
		if _, rerr := io.Copy(io.Discard, r); rerr != nil {
			break
		}
	}
	return c.readerDone(err)
}

// readerDone records that reading is over and closes the socket, unless a
// close is still to be sent (Close does it then).
func (c *Conn) readerDone(err error) error {
	c.readerGone.Store(true)
	select {
	case <-c.closed:
		c.WS.Close()
	default:
	}
	return err
}

// SetCloseStatus records the close code to send; the first one set wins.
func (c *Conn) SetCloseStatus(code int, reason string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
}

// Close sends a close message with the recorded code (1000 if none); it
// does not wait for the server's close message: the reader goes on, reading
// and discarding, until that message or closeLinger, and closes the
// connection when it ends. The multiplexer calls Close when the session
// ends.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.statusMu.Lock()
		code, reason := c.closeCode, c.closeReason
		c.statusMu.Unlock()
		linger := !c.readerGone.Load()
		if code == 0 {
			code = channel.CloseNormal
		}
		if len(reason) > 120 {
			reason = reason[:120]
		}
		_ = c.WS.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		if linger {
			// The reader discards until the server's close message comes
			// or the deadline passes, then closes the socket.
			c.WS.SetReadDeadline(time.Now().Add(closeLinger))
		} else {
			err = c.WS.Close()
		}
		close(c.closed)
		if linger && c.readerGone.Load() {
			c.WS.Close() // the reader ended meanwhile
		}
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// PeerCloseError returns the close message the peer sent, or nil.
func (c *Conn) PeerCloseError() *websocket.CloseError {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	return c.peerClose
}

// CloseStatus returns the close code and reason the conn sent or will send.
func (c *Conn) CloseStatus() (int, string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	return c.closeCode, c.closeReason
}
