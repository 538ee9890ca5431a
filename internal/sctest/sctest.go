// Package sctest runs real signalchannel servers on 127.0.0.1 for tests, and
// holds the helpers tests share: dialing, polling with a deadline, and
// checking protocol error codes.
package sctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
)

// Server is a real server on 127.0.0.1, built as the binary builds it
// (signalchannel.New): the echo, scuttlebutt and relay endpoints.
type Server struct {
	*server.Handler
	// Server is the assembled server.
	Server *signalchannel.Server
	// URL is the channel's ws:// address.
	URL string
	// HTTPURL is the server's http:// base address.
	HTTPURL string
	// Echo is the echo endpoint.
	Echo *endpoints.Echo
}

// Options configure NewServer.
type Options struct {
	Channel server.Config
	// Echo configures the echo endpoint. Its publish budget is off unless
	// PublishRate is set: most tests write far faster than a budget meant
	// for signalling allows.
	Echo endpoints.EchoConfig
	// Register adds more endpoints before the server starts, or replaces
	// the built-in ones.
	Register func(*server.Handler)
	// ReadHeaderTimeout bounds the HTTP request line and headers, as the
	// server binary does; 0 leaves it unbounded.
	ReadHeaderTimeout time.Duration
}

// QuietLogger discards everything.
func QuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// NewServer starts a server that is shut down when the test ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Channel.Logger == nil {
		o.Channel.Logger = QuietLogger()
	}
	if o.Echo.PublishRate == 0 {
		o.Echo.PublishRate = -1
	}
	sc, err := signalchannel.New(signalchannel.Config{Channel: o.Channel, Echo: o.Echo, Logger: o.Channel.Logger})
	if err != nil {
		t.Fatal(err)
	}
	h := sc.Handler()
	s := &Server{Handler: h, Server: sc, Echo: sc.Echo()}
	if o.Register != nil {
		o.Register(h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = o.ReadHeaderTimeout
	srv.Start()
	s.HTTPURL = srv.URL
	s.URL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/channel"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sc.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return s
}

// Dial connects a client session that is closed when the test ends.
func Dial(t testing.TB, url string) *client.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Dial(ctx, url, client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Ctx returns a context that ends with the test, or after 30 s.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond until it returns nil, failing the test if the timeout
// passes first.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WantCode checks that err is a protocol *channel.Error with code and a
// message.
func WantCode(t testing.TB, err error, code channel.Code) *channel.Error {
	t.Helper()
	var perr *channel.Error
	if !errors.As(err, &perr) {
		t.Fatalf("want protocol error %q, got %v", code, err)
	}
	if perr.Code != code {
		t.Fatalf("want code %q, got %q (%s)", code, perr.Code, perr.Message)
	}
	if perr.Message == "" {
		t.Fatalf("error %q has no message", code)
	}
	return perr
}

// EchoRoundTrip proves a session still serves: it joins a fresh echo
// namespace, sends a frame and receives it.
func EchoRoundTrip(t testing.TB, s *client.Session) {
	t.Helper()
	e, err := s.Echo(Ctx(t), fmt.Sprintf("roundtrip-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	defer e.Close()
	if err := e.Send([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got, err := e.Recv()
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo round trip: %q, %v", got, err)
	}
}

// DeadlineReader is a stream whose reads can be bounded.
type DeadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// ReadTimeout bounds the reads of ExpectRead and ExpectEOF, so that a
// failure ends the test instead of hanging it.
const ReadTimeout = 10 * time.Second

// ExpectRead reads len(want) bytes from r and compares them.
func ExpectRead(t testing.TB, r DeadlineReader, want string) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(ReadTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// ExpectEOF checks that the peer half-closed r.
func ExpectEOF(t testing.TB, r DeadlineReader) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(ReadTimeout))
	n, err := r.Read(make([]byte, 1))
	if n != 0 || err != io.EOF {
		t.Fatalf("want EOF, got %d bytes, %v", n, err)
	}
}
