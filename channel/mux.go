package channel

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Both ends speak yamux (hashicorp/yamux spec.md, version 0) with the
// project's own multiplexer rather than a hashicorp/yamux session. A yamux
// session keeps three goroutines and a 4 KiB read buffer per connection
// (receive, send, keepalive) and an accept goroutine on top; this one keeps
// one goroutine, its read loop: on the server the goroutine that serves the
// connection, on a client one the Session owns. Writers write under one
// lock, keepalive is a timer, and on the server each stream is handed to its
// handler goroutine as its SYN arrives. Idle memory per session is what the
// aim of one server holding many peers is about.
//
// It also does what a hashicorp/yamux session cannot: reset a stream, and
// send each frame, header and body, as one WebSocket message.
//
// The roles differ only in who opens streams: a client opens odd stream ids
// (OpenStream) and resets any stream the server opens; the server accepts
// odd ids (onStream) and opens none.

// muxConn is the message transport under a muxSession: wsConn, or a fake in
// tests and fuzzing.
type muxConn interface {
	// nextMessage returns a reader for the next binary message.
	nextMessage() (io.Reader, error)
	// readFailed records an error from a message reader and ends reading.
	readFailed(err error) error
	// writeFrame sends one whole frame as one message.
	writeFrame(frame []byte) error
	setCloseStatus(code int, reason string)
	// fail closes with the status set and discards input until the peer's
	// close or a deadline, then returns err.
	fail(err error) error
	Close() error
}

// muxConfig tunes a muxSession.
type muxConfig struct {
	client      bool             // the client role: opens odd stream ids
	keepAlive   time.Duration    // between keepalive pings; 0 disables them
	pingTimeout time.Duration    // for a keepalive ping's answer
	onPing      func() bool      // per ping the peer sends; false closes with 4400
	onStream    func(*muxStream) // per stream the peer opens, in the read loop; nil resets them
}

// muxSession is one yamux session, either role.
type muxSession struct {
	conn muxConn
	cfg  muxConfig

	wmu sync.Mutex // orders frames; a stream's RST is never followed by its data

	mu         sync.Mutex
	streams    map[uint32]*muxStream
	goAway     bool   // we sent a go-away: new streams are reset
	peerGoAway bool   // the peer sent a go-away: OpenStream fails
	nextID     uint32 // the id OpenStream takes next; 0 when ids ran out
	closed     bool
	ka         *time.Timer
	cut        []*muxStream // the streams open when the session closed
	pingID     uint32
	pingOut    bool // a keepalive ping awaits its answer

	// read loop only
	msg io.Reader // the message being read, nil between messages
	hdr [yamuxHeaderSize]byte
}

// smallBody is the largest frame body read into a scratch buffer and copied
// into the stream's tail buffer. Scratch buffers are shared by all sessions:
// an idle session holds none.
const smallBody = 4 << 10

var smallBodies = sync.Pool{New: func() any { return new([smallBody]byte) }}

func newMuxSession(conn muxConn, cfg muxConfig) *muxSession {
	m := &muxSession{conn: conn, cfg: cfg, streams: make(map[uint32]*muxStream)}
	if cfg.client {
		m.nextID = 1
	}
	if cfg.keepAlive > 0 {
		m.mu.Lock() // the timer's function reads m.ka under mu
		m.ka = time.AfterFunc(cfg.keepAlive, m.keepalive)
		m.mu.Unlock()
	}
	return m
}

// run reads and dispatches frames until the connection fails, the peer
// breaks the protocol or the session is closed. It ends the session.
func (m *muxSession) run() error {
	err := m.readLoop()
	m.Close()
	// Inline readers learn of the session's end here, after the read loop:
	// never while one of their calls runs.
	m.mu.Lock()
	cut := m.cut
	m.cut = nil
	m.mu.Unlock()
	for _, st := range cut {
		st.endInline(st.errClosed())
	}
	return err
}

func (m *muxSession) readLoop() error {
	for {
		if err := m.readFull(m.hdr[:]); err != nil {
			return err
		}
		if m.isClosed() {
			return m.conn.fail(net.ErrClosed)
		}
		h := m.hdr[:]
		version, typ, flags := h[0], h[1], binary.BigEndian.Uint16(h[2:4])
		id, length := binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint32(h[8:12])
		if version != yamuxVersion {
			return m.violation("unsupported yamux version %d", version)
		}
		var err error
		switch typ {
		case typeData:
			err = m.data(id, flags, length)
		case typeWindowUpdate:
			err = m.windowUpdate(id, flags, length)
		case typePing:
			err = m.ping(flags, length)
		case typeGoAway:
			// The peer will take no more streams (and open none).
			m.mu.Lock()
			m.peerGoAway = true
			m.mu.Unlock()
		default:
			return m.violation("unknown yamux frame type %d", typ)
		}
		if err != nil {
			return err
		}
	}
}

// readFull fills p from the binary messages; frames may span messages.
func (m *muxSession) readFull(p []byte) error {
	for len(p) > 0 {
		if m.msg == nil {
			r, err := m.conn.nextMessage()
			if err != nil {
				return err
			}
			m.msg = r
		}
		n, err := m.msg.Read(p)
		p = p[n:]
		if err == io.EOF {
			m.msg = nil
		} else if err != nil {
			return m.conn.readFailed(err)
		}
	}
	return nil
}

// discard skips n bytes of frame body.
func (m *muxSession) discard(n uint32) error {
	var buf [512]byte
	for n > 0 {
		k := min(n, uint32(len(buf)))
		if err := m.readFull(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func (m *muxSession) violation(format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	m.conn.setCloseStatus(CloseProtocolError, reason)
	m.Close() // streams end now, not after the close linger
	return m.conn.fail(fmt.Errorf("%w: %s", ErrProtocol, reason))
}

// open handles a SYN: it registers stream id and hands it to its handler,
// or resets it after a go-away or when the session takes no streams. It
// returns nil for a stream not opened.
func (m *muxSession) open(id uint32) (*muxStream, error) {
	switch {
	case m.cfg.client && id%2 == 1:
		return nil, m.violation("stream id %d is odd: a server opens even stream ids", id)
	case !m.cfg.client && id%2 == 0:
		return nil, m.violation("stream id %d is even: a client opens odd stream ids", id)
	}
	if m.cfg.onStream == nil {
		// A client takes no streams: it refuses them as yamux does
		// when its accept backlog is full.
		return nil, m.writeControl(typeWindowUpdate, flagRST, id, 0, nil)
	}
	m.mu.Lock()
	if _, dup := m.streams[id]; dup {
		m.mu.Unlock()
		return nil, m.violation("stream %d opened twice", id)
	}
	if m.closed {
		m.mu.Unlock()
		return nil, nil
	}
	if m.goAway {
		m.mu.Unlock()
		m.writeControl(typeWindowUpdate, flagRST, id, 0, nil)
		return nil, nil
	}
	st := newMuxStream(m, id)
	m.streams[id] = st
	m.mu.Unlock()
	// The ACK goes before anything the handler writes.
	if err := m.writeControl(typeWindowUpdate, flagACK, id, 0, nil); err != nil {
		return nil, err
	}
	if m.cfg.onStream != nil {
		m.cfg.onStream(st)
	}
	return st, nil
}

// lookup returns stream id, opening it on a SYN.
func (m *muxSession) lookup(id uint32, flags uint16) (*muxStream, error) {
	if flags&flagSYN != 0 {
		return m.open(id)
	}
	m.mu.Lock()
	st := m.streams[id]
	m.mu.Unlock()
	return st, nil
}

func (m *muxSession) data(id uint32, flags uint16, length uint32) error {
	if length > streamWindow {
		return m.violation("yamux data frame of %d bytes exceeds the %d byte stream window", length, streamWindow)
	}
	st, err := m.lookup(id, flags)
	if err != nil {
		return err
	}
	if st == nil {
		// A stream reset or finished here: its late data is dropped.
		if err := m.discard(length); err != nil {
			return err
		}
		return nil
	}
	if length > 0 {
		if !st.spend(length) {
			return m.violation("yamux stream %d sent past its receive window", id)
		}
		if length <= smallBody {
			// Copied on: a stream holds its bytes in few buffers however
			// small the frames they came in.
			bp := smallBodies.Get().(*[smallBody]byte)
			buf := bp[:length]
			err := m.readFull(buf)
			if err == nil {
				st.receiveCopy(buf)
			}
			smallBodies.Put(bp)
			if err != nil {
				return err
			}
		} else {
			buf := getBuf(int(length))
			if err := m.readFull(buf); err != nil {
				putBuf(buf)
				return err
			}
			st.receive(buf, true)
		}
	}
	st.remoteFlags(flags)
	return nil
}

func (m *muxSession) windowUpdate(id uint32, flags uint16, delta uint32) error {
	st, err := m.lookup(id, flags)
	if err != nil || st == nil {
		return err
	}
	if delta > 0 {
		st.grantSend(delta)
	}
	st.remoteFlags(flags)
	return nil
}

func (m *muxSession) ping(flags uint16, opaque uint32) error {
	switch {
	case flags&flagSYN != 0:
		if m.cfg.onPing != nil && !m.cfg.onPing() {
			return m.violation("too many yamux pings")
		}
		return m.writeControl(typePing, flagACK, 0, opaque, nil)
	case flags&flagACK != 0:
		m.mu.Lock()
		if m.pingOut && opaque == m.pingID && !m.closed {
			m.pingOut = false
			m.ka.Reset(m.cfg.keepAlive)
		}
		m.mu.Unlock()
	}
	return nil
}

// keepalive runs on the session's timer: it sends a ping, and closes the
// session when the previous one went unanswered for pingTimeout.
func (m *muxSession) keepalive() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if m.pingOut {
		m.mu.Unlock()
		m.Close()
		return
	}
	m.pingID++
	m.pingOut = true
	id := m.pingID
	m.ka.Reset(m.cfg.pingTimeout)
	m.mu.Unlock()
	if err := m.writeControl(typePing, flagSYN, 0, id, nil); err != nil {
		m.Close()
	}
}

// OpenStream opens a stream (client role). Its SYN is sent before the call
// returns, so it comes before anything written on the stream; the peer's
// ACK needs no waiting for.
func (m *muxSession) OpenStream() (*muxStream, error) {
	m.mu.Lock()
	var err error
	switch {
	case m.closed:
		err = errSessionEnded
	case m.peerGoAway:
		err = ErrGoAway
	case m.nextID == 0: // a server's, or ids ran out
		err = errStreamIDs
	}
	if err != nil {
		m.mu.Unlock()
		return nil, err
	}
	id := m.nextID
	m.nextID += 2 // wraps to 1 after the last odd id: 0 marks none left
	if m.nextID < id {
		m.nextID = 0
	}
	st := newMuxStream(m, id)
	m.streams[id] = st
	m.mu.Unlock()
	if err := m.writeControl(typeWindowUpdate, flagSYN, id, 0, nil); err != nil {
		m.Close() // a failed write leaves the session unusable
		return nil, errSessionEnded
	}
	return st, nil
}

// GoAway tells the peer to open no more streams; later ones are reset.
func (m *muxSession) GoAway() error {
	m.mu.Lock()
	m.goAway = true
	m.mu.Unlock()
	return m.writeControl(typeGoAway, 0, 0, 0, nil)
}

func (m *muxSession) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close ends the session: every stream ends at once and the connection is
// closed with the status set (1000 if none).
func (m *muxSession) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	// The streams are gone before anyone can see the session closed: an
	// inline reader starting now, or run ending the cut ones, relies on it.
	for _, st := range m.streams {
		st.sessionGone()
		m.cut = append(m.cut, st)
	}
	m.streams = nil
	if m.ka != nil {
		m.ka.Stop()
	}
	m.mu.Unlock()
	return m.conn.Close()
}

// forget drops stream id once both sides are done with it.
func (m *muxSession) forget(id uint32) {
	m.mu.Lock()
	delete(m.streams, id)
	m.mu.Unlock()
}

// writeControl sends a frame with no body; nothing for a stream st we have
// reset.
func (m *muxSession) writeControl(typ uint8, flags uint16, id, length uint32, st *muxStream) error {
	var f [yamuxHeaderSize]byte
	putHeader(f[:], typ, flags, id, length)
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if st != nil && st.rstSent.Load() {
		return ErrStreamReset
	}
	return m.conn.writeFrame(f[:])
}

// writeData sends p on stream st as one data frame with flags.
func (m *muxSession) writeData(st *muxStream, flags uint16, p []byte) error {
	f := getBuf(yamuxHeaderSize + len(p))
	putHeader(f, typeData, flags, st.id, uint32(len(p)))
	copy(f[yamuxHeaderSize:], p)
	m.wmu.Lock()
	var err error
	if st.rstSent.Load() {
		err = ErrStreamReset
	} else {
		err = m.conn.writeFrame(f)
	}
	m.wmu.Unlock()
	putBuf(f)
	return err
}

func putHeader(f []byte, typ uint8, flags uint16, id, length uint32) {
	f[0] = yamuxVersion
	f[1] = typ
	binary.BigEndian.PutUint16(f[2:4], flags)
	binary.BigEndian.PutUint32(f[4:8], id)
	binary.BigEndian.PutUint32(f[8:12], length)
}

// Frame buffers come from pools by power-of-two size class from 64 B up
// to one whole frame, so neither bulk transfers nor small frames allocate
// per frame, and a buffer is at most twice what it holds.
const (
	minPooledBuf = 64
	maxPooledBuf = 512 << 10 // the class holding a 256 KiB frame and its header
	// tailBuf is the buffer small bodies are copied into (receiveCopy).
	tailBuf = 8 << 10
)

var bufPools [14]sync.Pool // 64 B, 128 B, ..., 512 KiB

func bufClass(n int) int {
	c, size := 0, minPooledBuf
	for size < n {
		c, size = c+1, size*2
	}
	return c
}

func getBuf(n int) []byte {
	if n < minPooledBuf || n > maxPooledBuf {
		return make([]byte, n)
	}
	c := bufClass(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, minPooledBuf<<c)
}

func putBuf(b []byte) {
	c := cap(b)
	if c < minPooledBuf || c > maxPooledBuf || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	bufPools[bufClass(c)].Put(&b)
}

// muxStream is one stream of a muxSession.
type muxStream struct {
	m  *muxSession
	id uint32

	readable chan struct{} // a token when Read may make progress
	writable chan struct{} // a token when Write may make progress
	done     chan struct{} // closed on reset either way or session end
	rstSent  atomic.Bool   // we reset it: nothing more may be written
	peerFIN  atomic.Bool

	mu         sync.Mutex
	recv       [][]byte // received, unread frame bodies
	recvOff    int      // read offset into recv[0]
	buffered   uint32   // unread bytes
	inflight   uint32   // credit spent on a body still being read
	recvWindow uint32   // what the peer may still send
	sendWindow uint32   // what we may still send
	localFIN   bool
	reset      bool // by either side
	gone       bool // the session ended
	readDL     time.Time
	writeDL    time.Time

	// Inline reading (readInline): data goes to inline in the read loop.
	inline    func([]byte)
	inlineEnd func(error)
	draining  bool // readInline is still passing on what was buffered
	ended     bool // inlineEnd was called or is due from the drain
}

func newMuxStream(m *muxSession, id uint32) *muxStream {
	return &muxStream{
		m:          m,
		id:         id,
		readable:   make(chan struct{}, 1),
		writable:   make(chan struct{}, 1),
		done:       make(chan struct{}),
		recvWindow: streamWindow,
		sendWindow: streamWindow,
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// spend takes n bytes of the receive credit; false means the peer sent past
// its window.
func (s *muxStream) spend(n uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > s.recvWindow {
		return false
	}
	s.recvWindow -= n
	s.inflight += n
	return true
}

// receiveCopy takes a small body, which it must copy: into the spare room
// of the last buffer, or a new one.
func (s *muxStream) receiveCopy(b []byte) {
	s.mu.Lock()
	if s.inline != nil && !s.draining || s.reset || s.ended || s.peerFIN.Load() {
		s.mu.Unlock()
		s.receive(b, false) // passed on or dropped, never kept
		return
	}
	s.inflight -= uint32(len(b))
	if n := len(s.recv); n > 0 && cap(s.recv[n-1])-len(s.recv[n-1]) >= len(b) {
		s.recv[n-1] = append(s.recv[n-1], b...)
	} else {
		s.recv = append(s.recv, append(getBuf(tailBuf)[:0], b...))
	}
	s.buffered += uint32(len(b))
	s.mu.Unlock()
	notify(s.readable)
}

// receive takes a body: it keeps it, passes it to an inline reader or, after
// FIN, reset or the inline reader's end, drops it. The inline reader gets
// it only during the call. owned says b is a pooled buffer to keep or give
// back; if not, receive must not keep it.
func (s *muxStream) receive(b []byte, owned bool) {
	s.mu.Lock()
	s.inflight -= uint32(len(b))
	if s.reset || s.ended || s.peerFIN.Load() {
		s.mu.Unlock()
		if owned {
			putBuf(b) // data has nowhere to go
		}
		return
	}
	if s.inline != nil && !s.draining {
		// Read at once: the credit goes back as for a Read.
		f := s.inline
		delta := s.windowDelta()
		s.mu.Unlock()
		f(b)
		if owned {
			putBuf(b)
		}
		if delta > 0 {
			s.m.writeControl(typeWindowUpdate, 0, s.id, delta, s)
		}
		return
	}
	s.recv = append(s.recv, b)
	s.buffered += uint32(len(b))
	s.mu.Unlock()
	notify(s.readable)
}

// readInline makes the read loop pass data to f as it arrives, after what
// is already buffered, and call end once the peer half-closes (io.EOF) or
// resets (ErrStreamReset), or the session ends. f and end run in the read
// loop, one at a time, except that this call itself passes on what was
// buffered, and ends the stream if that had already happened.
func (s *muxStream) readInline(f func([]byte), end func(error)) {
	s.mu.Lock()
	s.inline, s.inlineEnd, s.draining = f, end, true
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if len(s.recv) == 0 {
			s.draining = false
			var err error
			switch {
			case s.ended:
			case s.reset:
				err = ErrStreamReset
			case s.peerFIN.Load():
				err = io.EOF
			case s.gone:
				err = s.errClosed()
			}
			if err != nil {
				s.ended = true
			}
			delta := s.windowDelta()
			s.mu.Unlock()
			if delta > 0 {
				s.m.writeControl(typeWindowUpdate, 0, s.id, delta, s)
			}
			if err != nil {
				end(err)
			}
			return
		}
		b := s.recv[0][s.recvOff:]
		full := s.recv[0]
		s.recv[0] = nil
		s.recv = s.recv[1:]
		s.recvOff = 0
		s.buffered -= uint32(len(b))
		s.mu.Unlock()
		f(b)
		putBuf(full)
	}
}

// endInline calls an inline reader's end with err, once; not while
// readInline is still draining (it ends the stream itself then).
func (s *muxStream) endInline(err error) {
	s.mu.Lock()
	end := s.inlineEnd
	if end == nil || s.ended || s.draining {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	end(err)
}

func (s *muxStream) grantSend(delta uint32) {
	s.mu.Lock()
	s.sendWindow = uint32(min(uint64(s.sendWindow)+uint64(delta), 1<<31))
	s.mu.Unlock()
	notify(s.writable)
}

// remoteFlags applies the FIN and RST of a frame from the peer.
func (s *muxStream) remoteFlags(flags uint16) {
	if flags&flagRST != 0 {
		s.mu.Lock()
		s.reset = true
		s.dropRecv()
		s.mu.Unlock()
		s.end()
		s.m.forget(s.id)
		s.endInline(ErrStreamReset)
		return
	}
	if flags&flagFIN != 0 {
		s.mu.Lock()
		s.peerFIN.Store(true)
		both := s.localFIN
		s.mu.Unlock()
		notify(s.readable)
		if both {
			s.m.forget(s.id)
		}
		s.endInline(io.EOF)
	}
}

// dropRecv releases the unread bodies; s.mu must be held.
func (s *muxStream) dropRecv() {
	for _, b := range s.recv {
		putBuf(b)
	}
	s.recv, s.recvOff, s.buffered = nil, 0, 0
}

// end closes done and wakes blocked calls.
func (s *muxStream) end() {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Unlock()
	notify(s.readable)
	notify(s.writable)
}

func (s *muxStream) sessionGone() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	s.end()
}

func (s *muxStream) Done() <-chan struct{} { return s.done }
func (s *muxStream) PeerClosed() bool      { return s.peerFIN.Load() }

func (s *muxStream) errClosed() error {
	return fmt.Errorf("channel: stream %d: session ended: %w", s.id, net.ErrClosed)
}

func (s *muxStream) errDeadline() error {
	return fmt.Errorf("channel: stream %d: %w", s.id, os.ErrDeadlineExceeded)
}

// Read reads what the peer sent; io.EOF after its FIN, ErrStreamReset after
// a reset. Data that arrived before the session ended is still read.
func (s *muxStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.reset:
			s.mu.Unlock()
			return 0, ErrStreamReset
		case s.buffered > 0:
			n := s.copyOut(p)
			delta := s.windowDelta()
			s.mu.Unlock()
			if delta > 0 {
				// An error here ends the session; this read's data stands.
				s.m.writeControl(typeWindowUpdate, 0, s.id, delta, s)
			}
			return n, nil
		case len(p) == 0:
			s.mu.Unlock()
			return 0, nil
		case s.peerFIN.Load():
			s.mu.Unlock()
			return 0, io.EOF
		case s.gone:
			s.mu.Unlock()
			return 0, s.errClosed()
		}
		dl := s.readDL
		s.mu.Unlock()
		if err := s.wait(s.readable, dl); err != nil {
			return 0, err
		}
	}
}

// copyOut moves buffered bytes into p; s.mu must be held.
func (s *muxStream) copyOut(p []byte) int {
	n := 0
	for n < len(p) && len(s.recv) > 0 {
		b := s.recv[0][s.recvOff:]
		k := copy(p[n:], b)
		n += k
		s.recvOff += k
		if k == len(b) {
			putBuf(s.recv[0])
			s.recv[0] = nil
			s.recv = s.recv[1:]
			s.recvOff = 0
		}
	}
	if len(s.recv) == 0 {
		s.recv = nil // an idle stream keeps no slice
	}
	s.buffered -= uint32(n)
	return n
}

// windowDelta returns the window update to send after a read, if it is
// worth a frame (half the window, as yamux does); s.mu must be held.
func (s *muxStream) windowDelta() uint32 {
	if s.gone || s.peerFIN.Load() {
		return 0
	}
	delta := streamWindow - s.buffered - s.inflight - s.recvWindow
	if delta < streamWindow/2 {
		return 0
	}
	s.recvWindow += delta
	return delta
}

// wait blocks until c has a token, the deadline passes (an error) or the
// deadline changes.
func (s *muxStream) wait(c chan struct{}, dl time.Time) error {
	if dl.IsZero() {
		<-c
		return nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return s.errDeadline()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return nil
	case <-t.C:
		return s.errDeadline()
	}
}

// Write sends p in frames as the peer's window allows; it blocks while the
// window is full.
func (s *muxStream) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		s.mu.Lock()
		switch {
		case s.reset:
			s.mu.Unlock()
			return total, ErrStreamReset
		case s.localFIN:
			s.mu.Unlock()
			return total, fmt.Errorf("channel: stream %d: write after close: %w", s.id, net.ErrClosed)
		case s.gone:
			s.mu.Unlock()
			return total, s.errClosed()
		case s.sendWindow == 0:
			dl := s.writeDL
			s.mu.Unlock()
			if err := s.wait(s.writable, dl); err != nil {
				return total, err
			}
			continue
		}
		n := uint32(min(len(p), int(s.sendWindow), streamWindow))
		s.sendWindow -= n
		more := s.sendWindow > 0
		s.mu.Unlock()
		if more {
			notify(s.writable) // keep the token for a concurrent writer
		}
		if err := s.m.writeData(s, 0, p[:n]); err != nil {
			if err == ErrStreamReset {
				return total, err
			}
			s.m.Close() // a failed write leaves the session unusable
			return total, s.errClosed()
		}
		total += int(n)
		p = p[n:]
	}
	return total, nil
}

// CloseWrite sends FIN.
func (s *muxStream) CloseWrite() error {
	s.mu.Lock()
	if s.localFIN || s.reset {
		s.mu.Unlock()
		return nil
	}
	s.localFIN = true
	gone, both := s.gone, s.peerFIN.Load()
	s.mu.Unlock()
	if gone {
		return s.errClosed()
	}
	err := s.m.writeControl(typeWindowUpdate, flagFIN, s.id, 0, s)
	if both {
		s.m.forget(s.id)
	}
	if err != nil && err != ErrStreamReset {
		s.m.Close()
		return s.errClosed()
	}
	return nil
}

// Reset sends RST and ends both directions.
func (s *muxStream) Reset() error {
	s.mu.Lock()
	if s.reset {
		s.mu.Unlock()
		return nil
	}
	s.reset = true
	s.dropRecv()
	gone := s.gone
	s.mu.Unlock()
	s.end()
	s.m.forget(s.id)
	if gone {
		return nil
	}
	var f [yamuxHeaderSize]byte
	putHeader(f[:], typeWindowUpdate, flagRST, s.id, 0)
	s.m.wmu.Lock()
	s.rstSent.Store(true)
	err := s.m.conn.writeFrame(f[:])
	s.m.wmu.Unlock()
	if err != nil {
		s.m.Close()
	}
	return err
}

// Release forgets the stream once its owner is done with it.
func (s *muxStream) Release() {
	s.m.forget(s.id)
	s.mu.Lock()
	s.dropRecv()
	s.mu.Unlock()
}

func (s *muxStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDL = t
	s.mu.Unlock()
	notify(s.readable)
	return nil
}

func (s *muxStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDL = t
	s.mu.Unlock()
	notify(s.writable)
	return nil
}
