package channel

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// ErrDisconnected is returned by a Client's handles while no session is
// open; the Client is dialing again.
var ErrDisconnected = errors.New("channel: disconnected, reconnecting")

// ErrClientClosed is returned once Client.Close was called.
var ErrClientClosed = errors.New("channel: client closed")

// ReconnectOptions configure Connect.
type ReconnectOptions struct {
	// URLs are the channel URLs of the servers, tried in turn: one for a
	// single server, several for servers joined in a cluster. Required.
	URLs []string
	// Dial configures each connection.
	Dial DialOptions
	// MinBackoff and MaxBackoff bound the wait between two attempts, which
	// doubles from MinBackoff up to MaxBackoff, with jitter. Defaults 100ms
	// and 5s.
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
// The Client owns one goroutine, which Close stops.
type Client struct {
	o      ReconnectOptions
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sess     *Session
	changed  chan struct{} // closed and replaced when sess changes
	next     int           // next URL to try
	echoes   map[*ClientEcho]struct{}
	replicas map[*ClientReplica]struct{}
	closed   bool
}

// Connect dials the first server that answers and returns the Client. It
// blocks until one session is open or ctx ends.
func Connect(ctx context.Context, o ReconnectOptions) (*Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("channel: Connect needs at least one URL")
	}
	setDefault(&o.MinBackoff, 100*time.Millisecond)
	setDefault(&o.MaxBackoff, 5*time.Second)
	setDefault(&o.DialTimeout, 10*time.Second)
	c := &Client{
		o:        o,
		changed:  make(chan struct{}),
		echoes:   map[*ClientEcho]struct{}{},
		replicas: map[*ClientReplica]struct{}{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	sess, url, err := c.dial(ctx)
	if err != nil {
		c.cancel()
		return nil, err
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

// Close ends the session and stops reconnecting; every handle's calls then
// return ErrClientClosed (Recv after its own Close returns io.EOF).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
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
		s, err := Dial(dctx, url, c.o.Dial)
		cancel()
		if err == nil {
			return s, url, nil
		}
		errs = append(errs, err)
		c.mu.Lock()
		c.next++
		c.mu.Unlock()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// run waits for the session to end, dials again and rejoins.
func (c *Client) run() {
	defer c.wg.Done()
	ctx := c.ctx
	for {
		sess, _ := c.current()
		select {
		case <-sess.Done():
		case <-ctx.Done():
			return
		}
		c.setSession(nil)
		if c.o.OnDisconnect != nil {
			code, reason := sess.CloseReason()
			c.o.OnDisconnect(code, reason)
		}
		backoff := c.o.MinBackoff
		for {
			s, url, err := c.dial(ctx)
			if err == nil {
				c.setSession(s)
				if c.o.OnConnect != nil {
					c.o.OnConnect(url)
				}
				break
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, c.o.MaxBackoff)
		}
		c.rejoin(ctx)
	}
}

// rejoin reopens every handle on the new session.
func (c *Client) rejoin(ctx context.Context) {
	c.mu.Lock()
	echoes := make([]*ClientEcho, 0, len(c.echoes))
	for e := range c.echoes {
		echoes = append(echoes, e)
	}
	replicas := make([]*ClientReplica, 0, len(c.replicas))
	for r := range c.replicas {
		replicas = append(replicas, r)
	}
	c.mu.Unlock()
	for _, e := range echoes {
		e.rejoin(ctx, nil)
	}
	for _, r := range replicas {
		r.rejoin(ctx)
	}
}

// Echo joins namespace and keeps it joined across reconnects.
func (c *Client) Echo(ctx context.Context, namespace string) (*ClientEcho, error) {
	sess, _ := c.current()
	if sess == nil {
		return nil, ErrDisconnected
	}
	m, err := sess.Echo(ctx, namespace)
	if err != nil {
		return nil, err
	}
	e := &ClientEcho{c: c, ns: namespace, cur: m, changed: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		m.Close()
		return nil, ErrClientClosed
	}
	c.echoes[e] = struct{}{}
	return e, nil
}

// ClientEcho is an echo member that rejoins its namespace after a reconnect,
// or after the server dropped it. Send and Recv may be called from two
// goroutines at once.
type ClientEcho struct {
	c  *Client
	ns string

	mu      sync.Mutex
	cur     *Echo         // nil while disconnected
	changed chan struct{} // closed and replaced when cur changes
	joining bool          // a rejoin is opening a stream
	closed  bool
}

// Namespace returns the namespace.
func (e *ClientEcho) Namespace() string { return e.ns }

func (e *ClientEcho) current() (*Echo, <-chan struct{}, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur, e.changed, e.closed
}

// Send writes one frame, or returns ErrDisconnected while reconnecting.
func (e *ClientEcho) Send(p []byte) error {
	cur, _, closed := e.current()
	switch {
	case closed:
		return ErrClientClosed
	case cur == nil:
		return ErrDisconnected
	}
	return cur.Send(p)
}

// Recv returns the next frame. Across a reconnect it waits for the member
// to rejoin; frames sent meanwhile are lost. It returns io.EOF after Close.
func (e *ClientEcho) Recv() ([]byte, error) {
	for {
		cur, changed, closed := e.current()
		if cur != nil {
			f, err := cur.Recv()
			if err == nil {
				return f, nil
			}
			if _, _, closed := e.current(); closed {
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
		sess, sessChanged := e.c.current()
		if sess != nil && !e.isJoining() {
			e.rejoin(context.Background(), nil)
			cur, now, _ := e.current()
			if cur != nil {
				continue
			}
			changed = now // refused: wait for the next session, not in a loop
		}
		select {
		case <-changed:
		case <-sessChanged:
		case <-e.c.ctx.Done():
			return nil, ErrClientClosed
		}
	}
}

func (e *ClientEcho) isJoining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.joining
}

// rejoin opens a new member on the client's session, unless the member is
// no longer failed (another caller rejoined it first) or a rejoin is under
// way. failed is the member that ended, or nil for a rejoin after a
// reconnect. The handle's lock is not held while the stream opens, so Send
// and Recv never wait on the network for it.
func (e *ClientEcho) rejoin(ctx context.Context, failed *Echo) {
	e.mu.Lock()
	if e.closed || e.joining || (failed != nil && e.cur != failed) {
		e.mu.Unlock()
		return
	}
	sess, _ := e.c.current()
	if failed == nil && e.cur != nil && sess != nil && e.cur.st.sess == sess {
		e.mu.Unlock()
		return // already rejoined on this session
	}
	old := e.cur
	e.cur = nil
	e.joining = true
	e.mu.Unlock()

	if old != nil {
		old.Stream().Reset()
	}
	var m *Echo
	if sess != nil {
		ctx, cancel := context.WithTimeout(ctx, e.c.o.DialTimeout)
		m, _ = sess.Echo(ctx, e.ns) // a failure leaves it for the next reconnect
		cancel()
	}

	e.mu.Lock()
	e.joining = false
	closed := e.closed
	if !closed {
		e.cur = m
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if closed && m != nil {
		m.Close()
	}
}

// Close leaves the namespace for good.
func (e *ClientEcho) Close() error {
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
func (c *Client) Replicate(ctx context.Context, namespace string, m *model.Model, opts ReplicateOptions) (*ClientReplica, error) {
	sess, _ := c.current()
	if sess == nil {
		return nil, ErrDisconnected
	}
	r, err := sess.Replicate(ctx, namespace, m, opts)
	if err != nil {
		return nil, err
	}
	cr := &ClientReplica{c: c, ns: namespace, m: m, opts: opts, cur: r}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		r.Close()
		return nil, ErrClientClosed
	}
	c.replicas[cr] = struct{}{}
	return cr, nil
}

// ClientReplica is a scuttlebutt replica that replicates again after each
// reconnect.
type ClientReplica struct {
	c    *Client
	ns   string
	m    *model.Model
	opts ReplicateOptions

	mu      sync.Mutex
	cur     *Replica
	joining bool // a rejoin is opening a stream
	closed  bool
}

// Model returns the local model.
func (r *ClientReplica) Model() *model.Model { return r.m }

// Current returns the replication of the current session, or nil while
// reconnecting.
func (r *ClientReplica) Current() *Replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *ClientReplica) rejoin(ctx context.Context) {
	r.mu.Lock()
	sess, _ := r.c.current()
	if r.closed || r.joining || (r.cur != nil && sess != nil && r.cur.st.sess == sess) {
		r.mu.Unlock()
		return // closed, under way, or already replicating on this session
	}
	old := r.cur
	r.cur = nil
	r.joining = true
	r.mu.Unlock()

	if old != nil {
		old.Close()
	}
	var cur *Replica
	if sess != nil {
		ctx, cancel := context.WithTimeout(ctx, r.c.o.DialTimeout)
		cur, _ = sess.Replicate(ctx, r.ns, r.m, r.opts) // a failure waits for the next reconnect
		cancel()
	}

	r.mu.Lock()
	r.joining = false
	closed := r.closed
	if !closed {
		r.cur = cur
	}
	r.mu.Unlock()
	if closed && cur != nil {
		cur.Close()
	}
}

// Close stops replicating.
func (r *ClientReplica) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	cur := r.cur
	r.mu.Unlock()
	r.c.mu.Lock()
	delete(r.c.replicas, r)
	r.c.mu.Unlock()
	if cur != nil {
		return cur.Close()
	}
	return nil
}
