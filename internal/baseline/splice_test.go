package baseline_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/internal/baseline"
)

func newSplice(t *testing.T, cfg baseline.SpliceConfig) (*baseline.Splice, string) {
	t.Helper()
	s := baseline.NewSplice(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, baseline.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func pair(t *testing.T, addr, token string) (a, b *net.TCPConn) {
	t.Helper()
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { a, errA = baseline.DialSplice(ctx(t), nil, addr, token) })
	wg.Go(func() { b, errB = baseline.DialSplice(ctx(t), nil, addr, token) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("pair: %v, %v", errA, errB)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Two connections with one token are paired: bytes flow both ways,
// unchanged, and a half-close reaches the other side.
func TestSplicePairsAndCopies(t *testing.T) {
	s, addr := newSplice(t, baseline.SpliceConfig{})
	a, b := pair(t, addr, "tok")
	if s.Pairs() != 1 {
		t.Fatalf("%d pairs, want 1", s.Pairs())
	}
	payload := bytes.Repeat([]byte("0123456789"), 100_000)
	var wg sync.WaitGroup
	wg.Go(func() {
		a.Write(payload)
		a.CloseWrite()
	})
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("b read %d bytes, %v", len(got), err)
	}
	wg.Wait()
	// The other direction still flows after the half-close.
	b.Write([]byte("back"))
	b.CloseWrite()
	back, err := io.ReadAll(a)
	if err != nil || string(back) != "back" {
		t.Fatalf("a read %q, %v", back, err)
	}
	waitFor(t, func() bool { return s.Pairs() == 0 })
}

// Different tokens do not meet; a lone connection gives up at the pairing
// timeout.
func TestSpliceTimeout(t *testing.T) {
	_, addr := newSplice(t, baseline.SpliceConfig{PairTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := baseline.DialSplice(ctx(t), nil, addr, "alone")
	if !errors.Is(err, baseline.ErrNoPartner) {
		t.Fatalf("lone connection: %v, want ErrNoPartner", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %s", d)
	}
}

// A token line that is too long closes the connection.
func TestSpliceBadToken(t *testing.T) {
	_, addr := newSplice(t, baseline.SpliceConfig{MaxTokenBytes: 8})
	_, err := baseline.DialSplice(ctx(t), nil, addr, strings.Repeat("x", 9))
	if err == nil {
		t.Fatal("a long token was paired")
	}
}

// Close resets open pairs and stops Serve.
func TestSpliceClose(t *testing.T) {
	s, addr := newSplice(t, baseline.SpliceConfig{})
	a, _ := pair(t, addr, "tok")
	s.Close()
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
}
