package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/model"
)

// ErrDisconnected is returned by a Client's handles while no session is
// open; the Client is dialing again.
var ErrDisconnected = errors.New("channel: disconnected, reconnecting")

// ErrClientClosed is returned once Client.Close was called.
var ErrClientClosed = errors.New("channel: client closed")

// ReconnectOptions configure Reconnect.
type ReconnectOptions struct {
	// URLs are the channel URLs of the servers, tried in turn: one for a
	// single server, several for servers joined in a cluster. Required.
	URLs []string
	// Dial configures each connection.
	Dial DialOptions
	// TokenFunc, if set, is called before every dial, the first one
	// included, for the token to send in place of Dial.Token, and by each
	// session to refresh its token in band ahead of expiry (as
	// DialOptions.TokenFunc). With it, a session the server
	// closes with 4401 (a token that expired, say) is dialled again with a
	// fresh token; without it, 4401 ends the Client (Done, Err), since the
	// same token would be refused again.
	TokenFunc func(ctx context.Context) (string, error)
	// MinBackoff and MaxBackoff bound the wait before a dial, which doubles
	// from MinBackoff up to MaxBackoff, each wait drawn at random between
	// half the bound and the bound. The wait starts again from MinBackoff
	// only after a session has stayed open for MaxBackoff, so a server that
	// upgrades and then refuses (4401, 4429, 1013) is not dialled in a loop;
	// a close with 4429 or 1013 (try again later) never restarts it.
	// After a shutdown (1001) the next URL is dialled at once. Defaults
	// 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one attempt. Default 10s.
	DialTimeout time.Duration
	// OnConnect and OnDisconnect, if set, are called from the Client's
	// goroutine when a session opens and when it ends (with the server's
	// close code, or 0). They must not block.
	OnConnect    func(url string)
	OnDisconnect func(code int, reason string)
}

// Client keeps a session open to one of several servers: when the session
// ends it dials again, with backoff, and rejoins every echo namespace and
// scuttlebutt replica opened through it. Frames sent while disconnected are
// lost (Send returns ErrDisconnected); a replica resyncs its model through
// the scuttlebutt digest, so updates made meanwhile reach the server. Relay
// streams end with their session and are not reopened.
//
// The Client ends on Close, or when the server refuses its credentials
// (4401) and there is no TokenFunc to get new ones; Done and Err tell.
//
// The Client owns one goroutine, and one per replica, which Close stops.
type Client struct {
	o      ReconnectOptions
	ctx    context.Context // ends with the Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sess     *Session
	changed  chan struct{} // closed and replaced when sess changes
	next     int           // next URL to try
	echoes   map[*ReconnectingEcho]struct{}
	replicas map[*ReconnectingReplica]struct{}
	closed   bool
	err      error         // why the Client ended, if not by Close
	done     chan struct{} // closed when run returns
}

// Reconnect dials the first server that answers and returns the Client,
// which dials again whenever the session ends (Dial gives a one-shot
// Session). It blocks until one session is open or ctx ends. When no server
// answers it returns the errors; when servers refuse the session for now
// (4429 or 1013 for a limit, 1001 going away, 4401 with a TokenFunc to try
// another token) it dials again with backoff until ctx ends.
func Reconnect(ctx context.Context, o ReconnectOptions) (*Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("channel: Reconnect needs at least one URL")
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	c := &Client{
		o:        o,
		changed:  make(chan struct{}),
		echoes:   map[*ReconnectingEcho]struct{}{},
		replicas: map[*ReconnectingReplica]struct{}{},
		done:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	bo := backoff{min: o.MinBackoff, max: o.MaxBackoff}
	var (
		sess *Session
		url  string
		err  error
	)
	for {
		if sess, url, err = c.dial(ctx); err == nil {
			break
		}
		if !c.refusedForNow(err) || !sleep(ctx, bo.next()) {
			c.cancel()
			return nil, err
		}
	}
	c.setSession(sess)
	if o.OnConnect != nil {
		o.OnConnect(url)
	}
	c.wg.Add(1)
	go c.run()
	return c, nil
}

// Session returns the open session, or nil while reconnecting.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// Done is closed when the Client has ended: after Close, or when the
// server refused its credentials for good (Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the Client ended: a *CloseError with code 4401 when the
// server refused its credentials and there was no TokenFunc; nil after
// Close or while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// endErr is what handles return once the Client has ended.
func (c *Client) endErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClientClosed
}

// Close ends the session and stops reconnecting; every handle's calls then
// return ErrClientClosed (Recv after its own Close returns io.EOF).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	sess := c.sess
	c.cancel()
	c.mu.Unlock()
	if sess != nil {
		sess.Close()
	}
	c.wg.Wait()
	return nil
}

// current returns the session and the channel closed when it changes.
func (c *Client) current() (*Session, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess, c.changed
}

func (c *Client) setSession(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = s
	close(c.changed)
	c.changed = make(chan struct{})
}

// dial tries each URL once, from the next one on.
func (c *Client) dial(ctx context.Context) (*Session, string, error) {
	var errs []error
	for range c.o.URLs {
		c.mu.Lock()
		url := c.o.URLs[c.next%len(c.o.URLs)]
		c.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
		s, err := c.dialOne(dctx, url)
		cancel()
		if err == nil {
			return s, url, nil
		}
		errs = append(errs, err)
		c.skip()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// refusedForNow reports whether err, from dial, holds a refusal that may
// pass: a server at a limit (4429, 1013) or going away (1001), or refused
// credentials (4401) when TokenFunc can get others.
func (c *Client) refusedForNow(err error) bool {
	var ce *channel.CloseError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code {
	case channel.CloseLimit, channel.CloseTryAgainLater, channel.CloseGoingAway:
		return true
	case channel.CloseUnauthorized:
		return c.o.TokenFunc != nil
	}
	return false
}

// dialOne dials url, with a token from TokenFunc if there is one; the
// session then refreshes its token in band with the same TokenFunc.
func (c *Client) dialOne(ctx context.Context, url string) (*Session, error) {
	opts := c.o.Dial
	if c.o.TokenFunc != nil {
		opts.Token, opts.TokenFunc = "", c.o.TokenFunc
	}
	return Dial(ctx, url, opts)
}

// skip moves on to the next URL.
func (c *Client) skip() {
	c.mu.Lock()
	c.next++
	c.mu.Unlock()
}

// run waits for the session to end, dials again and rejoins.
func (c *Client) run() {
	defer c.wg.Done()
	defer close(c.done)
	ctx := c.ctx
	bo := backoff{min: c.o.MinBackoff, max: c.o.MaxBackoff}
	for {
		sess, _ := c.current()
		opened := time.Now()
		select {
		case <-sess.Done():
		case <-ctx.Done():
			return
		}
		c.setSession(nil)
		code, reason := sess.CloseReason()
		if c.o.OnDisconnect != nil {
			c.o.OnDisconnect(code, reason)
		}
		if time.Since(opened) >= c.o.MaxBackoff && code != channel.CloseLimit && code != channel.CloseTryAgainLater {
			bo.reset() // a session that held: start again from MinBackoff
		}
		wait := true
		switch code {
		case channel.CloseUnauthorized:
			if c.o.TokenFunc == nil {
				c.mu.Lock()
				c.err = &channel.CloseError{Code: code, Reason: reason}
				c.mu.Unlock()
				c.cancel()
				return
			}
		case channel.CloseGoingAway:
			c.skip() // that server is going away: the next one, at once
			wait = false
		}
		for {
			if wait && !sleep(ctx, bo.next()) {
				return
			}
			wait = true
			s, url, err := c.dial(ctx)
			if err == nil {
				c.setSession(s)
				if c.o.OnConnect != nil {
					c.o.OnConnect(url)
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			if ce := (*channel.CloseError)(nil); errors.As(err, &ce) && ce.Code == channel.CloseUnauthorized && c.o.TokenFunc == nil {
				c.mu.Lock()
				c.err = ce
				c.mu.Unlock()
				c.cancel()
				return
			}
		}
		c.rejoin(ctx)
	}
}

// backoff is a doubling wait with jitter: each wait is drawn between half
// the bound and the bound.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// timerC returns t's channel, or nil (never ready) for no timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rejoin reopens every echo member on the new session; replicas rejoin by
// themselves.
func (c *Client) rejoin(ctx context.Context) {
	c.mu.Lock()
	echoes := make([]*ReconnectingEcho, 0, len(c.echoes))
	for e := range c.echoes {
		echoes = append(echoes, e)
	}
	c.mu.Unlock()
	for _, e := range echoes {
		e.rejoin(ctx, nil)
	}
}

// Echo joins namespace and keeps it joined across reconnects.
func (c *Client) Echo(ctx context.Context, namespace string) (*ReconnectingEcho, error) {
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	m, err := sess.Echo(ctx, namespace)
	if err != nil {
		return nil, err
	}
	e := &ReconnectingEcho{c: c, ns: namespace, cur: m, changed: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.err != nil {
		m.Close()
		return nil, ErrClientClosed
	}
	c.echoes[e] = struct{}{}
	return e, nil
}

// session returns the open session, or why there is none.
func (c *Client) session() (*Session, error) {
	sess, _ := c.current()
	switch {
	case c.ctx.Err() != nil:
		return nil, c.endErr()
	case sess == nil:
		return nil, ErrDisconnected
	}
	return sess, nil
}

// ReconnectingEcho is an echo member that rejoins its namespace after a reconnect,
// or after the server dropped it. Send and Recv may be called from two
// goroutines at once.
//
// A rejoin the server refuses for good (forbidden, say: the token of the new
// session does not allow the namespace) ends the member with that *Error;
// one refused for now (limit) is tried again on the same session, with
// backoff.
type ReconnectingEcho struct {
	c  *Client
	ns string

	mu      sync.Mutex
	cur     *Echo         // nil while disconnected
	changed chan struct{} // closed and replaced when cur changes
	joining bool          // a rejoin is opening a stream
	closed  bool
	err     error // the refusal that ended the member
}

// Namespace returns the namespace.
func (e *ReconnectingEcho) Namespace() string { return e.ns }

func (e *ReconnectingEcho) current() (*Echo, <-chan struct{}, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur, e.changed, e.closed, e.err
}

// Send writes one frame, or returns ErrDisconnected while reconnecting.
func (e *ReconnectingEcho) Send(p []byte) error {
	cur, _, closed, err := e.current()
	switch {
	case closed:
		return ErrClientClosed
	case err != nil:
		return err
	case cur == nil && e.c.ctx.Err() != nil:
		return e.c.endErr()
	case cur == nil:
		return ErrDisconnected
	}
	return cur.Send(p)
}

// Recv returns the next frame. Across a reconnect it waits for the member
// to rejoin; frames sent meanwhile are lost. It returns io.EOF after Close,
// and the *Error of a rejoin the server refused for good.
func (e *ReconnectingEcho) Recv() ([]byte, error) {
	bo := backoff{min: e.c.o.MinBackoff, max: e.c.o.MaxBackoff}
	for {
		cur, changed, closed, err := e.current()
		if err != nil {
			return nil, err
		}
		if cur != nil {
			f, err := cur.Recv()
			if err == nil {
				return f, nil
			}
			if _, _, closed, _ := e.current(); closed {
				return nil, io.EOF
			}
			// Dropped by the server, or the session ended: rejoin on the
			// session if it is still open; else the Client will.
			e.rejoin(context.Background(), cur)
			continue
		}
		if closed {
			return nil, io.EOF
		}
		// No member: wait for a rejoin under way, or start one on the
		// open session; without one, wait for the next session.
		var retry *time.Timer
		sess, sessChanged := e.c.current()
		if sess != nil && !e.isJoining() {
			refused := e.rejoin(context.Background(), nil)
			cur, now, _, err := e.current()
			switch {
			case err != nil:
				return nil, err
			case cur != nil:
				bo.reset()
				continue
			}
			changed = now
			if refused != nil { // for now: again after a while, unless the session changes
				retry = time.NewTimer(bo.next())
			}
		}
		select {
		case <-changed:
		case <-sessChanged:
		case <-timerC(retry):
		case <-e.c.ctx.Done():
			return nil, e.c.endErr()
		}
		if retry != nil {
			retry.Stop()
		}
	}
}

func (e *ReconnectingEcho) isJoining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.joining
}

// rejoin opens a new member on the client's session, unless the member is
// no longer failed (another caller rejoined it first) or a rejoin is under
// way. failed is the member that ended, or nil for a rejoin after a
// reconnect. The handle's lock is not held while the stream opens, so Send
// and Recv never wait on the network for it. It returns the error of the
// open, if one failed; a permanent refusal also ends the member.
func (e *ReconnectingEcho) rejoin(ctx context.Context, failed *Echo) error {
	e.mu.Lock()
	if e.closed || e.err != nil || e.joining || (failed != nil && e.cur != failed) {
		e.mu.Unlock()
		return nil
	}
	sess, _ := e.c.current()
	if failed == nil && e.cur != nil && sess != nil && e.cur.st.sess == sess {
		e.mu.Unlock()
		return nil // already rejoined on this session
	}
	old := e.cur
	e.cur = nil
	e.joining = true
	e.mu.Unlock()

	if old != nil {
		old.Stream().Reset()
	}
	var (
		m   *Echo
		err error
	)
	if sess != nil {
		ctx, cancel := context.WithTimeout(ctx, e.c.o.DialTimeout)
		m, err = sess.Echo(ctx, e.ns) // a failure leaves it for the next try
		cancel()
	}

	e.mu.Lock()
	e.joining = false
	closed := e.closed
	if !closed {
		e.cur = m
		if perr := (*channel.Error)(nil); errors.As(err, &perr) && perr.Code.Permanent() {
			e.err = err
		}
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if closed && m != nil {
		m.Close()
	}
	return err
}

// Close leaves the namespace for good.
func (e *ReconnectingEcho) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	cur := e.cur
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	e.c.mu.Lock()
	delete(e.c.echoes, e)
	e.c.mu.Unlock()
	if cur != nil {
		return cur.Close()
	}
	return nil
}

// Replicate keeps m replicated with namespace across reconnects: after each
// one it replicates again, and the digests bring both sides up to date.
// With opts.Ephemeral the server deletes m's keys when a session ends; set
// them again after a reconnect (OnConnect) if they should live on.
func (c *Client) Replicate(ctx context.Context, namespace string, m *model.Model, opts ReplicateOptions) (*ReconnectingReplica, error) {
	sess, err := c.session()
	if err != nil {
		return nil, err
	}
	r, err := sess.Replicate(ctx, namespace, m, opts)
	if err != nil {
		return nil, err
	}
	cr := &ReconnectingReplica{c: c, ns: namespace, m: m, opts: opts, cur: r, done: make(chan struct{})}
	cr.ctx, cr.cancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.err != nil {
		r.Close()
		return nil, ErrClientClosed
	}
	c.replicas[cr] = struct{}{}
	c.wg.Add(1)
	go cr.run(r)
	return cr, nil
}

// ReconnectingReplica is a scuttlebutt replica that replicates again after each
// reconnect. It ends (Done, Err) when the server ends its replication while
// the session lives: with an error object (a key too long, say), or by
// resetting it (a reader too slow); Replicate again to go on. A new session
// that refuses it for good (forbidden) ends it too.
//
// It owns one goroutine, stopped by Close or the Client's end.
type ReconnectingReplica struct {
	c    *Client
	ns   string
	m    *model.Model
	opts ReplicateOptions
	done chan struct{} // closed when run returns

	ctx    context.Context // ends with Close or the Client
	cancel context.CancelFunc

	mu     sync.Mutex
	cur    *Replica
	closed bool
	err    error
}

// Model returns the local model.
func (r *ReconnectingReplica) Model() *model.Model { return r.m }

// Current returns the replication of the current session, or nil while
// reconnecting.
func (r *ReconnectingReplica) Current() *Replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Done is closed when the replica has ended: after Close, the Client's end,
// or a replication the server ended (Err).
func (r *ReconnectingReplica) Done() <-chan struct{} { return r.done }

// Err returns why the replica ended, once Done is closed: nil after Close;
// the *Error the server sent; a wrapped ErrStreamReset when the server reset
// the replication (a reader too slow) or ErrReplicaEnded when it ended it;
// the Client's end (ErrClientClosed, or its *CloseError).
func (r *ReconnectingReplica) Err() error {
	select {
	case <-r.done:
	default:
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run follows the replication of each session: when one ends with its
// session it replicates again on the next; when the server ends one while
// its session lives, the replica ends with the reason.
func (r *ReconnectingReplica) run(cur *Replica) {
	defer r.c.wg.Done()
	defer close(r.done)
	defer r.cancel()
	ctx := r.ctx
	bo := backoff{min: r.c.o.MinBackoff, max: r.c.o.MaxBackoff}
	for {
		select {
		case <-cur.Done():
		case <-ctx.Done():
			r.end(r.c.endErr())
			return
		}
		if r.Closed() {
			return
		}
		if err := cur.Err(); err != nil && !cur.st.sess.mux.Closed() {
			r.end(err) // the server ended it, not the session's end
			return
		}
		r.setCurrent(nil)
		for cur = nil; cur == nil; {
			sess, changed := r.c.current()
			if sess != nil {
				next, err := r.replicate(ctx, sess)
				var perr *channel.Error
				switch {
				case err == nil:
					if !r.setCurrent(next) {
						next.Close()
						return
					}
					cur = next
					bo.reset()
					continue
				case errors.As(err, &perr) && perr.Code.Permanent():
					r.end(err)
					return
				}
				changed = nil // refused for now: try again after a while
			}
			if changed == nil {
				if !sleep(ctx, bo.next()) {
					r.end(r.c.endErr())
					return
				}
				continue
			}
			select {
			case <-changed:
			case <-ctx.Done():
				r.end(r.c.endErr())
				return
			}
		}
	}
}

func (r *ReconnectingReplica) replicate(ctx context.Context, sess *Session) (*Replica, error) {
	ctx, cancel := context.WithTimeout(ctx, r.c.o.DialTimeout)
	defer cancel()
	return sess.Replicate(ctx, r.ns, r.m, r.opts)
}

func (r *ReconnectingReplica) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// setCurrent makes cur the current replication, unless the replica was
// closed meanwhile.
func (r *ReconnectingReplica) setCurrent(cur *Replica) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.cur = cur
	return true
}

// end records why the replica ended.
func (r *ReconnectingReplica) end(err error) {
	r.mu.Lock()
	if !r.closed {
		r.err = err
	}
	r.cur = nil
	r.mu.Unlock()
	r.c.mu.Lock()
	delete(r.c.replicas, r)
	r.c.mu.Unlock()
}

// Close stops replicating.
func (r *ReconnectingReplica) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	cur := r.cur
	r.cancel()
	r.mu.Unlock()
	r.c.mu.Lock()
	delete(r.c.replicas, r)
	r.c.mu.Unlock()
	if cur != nil {
		return cur.Close()
	}
	return nil
}
