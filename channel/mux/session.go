package mux

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Session is one yamux session, either role.
type Session struct {
	conn Conn
	cfg  Config

	wmu sync.Mutex // orders frames; a stream's RST is never followed by its data

	mu         sync.Mutex
	streams    streamSet
	goAway     bool   // we sent a go-away: new streams are reset
	peerGoAway bool   // the peer sent a go-away: OpenStream fails
	nextID     uint32 // the id OpenStream takes next; 0 when ids ran out
	closed     bool
	ka         *time.Timer
	cut        []*Stream // the streams open when the session closed
	pingID     uint32
	pingOut    bool // a keepalive ping awaits its answer

	// read loop only
	msg io.Reader // the message being read, nil between messages
	hdr [headerSize]byte
}

// smallBody is the largest frame body read into a scratch buffer and copied
// into the stream's tail buffer. Scratch buffers are shared by all sessions:
// an idle session holds none.
const smallBody = 4 << 10

var smallBodies = sync.Pool{New: func() any { return new([smallBody]byte) }}

func New(conn Conn, cfg Config) *Session {
	m := &Session{conn: conn, cfg: cfg}
	if cfg.Client {
		m.nextID = 1
	}
	if cfg.KeepAlive > 0 {
		m.mu.Lock() // the timer's function reads m.ka under mu
		m.ka = time.AfterFunc(cfg.KeepAlive, m.keepalive)
		m.mu.Unlock()
	}
	return m
}

// Run reads and dispatches frames until the connection fails, the peer
// breaks the protocol or the session is closed. It ends the session.
//
// If the Conn is a Parker and parks between messages, Run returns ErrParked
// at once, the session still open: the Conn's owner calls Run again when the
// Conn has input, from any goroutine, and until then the session has no
// goroutine reading it.
func (m *Session) Run() error {
	err := m.readLoop()
	if err == ErrParked {
		return err // the session may already run again elsewhere: touch nothing
	}
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

func (m *Session) readLoop() error {
	parker, _ := m.conn.(Parker)
	for {
		if m.msg == nil && parker != nil && parker.Park() {
			return ErrParked
		}
		if err := m.readFull(m.hdr[:]); err != nil {
			return err
		}
		if m.Closed() {
			return m.conn.Fail(net.ErrClosed)
		}
		h := m.hdr[:]
		version, typ, flags := h[0], h[1], binary.BigEndian.Uint16(h[2:4])
		id, length := binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint32(h[8:12])
		if version != protoVersion {
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
func (m *Session) readFull(p []byte) error {
	for len(p) > 0 {
		if m.msg == nil {
			r, err := m.conn.NextMessage()
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
			return m.conn.ReadFailed(err)
		}
	}
	return nil
}

// discard skips n bytes of frame body.
func (m *Session) discard(n uint32) error {
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

func (m *Session) violation(format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	m.conn.SetCloseStatus(CloseProtocolError, reason)
	m.Close() // streams end now, not after the close linger
	return m.conn.Fail(fmt.Errorf("%w: %s", ErrProtocol, reason))
}

// open handles a SYN: it registers stream id and hands it to its handler,
// or resets it after a go-away or when the session takes no streams. It
// returns nil for a stream not opened.
func (m *Session) open(id uint32) (*Stream, error) {
	switch {
	case m.cfg.Client && id%2 == 1:
		return nil, m.violation("stream id %d is odd: a server opens even stream ids", id)
	case !m.cfg.Client && id%2 == 0:
		return nil, m.violation("stream id %d is even: a client opens odd stream ids", id)
	}
	if m.cfg.OnStream == nil {
		// A client takes no streams: it refuses them as yamux does
		// when its accept backlog is full.
		return nil, m.writeControl(typeWindowUpdate, flagRST, id, 0, nil)
	}
	m.mu.Lock()
	if m.streams.get(id) != nil {
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
	st := newStream(m, id)
	m.streams.put(st)
	m.mu.Unlock()
	// The ACK goes before anything the handler writes.
	if err := m.writeControl(typeWindowUpdate, flagACK, id, 0, nil); err != nil {
		return nil, err
	}
	if m.cfg.OnStream != nil {
		m.cfg.OnStream(st)
	}
	return st, nil
}

// lookup returns stream id, opening it on a SYN.
func (m *Session) lookup(id uint32, flags uint16) (*Stream, error) {
	if flags&flagSYN != 0 {
		return m.open(id)
	}
	m.mu.Lock()
	st := m.streams.get(id)
	m.mu.Unlock()
	return st, nil
}

func (m *Session) data(id uint32, flags uint16, length uint32) error {
	if length > StreamWindow {
		return m.violation("yamux data frame of %d bytes exceeds the %d byte stream window", length, StreamWindow)
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

func (m *Session) windowUpdate(id uint32, flags uint16, delta uint32) error {
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

func (m *Session) ping(flags uint16, opaque uint32) error {
	switch {
	case flags&flagSYN != 0:
		if m.cfg.OnPing != nil && !m.cfg.OnPing() {
			return m.violation("too many yamux pings")
		}
		return m.writeControl(typePing, flagACK, 0, opaque, nil)
	case flags&flagACK != 0:
		m.mu.Lock()
		if m.pingOut && opaque == m.pingID && !m.closed {
			m.pingOut = false
			m.ka.Reset(m.cfg.KeepAlive)
		}
		m.mu.Unlock()
	}
	return nil
}

// keepalive runs on the session's timer: it sends a ping, and closes the
// session when the previous one went unanswered for pingTimeout.
func (m *Session) keepalive() {
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
	m.ka.Reset(m.cfg.PingTimeout)
	m.mu.Unlock()
	if err := m.writeControl(typePing, flagSYN, 0, id, nil); err != nil {
		m.Close()
	}
}

// OpenStream opens a stream (client role). Its SYN is sent before the call
// returns, so it comes before anything written on the stream; the peer's
// ACK needs no waiting for.
func (m *Session) OpenStream() (*Stream, error) {
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
	st := newStream(m, id)
	m.streams.put(st)
	m.mu.Unlock()
	if err := m.writeControl(typeWindowUpdate, flagSYN, id, 0, nil); err != nil {
		m.Close() // a failed write leaves the session unusable
		return nil, errSessionEnded
	}
	return st, nil
}

// GoAway tells the peer to open no more streams; later ones are reset.
func (m *Session) GoAway() error {
	m.mu.Lock()
	m.goAway = true
	m.mu.Unlock()
	return m.writeControl(typeGoAway, 0, 0, 0, nil)
}

func (m *Session) Closed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close ends the session: every stream ends at once and the connection is
// closed with the status set (1000 if none).
func (m *Session) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	// The streams are gone before anyone can see the session closed: an
	// inline reader starting now, or run ending the cut ones, relies on it.
	m.streams.each(func(st *Stream) {
		st.sessionGone()
		m.cut = append(m.cut, st)
	})
	m.streams = streamSet{}
	if m.ka != nil {
		m.ka.Stop()
	}
	m.mu.Unlock()
	return m.conn.Close()
}

// forget drops stream id once both sides are done with it.
func (m *Session) forget(id uint32) {
	m.mu.Lock()
	m.streams.del(id)
	m.mu.Unlock()
}

// streamSet is a session's open streams: the first few in place, for a
// session holds few and an idle one should not hold a map for them; the
// rest in a map.
type streamSet struct {
	few  [4]*Stream
	many map[uint32]*Stream
}

func (s *streamSet) get(id uint32) *Stream {
	for _, st := range s.few {
		if st != nil && st.id == id {
			return st
		}
	}
	return s.many[id]
}

func (s *streamSet) put(st *Stream) {
	for i, f := range s.few {
		if f == nil {
			s.few[i] = st
			return
		}
	}
	if s.many == nil {
		s.many = make(map[uint32]*Stream)
	}
	s.many[st.id] = st
}

func (s *streamSet) del(id uint32) {
	for i, st := range s.few {
		if st != nil && st.id == id {
			s.few[i] = nil
			return
		}
	}
	delete(s.many, id)
	if len(s.many) == 0 {
		s.many = nil
	}
}

func (s *streamSet) each(f func(*Stream)) {
	for _, st := range s.few {
		if st != nil {
			f(st)
		}
	}
	for _, st := range s.many {
		f(st)
	}
}

// writeControl sends a frame with no body; nothing for a stream st we have
// reset.
func (m *Session) writeControl(typ uint8, flags uint16, id, length uint32, st *Stream) error {
	var f [headerSize]byte
	putHeader(f[:], typ, flags, id, length)
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if st != nil && st.rstSent.Load() {
		return ErrStreamReset
	}
	return m.conn.WriteFrame(f[:])
}

// writeData sends p on stream st as one data frame with flags.
func (m *Session) writeData(st *Stream, flags uint16, p []byte) error {
	var h [headerSize]byte
	putHeader(h[:], typeData, flags, st.id, uint32(len(p)))
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if st.rstSent.Load() {
		return ErrStreamReset
	}
	if pw, ok := m.conn.(PartsWriter); ok {
		// The conn copies header and body once (or not at all).
		return pw.WriteFrameParts(h[:], p)
	}
	f := getBuf(headerSize + len(p))
	copy(f, h[:])
	copy(f[headerSize:], p)
	err := m.conn.WriteFrame(f)
	putBuf(f)
	return err
}
