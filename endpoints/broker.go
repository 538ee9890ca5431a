package endpoints

import (
	"sync"
)

// Subscriber receives the frames of a namespace. Deliver must not block: it
// queues the frame and returns. The frame is shared by every subscriber and
// must not be modified.
type Subscriber interface {
	Deliver(frame []byte)
}

// Broker carries echo frames to the subscribers of a namespace: on this
// server with MemoryBroker, across servers with a cluster broker. Publish
// delivers to every subscriber, the publisher's own included, and frames of
// one namespace reach every local subscriber in one order.
type Broker interface {
	// Subscribe adds s to namespace, creating it. It fails with an error
	// wrapping ErrLimit when a cap on namespaces or members is reached.
	Subscribe(namespace string, s Subscriber) (unsubscribe func(), err error)
	// Publish delivers frame to every subscriber of namespace. The echo
	// endpoint calls it from the publishing session's read loop, so it must
	// not block (on the network, or on a slow subscriber), and neither may
	// Deliver: a session reads nothing else meanwhile.
	Publish(namespace string, frame []byte) error
}

// MemoryBroker is the in-process Broker: one hub per namespace, created by
// the first subscriber and freed with the last. Safe for concurrent use.
type MemoryBroker struct {
	maxNamespaces int
	maxMembers    int

	mu   sync.Mutex
	hubs map[string]*hub
}

var _ Broker = (*MemoryBroker)(nil)

// hub is one namespace: its members, and the lock that puts its frames in
// one order. A slice: a publish walks it faster than a map, and a
// namespace of one member costs one small allocation; a leave searches it,
// which costs little beside a member's join and leave.
type hub struct {
	mu      sync.Mutex
	members []Subscriber
}

// NewMemoryBroker returns a broker with caps on namespaces and on members per
// namespace (0 means no cap).
func NewMemoryBroker(maxNamespaces, maxMembers int) *MemoryBroker {
	return &MemoryBroker{maxNamespaces: maxNamespaces, maxMembers: maxMembers, hubs: make(map[string]*hub)}
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(namespace string, s Subscriber) (func(), error) {
	b.mu.Lock()
	h := b.hubs[namespace]
	if h == nil {
		if b.maxNamespaces > 0 && len(b.hubs) >= b.maxNamespaces {
			b.mu.Unlock()
			return nil, limitf("echo namespaces limit (%d) reached", b.maxNamespaces)
		}
		h = &hub{}
		b.hubs[namespace] = h
	}
	h.mu.Lock()
	if b.maxMembers > 0 && len(h.members) >= b.maxMembers {
		h.mu.Unlock()
		b.mu.Unlock()
		return nil, limitf("members per echo namespace limit (%d) reached", b.maxMembers)
	}
	h.members = append(h.members, s)
	h.mu.Unlock()
	b.mu.Unlock()

	// Idempotent: a second call finds s gone.
	return func() { b.unsubscribe(namespace, h, s) }, nil
}

func (b *MemoryBroker) unsubscribe(namespace string, h *hub, s Subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h.mu.Lock()
	for i, m := range h.members {
		if m == s {
			last := len(h.members) - 1
			h.members[i] = h.members[last]
			h.members[last] = nil
			h.members = h.members[:last]
			break
		}
	}
	if len(h.members) == 0 {
		h.members = nil
	}
	empty := len(h.members) == 0
	h.mu.Unlock()
	if empty && b.hubs[namespace] == h {
		delete(b.hubs, namespace)
	}
}

// Publish implements Broker. The hub's lock is held while the frame is
// queued for each member, so frames never interleave and every member sees
// one order; Deliver never blocks, so a slow member delays no one.
func (b *MemoryBroker) Publish(namespace string, frame []byte) error {
	b.mu.Lock()
	h := b.hubs[namespace]
	b.mu.Unlock()
	if h == nil {
		return nil
	}
	h.mu.Lock()
	for _, m := range h.members {
		m.Deliver(frame)
	}
	h.mu.Unlock()
	return nil
}

// BrokerStats counts a broker's namespaces and members.
type BrokerStats struct {
	Namespaces int
	Members    int
}

// Stats returns the current counts.
// Namespaces returns the members of each namespace on this server.
func (b *MemoryBroker) Namespaces() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.hubs))
	for name, h := range b.hubs {
		h.mu.Lock()
		out[name] = len(h.members)
		h.mu.Unlock()
	}
	return out
}

func (b *MemoryBroker) Stats() BrokerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := BrokerStats{Namespaces: len(b.hubs)}
	for _, h := range b.hubs {
		h.mu.Lock()
		st.Members += len(h.members)
		h.mu.Unlock()
	}
	return st
}
