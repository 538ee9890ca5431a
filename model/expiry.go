package model

import (
	"container/heap"
	"time"
)

// recordHeap orders records by timestamp, oldest first, so the sweeper finds
// the expired ones without scanning. It implements heap.Interface.
type recordHeap []*record

func (h recordHeap) Len() int           { return len(h) }
func (h recordHeap) Less(i, j int) bool { return h[i].u.TS < h[j].u.TS }
func (h recordHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *recordHeap) Push(x any) {
	r := x.(*record)
	r.idx = len(*h)
	*h = append(*h, r)
}
func (h *recordHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.idx = -1
	return r
}

// sweeper runs Sweep every SweepInterval until Close.
func (m *Model) sweeper() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep purges the records expired now and returns how many it purged or
// replaced. An expired live record is replaced by a deletion with the Model's
// id, which subscribers and streams receive before Sweep returns (unless
// Options.SilentExpiry); an expired deletion is purged without notice. Clock
// entries older than MaxAge are dropped. The sweeper goroutine calls Sweep
// every SweepInterval; tests that drive time with Options.Now call it
// directly. Sweep does nothing after Close.
func (m *Model) Sweep() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0
	}
	return m.sweepLocked(m.opts.Now())
}

// sweepLocked is Sweep with m.mu held.
func (m *Model) sweepLocked(now time.Time) int {
	nowMs := timeMs(now)
	n := 0
	for len(m.expiry) > 0 && m.expired(m.expiry[0].u.TS, nowMs) {
		rec := m.expiry[0]
		n++
		if rec.u.Deleted() || m.opts.SilentExpiry {
			m.remove(rec)
			continue
		}
		// The deletion's timestamp is at least now, so it leaves the
		// front of the heap and the loop ends.
		m.localDelete(rec, now)
	}
	for src, ts := range m.clock {
		if src != m.id && m.expired(ts, nowMs) {
			delete(m.clock, src)
			delete(m.writers, src)
		}
	}
	return n
}

// remove drops rec without notice. Called with m.mu held.
func (m *Model) remove(rec *record) {
	if !rec.u.Deleted() {
		m.live--
	}
	delete(m.records, rec.u.Key)
	heap.Remove(&m.expiry, rec.idx)
}
