package model

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
)

// Replication is a stream of ReplicateInline: the caller feeds it what the
// peer sends.
type Replication struct {
	s      *stream
	ctx    context.Context
	w      io.Writer
	onDone func(error)
	stopFn func() bool // undoes the ctx AfterFunc; set under s.mu before ready
	ready  bool        // under s.mu: writers may start

	over atomic.Bool // onDone was called: Feed and End do nothing

	// The caller's reading side, one call at a time.
	carry    []byte // a line begun in an earlier Feed
	readDone bool
	result   error // what onDone reports whatever the writer returns: a local protocol error
}

// ReplicateInline runs the scuttlebutt stream protocol between the Model
// and a peer as Replicate does, without a goroutine of its own while the
// stream is idle: the caller passes what it reads from the peer to Feed
// and the end of its input to End, and a writer goroutine runs only while
// lines wait to be written to w. onDone is called once, from the writer's
// goroutine or the caller's, with what Replicate would have returned, when
// the stream is over: after that nothing more is written to w, and Feed and
// End do nothing. The caller then half-closes or resets w as Replicate's
// caller would.
//
// Feed and End run the hooks of opts and apply the peer's updates; they
// never wait on the network. Where Replicate would interrupt a pending
// read (the queue overflowed, the Model closed, ctx ended, a write
// failed), onDone comes without waiting for the input's end: the caller
// ends its reading then.
func (m *Model) ReplicateInline(ctx context.Context, w io.Writer, opts ReplicateOptions, onDone func(error)) (*Replication, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	r := &Replication{ctx: ctx, w: w, onDone: onDone}
	s := &stream{m: m, opts: opts, inline: r}
	r.s = s
	// No writer starts before ready: an early signal (ctx cancelled, the
	// Model closed) only records its work, and the writer that ends the
	// stream finds stopFn set and the stream registered.
	s.mu.Lock()
	r.stopFn = context.AfterFunc(ctx, func() {
		s.stop(ctx.Err(), nil)
		interruptWrite(w)
	})
	s.mu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		r.stopFn()
		return nil, ErrClosed
	}
	s.digest = appendDigestFit(nil, Digest{ID: m.id, Clock: m.clock}, m.opts.MaxLineBytes)
	if m.waiting == nil {
		m.waiting = make(map[subscriber]struct{})
	}
	m.waiting[s] = struct{}{} // until the peer's digest: Close reaches it
	m.mu.Unlock()
	s.mu.Lock()
	r.ready = true
	s.signal() // the digest
	s.mu.Unlock()
	return r, nil
}

// kickLocked starts the writer unless one runs or the stream is over.
// s.mu must be held.
func (r *Replication) kickLocked() {
	s := r.s
	if s.running || !r.ready || r.over.Load() {
		return
	}
	s.running = true
	go r.write()
}

// write is the writer goroutine: it writes until nothing is left, or the
// stream ends.
func (r *Replication) write() {
	s := r.s
	over, err := s.writeLoop(r.w, func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.history) > 0 || s.sendSync || len(s.live) > 0 || s.finishing || s.errLine != nil || s.stopErr != nil {
			return true, nil
		}
		s.running = false // the next signal starts a writer
		// An idle stream keeps no queue: most of a presence member's life.
		s.live, s.spareQueue = nil, nil
		return false, nil
	})
	if over {
		r.finish(err)
	}
}

// finish reports the end of the stream once the writer is done for good.
func (r *Replication) finish(err error) {
	s := r.s
	s.mu.Lock()
	switch {
	case r.ctx.Err() != nil:
		// Ended with ctx (its AfterFunc may be still to run), whatever
		// else the cut made of the input or the writes.
		err = r.ctx.Err()
	case r.result != nil:
		err = r.result
	case s.stopErr != nil:
		err = s.stopErr // an abort or a read error: not the write it interrupted
	}
	r.over.Store(true)
	s.running = false
	stop := r.stopFn
	s.mu.Unlock()
	s.m.forget(s)
	stop()
	r.onDone(err)
}

// Feed handles what the peer sent: complete lines are handled at once, a
// line's beginning is kept until its end comes.
func (r *Replication) Feed(p []byte) {
	if r.readDone || r.over.Load() {
		return
	}
	limit := r.s.m.opts.MaxLineBytes
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(r.carry)+len(p) >= limit { // its newline would pass the limit
				r.ended(r.tooLong(limit))
				return
			}
			r.carry = append(r.carry, p...)
			return
		}
		line := p[:i+1]
		p = p[i+1:]
		if len(r.carry) > 0 {
			line = append(r.carry, line...)
			r.carry = nil // an idle stream holds none
		}
		if len(line) > limit {
			r.ended(r.tooLong(limit))
			return
		}
		if err := r.s.handleLine(line); err != nil {
			r.ended(err)
			return
		}
	}
}

func (r *Replication) tooLong(limit int) error {
	return protoErr(CodeLimit, ErrLineTooLong, "line longer than %d bytes", limit)
}

// End ends the input: io.EOF (or nil) when the peer half-closed, another
// error when reading failed. A last line without a newline counts as if it
// had one.
func (r *Replication) End(err error) {
	if r.readDone || r.over.Load() {
		return
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = nil
		if line := r.carry; len(line) > 0 {
			r.carry = nil
			err = r.s.handleLine(line)
		}
	}
	r.ended(err)
}

// ended acts on the end of the input as Replicate does on its reader's.
func (r *Replication) ended(err error) {
	r.readDone = true
	r.carry = nil
	s := r.s
	var pe *ProtocolError
	switch {
	case err == nil:
		// EOF: write what is queued, then end.
		s.m.unsubscribe(s)
		s.finish()
	case errors.As(err, &pe) && !pe.Remote:
		// The error object is the last line.
		s.m.unsubscribe(s)
		s.mu.Lock()
		r.result = pe
		s.mu.Unlock()
		s.stop(nil, pe)
	default:
		s.stop(err, nil)
		interruptWrite(r.w)
	}
}
