// Package wsraw is the server's side of a session's WebSocket after the
// handshake: RFC 6455 frames read and written straight on the connection,
// one binary message per yamux frame, the close handshake with its code and
// reason (PROTOCOL.md section 6), and no memory or goroutine held while the
// session is idle.
//
// gorilla/websocket does the handshake; its Conn is then dropped, because it
// keeps a read buffer for the connection's life and its reader must be
// parked in a goroutine to wait for input. A Conn here holds a read buffer
// only while bytes are at hand, and on Linux, for a plain TCP connection, it
// waits for the next message in an epoll set shared by every connection
// (Park) instead of in a goroutine of its own.
package wsraw

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
)

// ErrCloseSent is returned by writes after the close message was sent.
var ErrCloseSent = errors.New("websocket: close sent")

// ErrReadLimit is returned by reads of a message longer than the limit.
var ErrReadLimit = errors.New("websocket: message too big")

// closeLinger is how long a close the server starts with a code waits for
// the peer's close message, reading and discarding meanwhile: closing a
// socket with unread input makes the kernel reset it, and the peer could
// lose the close message and its reason.
const closeLinger = time.Second

// readBufSize is the read buffer a Conn takes from the pool while it has
// input; a Conn that cannot park keeps a small one for its life.
const (
	readBufSize  = 4 << 10
	fixedBufSize = 1 << 10
)

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// smallWrite is the largest message written by copying it behind its header
// into a pooled buffer (one write); larger ones go out as two slices in one
// writev.
const smallWrite = 4 << 10

var writeBufs = sync.Pool{New: func() any { b := make([]byte, smallWrite+10); return &b }}

// Conn is a session's WebSocket under the server's multiplexer: one binary
// message per yamux frame, and the close handshake with its code and
// reason. The multiplexer's read loop is its one reader (NextMessage,
// Park); writes of whole frames and control messages may come from any
// goroutine.
type Conn struct {
	nc           net.Conn
	writeTimeout time.Duration
	readLimit    int64
	onPing       func(data []byte) error

	// The read loop's, one goroutine at a time.
	buf     *[]byte // nil while empty, if the Conn can park
	r, w    int     // unread input is buf[r:w]
	mask    [4]byte // the data frame being read: its mask,
	maskPos int8    // the position in it,
	inMsg   bool    // and more frames of its message are to come
	msgOp   byte    // the message's opcode
	left    int64   // the frame's payload bytes not yet read
	msgLen  int64   // the message's length so far
	readErr error   // sticky: the read that failed

	// Streaming: a session whose input keeps coming right after it parks
	// waits for it in its goroutine instead (Park).
	parkedAt int64 // when it last parked (nanotime), until it runs again
	waitFrom int64 // when it began to wait in its goroutine, until input came
	quick    uint8 // wakes in a row that came within quickWake of the park

	wmu       sync.Mutex // one writer at a time
	closeSent bool       // under wmu
	writeErr  error      // under wmu: sticky, the socket's frames are broken after it

	closing    atomic.Bool // Close has run
	readerGone atomic.Bool // the reader has returned its last error

	mu          sync.Mutex
	closeCalled bool
	closeCode   int
	closeReason string
	peerClose   *websocket.CloseError // the close message the peer sent, if any

	park parking // waits for input without a goroutine; zero if the Conn cannot
}

// Options tune a Conn.
type Options struct {
	WriteTimeout time.Duration
	// ReadLimit is the longest message taken (1009 past it); 0 is none.
	ReadLimit int64
	// OnPing is called for each ping in the read loop; it answers with
	// WritePong. An error ends reading.
	OnPing func(data []byte) error
	// Resume is called, from a goroutine of its own, when a parked Conn
	// has input or was closed: it calls the session's Run again. Nil
	// means the Conn never parks.
	Resume func()
}

// New takes over nc, on which the WebSocket handshake has just completed
// with nothing read past it.
func New(nc net.Conn, o Options) *Conn {
	c := &Conn{
		nc:           nc,
		writeTimeout: o.WriteTimeout,
		readLimit:    o.ReadLimit,
		onPing:       o.OnPing,
	}
	if o.Resume != nil {
		c.park.init(nc, o.Resume)
	}
	if !c.park.able() {
		b := make([]byte, fixedBufSize)
		c.buf = &b
	}
	return c
}

// Parkable reports whether the Conn waits for input without a goroutine.
func (c *Conn) Parkable() bool { return c.park.able() }

// NextMessage returns a reader for the next message, which must be binary.
// The reader returns io.EOF with the message's last bytes.
func (c *Conn) NextMessage() (io.Reader, error) {
	if err := c.nextFrame(); err != nil {
		return nil, c.ReadFailed(err)
	}
	if c.msgOp != opBinary {
		c.SetCloseStatus(channel.CloseUnsupported, "text messages are not allowed: send binary messages")
		return nil, c.Fail(channel.ErrTextMessage)
	}
	return (*msgReader)(c), nil
}

// msgReader reads the payload of the current message.
type msgReader Conn

func (m *msgReader) Read(p []byte) (int, error) {
	c := (*Conn)(m)
	for c.left == 0 {
		if !c.inMsg {
			return 0, io.EOF
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.readPayload(p)
	c.maskPos = int8(maskBytes(c.mask, int(c.maskPos), p[:n]))
	c.left -= int64(n)
	if c.left == 0 && !c.inMsg {
		return n, io.EOF
	}
	return n, err
}

// nextFrame reads frame headers, handling control frames, until a data
// frame: the first of a message (op text or binary) or, within a message,
// its next continuation.
func (c *Conn) nextFrame() error {
	for {
		h, err := c.readHeader()
		if err != nil {
			return err
		}
		if h.op >= opClose {
			if err := c.control(h); err != nil {
				return err
			}
			continue
		}
		switch {
		case c.inMsg && h.op != opContinuation:
			return c.protocol(protocolError("new message begun before the last one ended"))
		case !c.inMsg && h.op == opContinuation:
			return c.protocol(protocolError("continuation frame with no message begun"))
		case !c.inMsg:
			c.msgOp, c.msgLen = h.op, 0
		}
		c.msgLen += h.length
		if c.readLimit > 0 && c.msgLen > c.readLimit {
			c.SetCloseStatus(websocket.CloseMessageTooBig, fmt.Sprintf("message too big: at most %d bytes", c.readLimit))
			return ErrReadLimit
		}
		c.mask, c.left, c.maskPos = h.mask, h.length, 0
		c.inMsg = !h.fin
		return nil
	}
}

// readHeader reads one frame header.
func (c *Conn) readHeader() (header, error) {
	for {
		if c.buf != nil {
			h, n, err := parseHeader((*c.buf)[c.r:c.w])
			if err != nil {
				return h, c.protocol(err)
			}
			if n > 0 {
				c.r += n
				return h, nil
			}
		}
		if err := c.fill(); err != nil {
			return header{}, err
		}
	}
}

// control handles a control frame in the read loop.
func (c *Conn) control(h header) error {
	var buf [maxControlPayload]byte
	p := buf[:h.length]
	for got := 0; got < len(p); {
		n, err := c.readPayload(p[got:])
		got += n
		if err != nil {
			return err
		}
	}
	maskBytes(h.mask, 0, p)
	switch h.op {
	case opPing:
		if c.onPing != nil {
			return c.onPing(p)
		}
		// As gorilla's default: a pong that cannot go out (the close was
		// sent, or the peer does not read) does not end reading.
		err := c.WritePong(p, time.Now().Add(c.writeTimeout))
		var ne net.Error
		if errors.Is(err, ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	case opPong:
		return nil
	}
	// Close: as gorilla does, a malformed one is a protocol error, and a
	// good one is echoed with its code.
	ce := &websocket.CloseError{Code: websocket.CloseNoStatusReceived}
	switch {
	case len(p) == 1:
		return c.protocol(protocolError("close message of one byte"))
	case len(p) >= 2:
		ce.Code = int(p[0])<<8 | int(p[1])
		ce.Text = string(p[2:])
		if !validCloseCode(ce.Code) {
			return c.protocol(protocolError(fmt.Sprintf("invalid close code %d", ce.Code)))
		}
		if !utf8.Valid(p[2:]) {
			return c.protocol(protocolError("close reason is not UTF-8"))
		}
	}
	echo := []byte{}
	if ce.Code != websocket.CloseNoStatusReceived {
		echo = websocket.FormatCloseMessage(ce.Code, "")
	}
	c.writeControl(opClose, echo, time.Now().Add(time.Second))
	return ce
}

// validCloseCode reports whether a peer may send code (RFC 6455 7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// protocol records a protocol error's close (1002 and its text) and
// returns it.
func (c *Conn) protocol(err error) error {
	var pe protocolError
	if errors.As(err, &pe) {
		c.SetCloseStatus(websocket.CloseProtocolError, string(pe))
	}
	return err
}

// readPayload reads payload bytes into p from the buffer, or straight from
// the socket when the buffer is empty and p is large.
func (c *Conn) readPayload(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf == nil || c.r == c.w {
		if len(p) >= readBufSize || c.readErr != nil {
			if c.readErr != nil {
				return 0, c.readErr
			}
			n, err := c.nc.Read(p)
			if n == 0 && err != nil {
				c.readErr = err
				return 0, err
			}
			return n, nil // an error comes again with the next read
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	c.release()
	return n, nil
}

// fill reads more input into the buffer, blocking until some comes.
func (c *Conn) fill() error {
	if c.readErr != nil {
		return c.readErr
	}
	if c.buf == nil {
		c.buf = readBufs.Get().(*[]byte)
		c.r, c.w = 0, 0
	}
	b := *c.buf
	if c.r > 0 && (c.r == c.w || len(b)-c.w < maxHeader) {
		c.w = copy(b, b[c.r:c.w])
		c.r = 0
	}
	n, err := c.nc.Read(b[c.w:])
	c.w += n
	if c.waitFrom != 0 {
		if nanotime()-c.waitFrom > int64(quickWake) {
			c.quick = 0 // the stream paused: park at the next message
		}
		c.waitFrom = 0
	}
	if n == 0 && err != nil {
		c.readErr = err
		c.release()
		return err
	}
	return nil
}

// A session that parks and has input again within quickWake,
// streamingWakes times in a row, is streaming: at the end of a message it
// waits for the next in its goroutine, as a blocking read does, until one
// takes longer than quickWake to come. Parking costs a system call and a
// new goroutine at each wake; a stream of messages should not pay them for
// every message, and an idle session parks at its next message.
const (
	quickWake      = 20 * time.Millisecond
	streamingWakes = 16
)

var nanotime = func() int64 { return time.Now().UnixNano() }

// release gives an emptied pooled buffer back.
func (c *Conn) release() {
	if c.buf != nil && c.r == c.w && c.park.able() {
		readBufs.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
}

// parkYields is how many times Park yields and looks again before it parks.
const parkYields = 1

// Park waits for the next message without a goroutine, if it can: see
// mux.Parker. It reads what has already come without blocking; with nothing
// there, it hands the connection to the epoll set and returns true.
func (c *Conn) Park() bool {
	if !c.park.able() {
		return false
	}
	if c.parkedAt != 0 { // running again after a park
		if nanotime()-c.parkedAt < int64(quickWake) {
			c.quick = min(c.quick+1, streamingWakes)
		} else {
			c.quick = 0
		}
		c.parkedAt = 0
	}
	if c.readErr != nil || c.inMsg || c.left > 0 || c.buf != nil && c.r < c.w {
		return false
	}
	if c.quick >= streamingWakes {
		c.waitFrom = nanotime() // streaming: fill reads, waiting in this goroutine
		return false
	}
	c.release()
	b := readBufs.Get().(*[]byte)
	n, err := c.park.tryRead(*b)
	for i := 0; i < parkYields && n == 0 && errors.Is(err, syscall.EAGAIN); i++ {
		// Again after a yield: the next message of a peer sending a
		// stream of them is usually there by then, and the session goes
		// on in this goroutine rather than parking and starting another.
		runtime.Gosched()
		n, err = c.park.tryRead(*b)
	}
	switch {
	case n > 0:
		c.buf, c.r, c.w = b, 0, n
		return false
	case errors.Is(err, syscall.EAGAIN):
		readBufs.Put(b)
	default:
		readBufs.Put(b)
		if err == nil {
			err = io.EOF
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
			// As a blocking read would return it.
			err = &net.OpError{Op: "read", Net: "tcp", Err: err}
		}
		c.readErr = err
		return false
	}
	c.parkedAt = nanotime() // before: once parked, c is another goroutine's
	if !c.park.park(&c.closing) {
		c.parkedAt = 0
		return false
	}
	return true
}

// ReadFailed ends reading on err, keeping the peer's close message if that
// is what err is.
func (c *Conn) ReadFailed(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.mu.Lock()
		c.peerClose = ce
		c.mu.Unlock()
	}
	return c.readerDone(err)
}

// WriteFrame sends one whole frame as one binary message.
func (c *Conn) WriteFrame(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(opBinary, nil, frame, time.Now().Add(c.writeTimeout))
}

// WriteFrameParts sends a frame given as its header and body as one binary
// message (mux.PartsWriter): a small one copied once into a pooled buffer
// behind the WebSocket header, a large one written with writev.
func (c *Conn) WriteFrameParts(header, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(opBinary, header, body, time.Now().Add(c.writeTimeout))
}

// WritePong answers a ping.
func (c *Conn) WritePong(data []byte, deadline time.Time) error {
	return c.writeControl(opPong, data, deadline)
}

// writeControl sends a control message with its own write deadline; it
// waits for a write under way, which its own deadline bounds.
func (c *Conn) writeControl(op byte, data []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(op, nil, data, deadline)
}

// writeLocked writes one message of op whose payload is head then p; c.wmu
// must be held.
func (c *Conn) writeLocked(op byte, head, p []byte, deadline time.Time) error {
	switch {
	case c.closeSent:
		return ErrCloseSent
	case c.writeErr != nil:
		return c.writeErr
	}
	if op == opClose {
		c.closeSent = true
	}
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		c.writeErr = err
		return err
	}
	var err error
	size := len(head) + len(p)
	if size <= smallWrite {
		bp := writeBufs.Get().(*[]byte)
		b := *bp
		n := putHeader(b, op, size)
		n += copy(b[n:], head)
		n += copy(b[n:], p)
		_, err = c.nc.Write(b[:n])
		writeBufs.Put(bp)
	} else {
		var hdr [10 + 16]byte // the WebSocket header, then head (a yamux header)
		n := putHeader(hdr[:], op, size)
		var bufs net.Buffers
		if len(head) <= len(hdr)-n {
			n += copy(hdr[n:], head)
			bufs = net.Buffers{hdr[:n], p}
		} else {
			bufs = net.Buffers{hdr[:n], head, p}
		}
		_, err = bufs.WriteTo(c.nc)
	}
	if err != nil {
		c.writeErr = err
	}
	return err
}

// Fail ends reading because of the peer's fault: it closes with the code
// already set, discards what the peer still sends until its close message
// or the linger deadline, and returns err.
func (c *Conn) Fail(err error) error {
	c.Close()
	for c.readErr == nil {
		if c.left > 0 || c.inMsg {
			if _, derr := io.Copy(io.Discard, (*msgReader)(c)); derr != nil {
				break
			}
			continue
		}
		if ferr := c.nextFrame(); ferr != nil {
			break
		}
	}
	return c.readerDone(err)
}

// Refuse closes a connection that never carried a session with code and
// reason, as a session's close with a code does: it half-closes after the
// close message and discards what the client still sends until the
// client's close message or the linger deadline, so that unread input does
// not make the kernel reset the connection and lose the close message. It
// blocks until then.
func (c *Conn) Refuse(code int, reason string) {
	c.SetCloseStatus(code, reason)
	c.Fail(nil)
}

// readerDone records that reading is over and closes the socket, unless a
// close is still to be sent (Close does it then).
func (c *Conn) readerDone(err error) error {
	if c.buf != nil && c.park.able() {
		readBufs.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
	c.readerGone.Store(true)
	if c.closing.Load() {
		c.nc.Close()
	}
	c.park.forget()
	return err
}

// SetCloseStatus records the close code to send; the first one set wins.
func (c *Conn) SetCloseStatus(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
}

// Close sends a close message with the recorded code (1000 if none); it
// does not wait for the peer's close message. A close without a code closes
// the connection at once. A close with a code lingers: the reader goes on,
// reading and discarding, until the peer's close message or closeLinger,
// and closes the connection when it ends. A parked reader is woken to do
// so. The multiplexer calls Close when the session ends.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		return nil
	}
	c.closeCalled = true
	code, reason := c.closeCode, c.closeReason
	c.mu.Unlock()
	linger := code != 0 && !c.readerGone.Load()
	if code == 0 {
		code = channel.CloseNormal
	}
	if len(reason) > 120 {
		reason = reason[:120]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	_ = c.writeControl(opClose, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	var err error
	if linger {
		// The reader discards until the peer's close message or the
		// deadline, then closes the socket. The close message is the last
		// the server sends: it half-closes.
		if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
			hc.CloseWrite()
		}
		c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	} else {
		err = c.nc.Close()
	}
	c.closing.Store(true)
	if linger && c.readerGone.Load() {
		c.nc.Close() // the reader ended meanwhile
	}
	c.park.wake() // a parked reader reads the end
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// PeerCloseError returns the close message the peer sent, or nil.
func (c *Conn) PeerCloseError() *websocket.CloseError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerClose
}

// CloseStatus returns the close code and reason the conn sent or will send.
func (c *Conn) CloseStatus() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason
}

// LocalAddr and RemoteAddr are the connection's.
func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }
