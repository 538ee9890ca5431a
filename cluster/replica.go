package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/model"
)

// ReplicaLinkConfig configures a ReplicaLink. Zero fields mean the default.
type ReplicaLinkConfig struct {
	// SyncTimeout bounds the wait for the other nodes' answers to a sync
	// request. Default 2 × the node's RequestTimeout.
	SyncTimeout time.Duration
	// ChunkBytes is the most bytes of update lines in one message; a
	// history larger than that is sent in several. It must stay under the
	// NATS server's max payload. Default 256 KiB.
	ChunkBytes int
	// Buffer is the number of changes of a replica that may wait to be
	// published; past it the replica's whole history is published again.
	// Default 8192.
	Buffer int
	// Logger receives the link's logs. Default: the node's.
	Logger *slog.Logger
}

// ReplicaLink shares the scuttlebutt replicas of each namespace between the
// nodes that have it (endpoints.ReplicaLink). For namespace ns:
//
//   - every change of the local replica (a member's update, a deletion by
//     expiry or by an ephemeral stream's end) is published on
//     <prefix>.sb.<token(ns)>.u as update lines of the stream protocol, and
//     the updates other nodes publish there are applied to it, so the
//     scuttlebutt rules (newer timestamp wins, stale updates ignored) make
//     the replicas converge; updates applied from other nodes are not
//     published again;
//   - when a node links a namespace, and again after it reconnects to NATS
//     or sees a node it had taken for gone come back, it asks every node
//     with a request on <prefix>.sb.<token(ns)>.s carrying its digest;
//     each answers with the history the asker lacks, its own clock and the
//     ephemeral replica ids it holds; the asker applies the history and
//     publishes what each answerer lacks;
//   - each node expires records by their own timestamps, so expiry needs no
//     message; the deletions it issues replicate like any update.
//
// Ephemeral keys: a node announces, on <prefix>.sb.<token(ns)>.e, the
// replica ids that have ephemeral streams open on it (EphemeralOpen,
// EphemeralClose). When a node is declared gone (see Config.DeadAfter), or
// says goodbye, every other node deletes the keys whose current source is
// one of the ids it announced, unless that id also has an ephemeral stream
// on a node still alive. The keys are gone on every surviving node within
// DeadAfter + HeartbeatInterval/4 of the node's last heartbeat.
//
// Safe for concurrent use. Close it after the scuttlebutt endpoint and
// before the Node.
type ReplicaLink struct {
	node *Node
	cfg  ReplicaLinkConfig
	log  *slog.Logger

	mu      sync.Mutex
	spaces  map[string]*linked
	closed  bool
	syncSub *nats.Subscription
	unwatch func()

	closeOnce sync.Once
}

var _ endpoints.ReplicaLink = (*ReplicaLink)(nil)

// NewReplicaLink returns a ReplicaLink on node n. It answers the sync
// requests of other nodes until Close.
func NewReplicaLink(n *Node, cfg ReplicaLinkConfig) *ReplicaLink {
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 2 * n.cfg.RequestTimeout
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 256 << 10
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	l := &ReplicaLink{node: n, cfg: cfg, log: cfg.Logger, spaces: make(map[string]*linked)}
	sub, err := n.nc.Subscribe(n.subj.sbSyncAll(), l.onSync)
	if err != nil {
		// Only a closed connection refuses a subscription.
		l.log.Error("scuttlebutt sync subscribe", "err", err)
	}
	l.syncSub = sub
	l.unwatch = n.watch(l)
	return l
}

// linked is one namespace's replica on this node and what links it.
type linked struct {
	l    *ReplicaLink
	ns   string
	m    *model.Model
	subs []*nats.Subscription

	mu        sync.Mutex
	applying  map[updKey]int                 // updates being applied from other nodes
	localEph  map[string]int                 // ephemeral streams here, per ephKey
	remoteEph map[string]map[string]struct{} // ephKey -> nodes with ephemeral streams of it

	resync    chan struct{} // capacity 1: sync again
	syncs     atomic.Int32  // syncs completed
	done      chan struct{}
	wg        sync.WaitGroup
	unlinkOne sync.Once
}

type updKey struct {
	key, source string
	ts          float64
}

// Link implements endpoints.ReplicaLink: it starts sharing m, the replica
// of namespace on this node, and asks the other nodes for what they hold.
// It does not block: the work is done by a goroutine that unlink stops.
func (l *ReplicaLink) Link(namespace string, m *model.Model) (func(), error) {
	if namespace == "" {
		return nil, ErrEmptyNamespace
	}
	lk := &linked{
		l:         l,
		ns:        namespace,
		m:         m,
		applying:  make(map[updKey]int),
		localEph:  make(map[string]int),
		remoteEph: make(map[string]map[string]struct{}),
		resync:    make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	lk.resync <- struct{}{}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	nc, subj := l.node.nc, l.node.subj
	for _, s := range []struct {
		subject string
		cb      nats.MsgHandler
	}{{subj.sbUpdates(namespace), lk.onUpdates}, {subj.sbEphemeral(namespace), lk.onEphemeral}} {
		sub, err := nc.Subscribe(s.subject, s.cb)
		if err != nil {
			lk.unsubscribe()
			return nil, fmt.Errorf("cluster: scuttlebutt subscribe: %w", err)
		}
		lk.subs = append(lk.subs, sub)
	}
	// A replica of the same namespace may still be on its way out: the
	// new one takes its place.
	l.spaces[namespace] = lk
	ms := m.Subscribe(l.cfg.Buffer)
	lk.wg.Add(1)
	go lk.run(ms)
	return lk.unlink, nil
}

// unlink stops sharing the replica and waits for the goroutine.
func (lk *linked) unlink() {
	lk.unlinkOne.Do(func() {
		l := lk.l
		l.mu.Lock()
		if l.spaces[lk.ns] == lk {
			delete(l.spaces, lk.ns)
		}
		l.mu.Unlock()
		lk.unsubscribe()
		close(lk.done)
		lk.wg.Wait()
	})
}

func (lk *linked) unsubscribe() {
	for _, s := range lk.subs {
		_ = s.Unsubscribe()
	}
}

// Close unlinks every namespace still linked, stops answering sync requests
// and watching the other nodes. Close may be called twice.
func (l *ReplicaLink) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		all := make([]*linked, 0, len(l.spaces))
		for _, lk := range l.spaces {
			all = append(all, lk)
		}
		l.mu.Unlock()
		for _, lk := range all {
			lk.unlink()
		}
		if l.syncSub != nil {
			_ = l.syncSub.Unsubscribe()
		}
		l.unwatch()
	})
	return nil
}

func (l *ReplicaLink) get(namespace string) *linked {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spaces[namespace]
}

func (l *ReplicaLink) all() []*linked {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]*linked, 0, len(l.spaces))
	for _, lk := range l.spaces {
		all = append(all, lk)
	}
	return all
}

// EphemeralOpen records that a stream whose header asked for ephemeral
// keys, and whose digest carried replica id, is open on namespace on this
// node, and announces id to the other nodes when it is the first such
// stream. The scuttlebutt endpoint calls it when such a stream's digest
// arrives. It does nothing for a namespace that is not linked.
func (l *ReplicaLink) EphemeralOpen(namespace, id, owner string) {
	lk := l.get(namespace)
	if lk == nil || id == "" {
		return
	}
	id = ephKey(id, owner)
	lk.mu.Lock()
	lk.localEph[id]++
	first := lk.localEph[id] == 1
	lk.mu.Unlock()
	if first {
		lk.announce(ephMsg{Op: "add", IDs: []string{id}})
	}
}

// EphemeralClose undoes one EphemeralOpen: when the last ephemeral stream
// of id on this node closed, the other nodes are told. The endpoint calls
// it after it has deleted the stream's keys.
func (l *ReplicaLink) EphemeralClose(namespace, id, owner string) {
	lk := l.get(namespace)
	if lk == nil {
		return
	}
	id = ephKey(id, owner)
	lk.mu.Lock()
	c, ok := lk.localEph[id]
	if !ok {
		lk.mu.Unlock()
		return
	}
	if c > 1 {
		lk.localEph[id] = c - 1
		lk.mu.Unlock()
		return
	}
	delete(lk.localEph, id)
	lk.mu.Unlock()
	lk.announce(ephMsg{Op: "del", IDs: []string{id}})
}

// ephKey is how the nodes name the ephemeral streams of replica id whose
// keys belong to owner ("" for any key): the owner, a NUL, then the id. A
// peer id holds no control character, so the first NUL ends the owner.
func ephKey(id, owner string) string { return owner + "\x00" + id }

// splitEphKey undoes ephKey.
func splitEphKey(k string) (id, owner string) {
	owner, id, _ = strings.Cut(k, "\x00")
	return id, owner
}

// ephMsg is the message on <p>.sb.<ns>.e: replica ids with ephemeral
// streams on a node added, removed, or ("set") all of them.
type ephMsg struct {
	Node string   `json:"node"`
	Op   string   `json:"op"`
	IDs  []string `json:"ids"`
}

func (lk *linked) announce(msg ephMsg) {
	msg.Node = lk.l.node.id
	b, _ := json.Marshal(msg)
	if err := lk.l.node.nc.Publish(lk.l.node.subj.sbEphemeral(lk.ns), b); err != nil {
		lk.l.log.Debug("ephemeral announcement not sent", "namespace", lk.ns, "err", err)
	}
}

// localEphIDs returns the replica ids with ephemeral streams here, sorted.
func (lk *linked) localEphIDs() []string {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return slices.Sorted(maps.Keys(lk.localEph))
}

// onEphemeral records another node's announcement.
func (lk *linked) onEphemeral(m *nats.Msg) {
	var msg ephMsg
	if err := json.Unmarshal(m.Data, &msg); err != nil || msg.Node == "" {
		lk.l.log.Debug("bad ephemeral announcement", "namespace", lk.ns, "err", err)
		return
	}
	lk.setRemoteEph(msg.Node, msg.Op, msg.IDs)
}

func (lk *linked) setRemoteEph(node, op string, ids []string) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if op == "set" {
		for id, nodes := range lk.remoteEph {
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(lk.remoteEph, id)
			}
		}
	}
	for _, id := range ids {
		nodes := lk.remoteEph[id]
		switch op {
		case "add", "set":
			if nodes == nil {
				nodes = make(map[string]struct{})
				lk.remoteEph[id] = nodes
			}
			nodes[node] = struct{}{}
		case "del":
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(lk.remoteEph, id)
			}
		}
	}
}

// nodeEvent implements watcher.
func (l *ReplicaLink) nodeEvent(ev nodeEvent) {
	switch ev.kind {
	case peerGone:
		for _, lk := range l.all() {
			lk.peerGone(ev.id)
		}
	case peerReturned, reconnected:
		for _, lk := range l.all() {
			if ev.kind == reconnected {
				lk.announce(ephMsg{Op: "set", IDs: lk.localEphIDs()})
			}
			select {
			case lk.resync <- struct{}{}:
			default:
			}
		}
	}
}

// peerGone deletes the keys of the replica ids whose only ephemeral streams
// were on the node that is gone.
func (lk *linked) peerGone(node string) {
	lk.mu.Lock()
	var orphans []string
	for id, nodes := range lk.remoteEph {
		if _, ok := nodes[node]; !ok {
			continue
		}
		delete(nodes, node)
		if len(nodes) == 0 {
			delete(lk.remoteEph, id)
			if lk.localEph[id] == 0 {
				orphans = append(orphans, id)
			}
		}
	}
	lk.mu.Unlock()
	for _, ek := range orphans {
		id, owner := splitEphKey(ek)
		if k := lk.m.DeleteSourceOf(id, owner); k > 0 {
			lk.l.log.Info("ephemeral keys of a gone node deleted", "namespace", lk.ns, "peer", node, "source", id, "owner", owner, "keys", k)
		}
	}
}

// applyRemote applies an update from another node, marking it so that run
// does not publish it again.
func (lk *linked) applyRemote(u model.Update) {
	k := updKey{u.Key, u.Source, u.TS}
	lk.mu.Lock()
	lk.applying[k]++
	lk.mu.Unlock()
	applied, err := lk.m.Apply(u)
	if !applied {
		lk.mu.Lock()
		if lk.applying[k]--; lk.applying[k] <= 0 {
			delete(lk.applying, k)
		}
		lk.mu.Unlock()
	}
	if err != nil && !errors.Is(err, model.ErrClosed) {
		lk.l.log.Debug("scuttlebutt update from another node refused", "namespace", lk.ns, "err", err)
	}
}

// fromCluster reports, once, whether u was applied by applyRemote.
func (lk *linked) fromCluster(u model.Update) bool {
	k := updKey{u.Key, u.Source, u.TS}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	c, ok := lk.applying[k]
	if !ok {
		return false
	}
	if c <= 1 {
		delete(lk.applying, k)
	} else {
		lk.applying[k] = c - 1
	}
	return true
}

// applyLines applies the update lines of a message body; other lines are
// skipped.
func (lk *linked) applyLines(body []byte) {
	for len(body) > 0 {
		line, rest, _ := bytes.Cut(body, []byte{'\n'})
		body = rest
		if len(line) == 0 {
			continue
		}
		msg, err := model.ParseLine(line)
		if err != nil || msg.Kind != model.KindUpdate {
			lk.l.log.Debug("bad scuttlebutt line from another node", "namespace", lk.ns, "err", err)
			continue
		}
		lk.applyRemote(msg.Update)
	}
}

// onUpdates applies the updates another node published.
func (lk *linked) onUpdates(m *nats.Msg) { lk.applyLines(m.Data) }

// publishUpdates publishes update lines in messages of at most ChunkBytes.
func (lk *linked) publishUpdates(us []model.Update) {
	var buf []byte
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if err := lk.l.node.nc.Publish(lk.l.node.subj.sbUpdates(lk.ns), buf); err != nil {
			lk.l.log.Debug("scuttlebutt updates not published", "namespace", lk.ns, "err", err)
		}
		buf = buf[:0]
	}
	for _, u := range us {
		buf = model.AppendUpdate(buf, u)
		if len(buf) >= lk.l.cfg.ChunkBytes {
			flush()
		}
	}
	flush()
}

// syncMeta is the first line of each message answering a sync request.
type syncMeta struct {
	Node  string             `json:"node"`
	Last  bool               `json:"last,omitempty"`
	None  bool               `json:"none,omitempty"`  // the namespace is not linked there
	Eph   []string           `json:"eph,omitempty"`   // last only
	Clock map[string]float64 `json:"clock,omitempty"` // last only
}

// maxClockBytes bounds the clock sent back in a sync answer; a larger one
// is left out, and the asker then publishes nothing back.
const maxClockBytes = 128 << 10

// onSync answers another node's sync request: the history its digest
// lacks, in chunks, the last carrying this node's clock and ephemeral ids.
func (l *ReplicaLink) onSync(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	ns, err := l.node.subj.syncNamespace(m.Subject)
	if err != nil {
		l.log.Debug("bad sync request", "err", err)
		return
	}
	respond := func(meta syncMeta, lines []byte) {
		meta.Node = l.node.id
		b, _ := json.Marshal(meta)
		b = append(append(b, '\n'), lines...)
		if err := l.node.nc.Publish(m.Reply, b); err != nil {
			l.log.Debug("sync answer not sent", "namespace", ns, "err", err)
		}
	}
	lk := l.get(ns)
	if lk == nil {
		respond(syncMeta{Last: true, None: true}, nil)
		return
	}
	msg, err := model.ParseLine(m.Data)
	if err != nil || msg.Kind != model.KindDigest {
		l.log.Debug("bad sync request", "namespace", ns, "err", err)
		return
	}
	var lines []byte
	for _, u := range lk.m.History(msg.Digest.Clock) {
		lines = model.AppendUpdate(lines, u)
		if len(lines) >= l.cfg.ChunkBytes {
			respond(syncMeta{}, lines)
			lines = lines[:0]
		}
	}
	last := syncMeta{Last: true, Eph: lk.localEphIDs(), Clock: lk.m.Clock()}
	if cb, _ := json.Marshal(last.Clock); len(cb) > maxClockBytes {
		last.Clock = nil
	}
	respond(last, lines)
}

// syncRound is a sync request in progress: answers are applied by the
// NATS subscription's goroutine as they come, until the round times out or
// another replaces it.
type syncRound struct {
	lk    *linked
	sub   *nats.Subscription
	timer *time.Timer

	mu       sync.Mutex
	waiting  map[string]bool // nodes that have not answered in full
	finished bool
}

// startSync asks every node for the history this replica lacks. Answers
// from nodes this one does not know yet are taken too, until the timeout.
func (lk *linked) startSync() *syncRound {
	nc := lk.l.node.nc
	r := &syncRound{lk: lk, waiting: make(map[string]bool)}
	for _, id := range lk.l.node.Peers() {
		r.waiting[id] = true
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.Subscribe(inbox, r.onAnswer)
	if err != nil {
		lk.l.log.Debug("sync not started", "namespace", lk.ns, "err", err)
		return nil
	}
	// An answer is never dropped: their number is bounded by the nodes
	// and the history.
	_ = sub.SetPendingLimits(-1, -1)
	r.sub = sub
	r.timer = time.NewTimer(lk.l.cfg.SyncTimeout)
	req := model.AppendDigest(nil, lk.m.Digest())
	if err := nc.PublishRequest(lk.l.node.subj.sbSync(lk.ns), inbox, req); err != nil {
		lk.l.log.Debug("sync not sent", "namespace", lk.ns, "err", err)
	}
	r.check()
	return r
}

// stop ends the round; answers still on their way are dropped.
func (r *syncRound) stop() {
	_ = r.sub.Unsubscribe()
	r.timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked()
}

func (r *syncRound) finishLocked() {
	if !r.finished {
		r.finished = true
		r.lk.syncs.Add(1)
	}
}

// check counts the round as done once every node still alive answered.
func (r *syncRound) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.waiting {
		if !r.lk.l.node.alive(id) {
			delete(r.waiting, id)
		}
	}
	if len(r.waiting) == 0 {
		r.finishLocked()
	}
}

// onAnswer applies one message of an answer.
func (r *syncRound) onAnswer(m *nats.Msg) {
	lk := r.lk
	head, body, _ := bytes.Cut(m.Data, []byte{'\n'})
	var meta syncMeta
	if err := json.Unmarshal(head, &meta); err != nil || meta.Node == "" {
		lk.l.log.Debug("bad sync answer", "namespace", lk.ns, "err", err)
		return
	}
	lk.applyLines(body)
	if !meta.Last {
		return
	}
	if !meta.None {
		lk.setRemoteEph(meta.Node, "set", meta.Eph)
		if meta.Clock != nil {
			if h := lk.m.History(meta.Clock); len(h) > 0 {
				lk.publishUpdates(h)
			}
		}
	}
	r.mu.Lock()
	delete(r.waiting, meta.Node)
	r.mu.Unlock()
	r.check()
}

// run publishes the replica's changes, batched, and starts sync rounds,
// until unlink.
func (lk *linked) run(ms *model.Subscription) {
	defer lk.wg.Done()
	var (
		round   *syncRound
		timeout <-chan time.Time
		batch   []model.Update
	)
	defer func() {
		ms.Cancel()
		if round != nil {
			round.stop()
		}
	}()
	for {
		select {
		case <-lk.done:
			return
		case u, ok := <-ms.Updates():
			if !ok {
				if !errors.Is(ms.Err(), model.ErrSlowSubscriber) {
					// The replica is closed: wait for unlink.
					<-lk.done
					return
				}
				// Changes were lost to the subscription: publish them
				// all, from a new one.
				lk.l.log.Warn("scuttlebutt link fell behind; publishing the whole replica", "namespace", lk.ns)
				ms = lk.m.Subscribe(lk.l.cfg.Buffer)
				lk.mu.Lock()
				clear(lk.applying)
				lk.mu.Unlock()
				lk.publishUpdates(lk.m.History(nil))
				continue
			}
			batch = batch[:0]
			if !lk.fromCluster(u) {
				batch = append(batch, u)
			}
		drain:
			for len(batch) < 1024 {
				select {
				case u, ok := <-ms.Updates():
					if !ok {
						break drain
					}
					if !lk.fromCluster(u) {
						batch = append(batch, u)
					}
				default:
					break drain
				}
			}
			lk.publishUpdates(batch)
			clear(batch)
		case <-lk.resync:
			if round != nil {
				round.stop()
			}
			timeout = nil
			if round = lk.startSync(); round != nil {
				timeout = round.timer.C
			}
		case <-timeout:
			round.check()
			round.stop()
			round, timeout = nil, nil
		}
	}
}
