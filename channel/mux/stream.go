package mux

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one stream of a Session.
type Stream struct {
	m  *Session
	id uint32

	// Made when first waited for (under mu): most streams never block, and
	// an idle session keeps its streams.
	readable chan struct{} // a token when Read may make progress
	writable chan struct{} // a token when Write may make progress
	done     chan struct{} // closed on reset either way or session end
	isDone   bool          // done is closed, or will be when made
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

	// Inline reading (ReadInline): data goes to inline in the read loop.
	inline    func([]byte)
	inlineEnd func(error)
	draining  bool // ReadInline is still passing on what was buffered
	ended     bool // inlineEnd was called or is due from the drain

	// Close: the owner gave the stream up; closeTimer resets it unless the
	// peer half-closes first. The timer is stopped when the stream ends.
	closing    bool
	closeTimer *time.Timer
}

func newStream(m *Session, id uint32) *Stream {
	return &Stream{
		m:          m,
		id:         id,
		recvWindow: StreamWindow,
		sendWindow: StreamWindow,
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
func (s *Stream) spend(n uint32) bool {
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
func (s *Stream) receiveCopy(b []byte) {
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
	r := s.readable
	s.mu.Unlock()
	notify(r)
}

// receive takes a body: it keeps it, passes it to an inline reader or, after
// FIN, reset or the inline reader's end, drops it. The inline reader gets
// it only during the call. owned says b is a pooled buffer to keep or give
// back; if not, receive must not keep it.
func (s *Stream) receive(b []byte, owned bool) {
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
	r := s.readable
	s.mu.Unlock()
	notify(r)
}

// ReadInline makes the read loop pass data to f as it arrives, after what
// is already buffered, and call end once the peer half-closes (io.EOF) or
// resets (ErrStreamReset), or the session ends. f and end run in the read
// loop, one at a time, except that this call itself passes on what was
// buffered, and ends the stream if that had already happened.
func (s *Stream) ReadInline(f func([]byte), end func(error)) {
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
// ReadInline is still draining (it ends the stream itself then).
func (s *Stream) endInline(err error) {
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

func (s *Stream) grantSend(delta uint32) {
	s.mu.Lock()
	s.sendWindow = uint32(min(uint64(s.sendWindow)+uint64(delta), 1<<31))
	w := s.writable
	s.mu.Unlock()
	notify(w)
}

// remoteFlags applies the FIN and RST of a frame from the peer.
func (s *Stream) remoteFlags(flags uint16) {
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
		if s.closeTimer != nil {
			s.closeTimer.Stop() // closed both ways: nothing to reset
		}
		r := s.readable
		s.mu.Unlock()
		notify(r)
		if both {
			s.m.forget(s.id)
		}
		s.endInline(io.EOF)
	}
}

// dropRecv releases the unread bodies; s.mu must be held.
func (s *Stream) dropRecv() {
	for _, b := range s.recv {
		putBuf(b)
	}
	s.recv, s.recvOff, s.buffered = nil, 0, 0
}

// end closes done and wakes blocked calls.
func (s *Stream) end() {
	s.mu.Lock()
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	if !s.isDone {
		s.isDone = true
		if s.done != nil {
			close(s.done)
		}
	}
	r, w := s.readable, s.writable
	s.mu.Unlock()
	notify(r)
	notify(w)
}

func (s *Stream) sessionGone() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	s.end()
}

// Done is closed when the stream is reset either way or the session ends.
func (s *Stream) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.isDone {
			close(s.done)
		}
	}
	return s.done
}

// waitable returns *c, made if need be; s.mu must be held.
func waitable(c *chan struct{}) chan struct{} {
	if *c == nil {
		*c = make(chan struct{}, 1)
	}
	return *c
}
func (s *Stream) PeerClosed() bool { return s.peerFIN.Load() }

func (s *Stream) errClosed() error {
	return fmt.Errorf("channel: stream %d: session ended: %w", s.id, net.ErrClosed)
}

func (s *Stream) errDeadline() error {
	return fmt.Errorf("channel: stream %d: %w", s.id, os.ErrDeadlineExceeded)
}

// Read reads what the peer sent; io.EOF after its FIN, ErrStreamReset after
// a reset. Data that arrived before the session ended is still read.
func (s *Stream) Read(p []byte) (int, error) {
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
		dl, r := s.readDL, waitable(&s.readable)
		s.mu.Unlock()
		if err := s.wait(r, dl); err != nil {
			return 0, err
		}
	}
}

// copyOut moves buffered bytes into p; s.mu must be held.
func (s *Stream) copyOut(p []byte) int {
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
func (s *Stream) windowDelta() uint32 {
	if s.gone || s.peerFIN.Load() {
		return 0
	}
	delta := StreamWindow - s.buffered - s.inflight - s.recvWindow
	if delta < StreamWindow/2 {
		return 0
	}
	s.recvWindow += delta
	return delta
}

// wait blocks until c has a token, the deadline passes (an error) or the
// deadline changes.
func (s *Stream) wait(c chan struct{}, dl time.Time) error {
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
func (s *Stream) Write(p []byte) (int, error) {
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
			dl, w := s.writeDL, waitable(&s.writable)
			s.mu.Unlock()
			if err := s.wait(w, dl); err != nil {
				return total, err
			}
			continue
		}
		n := uint32(min(len(p), int(s.sendWindow), StreamWindow))
		s.sendWindow -= n
		more := s.sendWindow > 0
		w := s.writable
		s.mu.Unlock()
		if more {
			notify(w) // keep the token for a concurrent writer
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
func (s *Stream) CloseWrite() error {
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
func (s *Stream) Reset() error {
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
	var f [headerSize]byte
	putHeader(f[:], typeWindowUpdate, flagRST, s.id, 0)
	s.m.wmu.Lock()
	s.rstSent.Store(true)
	err := s.m.conn.WriteFrame(f[:])
	s.m.wmu.Unlock()
	if err != nil {
		s.m.Close()
	}
	return err
}

// Close half-closes the stream (FIN) and gives it up: if the peer has not
// half-closed too within the session's CloseTimeout, the stream is reset,
// so a peer that never closes cannot pin it. What the peer sends until its
// FIN can still be read. Close does not block. (A
// stream only half-closed with CloseWrite has no such timeout: a relay's
// other direction may flow for as long as it likes.) The timer belongs to
// the stream: it stops when the peer's FIN, a reset or the session's end
// ends the stream first.
func (s *Stream) Close() error {
	err := s.CloseWrite()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return err
	}
	s.closing = true
	if s.reset || s.gone || s.peerFIN.Load() {
		return err
	}
	s.closeTimer = time.AfterFunc(s.m.cfg.CloseTimeout, s.closeExpired)
	return err
}

// closeExpired resets a stream given up with Close whose peer never
// half-closed.
func (s *Stream) closeExpired() {
	if !s.peerFIN.Load() {
		s.Reset()
	}
}
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDL = t
	r := s.readable
	s.mu.Unlock()
	notify(r)
	return nil
}

func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDL = t
	w := s.writable
	s.mu.Unlock()
	notify(w)
	return nil
}

// ID returns the stream's yamux id.
func (s *Stream) ID() uint32 { return s.id }
