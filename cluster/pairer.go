package cluster

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/relay"
)

// PairerConfig configures a Pairer. Zero fields mean the default.
type PairerConfig struct {
	// PairTimeout is how long a stream waits for its partner before Pair
	// returns relay.ErrTimeout. Default 30s.
	PairTimeout time.Duration
	// MaxWaiting caps the streams waiting on this node. Default 10 000.
	MaxWaiting int
	// MaxPairs caps the pairs open on this node, a pair across two nodes
	// counting on both. Default 10 000.
	MaxPairs int
	// Limits caps every pair, as relay.Config.Limits; both nodes of a pair
	// across nodes enforce them. Default: no caps.
	Limits relay.Limits
	// Window is how many bytes one direction of a pair across nodes may
	// have in flight, unread by the receiving node: the most either node
	// buffers per direction. Default 512 KiB.
	Window int
	// ChunkBytes is the most bytes of one data message. It must stay under
	// the NATS server's max payload. Default 64 KiB.
	ChunkBytes int
	// Logger receives the pairer's logs. Default: the node's.
	Logger *slog.Logger
}

// Pairer defaults.
const (
	DefaultWindow     = 512 << 10
	DefaultChunkBytes = 64 << 10
)

func (c PairerConfig) withDefaults(n *Node) PairerConfig {
	if c.PairTimeout == 0 {
		c.PairTimeout = relay.DefaultPairTimeout
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = relay.DefaultMaxWaiting
	}
	if c.MaxPairs == 0 {
		c.MaxPairs = relay.DefaultMaxPairs
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
	}
	c.ChunkBytes = min(c.ChunkBytes, c.Window)
	if c.Logger == nil {
		c.Logger = n.log
	}
	return c
}

// Validate reports the first value that cannot be used.
func (c PairerConfig) Validate() error {
	switch {
	case c.PairTimeout < 0, c.MaxWaiting < 0, c.MaxPairs < 0, c.Window < 0, c.ChunkBytes < 0:
		return errors.New("cluster: PairerConfig values must not be negative")
	}
	return c.Limits.Validate()
}

// Pairer pairs relay streams across the nodes of a cluster
// (endpoints.Pairer): a stream with (namespace, local=A, remote=B) on any
// node pairs with the one stream with (namespace, local=B, remote=A) on
// any node, and a second stream with the key of one waiting or open
// anywhere gets relay.ErrConflict, as with relay.Pairer on one node.
//
// Streams on one node pair locally, at once. Across nodes, the streams of
// one token pair meet on the subject <prefix>.relay.<ns>.<lo>.<hi> (see
// subjects), to which a node subscribes while it has a stream of that pair
// waiting or open:
//
//   - a stream that starts waiting says hello there (its key, node, stream
//     id and arrival time) at once, again after 25, 50, 100 ... ms, then
//     every second, until it pairs or gives up; a stream waiting or open
//     there answers a hello it has not answered;
//   - two streams with the same key that hear of each other: the one that
//     arrived later (arrival time, then stream id) gets ErrConflict; so does
//     a stream that hears of an open pair holding its key or its mirror;
//   - of two mirror streams, the one whose local token is the smaller
//     proposes, with a request to the other's node
//     (<prefix>.node.<id>.relay). That node accepts if its stream is still
//     waiting, and from then on it is open: a stream accepts at most one
//     proposal and a stream has at most one proposal out, so every stream
//     pairs at most once and with one partner.
//
// The bytes then flow through a pipe (see pipe) that relay.NewLink joins
// with the local stream; the Pairer runs the pipe's side of the link.
// A pipe is reset when the other node is declared gone, when it hears
// nothing from the other end for DeadAfter + HeartbeatInterval, and when a
// message was lost; so a pair never delivers corrupt bytes.
//
// A node that is declared gone while it has streams waiting stops being
// heard; a stream proposing to it fails after RequestTimeout and keeps
// waiting. Safe for concurrent use; Close it after the relay endpoint and
// before the Node.
type Pairer struct {
	node *Node
	cfg  PairerConfig
	log  *slog.Logger

	mu      sync.Mutex
	waiting map[relay.Key]*entry
	byID    map[string]*entry // waiting streams by stream id
	open    map[relay.Key]*pair
	rvs     map[string]*rendezvous // by subject
	pipes   map[string]*pipe       // by pipe id
	sched   entryHeap              // waiting streams by next action
	pairs   int                    // open pairs, with proposals out
	closed  bool
	seq     uint64
	counts  struct{ paired, timeouts, conflicts, rejected uint64 }
	bytes   int64 // relayed by pairs that ended
	live    map[*pair]struct{}
	propSub *nats.Subscription
	unwatch func()

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ endpoints.Pairer = (*Pairer)(nil)

// entry is a stream of this node, waiting or open.
type entry struct {
	key     relay.Key
	s       relay.Stream
	id      string // unique in the cluster: node id and a sequence number
	arrived int64  // unix nanoseconds, to order streams with one key
	rv      *rendezvous

	// Guarded by Pairer.mu.
	state    entryState
	deadline time.Time
	at       time.Time     // next action: hello or timeout
	backoff  time.Duration // until the next hello after at
	idx      int           // in Pairer.sched, -1 when out
	conflict bool          // heard of an earlier stream with its key while proposing
	leaveErr error         // why it gave up while proposing
	result   chan result   // capacity 1; one send, by whoever ends the wait
}

type entryState int

const (
	stWaiting   entryState = iota
	stProposing            // a proposal is out
	stLeaving              // gave up while proposing
	stOpen
	stGone
)

type result struct {
	link *relay.Link
	err  error
}

// pair is an open pair with at least one stream on this node.
type pair struct {
	keys    [2]relay.Key
	link    *relay.Link
	pipe    *pipe    // nil when both streams are here
	entries []*entry // the streams here
}

// rendezvous is the subscription to one token pair's subject, shared by the
// streams of that pair on this node.
type rendezvous struct {
	subject string
	sub     *nats.Subscription
	entries map[*entry]struct{}
}

// hello is a stream's message on its rendezvous subject.
type hello struct {
	Node    string `json:"node"`
	ID      string `json:"id"`
	Local   string `json:"local"`
	Remote  string `json:"remote"`
	Arrived int64  `json:"arrived"`
	Open    bool   `json:"open,omitempty"`  // the stream is paired
	Reply   bool   `json:"reply,omitempty"` // an answer: not to be answered
}

// proposal is a request to pair the proposer's stream From with the
// stream To on the node addressed.
type proposal struct {
	To   string    `json:"to"`
	From string    `json:"from"`
	Node string    `json:"node"`
	Key  relay.Key `json:"key"` // the proposer's key
	Pipe string    `json:"pipe"`
	// Peer and Meta name the proposing stream's peer (relay.Identified),
	// which its node vouches for.
	Peer string          `json:"peer,omitempty"`
	Meta json.RawMessage `json:"meta,omitempty"`
}

// acceptance answers a proposal.
type acceptance struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"` // "gone", "conflict", "limit"
	Pipe   string `json:"pipe,omitempty"`
	// Peer and Meta name the accepting stream's peer.
	Peer string          `json:"peer,omitempty"`
	Meta json.RawMessage `json:"meta,omitempty"`
}

// NewPairer validates cfg and returns a Pairer on node n, with its sweeper
// goroutine, which Close stops.
func NewPairer(n *Node, cfg PairerConfig) (*Pairer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults(n)
	p := &Pairer{
		node:    n,
		cfg:     cfg,
		log:     cfg.Logger,
		waiting: make(map[relay.Key]*entry),
		byID:    make(map[string]*entry),
		open:    make(map[relay.Key]*pair),
		rvs:     make(map[string]*rendezvous),
		pipes:   make(map[string]*pipe),
		live:    make(map[*pair]struct{}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	sub, err := n.nc.Subscribe(n.subj.nodeRelay(n.id), p.onProposal)
	if err != nil {
		return nil, fmt.Errorf("cluster: relay subscribe: %w", err)
	}
	p.propSub = sub
	p.unwatch = n.watch(p)
	p.wg.Add(1)
	go p.sweep()
	return p, nil
}

// Pair implements endpoints.Pairer with the semantics of relay.Pairer.Pair,
// across the cluster: it blocks until the stream with key.Mirror() arrives
// on any node, and returns the link to pipe s through. It returns
// relay.ErrConflict, a *relay.LimitError, relay.ErrBadKey at once, and
// relay.ErrTimeout, relay.ErrReset, relay.ErrCanceled or relay.ErrClosed
// while it waits. It neither reads nor writes s.
func (p *Pairer) Pair(ctx context.Context, key relay.Key, s relay.Stream) (*relay.Link, error) {
	if key.Local == key.Remote {
		return nil, relay.ErrBadKey
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", relay.ErrCanceled, context.Cause(ctx))
	}
	if isDone(s) {
		return nil, relay.ErrReset
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, relay.ErrClosed
	}
	if p.waiting[key] != nil || p.open[key] != nil {
		p.counts.conflicts++
		p.mu.Unlock()
		return nil, relay.ErrConflict
	}
	e := p.newEntryLocked(key, s)
	if w := p.waiting[key.Mirror()]; w != nil && w.state == stWaiting && isDone(w.s) {
		// Its Pair call has not noticed yet; do not pipe into a dead stream.
		p.finishLocked(w, result{err: relay.ErrReset})
	}
	if w := p.waiting[key.Mirror()]; w != nil && w.state == stWaiting {
		if p.pairs >= p.cfg.MaxPairs {
			p.counts.rejected++
			p.mu.Unlock()
			return nil, &relay.LimitError{Limit: "open pairs", Value: p.cfg.MaxPairs}
		}
		l, err := p.openLocalLocked(w, e)
		p.mu.Unlock()
		return l, err
	}
	if len(p.waiting) >= p.cfg.MaxWaiting {
		p.counts.rejected++
		p.mu.Unlock()
		return nil, &relay.LimitError{Limit: "waiting streams", Value: p.cfg.MaxWaiting}
	}
	if err := p.registerLocked(e); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	h := e.helloLocked(p.node.id, false)
	p.mu.Unlock()
	p.sendHello(e.rv.subject, h)

	select {
	case r := <-e.result:
		return r.link, r.err
	case <-s.Done():
		return p.abandon(e, relay.ErrReset)
	case <-ctx.Done():
		return p.abandon(e, fmt.Errorf("%w: %w", relay.ErrCanceled, context.Cause(ctx)))
	}
}

func isDone(s relay.Stream) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func (p *Pairer) newEntryLocked(key relay.Key, s relay.Stream) *entry {
	p.seq++
	now := time.Now()
	return &entry{
		key:      key,
		s:        s,
		id:       p.node.id + "." + strconv.FormatUint(p.seq, 36),
		arrived:  now.UnixNano(),
		deadline: now.Add(p.cfg.PairTimeout),
		idx:      -1,
		result:   make(chan result, 1),
	}
}

// registerLocked makes e a waiting stream: in the table, the schedule and
// its token pair's rendezvous.
func (p *Pairer) registerLocked(e *entry) error {
	if err := p.joinLocked(e); err != nil {
		return err
	}
	p.waiting[e.key] = e
	p.byID[e.id] = e
	e.backoff = 25 * time.Millisecond
	e.at = time.Now().Add(e.backoff)
	heap.Push(&p.sched, e)
	signal(p.wake)
	return nil
}

// joinLocked adds e to its rendezvous, subscribing to the subject when e is
// the first stream of the token pair here.
func (p *Pairer) joinLocked(e *entry) error {
	subj := p.node.subj.rendezvous(e.key.Namespace, e.key.Local, e.key.Remote)
	rv := p.rvs[subj]
	if rv == nil {
		rv = &rendezvous{subject: subj, entries: make(map[*entry]struct{})}
		sub, err := p.node.nc.Subscribe(subj, p.onHello)
		if err != nil {
			return fmt.Errorf("cluster: relay subscribe: %w", err)
		}
		rv.sub = sub
		p.rvs[subj] = rv
	}
	rv.entries[e] = struct{}{}
	e.rv = rv
	return nil
}

// leaveLocked takes e out of its rendezvous, unsubscribing after the last.
func (p *Pairer) leaveLocked(e *entry) {
	rv := e.rv
	if rv == nil {
		return
	}
	e.rv = nil
	delete(rv.entries, e)
	if len(rv.entries) == 0 {
		delete(p.rvs, rv.subject)
		_ = rv.sub.Unsubscribe()
	}
}

// unscheduleLocked takes a waiting e out of the table and the schedule.
func (p *Pairer) unscheduleLocked(e *entry) {
	if p.waiting[e.key] == e {
		delete(p.waiting, e.key)
	}
	delete(p.byID, e.id)
	if e.idx >= 0 {
		heap.Remove(&p.sched, e.idx)
	}
}

// finishLocked ends the wait of e with r: it leaves every table, and its
// Pair call returns r.
func (p *Pairer) finishLocked(e *entry, r result) {
	p.unscheduleLocked(e)
	p.leaveLocked(e)
	e.state = stGone
	e.result <- r
}

// conflictLocked refuses a waiting or proposing e: a stream with its key
// is waiting or open elsewhere.
func (p *Pairer) conflictLocked(e *entry) {
	switch e.state {
	case stWaiting:
		p.counts.conflicts++
		p.finishLocked(e, result{err: relay.ErrConflict})
	case stProposing:
		e.conflict = true
	}
}

func (e *entry) helloLocked(node string, reply bool) hello {
	return hello{
		Node: node, ID: e.id, Local: e.key.Local, Remote: e.key.Remote,
		Arrived: e.arrived, Open: e.state == stOpen, Reply: reply,
	}
}

// earlier reports whether h arrived before e: by arrival time, then id.
func earlier(h hello, e *entry) bool {
	if h.Arrived != e.arrived {
		return h.Arrived < e.arrived
	}
	return h.ID < e.id
}

func (p *Pairer) sendHello(subj string, h hello) {
	b, _ := json.Marshal(h)
	if err := p.node.nc.Publish(subj, b); err != nil {
		p.log.Debug("relay hello not sent", "err", err)
	}
}

// abandon forgets e, which gave up for reason err. If a result raced in, it
// takes it; a link that was just opened is reset so that the partner
// learns at once.
func (p *Pairer) abandon(e *entry, err error) (*relay.Link, error) {
	p.mu.Lock()
	switch e.state {
	case stWaiting:
		p.finishLocked(e, result{err: err})
	case stProposing:
		e.state, e.leaveErr = stLeaving, err
	}
	p.mu.Unlock()
	r := <-e.result
	if r.link != nil {
		r.link.Reset()
		return nil, err
	}
	return nil, r.err
}

// openLocalLocked opens the pair of waiting w and arriving e, both here.
func (p *Pairer) openLocalLocked(w, e *entry) (*relay.Link, error) {
	l, err := relay.NewLink(w.s, e.s, p.cfg.Limits)
	if err != nil {
		return nil, err
	}
	for _, x := range []*entry{w, e} {
		p.unscheduleLocked(x)
		if x.rv == nil {
			if err := p.joinLocked(x); err != nil {
				return nil, err
			}
		}
	}
	w.state, e.state = stOpen, stOpen
	pr := &pair{keys: [2]relay.Key{w.key, e.key}, link: l, entries: []*entry{w, e}}
	p.pairs++
	p.openLocked(pr)
	w.result <- result{link: l}
	return l, nil
}

// openLocked records pr as open and refuses the streams here that wait
// with one of its keys, then starts the goroutine that runs the pair's
// pipe, if any, and cleans up when the link ends. p.pairs already counts
// pr.
func (p *Pairer) openLocked(pr *pair) {
	p.counts.paired++
	p.live[pr] = struct{}{}
	for _, k := range pr.keys {
		p.open[k] = pr
		if w := p.waiting[k]; w != nil {
			p.conflictLocked(w)
		}
	}
	p.wg.Add(1)
	go p.runPair(pr)
}

// runPair runs the pipe's side of a pair across nodes, or waits for a
// local pair to end, then forgets the pair.
func (p *Pairer) runPair(pr *pair) {
	defer p.wg.Done()
	if pr.pipe != nil {
		err := pr.link.Run(context.Background(), pr.pipe)
		p.log.Debug("relay pair across nodes ended", "peer", pr.pipe.peerNode, "err", err)
		pr.pipe.close()
	} else {
		<-pr.link.Done()
	}
	st := pr.link.Stats()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, pr)
	for _, k := range pr.keys {
		if p.open[k] == pr {
			delete(p.open, k)
		}
	}
	for _, e := range pr.entries {
		p.leaveLocked(e)
		e.state = stGone
	}
	p.pairs--
	p.bytes += st.AToB + st.BToA
}

// onHello handles another node's hello on a rendezvous subject.
func (p *Pairer) onHello(m *nats.Msg) {
	var h hello
	if err := json.Unmarshal(m.Data, &h); err != nil || h.Node == "" || h.Node == p.node.id {
		return
	}
	type proposeTo struct {
		e    *entry
		pp   *pipe
		node string
		to   string
	}
	var (
		replies   []hello
		proposals []proposeTo
	)
	p.mu.Lock()
	rv := p.rvs[m.Subject]
	if rv == nil || p.closed {
		p.mu.Unlock()
		return
	}
	for e := range rv.entries {
		sameKey := h.Local == e.key.Local && h.Remote == e.key.Remote
		mirror := h.Local == e.key.Remote && h.Remote == e.key.Local
		if !sameKey && !mirror {
			continue
		}
		switch {
		case e.state == stOpen:
			// A newcomer learns that the pair is taken.
			if !h.Reply {
				replies = append(replies, e.helloLocked(p.node.id, true))
			}
		case e.state != stWaiting && e.state != stProposing:
		case h.Open || (sameKey && earlier(h, e)):
			p.conflictLocked(e)
		case sameKey || e.state == stProposing || e.key.Local > e.key.Remote:
			// The later of two streams with one key, or the side that
			// waits for proposals: make sure the other side heard.
			if !h.Reply {
				replies = append(replies, e.helloLocked(p.node.id, true))
			}
		default:
			// The smaller local token proposes to its mirror.
			if p.pairs >= p.cfg.MaxPairs {
				continue // a pair may close meanwhile; the next hello retries
			}
			pp, err := p.newPipeLocked(h.Node)
			if err != nil {
				p.log.Debug("relay proposal not made", "err", err)
				continue
			}
			e.state = stProposing
			p.pairs++ // the slot is held until the answer
			proposals = append(proposals, proposeTo{e, pp, h.Node, h.ID})
		}
	}
	p.mu.Unlock()
	for _, r := range replies {
		p.sendHello(m.Subject, r)
	}
	for _, pr := range proposals {
		p.wg.Add(1)
		go p.propose(pr.e, pr.pp, pr.node, pr.to)
	}
}

// propose asks node to pair its stream to with e, and opens the pair when
// it accepts. It runs in a goroutine of its own, which then runs the pair.
func (p *Pairer) propose(e *entry, pp *pipe, node, to string) {
	defer p.wg.Done()
	prop := proposal{To: to, From: e.id, Node: p.node.id, Key: e.key, Pipe: pp.id}
	prop.Peer, prop.Meta = relay.IdentityOf(e.s)
	req, _ := json.Marshal(prop)
	var ans acceptance
	msg, err := p.node.nc.Request(p.node.subj.nodeRelay(node), req, p.node.cfg.RequestTimeout)
	if err == nil {
		err = json.Unmarshal(msg.Data, &ans)
	}
	if err != nil {
		p.log.Debug("relay proposal failed", "peer", node, "err", err)
	}

	p.mu.Lock()
	if err != nil || !ans.OK {
		p.pairs--
		p.mu.Unlock()
		pp.close()
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case e.state == stLeaving:
			p.finishLocked(e, result{err: e.leaveErr})
		case e.conflict || ans.Reason == "conflict":
			p.counts.conflicts++
			p.finishLocked(e, result{err: relay.ErrConflict})
		default:
			e.state = stWaiting
			if w := p.waiting[e.key.Mirror()]; w != nil && w.state == stWaiting && p.pairs < p.cfg.MaxPairs && !isDone(w.s) {
				// A mirror arrived here meanwhile.
				if _, err := p.openLocalLocked(w, e); err != nil {
					p.finishLocked(e, result{err: err})
				} else {
					e.result <- result{link: p.open[e.key].link}
				}
				return
			}
			p.rescheduleLocked(e, 0)
		}
		return
	}
	pp.connect(ans.Pipe)
	pp.setPeer(ans.Peer, ans.Meta)
	if e.state == stLeaving {
		p.pairs--
		p.finishLocked(e, result{err: e.leaveErr})
		p.mu.Unlock()
		pp.Reset() // the partner's pair ends at once
		pp.close()
		return
	}
	l, lerr := relay.NewLink(e.s, pp, p.cfg.Limits)
	if lerr != nil {
		// Only invalid limits fail, and NewPairer validated them.
		p.pairs--
		p.finishLocked(e, result{err: lerr})
		p.mu.Unlock()
		pp.Reset()
		pp.close()
		return
	}
	p.unscheduleLocked(e)
	e.state = stOpen
	pr := &pair{keys: [2]relay.Key{e.key, e.key.Mirror()}, link: l, pipe: pp, entries: []*entry{e}}
	p.openLocked(pr)
	e.result <- result{link: l}
	pp.mu.Lock()
	first := pp.stateLocked() // tells the other end that this one is here
	subj := pp.peerSubj
	pp.mu.Unlock()
	p.mu.Unlock()
	_ = pp.send(subj, first)
}

// onProposal answers another node's proposal to pair with a stream here.
func (p *Pairer) onProposal(m *nats.Msg) {
	var prop proposal
	if err := json.Unmarshal(m.Data, &prop); err != nil || m.Reply == "" {
		p.log.Debug("bad relay proposal", "err", err)
		return
	}
	ans := p.accept(prop)
	b, _ := json.Marshal(ans)
	if err := m.Respond(b); err != nil {
		p.log.Debug("relay acceptance not sent", "err", err)
	}
}

func (p *Pairer) accept(prop proposal) acceptance {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.byID[prop.To]
	switch {
	case p.closed:
		return acceptance{Reason: "gone"}
	case t == nil:
		if pr := p.open[prop.Key.Mirror()]; pr != nil {
			return acceptance{Reason: "conflict"}
		}
		return acceptance{Reason: "gone"}
	case t.key != prop.Key.Mirror() || t.state != stWaiting:
		return acceptance{Reason: "gone"}
	case isDone(t.s):
		p.finishLocked(t, result{err: relay.ErrReset})
		return acceptance{Reason: "gone"}
	case p.pairs >= p.cfg.MaxPairs:
		p.counts.rejected++
		return acceptance{Reason: "limit"}
	}
	pp, err := p.newPipeLocked(prop.Node)
	if err != nil {
		return acceptance{Reason: "gone"}
	}
	pp.connect(prop.Pipe)
	pp.setPeer(prop.Peer, prop.Meta)
	l, err := relay.NewLink(t.s, pp, p.cfg.Limits)
	if err != nil {
		delete(p.pipes, pp.id)
		_ = pp.sub.Unsubscribe()
		return acceptance{Reason: "gone"}
	}
	p.unscheduleLocked(t)
	t.state = stOpen
	p.pairs++
	pr := &pair{keys: [2]relay.Key{t.key, t.key.Mirror()}, link: l, pipe: pp, entries: []*entry{t}}
	p.openLocked(pr)
	t.result <- result{link: l}
	ans := acceptance{OK: true, Pipe: pp.id}
	ans.Peer, ans.Meta = relay.IdentityOf(t.s)
	return ans
}

// rescheduleLocked sets e's next hello after d (the backoff when d is 0).
func (p *Pairer) rescheduleLocked(e *entry, d time.Duration) {
	if d == 0 {
		d = e.backoff
		e.backoff = min(2*e.backoff, time.Second)
	}
	e.at = time.Now().Add(d)
	if e.idx >= 0 {
		heap.Fix(&p.sched, e.idx)
	} else {
		heap.Push(&p.sched, e)
	}
	signal(p.wake)
}

// nodeEvent implements watcher: the pipes to a node that is gone are reset.
func (p *Pairer) nodeEvent(ev nodeEvent) {
	if ev.kind != peerGone {
		return
	}
	p.mu.Lock()
	var gone []*pipe
	for _, pp := range p.pipes {
		if pp.peerNode == ev.id {
			gone = append(gone, pp)
		}
	}
	p.mu.Unlock()
	for _, pp := range gone {
		pp.reset(fmt.Errorf("%w: %w", relay.ErrReset, ErrPeerGone), false)
	}
}

// sweep is the Pairer's one goroutine besides the pairs': it times out
// waiting streams, sends their hellos, and keeps pipes alive, until Close.
func (p *Pairer) sweep() {
	defer p.wg.Done()
	interval := p.node.cfg.HeartbeatInterval
	silence := p.node.cfg.DeadAfter + interval
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	nextKeepalive := time.Now().Add(interval)
	for {
		now := time.Now()
		type hi struct {
			subj string
			h    hello
		}
		var hellos []hi
		var pipes []*pipe
		p.mu.Lock()
		for len(p.sched) > 0 && !p.sched[0].at.After(now) {
			e := p.sched[0]
			if e.state != stWaiting && e.state != stProposing {
				heap.Pop(&p.sched)
				continue
			}
			if !now.Before(e.deadline) {
				heap.Pop(&p.sched)
				p.counts.timeouts++
				if e.state == stWaiting {
					p.finishLocked(e, result{err: relay.ErrTimeout})
				} else {
					e.state, e.leaveErr = stLeaving, relay.ErrTimeout
				}
				continue
			}
			if e.state == stWaiting {
				hellos = append(hellos, hi{e.rv.subject, e.helloLocked(p.node.id, false)})
			}
			next := e.backoff
			e.backoff = min(2*e.backoff, time.Second)
			e.at = now.Add(next)
			if e.at.After(e.deadline) {
				e.at = e.deadline
			}
			heap.Fix(&p.sched, 0)
		}
		if !now.Before(nextKeepalive) {
			for _, pp := range p.pipes {
				pipes = append(pipes, pp)
			}
			nextKeepalive = now.Add(interval / 2)
		}
		wait := time.Until(nextKeepalive)
		if len(p.sched) > 0 {
			wait = min(wait, time.Until(p.sched[0].at))
		}
		p.mu.Unlock()

		for _, h := range hellos {
			p.sendHello(h.subj, h.h)
		}
		for _, pp := range pipes {
			pp.keepalive(now, interval, silence)
		}
		t.Reset(max(wait, time.Millisecond))
		select {
		case <-t.C:
		case <-p.wake:
		case <-p.done:
			return
		}
	}
}

// Close stops the Pairer: waiting Pair calls return relay.ErrClosed, open
// pairs are reset, later Pair calls fail with relay.ErrClosed. It blocks
// until its goroutines have stopped. Close may be called twice.
func (p *Pairer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		for _, e := range p.waiting {
			switch e.state {
			case stWaiting:
				p.finishLocked(e, result{err: relay.ErrClosed})
			case stProposing:
				e.state, e.leaveErr = stLeaving, relay.ErrClosed
			}
		}
		links := make([]*relay.Link, 0, len(p.live))
		for pr := range p.live {
			links = append(links, pr.link)
		}
		p.mu.Unlock()
		_ = p.propSub.Unsubscribe()
		p.unwatch()
		for _, l := range links {
			l.Reset()
		}
		close(p.done)
		p.wg.Wait()
	})
}

// Stats returns the Pairer's counters on this node; Bytes counts both
// directions of the pairs that have ended and of those open now.
func (p *Pairer) Stats() relay.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := relay.Stats{
		Open:      len(p.live),
		Paired:    p.counts.paired,
		Timeouts:  p.counts.timeouts,
		Conflicts: p.counts.conflicts,
		Rejected:  p.counts.rejected,
		Bytes:     p.bytes,
	}
	for _, e := range p.waiting {
		if e.state == stWaiting || e.state == stProposing {
			st.Waiting++
		}
	}
	for pr := range p.live {
		ls := pr.link.Stats()
		st.Bytes += ls.AToB + ls.BToA
	}
	return st
}

// entryHeap orders waiting streams by their next action.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}
