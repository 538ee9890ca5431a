package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/baseline"
)

// dialers spread client connections over source addresses: connection i
// leaves from source i mod len(sources).
type dialers struct {
	ips []net.IP
	ws  []*websocket.Dialer
	tcp []*net.Dialer
}

// wsWriteBuffers is shared by every client dialer: like channel's own
// dialer, a whole yamux frame fits one buffer, and an idle session holds
// none.
var wsWriteBuffers = &sync.Pool{}

// newDialers returns dialers for a server at addr (HOST:PORT, loopback),
// leaving from n source addresses starting offset addresses up.
func newDialers(addr string, n, offset int) (*dialers, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := checkLoopbackHost(host)
	if err != nil {
		return nil, err
	}
	d := &dialers{ips: sourceIPs(ip, n, offset)}
	if len(d.ips) == 0 {
		d.ips = []net.IP{nil}
	}
	for _, src := range d.ips {
		nd := &net.Dialer{Timeout: 30 * time.Second}
		if src != nil {
			nd.LocalAddr = &net.TCPAddr{IP: src}
		}
		d.tcp = append(d.tcp, nd)
		d.ws = append(d.ws, &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: 30 * time.Second,
			WriteBufferSize:  12 + 256<<10 + 16,
			WriteBufferPool:  wsWriteBuffers,
		})
	}
	return d, nil
}

func (d *dialers) wsDialer(i int) *websocket.Dialer { return d.ws[i%len(d.ws)] }
func (d *dialers) tcpDialer(i int) *net.Dialer      { return d.tcp[i%len(d.tcp)] }
func (d *dialers) count() int                       { return len(d.ips) }

// dialSession opens signalchannel session i.
func (d *dialers) dialSession(ctx context.Context, wsURL string, i int) (*client.Session, error) {
	return client.Dial(ctx, wsURL, client.DialOptions{Dialer: d.wsDialer(i)})
}

// dialBroadcast joins the broadcast baseline as client i.
func (d *dialers) dialBroadcast(ctx context.Context, wsURL string, i int) (*baseline.BroadcastClient, error) {
	return baseline.DialBroadcast(ctx, wsURL, d.wsDialer(i))
}

// errTally counts errors by kind, keeping the first message of each.
type errTally struct {
	mu     sync.Mutex
	counts map[string]int
	first  map[string]string
	n      atomic.Int64
}

var digits = regexp.MustCompile(`[0-9]+`)

// errKind names what went wrong, so that errors of one cause count together.
func errKind(err error, sess *client.Session) string {
	var perr *channel.Error
	switch {
	case errors.As(err, &perr):
		return "stream refused: " + string(perr.Code)
	case sess != nil && closeCode(sess) != 0:
		code, reason := sess.CloseReason()
		return fmt.Sprintf("session closed by the server: %d %s", code, digits.ReplaceAllString(reason, "N"))
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "out of file descriptors in the client (EMFILE)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no local port free (EADDRNOTAVAIL): use more -sources"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, channel.ErrStreamReset):
		return "stream reset"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	s := digits.ReplaceAllString(err.Error(), "N")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func closeCode(s *client.Session) int {
	code, _ := s.CloseReason()
	return code
}

// add counts err; sess, if not nil, is the session it happened on.
func (t *errTally) add(err error, sess *client.Session) {
	if err == nil {
		return
	}
	kind := errKind(err, sess)
	t.n.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts, t.first = map[string]int{}, map[string]string{}
	}
	if t.counts[kind] == 0 {
		t.first[kind] = err.Error()
	}
	t.counts[kind]++
}

// total returns how many errors were counted.
func (t *errTally) total() int { return int(t.n.Load()) }

// summary lists the kinds, most frequent first.
func (t *errTally) summary() []errCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]errCount, 0, len(t.counts))
	for k, n := range t.counts {
		out = append(out, errCount{Kind: k, Count: n, First: t.first[k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// merge adds counts from another process.
func (t *errTally) merge(cs []errCount) {
	for _, c := range cs {
		t.n.Add(int64(c.Count))
		t.mu.Lock()
		if t.counts == nil {
			t.counts, t.first = map[string]int{}, map[string]string{}
		}
		if t.counts[c.Kind] == 0 {
			t.first[c.Kind] = c.First
		}
		t.counts[c.Kind] += c.Count
		t.mu.Unlock()
	}
}

type errCount struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
	First string `json:"first"`
}

// noteErrors adds a note per kind of error to r.
func (r *report) noteErrors(what string, t *errTally) {
	for _, c := range t.summary() {
		r.note("%s: %d × %s (first: %s)", what, c.Count, c.Kind, c.First)
	}
}

// forEach runs fn(i) for i in [0, n) on conc goroutines, until done or ctx
// ends.
func forEach(ctx context.Context, n, conc int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// sessionPool is a set of signalchannel client sessions.
type sessionPool struct {
	mu       sync.Mutex
	sessions []*client.Session
}

func (p *sessionPool) add(s *client.Session) {
	p.mu.Lock()
	p.sessions = append(p.sessions, s)
	p.mu.Unlock()
}

// closeAll closes every session, conc at a time.
func (p *sessionPool) closeAll(conc int) {
	p.mu.Lock()
	ss := p.sessions
	p.sessions = nil
	p.mu.Unlock()
	forEach(context.Background(), len(ss), conc, func(i int) { ss[i].Close() })
}

// lost counts the sessions that have ended.
func (p *sessionPool) lost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sessions {
		select {
		case <-s.Done():
			n++
		default:
		}
	}
	return n
}

// trimErr shortens an error for one line.
func trimErr(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
