package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Link is an open pair: two streams and the pipe between them. Each side
// calls Run once, from its own goroutine, with its own stream, after it has
// written its own open reply; Run copies that stream to the partner. A side
// that cannot get that far calls Reset instead.
//
// The pair ends, for both Runs at once, when both directions are
// half-closed (Run returns nil), when either stream is reset or its session
// ends, when a cap of Limits is reached, when a Run's context ends, or on
// Reset. Except in the first case both streams are reset.
type Link struct {
	a, b  Stream
	lim   Limits
	start time.Time

	ab, ba         direction     // a -> b, b -> a
	readyA, readyB chan struct{} // closed when that side's Run starts
	halfClosed     atomic.Int32  // directions that reached EOF and passed it on
	active         atomic.Int64  // when a byte last moved, as time since start (Idle only)

	watchOnce sync.Once
	wg        sync.WaitGroup // the watcher

	endOnce sync.Once
	err     error         // why the link ended; set before done is closed
	done    chan struct{} // closed when the link has ended

	onEnd func()        // Pairer bookkeeping, run once before done is closed
	total *atomic.Int64 // Pairer-wide byte counter, or nil
}

// direction is one way of the pipe.
type direction struct {
	n       atomic.Int64 // bytes delivered
	running atomic.Bool  // its Run was called
	bigHeld atomic.Bool  // its copy holds a big buffer (tests watch it)
	bursts  atomic.Int64 // big buffers its copy took
}

// LinkStats are a Link's byte counters.
type LinkStats struct {
	AToB int64 // bytes copied from the first stream to the second
	BToA int64 // bytes copied from the second stream to the first
}

// NewLink pipes any two streams, for instance a local stream and a
// network-backed one when pairing across servers. a and b must differ;
// for a Pairer, a is the stream that waited and b the one that completed
// the pair. Nothing is read or written before Run.
func NewLink(a, b Stream, lim Limits) (*Link, error) {
	if a == nil || b == nil || a == b {
		return nil, errors.New("relay: NewLink needs two distinct streams")
	}
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	return newLink(a, b, lim), nil
}

func newLink(a, b Stream, lim Limits) *Link {
	return &Link{
		a:      a,
		b:      b,
		lim:    lim,
		start:  time.Now(),
		readyA: make(chan struct{}),
		readyB: make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// Run pipes self to its partner until the pair ends, and returns why it
// ended (nil when both directions were half-closed); both sides' Runs
// return the same error. It blocks. The copy into self starts only once
// Run has been called, so anything the caller wrote to self before (its
// open reply) comes before the partner's bytes. Run clears self's
// deadlines and owns them until it returns: the pair's own caps apply
// instead. It returns ErrNotSide at once, touching nothing, for a stream
// that is not one of the link's two or whose Run was already called.
func (l *Link) Run(ctx context.Context, self Stream) error {
	var (
		peer           Stream
		d              *direction
		mine, partners chan struct{}
	)
	switch self {
	case l.a:
		peer, d, mine, partners = l.b, &l.ab, l.readyA, l.readyB
	case l.b:
		peer, d, mine, partners = l.a, &l.ba, l.readyB, l.readyA
	default:
		return ErrNotSide
	}
	if !d.running.CompareAndSwap(false, true) {
		return ErrNotSide
	}

	l.watchOnce.Do(func() {
		l.wg.Add(1)
		go l.watch()
	})
	canceled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(canceled)
		l.end(canceledError(ctx))
	})

	_ = self.SetReadDeadline(time.Time{})
	_ = self.SetWriteDeadline(time.Time{})
	close(mine)
	select {
	case <-partners:
		l.copy(self, peer, d)
	case <-l.done:
	}

	<-l.done
	if !stop() {
		<-canceled
	}
	l.wg.Wait()
	return l.err
}

// Reset ends the link with ErrReset: both streams are reset and both Runs
// return. An endpoint that fails to write its open reply calls it instead
// of Run. It does nothing once the link has ended.
func (l *Link) Reset() { l.end(ErrReset) }

// Done is closed when the link has ended.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err returns why the link ended: nil while it is open and after both
// directions were half-closed.
func (l *Link) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Partner returns the stream self is paired with, or nil when self is not
// one of the link's two.
func (l *Link) Partner(self Stream) Stream {
	switch self {
	case l.a:
		return l.b
	case l.b:
		return l.a
	}
	return nil
}

// Limits returns the link's caps, for the open reply.
func (l *Link) Limits() Limits { return l.lim }

// Stats returns the bytes copied so far each way.
func (l *Link) Stats() LinkStats {
	return LinkStats{AToB: l.ab.n.Load(), BToA: l.ba.n.Load()}
}

// end ends the link once, for reason err: nil after both half-closes,
// otherwise both streams are reset, which unblocks the copies.
func (l *Link) end(err error) {
	l.endOnce.Do(func() {
		l.err = err
		if l.onEnd != nil {
			l.onEnd()
		}
		if err != nil {
			_ = l.a.Reset()
			_ = l.b.Reset()
		}
		close(l.done)
	})
}

// watch ends the link when a stream's Done fires, the lifetime is over or
// the pipe has been idle too long. The copies cannot see these themselves:
// both may be blocked on the partner stream while the other one dies.
func (l *Link) watch() {
	defer l.wg.Done()
	var lifetime, idle <-chan time.Time
	if l.lim.Lifetime > 0 {
		t := time.NewTimer(l.lim.Lifetime - time.Since(l.start))
		defer t.Stop()
		lifetime = t.C
	}
	var idleTimer *time.Timer
	if l.lim.Idle > 0 {
		idleTimer = time.NewTimer(l.lim.Idle - l.quiet())
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	aDone, bDone := l.a.Done(), l.b.Done()
	for {
		select {
		case <-l.done:
			return
		case <-aDone:
			// A stream gone after its FIN still has all it sent to
			// give: its copy drains it, then half-closes the partner.
			if !l.a.PeerClosed() {
				l.end(ErrReset)
				return
			}
			aDone = nil
		case <-bDone:
			if !l.b.PeerClosed() {
				l.end(ErrReset)
				return
			}
			bDone = nil
		case <-lifetime:
			l.end(ErrLifetime)
			return
		case <-idle:
			q := l.quiet()
			if q >= l.lim.Idle {
				l.end(ErrIdle)
				return
			}
			idleTimer.Reset(l.lim.Idle - q)
		}
	}
}

// touch records that bytes moved, for Idle.
func (l *Link) touch() {
	if l.lim.Idle > 0 {
		l.active.Store(int64(time.Since(l.start)))
	}
}

// quiet returns how long no byte has moved.
func (l *Link) quiet() time.Duration {
	return time.Since(l.start) - time.Duration(l.active.Load())
}
