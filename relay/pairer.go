package relay

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pairer pairs relay streams within one process: each stream waits under
// its Key until the stream with the mirror key arrives, and both get the
// same *Link. Entries leave the table when they pair, time out, are
// abandoned or, for open pairs, when the link ends; nothing stale stays to
// be paired with. Safe for concurrent use.
type Pairer struct {
	cfg Config

	mu      sync.Mutex
	waiting map[Key]*waiter
	queue   list.List     // *waiter, oldest first; all share PairTimeout, so this is deadline order
	open    map[Key]*Link // both keys of every open pair
	pairs   int           // open pairs
	closed  bool
	counts  struct{ paired, timeouts, conflicts, rejected uint64 }

	bytes atomic.Int64 // relayed by every link, both ways

	wake      chan struct{} // a first waiter arrived: the sweeper sets its timer
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// waiter is one stream waiting for its partner. While elem is set it is in
// the table; whoever removes it (under Pairer.mu) sends exactly one result.
type waiter struct {
	key      Key
	s        Stream
	deadline time.Time
	elem     *list.Element
	result   chan result // capacity 1
}

type result struct {
	link *Link
	err  error
}

// Stats are a Pairer's counters, for metrics.
type Stats struct {
	Waiting   int    // streams waiting for a partner now
	Open      int    // pairs open now
	Paired    uint64 // pairs opened since NewPairer
	Timeouts  uint64 // streams that found no partner in time
	Conflicts uint64 // streams refused with ErrConflict
	Rejected  uint64 // streams refused by MaxWaiting or MaxPairs
	Bytes     int64  // bytes relayed by all pairs, both directions, so far
}

// NewPairer validates cfg, fills in its defaults and starts the Pairer's
// sweeper, which Close stops.
func NewPairer(cfg Config) (*Pairer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pairer{
		cfg:     cfg.withDefaults(),
		waiting: make(map[Key]*waiter),
		open:    make(map[Key]*Link),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	p.wg.Add(1)
	go p.sweep()
	return p, nil
}

// Pair registers s under key and blocks until the stream with key.Mirror()
// arrives; both calls then return the same *Link, on which each side calls
// Run with its own stream (or Reset). Pair returns at once with
// ErrConflict when key is already waiting or belongs to an open pair, with
// a *LimitError (wrapping ErrLimit) when MaxWaiting or MaxPairs is reached,
// and with ErrBadKey when key.Local equals key.Remote. While it waits it
// returns ErrTimeout after Config.PairTimeout, ErrReset when s.Done() fires,
// ErrCanceled when ctx ends and ErrClosed when the Pairer closes; in each
// case the entry is gone before Pair returns, so the tokens may wait again
// at once.
//
// Pair neither reads nor writes s: bytes a client sends early stay in the
// stream until Run copies them.
func (p *Pairer) Pair(ctx context.Context, key Key, s Stream) (*Link, error) {
	if key.Local == key.Remote {
		return nil, ErrBadKey
	}
	if ctx.Err() != nil {
		return nil, canceledError(ctx)
	}
	if isDone(s) {
		return nil, ErrReset
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.waiting[key] != nil || p.open[key] != nil {
		p.counts.conflicts++
		p.mu.Unlock()
		return nil, ErrConflict
	}
	if w := p.waiting[key.Mirror()]; w != nil && isDone(w.s) {
		// Its Pair call has not noticed yet; do not pipe into a dead stream.
		p.removeLocked(w)
		w.result <- result{err: ErrReset}
	}
	if w := p.waiting[key.Mirror()]; w != nil {
		if p.pairs >= p.cfg.MaxPairs {
			p.counts.rejected++
			p.mu.Unlock()
			return nil, &LimitError{Limit: "open pairs", Value: p.cfg.MaxPairs}
		}
		p.removeLocked(w)
		l := p.openLocked(w, s)
		w.result <- result{link: l}
		p.mu.Unlock()
		return l, nil
	}
	if p.queue.Len() >= p.cfg.MaxWaiting {
		p.counts.rejected++
		p.mu.Unlock()
		return nil, &LimitError{Limit: "waiting streams", Value: p.cfg.MaxWaiting}
	}
	w := &waiter{
		key:      key,
		s:        s,
		deadline: time.Now().Add(p.cfg.PairTimeout),
		result:   make(chan result, 1),
	}
	w.elem = p.queue.PushBack(w)
	p.waiting[key] = w
	if p.queue.Len() == 1 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()

	// The caller's goroutine is blocked here anyway, so it watches its own
	// stream and context; the sweeper only handles the timeout.
	select {
	case r := <-w.result:
		return r.link, r.err
	case <-s.Done():
		return p.abandon(w, ErrReset)
	case <-ctx.Done():
		return p.abandon(w, canceledError(ctx))
	}
}

// abandon forgets w, which gave up for reason err. If a result raced in
// (a partner, a timeout), it takes it; a link that was just opened is ended
// so that the partner learns at once.
func (p *Pairer) abandon(w *waiter, err error) (*Link, error) {
	p.mu.Lock()
	if w.elem != nil {
		p.removeLocked(w)
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	r := <-w.result
	if r.link != nil {
		r.link.end(err)
		return nil, err
	}
	return nil, r.err
}

// removeLocked takes w out of the table. The caller then sends its result.
func (p *Pairer) removeLocked(w *waiter) {
	p.queue.Remove(w.elem)
	w.elem = nil
	delete(p.waiting, w.key)
}

// openLocked opens the pair of waiter w and the arriving stream s: both
// keys are taken until the link ends.
func (p *Pairer) openLocked(w *waiter, s Stream) *Link {
	l := newLink(w.s, s, p.cfg.Limits)
	l.total = &p.bytes
	k, m := w.key, w.key.Mirror()
	p.open[k], p.open[m] = l, l
	p.pairs++
	p.counts.paired++
	l.onEnd = func() {
		p.mu.Lock()
		if p.open[k] == l {
			delete(p.open, k)
			delete(p.open, m)
			p.pairs--
		}
		p.mu.Unlock()
	}
	return l
}

// sweep times out waiters whose deadline passed. It is the Pairer's one
// goroutine; a timer is set for the oldest waiter only.
func (p *Pairer) sweep() {
	defer p.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		for e := p.queue.Front(); e != nil; e = p.queue.Front() {
			w := e.Value.(*waiter)
			if left := w.deadline.Sub(now); left > 0 {
				t.Reset(left)
				break
			}
			p.removeLocked(w)
			p.counts.timeouts++
			w.result <- result{err: ErrTimeout}
		}
		p.mu.Unlock()

		select {
		case <-t.C:
		case <-p.wake:
		case <-p.done:
			return
		}
	}
}

// Close stops the Pairer: waiting Pair calls return ErrClosed, open links
// end with ErrClosed (both streams reset), later Pair calls fail with
// ErrClosed. It blocks until the sweeper has stopped and the links' streams
// are reset. Calling Close again does nothing.
func (p *Pairer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		for e := p.queue.Front(); e != nil; e = p.queue.Front() {
			w := e.Value.(*waiter)
			p.removeLocked(w)
			w.result <- result{err: ErrClosed}
		}
		links := make(map[*Link]struct{}, p.pairs)
		for _, l := range p.open {
			links[l] = struct{}{}
		}
		p.mu.Unlock()

		for l := range links {
			l.end(ErrClosed)
		}
		close(p.done)
		p.wg.Wait()
	})
}

// Stats returns the Pairer's counters.
func (p *Pairer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Waiting:   p.queue.Len(),
		Open:      p.pairs,
		Paired:    p.counts.paired,
		Timeouts:  p.counts.timeouts,
		Conflicts: p.counts.conflicts,
		Rejected:  p.counts.rejected,
		Bytes:     p.bytes.Load(),
	}
}

func isDone(s Stream) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}
