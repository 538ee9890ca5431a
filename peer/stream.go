package peer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The connection's bytes travel in frames, over the data channel (a frame a
// message) and over the relay (frames one after another), so that a path
// can change under a transfer without losing or repeating a byte: every
// data frame carries the offset of its first byte, the receiver acknowledges
// what it has, and the sender keeps what is not acknowledged and sends it
// again on the next path (PROTOCOL.md section 10).
//
//	kind   u8  (1 data, 2 ack, 3 fin)
//	offset u64 (data: of the first byte; ack: every byte before it arrived;
//	           fin: the end, after the last byte the sender will write)
//	length u32 (data: of the payload; ack, fin: 0)
//	payload
//
// A receiver acknowledges at once when 64 KiB have arrived since its last
// acknowledgement or a fin has, and otherwise within ackDelay, so that a
// sender learns soon that its last bytes arrived.
const (
	frameData   = 1
	frameAck    = 2
	frameFin    = 3
	frameHeader = 13
	// maxPayload is the largest payload of a data frame.
	maxPayload = 16 << 10
	// window bounds the bytes written but not acknowledged, and those
	// received but not read.
	window = 4 << 20
	// ackEvery is how many bytes the receiver takes before it acknowledges
	// at once.
	ackEvery = 64 << 10
	// ackDelay bounds how long received bytes wait for their
	// acknowledgement.
	ackDelay = 20 * time.Millisecond
)

// path is one way the frames travel: the data channel or the relay.
type path struct {
	kind Path
	rwc  io.ReadWriteCloser
	br   *bufio.Reader // the relay's frames; nil for the data channel
	wmu  sync.Mutex    // one frame at a time

	// The reader never writes: a write may wait for the other side to
	// read, which may be waiting for this side to read. It leaves the
	// offset to acknowledge here, and the acker writes it.
	ackAt atomic.Uint64
	ackc  chan struct{} // acknowledge now
	soonc chan struct{} // acknowledge within ackDelay
}

func newPath(kind Path, rwc io.ReadWriteCloser, br *bufio.Reader) *path {
	return &path{kind: kind, rwc: rwc, br: br, ackc: make(chan struct{}, 1), soonc: make(chan struct{}, 1)}
}

// signal wakes the acker: at once, or within ackDelay.
func (p *path) signal(now bool) {
	c := p.soonc
	if now {
		c = p.ackc
	}
	select {
	case c <- struct{}{}:
	default:
	}
}

// acker writes the acknowledgements of p until p fails or done closes.
func (p *path) acker(done <-chan struct{}) {
	var sent uint64
	delay := time.NewTimer(ackDelay)
	delay.Stop()
	defer delay.Stop()
	armed := false
	for {
		select {
		case <-p.ackc:
		case <-p.soonc:
			if !armed {
				armed = true
				delay.Reset(ackDelay)
			}
			continue
		case <-delay.C:
			armed = false
		case <-done:
			return
		}
		if at := p.ackAt.Load(); at > sent {
			if p.writeFrame(frameAck, at, nil) != nil {
				return
			}
			sent = at
		}
	}
}

// writeFrame sends one frame.
func (p *path) writeFrame(kind byte, offset uint64, payload []byte) error {
	b := make([]byte, frameHeader+len(payload))
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:9], offset)
	binary.BigEndian.PutUint32(b[9:13], uint32(len(payload)))
	copy(b[frameHeader:], payload)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.rwc.Write(b)
	return err
}

// readFrame reads one frame into buf (at least frameHeader+maxPayload).
func (p *path) readFrame(buf []byte) (kind byte, offset uint64, payload []byte, err error) {
	var n int
	if p.br == nil {
		n, err = p.rwc.Read(buf) // a data channel message is a frame
		if err != nil {
			return 0, 0, nil, err
		}
	} else {
		if _, err = io.ReadFull(p.br, buf[:frameHeader]); err != nil {
			return 0, 0, nil, err
		}
		l := int(binary.BigEndian.Uint32(buf[9:13]))
		if l > maxPayload {
			return 0, 0, nil, fmt.Errorf("peer: a frame of %d bytes", l)
		}
		if _, err = io.ReadFull(p.br, buf[frameHeader:frameHeader+l]); err != nil {
			return 0, 0, nil, err
		}
		n = frameHeader + l
	}
	if n < frameHeader || int(binary.BigEndian.Uint32(buf[9:13])) != n-frameHeader {
		return 0, 0, nil, errors.New("peer: a malformed frame")
	}
	return buf[0], binary.BigEndian.Uint64(buf[1:9]), buf[frameHeader:n], nil
}

// stream is the connection's byte stream over its current path.
type stream struct {
	mu      sync.Mutex
	changed *sync.Cond // space to write, bytes to read, a path, the end
	cur     *path
	err     error // the stream's end

	// sending
	writers sync.Mutex // one Write at a time, so that frames go out in order
	wmu     sync.Mutex // a frame write and the resend of a path change, one at a time
	acked   uint64     // offset of unsent[0]
	unsent  []byte     // written and not acknowledged
	written uint64     // offset after the last byte written
	finOut  bool       // CloseWrite was called: no byte after written

	// receiving
	delivered uint64 // offset after the last byte received
	unacked   int    // received since the last ack
	recv      []byte // received, not read
	finIn     bool   // the other side's fin arrived, at finAt
	finAt     uint64

	rdl, wdl streamDeadline // of Read and Write
}

// streamDeadline is a deadline of the stream's Read or Write: its timer
// wakes the waiting call when it passes.
type streamDeadline struct {
	at    time.Time
	timer *time.Timer
}

// setDeadline sets d to t (zero: none).
func (s *stream) setDeadline(d *streamDeadline, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.at = t
	if !t.IsZero() {
		d.timer = time.AfterFunc(time.Until(t), func() {
			s.mu.Lock()
			s.changed.Broadcast()
			s.mu.Unlock()
		})
	}
	s.changed.Broadcast()
}

// passed reports whether d has passed. Called with s.mu held.
func (d *streamDeadline) passed() bool { return !d.at.IsZero() && !time.Now().Before(d.at) }

func newStream() *stream {
	s := &stream{}
	s.changed = sync.NewCond(&s.mu)
	return s
}

// use makes p the stream's path: what was written and not acknowledged is
// sent again on it, and a goroutine reads its frames until it fails; wg
// owns that goroutine.
func (s *stream) use(p *path, wg *sync.WaitGroup, onFail func(*path, error)) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	old := s.cur
	s.cur = p
	off, pending, fin := s.acked, append([]byte(nil), s.unsent...), s.finOut
	s.changed.Broadcast()
	s.mu.Unlock()
	if old != nil {
		old.rwc.Close()
	}
	done := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := s.readLoop(p)
		close(done)
		onFail(p, err)
	}()
	go func() {
		defer wg.Done()
		p.acker(done)
	}()
	for len(pending) > 0 {
		n := min(len(pending), maxPayload)
		if err := p.writeFrame(frameData, off, pending[:n]); err != nil {
			return // the reader reports the path's failure
		}
		off += uint64(n)
		pending = pending[n:]
	}
	if fin {
		p.writeFrame(frameFin, off, nil)
	}
}

// readLoop applies the frames of p until it fails.
func (s *stream) readLoop(p *path) error {
	buf := make([]byte, frameHeader+maxPayload)
	for {
		kind, off, payload, err := p.readFrame(buf)
		if err != nil {
			return err
		}
		switch kind {
		case frameData:
			ack, now, err := s.receive(off, payload)
			if err != nil {
				return err
			}
			if ack > 0 {
				p.ackAt.Store(ack)
				p.signal(now)
			}
		case frameAck:
			s.ack(off)
		case frameFin:
			ack, err := s.fin(off)
			if err != nil {
				return err
			}
			p.ackAt.Store(ack)
			p.signal(true)
		}
	}
}

// receive takes a data frame: the bytes past those already received are
// kept for Read. It waits while the unread bytes fill the window. It
// returns the offset to acknowledge (0: none) and whether to acknowledge
// it at once.
func (s *stream) receive(off uint64, payload []byte) (uint64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := off + uint64(len(payload))
	if end <= s.delivered {
		return 0, false, nil // seen on the path before
	}
	if off > s.delivered {
		return 0, false, fmt.Errorf("peer: bytes from %d missing before %d", s.delivered, off)
	}
	if s.finIn && end > s.finAt {
		return 0, false, fmt.Errorf("peer: bytes past the fin at %d", s.finAt)
	}
	for len(s.recv) >= window && s.err == nil {
		s.changed.Wait()
	}
	if s.err != nil {
		return 0, false, s.err
	}
	fresh := payload[s.delivered-off:]
	s.recv = append(s.recv, fresh...)
	s.delivered = end
	s.unacked += len(fresh)
	s.changed.Broadcast()
	now := s.unacked >= ackEvery
	if now {
		s.unacked = 0
	}
	return s.delivered, now, nil
}

// fin takes the other side's fin: no byte comes after off. It returns the
// offset to acknowledge.
func (s *stream) fin(off uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < s.delivered || (s.finIn && off != s.finAt) {
		return 0, fmt.Errorf("peer: a fin at %d after %d bytes", off, s.delivered)
	}
	s.finIn, s.finAt = true, off
	s.unacked = 0
	s.changed.Broadcast()
	return s.delivered, nil
}

// eof reports whether every byte before the other side's fin was read.
// Called with s.mu held.
func (s *stream) eof() bool { return s.finIn && s.delivered == s.finAt && len(s.recv) == 0 }

// ack frees what the other side has received.
func (s *stream) ack(off uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off <= s.acked || off > s.written {
		return
	}
	s.unsent = s.unsent[off-s.acked:]
	if len(s.unsent) == 0 {
		s.unsent = nil // let the buffer go
	}
	s.acked = off
	s.changed.Broadcast()
}

// Read reads what arrived, waiting for it.
func (s *stream) Read(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.recv) == 0 && !s.eof() && s.err == nil && !s.rdl.passed() {
		s.changed.Wait()
	}
	if len(s.recv) == 0 {
		if s.eof() {
			return 0, io.EOF
		}
		if s.err != nil {
			return 0, s.err
		}
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(b, s.recv)
	s.recv = s.recv[n:]
	if len(s.recv) == 0 {
		s.recv = nil
	}
	s.changed.Broadcast()
	return n, nil
}

// Write keeps b until it is acknowledged and sends it on the current path,
// waiting while the window is full or there is no path.
//
// It waits holding no lock that use needs: a path change must get through
// while a Write waits for acknowledgements the dead path will never bring.
func (s *stream) Write(b []byte) (int, error) {
	s.writers.Lock()
	defer s.writers.Unlock()
	total := 0
	for len(b) > 0 {
		s.mu.Lock()
		for (len(s.unsent) >= window || s.cur == nil) && s.err == nil && !s.wdl.passed() {
			s.changed.Wait()
		}
		if s.err != nil {
			s.mu.Unlock()
			return total, s.err
		}
		if s.finOut {
			s.mu.Unlock()
			return total, errWriteClosed
		}
		if len(s.unsent) >= window || s.cur == nil {
			s.mu.Unlock()
			return total, os.ErrDeadlineExceeded
		}
		n := min(len(b), maxPayload, window-len(s.unsent))
		off := s.written
		s.unsent = append(s.unsent, b[:n]...)
		s.written += uint64(n)
		s.mu.Unlock()
		// On the path current now: one that came meanwhile has sent these
		// bytes already, and the receiver drops them the second time. A
		// failed write is not an error of Write: the bytes are kept, and
		// the next path sends them.
		s.wmu.Lock()
		s.path().writeFrame(frameData, off, b[:n])
		s.wmu.Unlock()
		total += n
		b = b[n:]
	}
	return total, nil
}

var errWriteClosed = errors.New("peer: write after CloseWrite")

// closeWrite sends the fin after the bytes written: the other side's Read
// returns io.EOF once it has read them.
func (s *stream) closeWrite() {
	s.writers.Lock()
	defer s.writers.Unlock()
	s.mu.Lock()
	if s.finOut || s.err != nil {
		s.mu.Unlock()
		return
	}
	s.finOut = true
	off, p := s.written, s.cur
	s.mu.Unlock()
	if p != nil { // else the first path sends it
		s.wmu.Lock()
		s.path().writeFrame(frameFin, off, nil)
		s.wmu.Unlock()
	}
}

// flush waits until every byte written is acknowledged, the stream ends,
// or d passes; it reports whether all were.
func (s *stream) flush(d time.Duration) bool {
	t := time.AfterFunc(d, func() {
		s.mu.Lock()
		s.changed.Broadcast()
		s.mu.Unlock()
	})
	defer t.Stop()
	deadline := time.Now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.acked < s.written && s.err == nil && time.Now().Before(deadline) {
		s.changed.Wait()
	}
	return s.acked == s.written
}

// end ends the stream with err: waiting calls return it.
func (s *stream) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	cur := s.cur
	s.changed.Broadcast()
	s.mu.Unlock()
	if cur != nil {
		cur.rwc.Close()
	}
}

// path returns the current path, nil before the first.
func (s *stream) path() *path {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}
