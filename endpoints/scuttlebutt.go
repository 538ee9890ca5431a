package endpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/model"
)

// ScuttlebuttConfig tunes the scuttlebutt endpoint. Zero fields mean the
// default; DefaultScuttlebuttConfig returns them all.
type ScuttlebuttConfig struct {
	// MaxAge is how long a record lives after its own timestamp; it is sent
	// to every member as "maxAge". Default 60s.
	MaxAge time.Duration
	// MaxSkew is how far ahead of the server's clock an update's timestamp
	// may be before the update is ignored. Default 30s.
	MaxSkew time.Duration
	// SweepInterval is how often each namespace purges expired records
	// (and issues their deletions), and how often idle namespaces without
	// records are dropped. Default 1s.
	SweepInterval time.Duration
	// MaxKeyBytes is the longest key in bytes. Default 256.
	MaxKeyBytes int
	// MaxValueBytes is the largest value in bytes of compact JSON.
	// Default 8192.
	MaxValueBytes int
	// MaxKeys is the most live keys of one namespace; deletions do not
	// count. Default 10000.
	MaxKeys int
	// MaxLineBytes is the longest line a member may send, newline included.
	// Default 16384.
	MaxLineBytes int
	// MaxNamespaces caps the namespaces that have a replica, with members
	// or idle. When it is reached, the least recently used idle namespace
	// is evicted to make room; when no namespace is idle, a new one gets
	// `limit`. Default 10000.
	MaxNamespaces int
	// MaxMembers caps the streams of one namespace; one more gets `limit`.
	// Default 0: no cap.
	MaxMembers int
	// QueueBytes bounds the live updates waiting to be written to one
	// member; a member whose queue overflows has its stream reset.
	// Default 1 MiB.
	QueueBytes int
	// Link, if set, shares each namespace's replica with other servers.
	// Default nil: replicas live on this server only.
	Link ReplicaLink
	// Logger receives debug logs. Default slog.Default().
	Logger *slog.Logger
}

// Scuttlebutt defaults.
const (
	DefaultScuttlebuttMaxAge        = model.DefaultMaxAge
	DefaultScuttlebuttMaxSkew       = model.DefaultMaxSkew
	DefaultScuttlebuttSweepInterval = model.DefaultSweepInterval
	DefaultScuttlebuttMaxKeyBytes   = model.DefaultMaxKeyBytes
	DefaultScuttlebuttMaxValueBytes = model.DefaultMaxValueBytes
	DefaultScuttlebuttMaxKeys       = model.DefaultMaxKeys
	DefaultScuttlebuttMaxLineBytes  = model.DefaultMaxLineBytes
	DefaultScuttlebuttMaxNamespaces = 10000
	DefaultScuttlebuttQueueBytes    = model.DefaultQueueBytes
)

// DefaultScuttlebuttConfig returns a ScuttlebuttConfig with every default
// filled in.
func DefaultScuttlebuttConfig() ScuttlebuttConfig {
	return ScuttlebuttConfig{
		MaxAge:        DefaultScuttlebuttMaxAge,
		MaxSkew:       DefaultScuttlebuttMaxSkew,
		SweepInterval: DefaultScuttlebuttSweepInterval,
		MaxKeyBytes:   DefaultScuttlebuttMaxKeyBytes,
		MaxValueBytes: DefaultScuttlebuttMaxValueBytes,
		MaxKeys:       DefaultScuttlebuttMaxKeys,
		MaxLineBytes:  DefaultScuttlebuttMaxLineBytes,
		MaxNamespaces: DefaultScuttlebuttMaxNamespaces,
		QueueBytes:    DefaultScuttlebuttQueueBytes,
		Logger:        slog.Default(),
	}
}

// withDefaults returns c with zero fields set to their defaults.
func (c ScuttlebuttConfig) withDefaults() ScuttlebuttConfig {
	d := DefaultScuttlebuttConfig()
	def := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	defDur := func(v *time.Duration, dv time.Duration) {
		if *v == 0 {
			*v = dv
		}
	}
	defDur(&c.MaxAge, d.MaxAge)
	defDur(&c.MaxSkew, d.MaxSkew)
	defDur(&c.SweepInterval, d.SweepInterval)
	def(&c.MaxKeyBytes, d.MaxKeyBytes)
	def(&c.MaxValueBytes, d.MaxValueBytes)
	def(&c.MaxKeys, d.MaxKeys)
	def(&c.MaxLineBytes, d.MaxLineBytes)
	def(&c.MaxNamespaces, d.MaxNamespaces)
	def(&c.QueueBytes, d.QueueBytes)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// modelOptions returns the options of a namespace's replica.
func (c ScuttlebuttConfig) modelOptions() model.Options {
	return model.Options{
		MaxAge:        c.MaxAge,
		MaxSkew:       c.MaxSkew,
		SweepInterval: c.SweepInterval,
		MaxKeyBytes:   c.MaxKeyBytes,
		MaxValueBytes: c.MaxValueBytes,
		MaxKeys:       c.MaxKeys,
		MaxLineBytes:  c.MaxLineBytes,
	}
}

// Validate reports every impossible value: negative limits, durations under
// a millisecond, a line limit under 512 bytes, or a line limit too short
// for a key and a value at their limits.
func (c ScuttlebuttConfig) Validate() error {
	var errs []error
	if err := c.modelOptions().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("endpoints: scuttlebutt: %w", err))
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"MaxNamespaces", c.MaxNamespaces}, {"MaxMembers", c.MaxMembers}, {"QueueBytes", c.QueueBytes}} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("endpoints: scuttlebutt: %s must not be negative, not %d", l.name, l.v))
		}
	}
	if len(errs) == 0 {
		d := c.withDefaults()
		// [[key,value],ts,source]: the line must hold a key and a value
		// at their limits, a timestamp and a short source.
		if need := d.MaxKeyBytes + d.MaxValueBytes + 64; d.MaxLineBytes < need {
			errs = append(errs, fmt.Errorf("endpoints: scuttlebutt: MaxLineBytes (%d) must be at least MaxKeyBytes + MaxValueBytes + 64 (%d)", d.MaxLineBytes, need))
		}
	}
	return errors.Join(errs...)
}

// ReplicaLink shares the server replica of a namespace with the replicas of
// the same namespace on other servers, the seam where a cluster plugs in.
// An implementation runs model.Replicate between m and a peer server's
// replica over its own transport, or publishes m's changes (Model.Subscribe)
// and applies theirs (Model.Apply); the scuttlebutt protocol makes replicas
// converge either way.
type ReplicaLink interface {
	// Link starts sharing m, the new replica of namespace. It is called
	// with the endpoint's lock held and must not block: it starts what it
	// needs and returns. unlink is called once, when the namespace is
	// dropped or evicted or the endpoint closes, before m is closed; it
	// stops what Link started and waits for it.
	Link(namespace string, m *model.Model) (unlink func(), err error)
}

// EphemeralLink is what a ReplicaLink may also implement to learn which
// replica ids have an ephemeral stream on this server, so that when this
// server leaves a cluster the others delete those ids' keys. Open is called
// when an ephemeral stream's digest arrives, Close once when that stream has
// ended and its keys were deleted here. Neither may block.
//
// owner is the peer id that owns the stream's keys when ownership applies
// to it (server.Request.Owner), "" otherwise: when this server leaves, the
// others delete only the keys from id that owner owns.
type EphemeralLink interface {
	EphemeralOpen(namespace, id, owner string)
	EphemeralClose(namespace, id, owner string)
}

// Scuttlebutt is the scuttlebutt endpoint (PROTOCOL.md section 4): one
// expiring model replica per namespace, replicated to every stream of the
// namespace. Create it with NewScuttlebutt and stop it with Close.
//
// A namespace's replica is created by its first member and kept while it
// has members, and after the last leaves until its last record expires; it
// is then dropped. At the cap on namespaces the least recently used idle
// namespace is evicted.
type Scuttlebutt struct {
	cfg      ScuttlebuttConfig
	maxAgeMs int64

	mu     sync.Mutex
	busy   map[string]*sbNamespace              // namespaces with members
	idle   *simplelru.LRU[string, *sbNamespace] // namespaces without, least recently left first
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ server.Endpoint = (*Scuttlebutt)(nil)

// sbNamespace is one namespace: its replica and who replicates with it.
type sbNamespace struct {
	name   string
	m      *model.Model
	unlink func()

	members int // guarded by Scuttlebutt.mu

	// srcMu guards sources and serialises the deletions of ephemeral
	// streams' keys with the arrival of new streams' digests.
	srcMu   sync.Mutex
	sources map[streamSource]int // open streams per digest id and owner
}

// streamSource is a stream's digest id and the peer id that owns its keys
// ("" when ownership does not apply): streams of one id but different
// owners are counted apart, so that one peer's stream never keeps
// another's ephemeral keys alive, nor deletes them.
type streamSource struct{ id, owner string }

// NewScuttlebutt returns the scuttlebutt endpoint and starts the goroutine
// that drops idle namespaces once their records have expired; Close stops
// it. It fails if cfg.Validate does.
func NewScuttlebutt(cfg ScuttlebuttConfig) (*Scuttlebutt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	idle, err := simplelru.NewLRU[string, *sbNamespace](cfg.MaxNamespaces, nil)
	if err != nil {
		return nil, fmt.Errorf("endpoints: scuttlebutt: %w", err)
	}
	sb := &Scuttlebutt{
		cfg:      cfg,
		maxAgeMs: cfg.MaxAge.Milliseconds(),
		busy:     make(map[string]*sbNamespace),
		idle:     idle,
		done:     make(chan struct{}),
	}
	sb.wg.Add(1)
	go sb.janitor()
	return sb, nil
}

// Close drops every namespace, which ends every member's stream with a
// reset, and stops the endpoint's goroutines. Later streams get `internal`.
// Close may be called more than once.
func (sb *Scuttlebutt) Close() error {
	sb.closeOnce.Do(func() {
		sb.mu.Lock()
		sb.closed = true
		all := make([]*sbNamespace, 0, len(sb.busy)+sb.idle.Len())
		for _, n := range sb.busy {
			all = append(all, n)
		}
		all = append(all, sb.idle.Values()...)
		clear(sb.busy)
		sb.idle.Purge()
		sb.mu.Unlock()
		for _, n := range all {
			n.close()
		}
		close(sb.done)
		sb.wg.Wait()
	})
	return nil
}

func (n *sbNamespace) close() {
	if n.unlink != nil {
		n.unlink()
	}
	n.m.Close()
}

// ScuttlebuttStats counts the endpoint's namespaces, members and keys.
type ScuttlebuttStats struct {
	Namespaces int // namespaces with a replica, idle ones included
	Idle       int // namespaces without members
	Members    int // streams replicating
	Keys       int // live keys of every namespace (expired ones not yet swept included)
}

// Stats returns the current counts.
func (sb *Scuttlebutt) Stats() ScuttlebuttStats {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	st := ScuttlebuttStats{Namespaces: len(sb.busy) + sb.idle.Len(), Idle: sb.idle.Len()}
	for _, n := range sb.busy {
		st.Members += n.members
		st.Keys += n.m.Stats().Live
	}
	for _, n := range sb.idle.Values() {
		st.Keys += n.m.Stats().Live
	}
	return st
}

// Namespaces returns the members (streams replicating) of each
// scuttlebutt namespace with a replica on this server, idle ones with 0.
func (sb *Scuttlebutt) Namespaces() map[string]int {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	out := make(map[string]int, len(sb.busy)+sb.idle.Len())
	for name, n := range sb.busy {
		out[name] = n.members
	}
	for _, name := range sb.idle.Keys() {
		out[name] = 0
	}
	return out
}

// Snapshot returns the live keys and values of namespace's replica, and
// false when the namespace has no replica.
func (sb *Scuttlebutt) Snapshot(namespace string) (map[string]json.RawMessage, bool) {
	sb.mu.Lock()
	n := sb.busy[namespace]
	if n == nil {
		n, _ = sb.idle.Peek(namespace)
	}
	sb.mu.Unlock()
	if n == nil {
		return nil, false
	}
	return n.m.Snapshot(), true
}

type scuttlebuttReply struct {
	ID     string `json:"id"`
	MaxAge int64  `json:"maxAge"`
}

// ServeStream implements server.Endpoint. It replicates the namespace's
// replica with the stream (model.ReplicateInline): the session's read loop
// feeds the replica what the member sends (server.Stream.ReadInline), and a
// writer goroutine runs only while lines wait to be written. So an idle
// member holds no goroutine: ServeStream returns once the member has joined.
func (sb *Scuttlebutt) ServeStream(ctx context.Context, s *server.Stream, req *server.Request) {
	log := sb.cfg.Logger
	n, err := sb.join(req.Header.Namespace)
	if err != nil {
		code, msg := channel.CodeInternal, "could not join the namespace"
		switch {
		case errors.Is(err, ErrLimit):
			code, msg = channel.CodeLimit, err.Error()
		case errors.Is(err, errClosed):
			msg = "the server is shutting down"
		default:
			log.Error("scuttlebutt join", "session", req.SessionID, "err", err)
		}
		s.Reject(&channel.Error{Code: code, Message: msg})
		return
	}
	if err := s.Accept(scuttlebuttReply{ID: n.m.ID(), MaxAge: sb.maxAgeMs}); err != nil {
		sb.leave(n)
		return
	}
	mb := &sbMember{sb: sb, n: n, s: s, req: req, ctx: ctx}
	rep, err := n.m.ReplicateInline(ctx, s, model.ReplicateOptions{
		QueueBytes: sb.cfg.QueueBytes,
		Owner:      req.Owner,
		OnDigest:   mb.digest,
	}, mb.over)
	if err != nil {
		sb.leave(n)
		if ctx.Err() == nil {
			s.Reset() // the namespace closed
		}
		return
	}
	mb.rep = rep
	done, err := s.ReadInline(rep.Feed, mb.end)
	if err != nil { // the stream was accepted: not reached
		mb.end(err)
		return
	}
	mb.setDone(done)
}

// sbMember is one stream replicating a namespace.
type sbMember struct {
	sb  *Scuttlebutt
	n   *sbNamespace
	s   *server.Stream
	req *server.Request
	ctx context.Context
	rep *model.Replication

	mu       sync.Mutex
	source   streamSource // the peer's digest id, once it came
	released bool         // the source was let go: a late digest is not counted
	ended    bool         // the replication is over
	done     func()       // ends the stream's service (ReadInline)
}

// digest is the replication's OnDigest: the stream's keys come from id.
func (mb *sbMember) digest(id string) {
	if id == "" {
		return
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.released {
		return
	}
	mb.source = streamSource{id: id, owner: mb.req.Owner}
	mb.n.addSource(mb.source)
	if el, ok := mb.sb.cfg.Link.(EphemeralLink); ok && mb.req.Header.Ephemeral {
		el.EphemeralOpen(mb.n.name, id, mb.req.Owner)
	}
}

// release lets the stream's keys go: as soon as its reading side ends (FIN,
// reset, session end), without waiting for what is still being written to
// it, or when the replication ends otherwise. Once.
func (mb *sbMember) release() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.released {
		return
	}
	mb.released = true
	src := mb.source
	if src.id == "" {
		return
	}
	if k := mb.n.dropSource(src, mb.req.Header.Ephemeral); k > 0 {
		mb.sb.cfg.Logger.Debug("scuttlebutt ephemeral keys deleted", "session", mb.req.SessionID, "namespace", mb.n.name, "source", src.id, "keys", k)
	}
	if el, ok := mb.sb.cfg.Link.(EphemeralLink); ok && mb.req.Header.Ephemeral {
		el.EphemeralClose(mb.n.name, src.id, src.owner)
	}
}

// end is ReadInline's end: the stream's reading side is over.
func (mb *sbMember) end(err error) {
	mb.release()
	mb.rep.End(err)
}

// over is the replication's end, with what model.Replicate would return.
func (mb *sbMember) over(err error) {
	mb.release()
	mb.sb.leave(mb.n)
	log, req := mb.sb.cfg.Logger, mb.req
	var pe *model.ProtocolError
	switch {
	case err == nil:
		// FIN: what was queued went out; the stream's end half-closes.
	case errors.As(err, &pe) && !pe.Remote:
		// The error object was the last line; the stream's end half-closes.
		log.Debug("scuttlebutt protocol error", "session", req.SessionID, "code", pe.Code, "message", pe.Message)
	case errors.As(err, &pe):
		log.Debug("scuttlebutt peer sent error", "session", req.SessionID, "code", pe.Code, "message", pe.Message)
	case mb.ctx.Err() != nil:
		// The session ended or the server is shutting down.
	default:
		// A slow peer, the namespace closed, or the stream broke.
		log.Debug("scuttlebutt stream ended", "session", req.SessionID, "err", err)
		mb.s.Reset()
	}
	mb.mu.Lock()
	mb.ended = true
	done := mb.done
	mb.mu.Unlock()
	if done != nil {
		done()
	}
}

// setDone gives the member the function that ends its stream's service,
// and calls it if the replication is already over.
func (mb *sbMember) setDone(done func()) {
	mb.mu.Lock()
	mb.done = done
	ended := mb.ended
	mb.mu.Unlock()
	if ended {
		done()
	}
}

// errClosed is returned by join after Close.
var errClosed = errors.New("endpoints: scuttlebutt closed")

// join makes the stream a member of namespace, creating its replica or
// taking it from the idle namespaces, and evicting the least recently used
// idle namespace when the cap is reached.
func (sb *Scuttlebutt) join(name string) (*sbNamespace, error) {
	var evicted *sbNamespace
	defer func() {
		if evicted != nil {
			evicted.close()
		}
	}()
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return nil, errClosed
	}
	n := sb.busy[name]
	if n == nil {
		if idle, ok := sb.idle.Peek(name); ok {
			sb.idle.Remove(name)
			n = idle
		} else {
			if len(sb.busy)+sb.idle.Len() >= sb.cfg.MaxNamespaces {
				_, oldest, ok := sb.idle.RemoveOldest()
				if !ok {
					return nil, limitf("scuttlebutt namespaces limit (%d) reached", sb.cfg.MaxNamespaces)
				}
				evicted = oldest
				sb.cfg.Logger.Debug("scuttlebutt idle namespace evicted", "namespace", oldest.name)
			}
			var err error
			if n, err = sb.newNamespace(name); err != nil {
				return nil, err
			}
		}
		sb.busy[name] = n
	}
	if sb.cfg.MaxMembers > 0 && n.members >= sb.cfg.MaxMembers {
		return nil, limitf("members per scuttlebutt namespace limit (%d) reached", sb.cfg.MaxMembers)
	}
	n.members++
	return n, nil
}

// newNamespace creates a replica. Called with sb.mu held.
func (sb *Scuttlebutt) newNamespace(name string) (*sbNamespace, error) {
	m := model.New(sb.cfg.modelOptions())
	n := &sbNamespace{name: name, m: m, sources: make(map[streamSource]int)}
	if sb.cfg.Link != nil {
		unlink, err := sb.cfg.Link.Link(name, m)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("endpoints: scuttlebutt: link namespace: %w", err)
		}
		n.unlink = unlink
	}
	return n, nil
}

// leave ends a membership; the last member's leaving makes the namespace
// idle, the most recently used of the idle ones.
func (sb *Scuttlebutt) leave(n *sbNamespace) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	n.members--
	if n.members > 0 || sb.closed || sb.busy[n.name] != n {
		return
	}
	delete(sb.busy, n.name)
	sb.idle.Add(n.name, n)
}

// addSource counts an open stream whose digest carried src.id.
func (n *sbNamespace) addSource(src streamSource) {
	n.srcMu.Lock()
	n.sources[src]++
	n.srcMu.Unlock()
}

// dropSource uncounts a stream that closed. When it was the last open
// stream with that id and owner and its header asked for ephemeral keys,
// the keys whose current value came from the id (and, with an owner, that
// the owner owns) are deleted; a peer that reconnected with the same id
// before its old stream closed keeps its keys. It returns how many keys it
// deleted.
func (n *sbNamespace) dropSource(src streamSource, ephemeral bool) int {
	n.srcMu.Lock()
	defer n.srcMu.Unlock()
	if n.sources[src]--; n.sources[src] > 0 {
		return 0
	}
	delete(n.sources, src)
	if !ephemeral {
		return 0
	}
	return n.m.DeleteSourceOf(src.id, src.owner)
}

// janitor drops idle namespaces whose records have all expired, every
// SweepInterval, until Close.
func (sb *Scuttlebutt) janitor() {
	defer sb.wg.Done()
	t := time.NewTicker(sb.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-sb.done:
			return
		case <-t.C:
			sb.dropEmpty()
		}
	}
}

// dropEmpty drops the idle namespaces that hold no record.
func (sb *Scuttlebutt) dropEmpty() {
	sb.mu.Lock()
	candidates := sb.idle.Values()
	sb.mu.Unlock()
	var drop []*sbNamespace
	for _, n := range candidates {
		if n.m.Stats().Records > 0 {
			continue
		}
		sb.mu.Lock()
		// Still idle, and still empty: a cluster link may have written.
		if cur, ok := sb.idle.Peek(n.name); ok && cur == n && n.m.Stats().Records == 0 {
			sb.idle.Remove(n.name)
			drop = append(drop, n)
		}
		sb.mu.Unlock()
	}
	for _, n := range drop {
		n.close()
	}
}
