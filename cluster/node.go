package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Config configures a Node. Zero fields mean the default; Validate reports
// values that cannot be used.
type Config struct {
	// URL is the NATS server to connect to, or several separated by commas
	// (nats://HOST:PORT). Required.
	URL string
	// Name names the node in logs and in the NATS connection name.
	// Default: the node id.
	Name string
	// Prefix is the first token(s) of every subject the node uses, so that
	// several clusters may share a NATS system. Every node of a cluster
	// must use the same. Default "signalchannel".
	Prefix string
	// HeartbeatInterval is how often the node announces that it is alive.
	// Default 1s.
	HeartbeatInterval time.Duration
	// DeadAfter is how long a peer may stay silent before it is taken for
	// gone: its ephemeral keys are deleted and its relay pipes reset. It is
	// checked every HeartbeatInterval/4, so a peer that dies is declared
	// gone within DeadAfter + HeartbeatInterval/4 of its last heartbeat.
	// While this node is disconnected from NATS, and for DeadAfter after it
	// reconnects, no peer is declared gone. Default 3 × HeartbeatInterval.
	DeadAfter time.Duration
	// RequestTimeout bounds each request to other nodes (a relay proposal,
	// the wait for sync answers is 2 × RequestTimeout). Default 2s.
	RequestTimeout time.Duration
	// ReconnectWait is the pause between attempts to reconnect to NATS.
	// Default 250ms.
	ReconnectWait time.Duration
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Options are extra nats.Connect options (credentials, TLS, ...),
	// applied after the node's own.
	Options []nats.Option
}

// Node defaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultRequestTimeout    = 2 * time.Second
	DefaultReconnectWait     = 250 * time.Millisecond
)

// Validate reports the first value that cannot be used.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("cluster: Config.URL is required")
	case c.HeartbeatInterval < 0, c.DeadAfter < 0, c.RequestTimeout < 0, c.ReconnectWait < 0:
		return errors.New("cluster: durations must not be negative")
	}
	d := c.withDefaults()
	if d.DeadAfter < 2*d.HeartbeatInterval {
		return fmt.Errorf("cluster: DeadAfter (%v) must be at least twice HeartbeatInterval (%v)", d.DeadAfter, d.HeartbeatInterval)
	}
	if c.Prefix != "" {
		return validPrefix(c.Prefix)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 3 * c.HeartbeatInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Node is this process's membership of a cluster: one NATS connection for
// data, shared by the node's Broker, ReplicaLink and Pairer so that
// everything the node publishes keeps its order, and the liveness of the
// other nodes, learned from their heartbeats. Heartbeats travel on a second
// connection of their own, so that they never wait behind relay bytes or a
// burst of frames, which would make a busy node look dead. Create a Node
// with Connect and stop it with Close, after the components built on it.
//
// The data connection is made with NATS "no echo": the node never receives
// what it publishes itself; each component serves its own node locally.
type Node struct {
	cfg  Config
	id   string
	subj subjects
	nc   *nats.Conn // data
	hc   *nats.Conn // heartbeats
	log  *slog.Logger

	mu         sync.Mutex
	peers      map[string]*peer
	gone       map[string]time.Time // peers declared gone, and when
	hearing    bool                 // the heartbeat connection is up
	judgeAfter time.Time            // no peer is declared gone before this
	pending    []nodeEvent
	beatSoon   bool // a new peer is to learn of this node at once
	watchers   map[*watch]struct{}
	closed     bool

	evMu sync.Mutex // held while events are delivered

	hbSub     *nats.Subscription
	wake      chan struct{} // pending events or a reconnect
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type peer struct {
	name     string
	lastSeen time.Time
}

// nodeEvent is a change of membership for the watchers.
type nodeEvent struct {
	kind eventKind
	id   string
}

type eventKind int

const (
	peerJoined   eventKind = iota // a node not seen before
	peerReturned                  // a node declared gone beats again
	peerGone                      // silent for DeadAfter, or said goodbye
	reconnected                   // this node's connection came back
)

// watcher is told of membership changes, one at a time, from the node's
// liveness goroutine. Its methods must not block for long.
type watcher interface {
	nodeEvent(ev nodeEvent)
}

type watch struct{ w watcher }

// heartbeat is the message on <p>.node.hb.
type heartbeat struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Bye  bool   `json:"bye,omitempty"`
}

// Connect validates cfg, connects to NATS, starts announcing the node and
// watching the others. It blocks until the first connection is made or
// fails. The node reconnects by itself, without end, when the connection
// drops; messages published meanwhile are buffered (8 MiB) and sent on
// reconnection.
func Connect(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:      cfg,
		id:       nuid.Next(),
		subj:     subjects{p: cfg.Prefix},
		peers:    make(map[string]*peer),
		gone:     make(map[string]time.Time),
		watchers: make(map[*watch]struct{}),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if cfg.Name == "" {
		cfg.Name = n.id
		n.cfg.Name = n.id
	}
	n.log = cfg.Logger.With("node", cfg.Name)
	opts := func(role string, onDown, onUp func()) []nats.Option {
		return append([]nats.Option{
			nats.Name("signalchannel " + cfg.Name + " " + role),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(cfg.ReconnectWait),
			nats.ReconnectJitter(cfg.ReconnectWait/4, time.Second),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				onDown()
				n.log.Warn("nats disconnected", "connection", role, "err", err)
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				onUp()
				n.log.Info("nats reconnected", "connection", role, "url", c.ConnectedUrl())
			}),
			nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
				subj := ""
				if s != nil {
					subj = s.Subject
				}
				n.log.Error("nats error", "connection", role, "subject", subj, "err", err)
			}),
		}, cfg.Options...)
	}
	nop := func() {}
	nc, err := nats.Connect(cfg.URL, append(opts("data", nop, n.dataReconnected), nats.NoEcho())...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to nats %s: %w", cfg.URL, err)
	}
	hc, err := nats.Connect(cfg.URL, opts("heartbeat", func() { n.setHearing(false) }, func() { n.setHearing(true) })...)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: connect to nats %s: %w", cfg.URL, err)
	}
	n.nc, n.hc = nc, hc
	n.hearing = true
	n.judgeAfter = time.Now().Add(cfg.DeadAfter)
	n.hbSub, err = hc.Subscribe(n.subj.heartbeat(), n.onHeartbeat)
	if err != nil {
		nc.Close()
		hc.Close()
		return nil, fmt.Errorf("cluster: subscribe: %w", err)
	}
	n.beat(false)
	n.wg.Add(1)
	go n.liveness()
	return n, nil
}

// ID returns the node's id, drawn at random by Connect: a node that
// restarts is a new node.
func (n *Node) ID() string { return n.id }

// Name returns the node's name (Config.Name, or the id).
func (n *Node) Name() string { return n.cfg.Name }

// Connected reports whether the node's NATS connections are up.
func (n *Node) Connected() bool { return n.nc.IsConnected() && n.hc.IsConnected() }

// Peers returns the ids of the other nodes taken for alive, sorted.
func (n *Node) Peers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(maps.Keys(n.peers))
}

// alive reports whether id is this node or a peer taken for alive.
func (n *Node) alive(id string) bool {
	if id == n.id {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[id] != nil
}

// Close says goodbye to the other nodes (they treat this node as gone at
// once), stops the liveness goroutine and closes the connection after
// flushing what was published. Close the Broker, ReplicaLink and Pairer
// first. Close may be called twice.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.done)
		n.wg.Wait()
		_ = n.hbSub.Unsubscribe()
		if n.nc.IsConnected() {
			_ = n.nc.FlushTimeout(n.cfg.RequestTimeout)
		}
		n.nc.Close()
		if n.hc.IsConnected() {
			n.beat(true)
			_ = n.hc.FlushTimeout(n.cfg.RequestTimeout)
		}
		n.hc.Close()
	})
	return nil
}

// kill stops the node as a crash would: no goodbye, no flush.
func (n *Node) kill() {
	n.closeOnce.Do(func() {
		n.nc.Close()
		n.hc.Close()
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.done)
		n.wg.Wait()
	})
}

// watch registers w for membership events until the returned cancel is
// called; cancel waits for an event being delivered to w to return.
func (n *Node) watch(w watcher) (cancel func()) {
	e := &watch{w: w}
	n.mu.Lock()
	n.watchers[e] = struct{}{}
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		delete(n.watchers, e)
		n.mu.Unlock()
		// Events are delivered under evMu, the watchers read under it
		// too: taking it waits for a delivery that may still include w.
		n.evMu.Lock()
		n.evMu.Unlock() //nolint:staticcheck // waits for the holder

	}
}

// setHearing records whether the heartbeat connection is up. No peer is
// judged while it is down, nor for DeadAfter after it is back: everyone
// was silent to this node meanwhile.
func (n *Node) setHearing(up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hearing = up
	if up {
		now := time.Now()
		n.judgeAfter = now.Add(n.cfg.DeadAfter)
		for _, p := range n.peers {
			p.lastSeen = now
		}
		n.beatSoon = true
		n.signal()
	}
}

// dataReconnected tells the watchers that what other nodes published
// meanwhile may be lost to this one.
func (n *Node) dataReconnected() {
	n.mu.Lock()
	n.pending = append(n.pending, nodeEvent{kind: reconnected})
	n.mu.Unlock()
	n.signal()
}

func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// beat publishes a heartbeat, or a goodbye.
func (n *Node) beat(bye bool) {
	b, _ := json.Marshal(heartbeat{ID: n.id, Name: n.cfg.Name, Bye: bye})
	if err := n.hc.Publish(n.subj.heartbeat(), b); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		n.log.Debug("heartbeat not sent", "err", err)
	}
}

// onHeartbeat records a peer's heartbeat or goodbye.
func (n *Node) onHeartbeat(m *nats.Msg) {
	var hb heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.ID == "" {
		n.log.Debug("bad heartbeat", "err", err)
		return
	}
	if hb.ID == n.id {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	p := n.peers[hb.ID]
	switch {
	case hb.Bye:
		if p != nil {
			n.declareGoneLocked(hb.ID, now)
			n.signal()
		}
		return
	case p == nil:
		kind := peerJoined
		if _, ok := n.gone[hb.ID]; ok {
			kind = peerReturned
			delete(n.gone, hb.ID)
		}
		p = &peer{name: hb.Name}
		n.peers[hb.ID] = p
		n.pending = append(n.pending, nodeEvent{kind: kind, id: hb.ID})
		n.beatSoon = true
		n.signal()
	}
	p.lastSeen = now
}

// declareGoneLocked removes a peer and queues its event. Called with n.mu
// held.
func (n *Node) declareGoneLocked(id string, now time.Time) {
	delete(n.peers, id)
	n.gone[id] = now
	n.pending = append(n.pending, nodeEvent{kind: peerGone, id: id})
}

// liveness beats every HeartbeatInterval, declares silent peers gone, and
// delivers membership events to the watchers, until Close.
func (n *Node) liveness() {
	defer n.wg.Done()
	beat := time.NewTicker(n.cfg.HeartbeatInterval)
	defer beat.Stop()
	check := time.NewTicker(n.cfg.HeartbeatInterval / 4)
	defer check.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-beat.C:
			n.beat(false)
		case <-check.C:
			n.judge(time.Now())
		case <-n.wake:
			n.mu.Lock()
			soon := n.beatSoon
			n.beatSoon = false
			n.mu.Unlock()
			if soon {
				n.beat(false)
			}
		}
		n.deliver()
	}
}

// judge declares gone the peers silent for DeadAfter, unless this node
// cannot hear anyone now, and forgets peers gone long ago.
func (n *Node) judge(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.hearing || now.Before(n.judgeAfter) {
		return
	}
	for id, p := range n.peers {
		if now.Sub(p.lastSeen) > n.cfg.DeadAfter {
			n.log.Warn("node gone", "peer", id, "name", p.name, "silent", now.Sub(p.lastSeen).Round(time.Millisecond).String())
			n.declareGoneLocked(id, now)
		}
	}
	for id, at := range n.gone {
		if now.Sub(at) > time.Hour {
			delete(n.gone, id)
		}
	}
}

// deliver hands pending events to the watchers, in order.
func (n *Node) deliver() {
	n.evMu.Lock()
	defer n.evMu.Unlock()
	n.mu.Lock()
	evs := n.pending
	n.pending = nil
	ws := make([]watcher, 0, len(n.watchers))
	for e := range n.watchers {
		ws = append(ws, e.w)
	}
	n.mu.Unlock()
	for _, ev := range evs {
		for _, w := range ws {
			w.nodeEvent(ev)
		}
	}
}
