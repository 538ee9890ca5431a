package model

// DefaultSubscriptionBuffer is the buffer of a Subscription when Subscribe is
// given none.
const DefaultSubscriptionBuffer = 1024

// Subscription receives every change applied to a Model: local writes, remote
// updates that took effect, and deletions issued by expiry and DeleteSource,
// in the order the Model applied them. Silent purges (expired deletions,
// SilentExpiry) are not changes and are not received.
//
// The Model sends on the channel under its lock but never blocks: a
// subscriber that lets the buffer fill is cancelled, its channel is closed
// and Err reports ErrSlowSubscriber. The receiver reads without any lock of
// the Model, so the receiving goroutine may call any method of the Model.
type Subscription struct {
	m   *Model
	c   chan Update
	err error // guarded by m.mu
}

// Subscribe returns a Subscription with a buffer of the given number of
// updates (DefaultSubscriptionBuffer when buffer <= 0). After Close it
// returns a Subscription whose channel is closed and whose Err is ErrClosed.
func (m *Model) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	s := &Subscription{m: m, c: make(chan Update, buffer)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		s.close()
		return s
	}
	m.subs[s] = struct{}{}
	return s
}

// Updates returns the channel of changes. It is closed by Cancel, by Close of
// the Model, or when the subscriber fell behind.
func (s *Subscription) Updates() <-chan Update { return s.c }

// Err returns why the channel was closed: nil while open or after Cancel,
// ErrSlowSubscriber after an overflow, ErrClosed after the Model closed.
func (s *Subscription) Err() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.err
}

// Cancel stops the subscription and closes its channel. It may be called
// more than once and from any goroutine; it does not block.
func (s *Subscription) Cancel() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if _, ok := s.m.subs[s]; ok {
		delete(s.m.subs, s)
		close(s.c)
	}
}

// deliver implements subscriber. Called with m.mu held.
func (s *Subscription) deliver(ev event) bool {
	select {
	case s.c <- ev.u:
		return true
	default:
		s.err = ErrSlowSubscriber
		close(s.c)
		return false
	}
}

// close implements subscriber. Called with m.mu held.
func (s *Subscription) close() {
	s.err = ErrClosed
	close(s.c)
}
