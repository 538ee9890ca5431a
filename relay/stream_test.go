package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/relay"
)

// tcpStream is a relay.Stream over the server end of a loopback TCP
// connection, a real half-closable byte stream: CloseWrite sends a FIN,
// Reset an RST (SetLinger(0), then Close). Done is closed by Reset, by a
// Read that sees the peer's reset, and by endSession, which mimics a yamux
// session ending: Done fires and Read returns io.EOF.
type tcpStream struct {
	c    *net.TCPConn
	done chan struct{}
	once sync.Once
}

var _ relay.Stream = (*tcpStream)(nil)

func (s *tcpStream) Read(p []byte) (int, error) {
	n, err := s.c.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, os.ErrDeadlineExceeded) {
		s.markDone()
	}
	return n, err
}

func (s *tcpStream) Write(p []byte) (int, error)        { return s.c.Write(p) }
func (s *tcpStream) CloseWrite() error                  { return s.c.CloseWrite() }
func (s *tcpStream) Done() <-chan struct{}              { return s.done }
func (s *tcpStream) PeerClosed() bool                   { return false } // TCP cannot tell
func (s *tcpStream) SetReadDeadline(t time.Time) error  { return s.c.SetReadDeadline(t) }
func (s *tcpStream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }

func (s *tcpStream) Reset() error {
	s.markDone()
	_ = s.c.SetLinger(0)
	return s.c.Close()
}

// endSession is what the server sees when the client's session ends: Done
// fires, then reads return io.EOF and writes fail.
func (s *tcpStream) endSession() {
	s.markDone()
	_ = s.c.CloseRead()
	_ = s.c.CloseWrite()
}

// Close closes the connection, as an endpoint closes its stream after Run.
func (s *tcpStream) Close() error { return s.c.Close() }

func (s *tcpStream) markDone() { s.once.Do(func() { close(s.done) }) }

// loopback returns both ends of a new loopback TCP connection: the
// client's, and the server's as a Stream.
func loopback() (*net.TCPConn, *tcpStream, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	client, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, nil, err
	}
	srv, err := ln.AcceptTCP()
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, &tcpStream{c: srv, done: make(chan struct{})}, nil
}

// tcpPair is loopback for a test; both ends are closed at cleanup.
func tcpPair(t testing.TB) (*net.TCPConn, *tcpStream) {
	t.Helper()
	client, srv, err := loopback()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		srv.Close()
	})
	return client, srv
}

// openLine is what the test endpoint writes as its open reply.
const openLine = "open\n"

// side is one relay stream served as the endpoint serves it: Pair, the
// open reply, Run, on a goroutine of its own.
type side struct {
	key    relay.Key
	client *net.TCPConn
	srv    *tcpStream
	linked chan struct{} // closed once paired; then l is set
	l      *relay.Link
	paired chan error // Pair's error
	ran    chan error // Run's error
	exited chan struct{}
}

type serveOpt struct {
	ctx  context.Context
	gate <-chan struct{} // closed to let the side write its open reply
}

func serve(t testing.TB, p *relay.Pairer, key relay.Key) *side {
	return serveWith(t, p, key, serveOpt{})
}

func serveWith(t testing.TB, p *relay.Pairer, key relay.Key, o serveOpt) *side {
	t.Helper()
	client, srv := tcpPair(t)
	s := &side{
		key:    key,
		client: client,
		srv:    srv,
		linked: make(chan struct{}),
		paired: make(chan error, 1),
		ran:    make(chan error, 1),
		exited: make(chan struct{}),
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		defer close(s.exited)
		link, err := p.Pair(ctx, key, srv)
		s.paired <- err
		if err != nil {
			return
		}
		s.l = link
		close(s.linked)
		if o.gate != nil {
			<-o.gate
		}
		if _, err := srv.Write([]byte(openLine)); err != nil {
			link.Reset()
			s.ran <- err
			return
		}
		s.ran <- link.Run(ctx, srv)
	}()
	t.Cleanup(func() {
		srv.Reset()
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%v: endpoint goroutine did not return", key)
		}
	})
	return s
}

// pairErr waits for Pair's result.
func (s *side) pairErr(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.paired:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%v: Pair did not return", s.key)
		return nil
	}
}

// runErr waits for Run's result.
func (s *side) runErr(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.ran:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%v: Run did not return", s.key)
		return nil
	}
}

// getLink waits for the side's Link.
func (s *side) getLink(t testing.TB) *relay.Link {
	t.Helper()
	select {
	case <-s.linked:
		return s.l
	case <-time.After(10 * time.Second):
		t.Fatalf("%v: no link", s.key)
		return nil
	}
}

// expectOpen reads the open reply on the client end.
func (s *side) expectOpen(t testing.TB) {
	t.Helper()
	expectRead(t, s.client, openLine)
}

// expectRead reads len(want) bytes from c and compares them.
func expectRead(t testing.TB, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectEOF reads c to its end, which must be a clean EOF after want.
func expectEOF(t testing.TB, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("want EOF after %q, got %q and %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q before EOF, want %q", got, want)
	}
}

// expectReset reads c until it fails and checks that it failed by a reset,
// not a clean EOF. It returns how many bytes came first.
func expectReset(t testing.TB, c net.Conn) int64 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err == nil {
		t.Fatalf("got EOF after %d bytes, want a reset", n)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("no reset after %d bytes", n)
	}
	return n
}

// expectWriteFails writes to c until a write fails, as it does once the
// server reset the connection.
func expectWriteFails(t testing.TB, c net.Conn) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if _, err := c.Write([]byte{0}); err == nil {
			return errors.New("writes still succeed")
		}
		return nil
	})
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waiting waits until the Pairer has n streams waiting.
func waiting(t testing.TB, p *relay.Pairer, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if got := p.Stats().Waiting; got != n {
			return fmt.Errorf("%d streams waiting, want %d", got, n)
		}
		return nil
	})
}

func newPairer(t testing.TB, cfg relay.Config) *relay.Pairer {
	t.Helper()
	p, err := relay.NewPairer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// keys returns the two keys of a pair in namespace ns.
func keys(ns string) (relay.Key, relay.Key) {
	a := relay.Key{Namespace: ns, Local: "A", Remote: "B"}
	return a, a.Mirror()
}

// openPair serves both keys, the first one waiting first, and reads both
// open replies.
func openPair(t testing.TB, p *relay.Pairer, ns string) (*side, *side) {
	t.Helper()
	ka, kb := keys(ns)
	a := serve(t, p, ka)
	waitFor(t, 10*time.Second, func() error {
		if p.Stats().Waiting == 0 {
			return errors.New("first stream not waiting")
		}
		return nil
	})
	b := serve(t, p, kb)
	for _, s := range []*side{a, b} {
		if err := s.pairErr(t); err != nil {
			t.Fatalf("Pair %v: %v", s.key, err)
		}
		s.expectOpen(t)
	}
	return a, b
}

// closeBoth half-closes both clients and checks a clean end.
func closeBoth(t testing.TB, a, b *side) {
	t.Helper()
	a.client.CloseWrite()
	b.client.CloseWrite()
	expectEOF(t, a.client, "")
	expectEOF(t, b.client, "")
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); err != nil {
			t.Errorf("Run %v: %v", s.key, err)
		}
	}
}
