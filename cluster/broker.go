package cluster

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/signalchannel/signalchannel/endpoints"
)

// BrokerConfig configures a Broker. Zero fields mean the default.
type BrokerConfig struct {
	// MaxNamespaces caps the echo namespaces with members on this node, and
	// MaxMembers the members of one namespace on this node (0: no cap).
	// Members on other nodes do not count.
	MaxNamespaces, MaxMembers int
	// Logger receives the broker's logs. Default: the node's.
	Logger *slog.Logger
}

// Broker is the echo broker of a cluster (endpoints.Broker): the frames of
// namespace ns travel on the subject <prefix>.echo.<token(ns)>.
//
// A node subscribes to a namespace's subject while it has members of the
// namespace, and unsubscribes after the last leaves. Publish delivers a
// frame to the members on this node at once, through an
// endpoints.MemoryBroker, and publishes it for the other nodes; the node's
// NATS connection never receives its own messages (no echo), so each member
// gets each frame once. Frames from other nodes are handed to the local
// members by the namespace's subscription, one at a time, under the same
// hub lock as local frames: members on one node see one order, and a
// writer's frames keep their order everywhere (one connection per node, and
// NATS keeps the order of one publisher's messages).
//
// A frame published while the node is disconnected from NATS is buffered
// and sent on reconnection; past the buffer, or above the NATS server's
// max payload (1 MiB unless configured), Publish fails and the echo
// endpoint drops the writer. Frames other nodes publish while this one is
// disconnected are lost to its members (NATS core is at most once).
//
// Safe for concurrent use. Close it before the Node.
type Broker struct {
	node  *Node
	local *endpoints.MemoryBroker
	log   *slog.Logger

	mu     sync.Mutex
	subs   map[string]*echoSub
	closed bool
}

var _ endpoints.Broker = (*Broker)(nil)

// echoSub is a namespace this node has members of.
type echoSub struct {
	sub     *nats.Subscription
	members int
}

// NewBroker returns a Broker on node n.
func NewBroker(n *Node, cfg BrokerConfig) *Broker {
	log := cfg.Logger
	if log == nil {
		log = n.log
	}
	return &Broker{
		node:  n,
		local: endpoints.NewMemoryBroker(cfg.MaxNamespaces, cfg.MaxMembers),
		log:   log,
		subs:  make(map[string]*echoSub),
	}
}

// Subscribe implements endpoints.Broker: it adds s to namespace on this
// node, and subscribes the node to the namespace when s is its first member
// here. It fails with an error wrapping endpoints.ErrLimit at a cap, and
// with ErrClosed after Close. It does not block on the network: the
// subscription reaches other nodes within a round trip, and frames they
// publish before that do not reach s.
func (b *Broker) Subscribe(namespace string, s endpoints.Subscriber) (func(), error) {
	if namespace == "" {
		return nil, ErrEmptyNamespace
	}
	unsubLocal, err := b.local.Subscribe(namespace, s)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		unsubLocal()
		return nil, ErrClosed
	}
	e := b.subs[namespace]
	if e == nil {
		sub, err := b.node.nc.Subscribe(b.node.subj.echo(namespace), func(m *nats.Msg) {
			// m.Data is this message's own copy: members may share it.
			_ = b.local.Publish(namespace, m.Data)
		})
		if err != nil {
			unsubLocal()
			return nil, fmt.Errorf("cluster: echo subscribe: %w", err)
		}
		e = &echoSub{sub: sub}
		b.subs[namespace] = e
	}
	e.members++
	var once sync.Once
	return func() {
		once.Do(func() {
			unsubLocal()
			b.mu.Lock()
			defer b.mu.Unlock()
			if e.members--; e.members == 0 && b.subs[namespace] == e {
				delete(b.subs, namespace)
				_ = e.sub.Unsubscribe()
			}
		})
	}, nil
}

// Publish implements endpoints.Broker: frame goes to the members on this
// node, then to the other nodes. It does not block on the network; it fails
// when NATS refuses the frame (closed connection, reconnect buffer full,
// frame above max payload), after the local members got it.
func (b *Broker) Publish(namespace string, frame []byte) error {
	if namespace == "" {
		return ErrEmptyNamespace
	}
	_ = b.local.Publish(namespace, frame)
	if err := b.node.nc.Publish(b.node.subj.echo(namespace), frame); err != nil {
		return fmt.Errorf("cluster: echo publish: %w", err)
	}
	return nil
}

// Stats returns the namespaces and members on this node.
func (b *Broker) Stats() endpoints.BrokerStats { return b.local.Stats() }

// Namespaces returns the members of each namespace on this node.
func (b *Broker) Namespaces() map[string]int { return b.local.Namespaces() }

// Close unsubscribes the node from every namespace; members stay
// subscribed locally until they leave, and later Subscribe calls fail with
// ErrClosed. Close may be called twice.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for ns, e := range b.subs {
		_ = e.sub.Unsubscribe()
		delete(b.subs, ns)
	}
	return nil
}
