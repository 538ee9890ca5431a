package peer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/model"
)

// Defaults of RoomOptions.
const (
	DefaultMaxPending  = 8
	DefaultCallTimeout = 30 * time.Second
)

// RoomOptions configure Join. The zero value is ready to use.
type RoomOptions struct {
	// Meta is this member's public metadata, shown to the others with its
	// id; it must marshal to JSON. Default none (null).
	Meta any
	// MaxPending is how many requests the application may have undecided
	// at once; one more is rejected with ReasonBusy at once. Default 8.
	MaxPending int
	// CallTimeout bounds how long a call waits for its answer, and how
	// long a request waits for its caller's first message. Default 30s.
	CallTimeout time.Duration
	// OnJoin, OnUpdate and OnLeave, if set, are told of the other members
	// joining, changing their metadata and leaving. OnRequest is handed
	// each incoming request, which it must Accept or Reject (at once or
	// later, from any goroutine); without it every request is rejected.
	// OnJoin, OnUpdate and OnLeave run one at a time in the room's
	// goroutine, in the order of the room's changes, and must not block for
	// long; OnRequest runs in a goroutine of the request's own.
	OnJoin, OnUpdate, OnLeave func(Member)
	OnRequest                 func(*Request)
	// Logger receives debug logs. Default none.
	Logger *slog.Logger
}

// Member is another member of a room: its peer id and its public metadata
// (nil when none).
type Member struct {
	ID   string
	Meta json.RawMessage
}

// Room is a membership of a room (PROTOCOL.md section 10): it keeps this
// member's record alive, tracks the other members, answers incoming calls
// and places outgoing ones. Its methods may be called from any goroutine.
type Room struct {
	sess *client.Session
	name string
	ns   string
	id   string
	opts RoomOptions
	log  *slog.Logger

	m       *model.Model
	rep     *client.Replica
	watcher *model.KeyWatcher
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	freed   chan struct{} // closed once endWithSession has returned

	mu       sync.Mutex
	record   json.RawMessage
	members  map[string]Member
	outgoing map[string]*outgoing // by callee id
	seen     map[string]bool      // call keys already handled
	requests map[string]*Request  // undecided, by caller id
	calls    map[*Call]struct{}
	byPeer   map[string]*Call // the call with each member, at most one
}

// outgoing is a call this member placed that has no answer yet.
type outgoing struct {
	id     string // call id
	to     string
	cancel context.CancelFunc // gives the call up
	glare  chan *Call         // the other's call, taken in its place
}

// Join enters the room name on sess: it replicates the room's namespace,
// writes this member's record and waits until it has the room's state.
// Leave ends the membership.
func Join(ctx context.Context, sess *client.Session, name string, opts RoomOptions) (*Room, error) {
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meta, err := json.Marshal(opts.Meta)
	if err != nil {
		return nil, fmt.Errorf("peer: member meta: %w", err)
	}
	record, _ := json.Marshal(struct {
		Meta json.RawMessage `json:"meta"`
	}{meta})
	r := &Room{
		sess: sess, name: name, ns: "room/" + name, id: sess.ID(), opts: opts, log: log,
		record:   record,
		members:  map[string]Member{},
		outgoing: map[string]*outgoing{},
		seen:     map[string]bool{},
		requests: map[string]*Request{},
		calls:    map[*Call]struct{}{},
		byPeer:   map[string]*Call{},
	}
	if r.id == "" {
		return nil, errors.New("peer: the session has no peer id (a server without the session endpoint)")
	}
	r.m = model.New(model.Options{})
	r.rep, err = sess.Replicate(ctx, r.ns, r.m, client.ReplicateOptions{Ephemeral: true})
	if err != nil {
		r.m.Close()
		return nil, err
	}
	if err := r.rep.WaitSync(ctx); err != nil {
		r.rep.Close()
		r.m.Close()
		return nil, err
	}
	if err := r.m.Set(r.id, r.record); err != nil {
		r.rep.Close()
		r.m.Close()
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.watcher = model.WatchKeys(r.m, 0)
	// The members already here are known when Join returns (OnJoin is
	// told of each, as of those who come later).
	for _, ev := range r.watcher.Pending() {
		r.event(ev)
	}
	r.freed = make(chan struct{})
	r.wg.Add(2)
	go r.watch()
	go r.keepAlive()
	go r.endWithSession()
	return r, nil
}

// endWithSession frees the room when its replication ends without Leave
// (the session closed or failed): its goroutines stop and its model
// closes. Leave waits for it.
func (r *Room) endWithSession() {
	defer close(r.freed)
	select {
	case <-r.rep.Done():
	case <-r.ctx.Done():
		return // Leave frees the room
	}
	r.cancel()
	r.watcher.Close()
	r.wg.Wait()
	r.m.Close()
}

// ID returns this member's peer id.
func (r *Room) ID() string { return r.id }

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Members returns the other members, sorted by id.
func (r *Room) Members() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, m)
	}
	sortMembers(out)
	return out
}

// SetMeta changes this member's public metadata.
func (r *Room) SetMeta(meta any) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("peer: member meta: %w", err)
	}
	record, _ := json.Marshal(struct {
		Meta json.RawMessage `json:"meta"`
	}{b})
	r.mu.Lock()
	r.record = record
	r.mu.Unlock()
	return r.m.Set(r.id, json.RawMessage(record))
}

// Done is closed when the room's replication has ended: Leave, or the
// session's end.
func (r *Room) Done() <-chan struct{} { return r.rep.Done() }

// Leave ends the membership: the calls of this room end, the record is
// deleted, and the room's goroutines stop.
func (r *Room) Leave() error {
	r.cancel()
	r.mu.Lock()
	calls := make([]*Call, 0, len(r.calls))
	for c := range r.calls {
		calls = append(calls, c)
	}
	reqs := make([]*Request, 0, len(r.requests))
	for _, q := range r.requests {
		reqs = append(reqs, q)
	}
	r.mu.Unlock()
	for _, c := range calls {
		c.Close("left the room")
	}
	for _, q := range reqs {
		q.Reject("left the room")
	}
	r.m.Delete(r.id)
	err := r.rep.Close()
	r.watcher.Close()
	r.wg.Wait()
	<-r.freed
	r.m.Close()
	return err
}

// keepAlive writes the record again every maxAge/3, so that it outlives
// the server's expiry while this member lives.
func (r *Room) keepAlive() {
	defer r.wg.Done()
	t := time.NewTicker(max(r.rep.MaxAge()/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.rep.Done():
			return
		case <-t.C:
			r.mu.Lock()
			rec := r.record
			r.mu.Unlock()
			r.m.Set(r.id, rec)
		}
	}
}

// watch turns the room's key changes into member events and incoming calls.
func (r *Room) watch() {
	defer r.wg.Done()
	for {
		ev, err := r.watcher.Next(r.ctx)
		if err != nil {
			return
		}
		r.event(ev)
	}
}

func (r *Room) event(ev model.KeyEvent) {
	if !strings.Contains(ev.Key, "/") {
		if ev.Key == r.id {
			return
		}
		r.memberEvent(ev)
		return
	}
	// X/call/<me>/c
	parts := strings.Split(ev.Key, "/")
	if len(parts) != 4 || parts[1] != "call" || parts[2] != r.id || parts[0] == r.id || !validCallID(parts[3]) {
		return
	}
	if ev.Kind == model.KeyRemoved {
		// The caller is done with it: forget it, so that seen holds only
		// the live call keys.
		r.mu.Lock()
		delete(r.seen, ev.Key)
		r.mu.Unlock()
		return
	}
	if ev.Kind == model.KeyAdded {
		r.incoming(parts[0], parts[3], ev.Key)
	}
}

func (r *Room) memberEvent(ev model.KeyEvent) {
	var rec struct {
		Meta json.RawMessage `json:"meta"`
	}
	if ev.Kind != model.KeyRemoved && (len(ev.Value) == 0 || ev.Value[0] != '{' || json.Unmarshal(ev.Value, &rec) != nil) {
		return // not a member record
	}
	if string(rec.Meta) == "null" {
		rec.Meta = nil
	}
	m := Member{ID: ev.Key, Meta: rec.Meta}
	r.mu.Lock()
	_, known := r.members[ev.Key]
	switch ev.Kind {
	case model.KeyRemoved:
		delete(r.members, ev.Key)
	default:
		r.members[ev.Key] = m
	}
	r.mu.Unlock()
	var f func(Member)
	switch {
	case ev.Kind == model.KeyRemoved && known:
		f = r.opts.OnLeave
	case ev.Kind == model.KeyRemoved:
	case known:
		f = r.opts.OnUpdate
	default:
		f = r.opts.OnJoin
	}
	if f != nil {
		f(m)
	}
}

// incoming handles the call key of a call from `from`.
func (r *Room) incoming(from, callID, key string) {
	r.mu.Lock()
	if r.seen[key] || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.seen[key] = true
	var glare chan *Call
	if out := r.outgoing[from]; out != nil {
		if r.id < from {
			// The smaller id keeps its own call; from drops its.
			r.mu.Unlock()
			return
		}
		// The greater id drops its own call and takes from's instead.
		delete(r.outgoing, from)
		out.cancel()
		glare = out.glare
	}
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.answer(from, callID, glare)
	}()
}

// answer pairs with the call of `from` and reads its request; then it
// accepts it at once (glare), rejects it (busy, no handler), or hands it to
// OnRequest.
func (r *Room) answer(from, callID string, glare chan *Call) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.CallTimeout)
	defer cancel()
	conn, err := r.sess.Relay(ctx, r.ns, r.id+"/sig/"+from+"/"+callID, from+"/sig/"+r.id+"/"+callID)
	if err != nil {
		r.log.Debug("incoming call not paired", "from", from, "call", callID, "err", err)
		if glare != nil {
			close(glare)
		}
		return
	}
	if conn.Peer().ID != from {
		r.log.Warn("incoming call from another peer than its key says", "key", from, "peer", conn.Peer().ID)
		conn.Reset()
		if glare != nil {
			close(glare)
		}
		return
	}
	br := bufio.NewReaderSize(conn, MaxMessageBytes)
	meta, err := readRequest(br, conn, r.opts.CallTimeout)
	if err != nil {
		r.log.Debug("incoming call without a request", "from", from, "err", err)
		conn.Reset()
		if glare != nil {
			close(glare)
		}
		return
	}
	q := &Request{room: r, from: from, meta: meta, callID: callID, conn: conn, br: br, decided: make(chan struct{})}
	if glare == nil {
		// This member may have called `from` since the call key appeared:
		// the glare rule applies now as it would have then.
		r.mu.Lock()
		out := r.outgoing[from]
		switch {
		case out == nil:
		case r.id < from:
			// Our call stands; from drops its own, which stays unanswered.
			r.mu.Unlock()
			r.leaveUnanswered(conn)
			return
		default:
			delete(r.outgoing, from)
			out.cancel()
			glare = out.glare
		}
		r.mu.Unlock()
	}
	if glare != nil {
		c, err := q.Accept()
		if err != nil {
			close(glare)
			return
		}
		glare <- c
		return
	}
	r.mu.Lock()
	if r.requests[from] != nil || len(r.requests) >= r.opts.MaxPending || r.opts.OnRequest == nil {
		r.mu.Unlock()
		reason := ReasonBusy
		if r.opts.OnRequest == nil {
			reason = "this peer takes no calls"
		}
		q.Reject(reason)
		return
	}
	r.requests[from] = q
	if m, ok := r.members[from]; ok {
		q.fromMeta = m.Meta
	}
	r.mu.Unlock()
	// A caller that gives up resets the pipe: the request is then gone.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-conn.Done():
			q.abandon()
		case <-q.decided:
		case <-r.ctx.Done():
		}
	}()
	r.opts.OnRequest(q)
}

// leaveUnanswered holds a call that lost to this member's own (glare)
// until its caller drops it, so that the caller sees its call taken rather
// than reset.
func (r *Room) leaveUnanswered(conn *client.RelayConn) {
	t := time.NewTimer(r.opts.CallTimeout)
	defer t.Stop()
	select {
	case <-conn.Done():
	case <-t.C:
	case <-r.ctx.Done():
	}
	conn.Reset()
}

// Call calls the member `to` and returns the call once it accepts; a call
// with `to` already under way is returned as it is: two members have at
// most one call at a time. It
// returns a *RejectedError with the callee's reason at once when it
// rejects, ErrTimeout when it has not answered within
// CallOptions.Timeout (default RoomOptions.CallTimeout), and ctx's error
// when ctx ends first. When `to` calls this member at the same moment, the
// two end with one call (PROTOCOL.md section 10, glare), and Call returns
// it; when a request from `to` waits, Call accepts it.
func (r *Room) Call(ctx context.Context, to string, opts CallOptions) (*Call, error) {
	if to == r.id {
		return nil, errors.New("peer: a member cannot call itself")
	}
	meta, err := json.Marshal(opts.Meta)
	if err != nil {
		return nil, fmt.Errorf("peer: call meta: %w", err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = r.opts.CallTimeout
	}
	r.mu.Lock()
	if r.ctx.Err() != nil {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if c := r.byPeer[to]; c != nil && !c.ended() {
		r.mu.Unlock()
		return c, nil
	}
	if q := r.requests[to]; q != nil {
		r.mu.Unlock()
		return q.Accept()
	}
	if r.outgoing[to] != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("peer: a call to %q is already under way", to)
	}
	callID := newCallID()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &outgoing{id: callID, to: to, cancel: cancel, glare: make(chan *Call, 1)}
	r.outgoing[to] = out
	r.mu.Unlock()

	key := r.id + "/call/" + to + "/" + callID
	type paired struct {
		conn *client.RelayConn
		err  error
	}
	got := make(chan paired, 1)
	go func() {
		conn, err := r.sess.Relay(cctx, r.ns, r.id+"/sig/"+to+"/"+callID, to+"/sig/"+r.id+"/"+callID)
		got <- paired{conn, err}
	}()
	if err := r.m.Set(key, json.RawMessage(`{}`)); err != nil {
		cancel()
		<-got
		r.dropOutgoing(out)
		return nil, err
	}
	var p paired
	select {
	case p = <-got:
	case <-r.ctx.Done():
		cancel()
		<-got
		r.dropOutgoing(out)
		return nil, ErrClosed
	}
	r.m.Delete(key) // paired or given up: the callee needs it no more
	if p.err != nil {
		if c, ok := r.takeGlare(out); ok {
			return c, nil
		}
		r.dropOutgoing(out)
		return nil, r.callError(ctx, cctx, p.err)
	}
	conn := p.conn
	if conn.Peer().ID != to {
		conn.Reset()
		r.dropOutgoing(out)
		return nil, fmt.Errorf("peer: the call to %q was answered by %q", to, conn.Peer().ID)
	}
	stop := context.AfterFunc(cctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	c, err := r.request(conn, callID, meta)
	if !stop() {
		// The deadline may have interrupted the answer; a call that was
		// accepted meanwhile is still good, as its line arrived.
		conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		conn.Reset()
		if c, ok := r.takeGlare(out); ok {
			return c, nil
		}
		r.dropOutgoing(out)
		return nil, r.callError(ctx, cctx, err)
	}
	r.dropOutgoing(out)
	return c, nil
}

// CallOptions configure Room.Call.
type CallOptions struct {
	// Meta is shown to the callee with the request; it must marshal to
	// JSON. Default none (null).
	Meta any
	// Timeout bounds the wait for the answer. Default
	// RoomOptions.CallTimeout.
	Timeout time.Duration
}

// request sends the request over the paired pipe and reads the answer.
func (r *Room) request(conn *client.RelayConn, callID string, meta json.RawMessage) (*Call, error) {
	b, _ := json.Marshal(struct {
		Type string          `json:"type"`
		Meta json.RawMessage `json:"meta"`
	}{TypeRequest, meta})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	c := newCall(r, callID, conn, nil)
	msg, err := c.Recv()
	if err != nil {
		var bye *ByeError
		if errors.As(err, &bye) {
			return nil, &RejectedError{Reason: bye.Reason}
		}
		return nil, err
	}
	switch msg.Type {
	case TypeAccept:
		r.track(c)
		return c, nil
	case TypeReject:
		var rej struct {
			Reason string `json:"reason"`
		}
		msg.Decode(&rej)
		conn.Close()
		return nil, &RejectedError{Reason: rej.Reason}
	}
	return nil, fmt.Errorf("peer: the callee answered %q, not accept or reject", msg.Type)
}

// callError names why a call failed: ErrTimeout when its own deadline
// passed, the caller's ctx error, ErrClosed after Leave, or err.
func (r *Room) callError(ctx, cctx context.Context, err error) error {
	var rej *RejectedError
	switch {
	case errors.As(err, &rej):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case r.ctx.Err() != nil:
		return ErrClosed
	case cctx.Err() != nil:
		return ErrTimeout
	}
	return err
}

// takeGlare returns the call taken in place of out's, if the other side's
// call was taken (glare); it waits for that answer when one is under way.
func (r *Room) takeGlare(out *outgoing) (*Call, bool) {
	r.mu.Lock()
	dropped := r.outgoing[out.to] != out
	r.mu.Unlock()
	if !dropped {
		return nil, false
	}
	select {
	case c, ok := <-out.glare:
		return c, ok && c != nil
	case <-r.ctx.Done():
		return nil, false
	}
}

func (r *Room) dropOutgoing(out *outgoing) {
	r.mu.Lock()
	if r.outgoing[out.to] == out {
		delete(r.outgoing, out.to)
	}
	r.mu.Unlock()
}

func (r *Room) track(c *Call) {
	r.mu.Lock()
	r.calls[c] = struct{}{}
	r.byPeer[c.peer.ID] = c
	r.mu.Unlock()
}

func (r *Room) forget(c *Call) {
	r.mu.Lock()
	delete(r.calls, c)
	if r.byPeer[c.peer.ID] == c {
		delete(r.byPeer, c.peer.ID)
	}
	r.mu.Unlock()
}

// Request is an incoming call the application accepts or rejects.
type Request struct {
	room     *Room
	from     string
	fromMeta json.RawMessage
	meta     json.RawMessage
	callID   string
	conn     *client.RelayConn
	br       *bufio.Reader

	once    sync.Once
	decided chan struct{}
}

// From returns the caller: its peer id, which the server vouches for, and
// its member metadata (nil when none).
func (q *Request) From() Member { return Member{ID: q.from, Meta: q.fromMeta} }

// Caller returns the caller as the server vouches for it: its id and the
// public metadata of its token.
func (q *Request) Caller() channel.PeerInfo { return q.conn.Peer() }

// Meta returns the request's metadata, nil when none.
func (q *Request) Meta() json.RawMessage { return q.meta }

// decide answers the request once, if it is still undecided: it takes the
// request off the undecided ones and, to accept it, makes the call and
// counts it as the call with the caller, in one step, so that a Call to
// the caller made meanwhile finds one or the other. Then it writes the
// answer. It returns the call (nil for a rejection) and whether it
// decided.
func (q *Request) decide(a answer, reason string) (*Call, bool, error) {
	accept := a == answerAccept
	decided := false
	var c *Call
	q.once.Do(func() {
		decided = true
		r := q.room
		if accept {
			c = newCall(r, q.callID, q.conn, q.br)
		}
		r.mu.Lock()
		if r.requests[q.from] == q {
			delete(r.requests, q.from)
		}
		if c != nil {
			r.calls[c] = struct{}{}
			r.byPeer[c.peer.ID] = c
		}
		r.mu.Unlock()
		close(q.decided)
	})
	if !decided {
		return nil, false, nil
	}
	if accept {
		if _, err := q.conn.Write([]byte(`{"type":"accept"}` + "\n")); err != nil {
			q.conn.Reset()
			q.room.forget(c)
			return nil, true, err
		}
		return c, true, nil
	}
	if a == answerGone {
		q.conn.Reset()
		return nil, true, nil
	}
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}{TypeReject, reason})
	_, err := q.conn.Write(append(b, '\n'))
	q.conn.Close()
	return nil, true, err
}

// Accept answers accept and returns the call.
func (q *Request) Accept() (*Call, error) {
	c, decided, err := q.decide(answerAccept, "")
	if !decided {
		return nil, ErrAnswered
	}
	return c, err
}

// Reject answers reject with reason and ends the pipe.
func (q *Request) Reject(reason string) error {
	_, decided, err := q.decide(answerReject, reason)
	if !decided {
		return ErrAnswered
	}
	return err
}

// abandon forgets a request whose caller gave up.
func (q *Request) abandon() { q.decide(answerGone, "") }

// answer is how a request is decided.
type answer int

const (
	answerAccept answer = iota
	answerReject
	answerGone // the caller gave up: nothing to say
)

// newCallID returns 16 random characters of base64url: 96 bits.
func newCallID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validCallID applies the call id rule: 8 to 32 of A-Z a-z 0-9 _ -.
func validCallID(s string) bool {
	if len(s) < 8 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
}
