package model

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueBytes bounds the live updates a Replicate stream holds for a
// peer that reads slower than the Model changes.
const DefaultQueueBytes = 1 << 20

// ReplicateOptions are the optional arguments of Replicate. The hooks are
// called from Replicate's reading goroutine, one at a time, and not under
// the Model's lock: they may call methods of the Model. A hook that blocks
// stops reading from the peer.
type ReplicateOptions struct {
	// OnDigest, if not nil, is called with the id in the peer's digest (""
	// when it has none) when the digest arrives, before history is sent.
	// The server uses it to learn the source of an ephemeral stream's keys.
	OnDigest func(remoteID string)
	// OnSync, if not nil, is called when the peer's "SYNC" arrives: the
	// peer's history has been applied.
	OnSync func()
	// QueueBytes bounds the live updates waiting to be written to the peer,
	// measured as the length of their lines. A stream whose queue would grow
	// past it ends with ErrSlowPeer. Default DefaultQueueBytes (1 MiB).
	QueueBytes int
	// Owner, when not empty, lets the peer write only keys Owner owns: the
	// key Owner and keys that begin with Owner and "/" (PROTOCOL.md section
	// 9). Each update's source must also be one that has written no other
	// peer's keys, and not the Model's own id, so that no peer can advance
	// the clock of another's source. A fresh update that breaks either rule
	// ends the stream with a ProtocolError of code "forbidden", nothing of
	// it applied; a stale one (the others' updates a peer sends back) is
	// ignored, as every stale update is. Default "": the peer may write any
	// key.
	Owner string
	// NoEcho, when true, never sends an update back to the stream it came
	// from. Default false: like npm scuttlebutt, a live update from the peer
	// is sent back once, and the peer ignores it as stale.
	NoEcho bool
}

// Replicate runs the scuttlebutt stream protocol (PROTOCOL.md section 4)
// between the Model and a peer that reads what Replicate writes to w and
// writes what it reads from r. It blocks until the stream ends.
//
// Replicate first writes the Model's digest. Its clock is trimmed to fit
// Options.MaxLineBytes when it would not (the newest entries are kept): the
// peer then sends some updates that are stale here and ignored. When the
// peer's digest arrives, Replicate writes every update the peer lacks
// (History of the peer's clock), then "SYNC", then every change the Model
// applies while the stream lasts, skipping those the peer's clock shows it
// has. Updates from the peer are applied with Apply as they arrive; stale
// ones are ignored. A second digest is a protocol violation.
//
// Outgoing lines are written by one goroutine that Replicate starts and
// waits for. Live updates wait for it in a queue bounded by
// ReplicateOptions.QueueBytes, so a slow peer never blocks the Model.
// Another goroutine reads lines of at most Options.MaxLineBytes bytes,
// newline included (a last line without a newline counts as if it had one).
//
// Replicate returns:
//   - nil when r reaches EOF (the peer half-closed): it stops taking live
//     updates, writes what was already queued (the digest, history and
//     "SYNC" if the peer's digest arrived, live updates queued before the
//     EOF) and returns. It never closes w: the caller half-closes it after.
//   - a *ProtocolError with Remote false when a line breaks a limit or is not
//     a protocol message: Replicate writes that error object as the last
//     line, dropping what was queued, and returns.
//   - a *ProtocolError with Remote true when the peer sends an error object.
//   - ErrSlowPeer when the queue overflowed, ErrClosed when the Model was
//     closed, ctx.Err() when ctx ended, or the error of a failed Read or
//     Write.
//
// In the cases of the last two items, a Read or Write may be pending: to
// unblock it, Replicate sets a past deadline on r (SetReadDeadline) and on w
// (SetWriteDeadline) when they have those methods, and otherwise closes them
// when they are io.Closers. With neither, Replicate waits for the pending
// call to return.
func (m *Model) Replicate(ctx context.Context, r io.Reader, w io.Writer, opts ReplicateOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	digest := appendDigestFit(nil, Digest{ID: m.id, Clock: m.clock}, m.opts.MaxLineBytes)
	m.mu.Unlock()

	s := &stream{m: m, opts: opts, wake: make(chan struct{}, 1), aborted: make(chan struct{}), digest: digest}
	writerDone := make(chan error, 1)
	readerDone := make(chan error, 1)
	wait := func() (bool, error) {
		select {
		case <-s.wake:
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	go func() {
		_, err := s.writeLoop(w, wait)
		writerDone <- err
	}()
	go func() { readerDone <- s.readLoop(r) }()
	defer m.unsubscribe(s)

	select {
	case err := <-readerDone:
		var pe *ProtocolError
		switch {
		case err == nil:
			// EOF: write what is queued, then return.
			m.unsubscribe(s)
			s.finish()
			return s.waitWriter(ctx, w, writerDone)
		case errors.As(err, &pe) && !pe.Remote:
			m.unsubscribe(s)
			s.stop(nil, pe)
			_ = s.waitWriter(ctx, w, writerDone)
			return pe
		default:
			s.stop(err, nil)
			interruptWrite(w)
			<-writerDone
			return err
		}
	case err := <-writerDone:
		interruptRead(r)
		<-readerDone
		return err
	case <-s.aborted:
		// The queue overflowed or the Model closed; the writer may be
		// blocked in Write.
		interruptRead(r)
		interruptWrite(w)
		<-readerDone
		<-writerDone
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.stopErr
	case <-ctx.Done():
		s.stop(ctx.Err(), nil)
		interruptRead(r)
		interruptWrite(w)
		<-readerDone
		<-writerDone
		return ctx.Err()
	}
}

// waitWriter waits for the writer to finish, and unblocks it if ctx ends
// first.
func (s *stream) waitWriter(ctx context.Context, w io.Writer, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		s.stop(ctx.Err(), nil)
		interruptWrite(w)
		<-done
		return ctx.Err()
	case <-s.m.done:
		s.stop(ErrClosed, nil)
		interruptWrite(w)
		<-done
		return ErrClosed
	}
}

func interruptRead(r io.Reader) {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Unix(1, 0)) == nil {
			return
		}
	}
	if c, ok := r.(io.Closer); ok {
		_ = c.Close()
	}
}

func interruptWrite(w io.Writer) {
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		if d.SetWriteDeadline(time.Unix(1, 0)) == nil {
			return
		}
	}
	if c, ok := w.(io.Closer); ok {
		_ = c.Close()
	}
}

// unsubscribe stops delivering changes to s. An inline stream that is not
// over still hears of Close (waiting).
func (m *Model) unsubscribe(s *stream) {
	m.mu.Lock()
	delete(m.subs, s)
	if s.inline != nil && !s.inline.over.Load() && !m.closed {
		if m.waiting == nil {
			m.waiting = make(map[subscriber]struct{})
		}
		m.waiting[s] = struct{}{}
	}
	m.mu.Unlock()
}

// forget lets an inline stream that is over go.
func (m *Model) forget(s *stream) {
	m.mu.Lock()
	delete(m.subs, s)
	delete(m.waiting, s)
	m.mu.Unlock()
}

// stream is the state of one Replicate call shared by its reader, its writer
// and the Model, which queues live updates under its lock.
type stream struct {
	m    *Model
	opts ReplicateOptions

	gotDigest bool // reader only

	mu         sync.Mutex
	history    []Update           // to write, unsorted, once the peer's digest arrived
	peerClock  map[string]float64 // the peer's clock, handed to the writer with history
	sendSync   bool               // "SYNC" to write after history
	live       []event            // live updates to write
	liveBytes  int
	finishing  bool           // write what is queued, then stop
	errLine    *ProtocolError // write this error object, then stop
	stopErr    error          // stop at once with this error
	urgent     atomic.Bool    // errLine or stopErr is set
	wake       chan struct{}  // capacity 1: the writer has work (Replicate)
	aborted    chan struct{}  // closed by abortLocked (Replicate)
	isAborted  bool
	spareQueue []event

	// The writer's own, across its runs.
	digest []byte             // the Model's digest, written first
	peer   map[string]float64 // what the peer has, as far as the writer knows

	// ReplicateInline's (inline.go): a writer goroutine runs only while
	// there is something to write.
	inline  *Replication
	running bool // a writer goroutine runs; under mu
}

// signal tells the writer it has work: it wakes Replicate's writer, or
// starts ReplicateInline's if none runs. s.mu must be held.
func (s *stream) signal() {
	if s.inline != nil {
		s.inline.kickLocked()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// deliver implements subscriber. Called with m.mu held.
func (s *stream) deliver(ev event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopErr != nil || s.errLine != nil || s.finishing {
		return false
	}
	s.liveBytes += len(ev.u.Key) + len(ev.u.Value) + len(ev.u.Source) + len(ev.u.Sig) + 32
	if s.liveBytes > s.opts.QueueBytes {
		s.live = nil
		s.abortLocked(ErrSlowPeer)
		return false
	}
	s.live = append(s.live, ev)
	s.signal()
	return true
}

// close implements subscriber. Called with m.mu held.
func (s *stream) close() {
	s.mu.Lock()
	s.abortLocked(ErrClosed)
	s.mu.Unlock()
}

// abortLocked ends the stream at once with err, waking Replicate, which
// unblocks the writer. Called with s.mu held.
func (s *stream) abortLocked(err error) {
	if s.stopErr == nil && s.errLine == nil {
		s.stopErr = err
	}
	s.urgent.Store(true)
	s.signal()
	if !s.isAborted {
		s.isAborted = true
		if s.inline != nil {
			interruptWrite(s.inline.w) // the writer may be blocked in Write
		} else {
			close(s.aborted)
		}
	}
}

// stop makes the writer end: with err at once, or after writing errLine.
func (s *stream) stop(err error, errLine *ProtocolError) {
	s.mu.Lock()
	if s.stopErr == nil && s.errLine == nil {
		s.stopErr, s.errLine = err, errLine
	}
	s.urgent.Store(true)
	s.signal()
	s.mu.Unlock()
}

// finish makes the writer write what is queued and end.
func (s *stream) finish() {
	s.mu.Lock()
	s.finishing = true
	s.signal()
	s.mu.Unlock()
}

// readBuffer is the read buffer of a replicating stream.
const readBuffer = 1 << 10

// readLoop reads and handles lines until EOF (nil), a protocol error, a
// remote error object or a read error.
func (s *stream) readLoop(r io.Reader) error {
	limit := s.m.opts.MaxLineBytes
	// A small buffer, which an idle stream holds while it waits; a longer
	// line is gathered in long, up to the limit, and let go after.
	br := bufio.NewReaderSize(r, min(limit, readBuffer))
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = long[:0]
			for errors.Is(err, bufio.ErrBufferFull) && len(long)+len(line) <= limit {
				long = append(long, line...)
				line, err = br.ReadSlice('\n')
			}
			long = append(long, line...)
			line = long
			if cap(long) > 4*readBuffer {
				long = nil // an outsized buffer goes to the GC after this line
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > limit || (err != nil && len(line) >= limit) {
			return protoErr(CodeLimit, ErrLineTooLong, "line longer than %d bytes", limit)
		}
		if len(line) > 0 && (err == nil || err == io.EOF) {
			if herr := s.handleLine(line); herr != nil {
				return herr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("model: replicate read: %w", err)
		}
	}
}

func (s *stream) handleLine(line []byte) error {
	msg, err := ParseLine(line)
	if err != nil {
		return err
	}
	switch msg.Kind {
	case KindUpdate:
		_, err := s.m.apply(msg.Update, s, false)
		return err
	case KindDigest:
		if s.gotDigest {
			return badLine(ErrInvalidMessage, "a second digest")
		}
		s.gotDigest = true
		if s.opts.OnDigest != nil {
			s.opts.OnDigest(msg.Digest.ID)
		}
		return s.m.attach(s, msg.Digest.Clock)
	case KindSync:
		if s.opts.OnSync != nil {
			s.opts.OnSync()
		}
	case KindError:
		return msg.Err
	}
	return nil
}

// attach queues the history a peer with clock lacks and subscribes s to
// later changes, in one step under the lock so that no change falls between.
func (m *Model) attach(s *stream, clock map[string]float64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	h := m.historyLocked(clock)
	s.mu.Lock()
	stopped := s.stopErr != nil || s.errLine != nil || s.finishing || s.inline != nil && s.inline.over.Load()
	if !stopped {
		s.history = h
		s.peerClock = clock
		s.sendSync = true
		s.signal()
	}
	s.mu.Unlock()
	if !stopped {
		m.subs[s] = struct{}{}
		delete(m.waiting, s)
	}
	return nil
}

// writeChunk is how many bytes the writer gathers before each Write.
const writeChunk = 32 << 10

// writeBufs holds the writers' buffers between bursts: an idle stream holds
// none (a presence member is idle nearly all its life).
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

// writeLoop writes the digest, then history, "SYNC" and live updates as they
// are queued, until stopped or finished (over true). With nothing to write
// it calls wait, and returns (over false) if wait says so.
func (s *stream) writeLoop(w io.Writer, wait func() (bool, error)) (over bool, err error) {
	if s.digest != nil {
		_, err := w.Write(s.digest)
		s.digest = nil
		if err != nil {
			return true, fmt.Errorf("model: replicate write: %w", err)
		}
	}
	var held *[]byte // the pooled buffer buf came from, while the writer has work
	var buf []byte
	take := func() {
		if held == nil {
			held = writeBufs.Get().(*[]byte)
			buf = (*held)[:0]
		}
	}
	release := func() {
		if held != nil {
			if cap(buf) <= 4*writeChunk { // an outsized one goes to the GC
				*held = buf[:0]
				writeBufs.Put(held)
			}
			held, buf = nil, nil
		}
	}
	defer release()
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		if err != nil {
			return fmt.Errorf("model: replicate write: %w", err)
		}
		return nil
	}
	for {
		s.mu.Lock()
		if s.errLine != nil {
			pe := s.errLine
			s.mu.Unlock()
			_, err := w.Write(AppendError(nil, pe.Code, pe.Message))
			if err != nil {
				return true, fmt.Errorf("model: replicate write: %w", err)
			}
			return true, nil
		}
		if s.stopErr != nil {
			err := s.stopErr
			s.mu.Unlock()
			return true, err
		}
		hist, sendSync, live, finishing := s.history, s.sendSync, s.live, s.finishing
		if s.peerClock != nil {
			s.peer, s.peerClock = s.peerClock, nil
		}
		s.history, s.sendSync = nil, false
		s.live, s.spareQueue = s.spareQueue[:0], nil
		s.liveBytes = 0
		s.mu.Unlock()

		if len(hist) == 0 && !sendSync && len(live) == 0 {
			if finishing {
				return true, nil
			}
			release()
			if more, err := wait(); !more {
				return err != nil, err
			}
			continue
		}
		if s.peer == nil {
			s.peer = make(map[string]float64)
		}
		peer := s.peer
		take()
		sortHistory(hist)
		for i := range hist {
			u := &hist[i]
			peer[u.Source] = max(peer[u.Source], u.TS)
			buf = AppendUpdate(buf, *u)
			if len(buf) >= writeChunk {
				if s.urgent.Load() {
					break
				}
				if err := flush(); err != nil {
					return true, err
				}
			}
		}
		if sendSync {
			buf = AppendSync(buf)
		}
		for i := range live {
			ev := &live[i]
			if seen, ok := peer[ev.u.Source]; ok && ev.u.TS <= seen {
				continue
			}
			peer[ev.u.Source] = ev.u.TS
			if s.opts.NoEcho && ev.origin == s {
				continue
			}
			buf = AppendUpdate(buf, ev.u)
			if len(buf) >= writeChunk {
				if s.urgent.Load() {
					break
				}
				if err := flush(); err != nil {
					return true, err
				}
			}
		}
		if s.urgent.Load() {
			buf = buf[:0]
			continue // the stop or error line is handled at the top
		}
		if err := flush(); err != nil {
			return true, err
		}
		clear(live)
		s.mu.Lock()
		s.spareQueue = live[:0]
		s.mu.Unlock()
	}
}

// appendDigestFit appends the line of d, dropping its oldest clock entries
// (the own id's last) until the line is at most max bytes. Any subset of a
// clock is a correct digest: the peer sends again what the missing entries
// would have spared.
func appendDigestFit(dst []byte, d Digest, max int) []byte {
	start := len(dst)
	dst = AppendDigest(dst, d)
	if len(dst)-start <= max {
		return dst
	}
	dst = dst[:start]
	type entry struct {
		src string
		ts  float64
	}
	entries := make([]entry, 0, len(d.Clock))
	for src, ts := range d.Clock {
		entries = append(entries, entry{src, ts})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case (a.src == d.ID) != (b.src == d.ID):
			if a.src == d.ID {
				return -1
			}
			return 1
		case a.ts != b.ts:
			if a.ts > b.ts {
				return -1
			}
			return 1
		}
		return strings.Compare(a.src, b.src)
	})
	size := len(AppendDigest(nil, Digest{ID: d.ID, Meta: d.Meta}))
	kept := make(map[string]float64)
	for _, e := range entries {
		n := stringLen(e.src) + 1 + numberLen(e.ts)
		if len(kept) > 0 {
			n++ // comma
		}
		if size+n > max {
			break
		}
		size += n
		kept[e.src] = e.ts
	}
	return AppendDigest(dst, Digest{ID: d.ID, Clock: kept, Meta: d.Meta})
}
