package channel_test

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

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/endpoints"
)

// testServer is a real server on 127.0.0.1 with the echo endpoint.
type testServer struct {
	*channel.Handler
	URL string // ws://127.0.0.1:port/v1/channel
	srv *httptest.Server
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestServer(t testing.TB, cfg channel.Config, register ...func(*channel.Handler)) *testServer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	h, err := channel.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{Logger: cfg.Logger}))
	for _, r := range register {
		r(h)
	}
	srv := httptest.NewServer(h)
	ts := &testServer{Handler: h, URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/channel", srv: srv}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return ts
}

func dial(t testing.TB, url string) *channel.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := channel.Dial(ctx, url, channel.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
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

// wantCode checks that err is a protocol *Error with the code.
func wantCode(t testing.TB, err error, code channel.Code) *channel.Error {
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

// echoRoundTrip proves the session still works: join a namespace, send a
// frame, receive it.
func echoRoundTrip(t testing.TB, s *channel.Session) {
	t.Helper()
	e, err := s.Echo(ctxT(t), fmt.Sprintf("roundtrip-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("echo after error: %v", err)
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
