package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/relay"
)

// A RelayConn is a net.Conn that can also half-close.
var _ interface {
	net.Conn
	CloseWrite() error
} = (*client.RelayConn)(nil)

func newRelayTestServer(t testing.TB, cfg endpoints.RelayConfig) (*sctest.Server, *endpoints.Relay) {
	t.Helper()
	cfg.Logger = sctest.QuietLogger()
	r, err := endpoints.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return newTestServer(t, server.Config{}, func(h *server.Handler) { h.Handle(channel.EndpointRelay, r) }), r
}

func TestRelayClient(t *testing.T) {
	ts, _ := newRelayTestServer(t, endpoints.RelayConfig{
		Limits: relay.Limits{Bytes: 1 << 20, Lifetime: time.Hour},
	})
	sa, sb := dial(t, ts.URL), dial(t, ts.URL)
	type result struct {
		c   *client.RelayConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := sa.Relay(ctxT(t), "calls", "alice", "bob")
		ch <- result{c, err}
	}()
	b, err := sb.Relay(ctxT(t), "calls", "bob", "alice")
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	a := r.c
	for _, c := range []*client.RelayConn{a, b} {
		if got := c.Limit(); got != (channel.RelayLimit{Bytes: 1 << 20, Seconds: 3600}) {
			t.Fatalf("limit %+v", got)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}

	var conn net.Conn = a
	if _, err := io.WriteString(conn, "offer"); err != nil {
		t.Fatal(err)
	}
	a.CloseWrite()
	if got, err := readAll(b); err != nil || got != "offer" {
		t.Fatalf("b read %q, %v", got, err)
	}
	io.WriteString(b, "answer")
	b.Close()
	if got, err := readAll(a); err != nil || got != "answer" {
		t.Fatalf("a read %q, %v", got, err)
	}
	a.Close()
}

func TestRelayClientErrors(t *testing.T) {
	ts, r := newRelayTestServer(t, endpoints.RelayConfig{PairTimeout: 100 * time.Millisecond})
	s := dial(t, ts.URL)
	for _, tc := range []struct {
		name, local, remote string
		code                channel.Code
	}{
		{"equal tokens", "A", "A", channel.CodeBadToken},
		{"empty local", "", "B", channel.CodeBadToken},
		{"empty remote", "A", "", channel.CodeBadToken},
		{"long token", strings.Repeat("x", channel.MaxTokenBytes+1), "B", channel.CodeBadToken},
		{"control character", "A\x01", "B", channel.CodeBadToken},
		{"no partner", "A", "B", channel.CodeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Relay(ctxT(t), "ns", tc.local, tc.remote)
			wantCode(t, err, tc.code)
		})
	}
	_, err := s.Relay(ctxT(t), "", "A", "B")
	wantCode(t, err, channel.CodeBadNamespace)

	// A context that ends while waiting resets the stream; the server
	// forgets it at once.
	ctx, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Relay(ctx, "ns", "C", "D"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	waitFor(t, 5*time.Second, func() error {
		if st := r.Stats(); st.Waiting != 0 {
			return errorf("still waiting: %+v", st)
		}
		return nil
	})
	echoRoundTrip(t, s)
}

// A success reply without "open" is not a relay pair.
func TestRelayClientBadReply(t *testing.T) {
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) {
		h.Handle(channel.EndpointRelay, server.EndpointFunc(func(ctx context.Context, s *server.Stream, req *server.Request) {
			s.Accept(nil)
		}))
	})
	_, err := dial(t, ts.URL).Relay(ctxT(t), "ns", "A", "B")
	if !errors.Is(err, channel.ErrBadReply) {
		t.Fatalf("got %v, want ErrBadReply", err)
	}
}
