package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
)

// A session that sends more malformed headers than its budget is closed
// with 4400; another session goes on, and the counters say what happened.
func TestHeaderErrorBudget(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxHeaderErrors: 3})
	other := dial(t, ts.URL)
	s := dial(t, ts.URL)
	for i := 0; i < 3; i++ {
		_, _, err := s.Open(ctxT(t), []byte(`{"endpoint":"echo"}`))
		wantCode(t, err, channel.CodeBadHeader)
	}
	// Refusals that are no header fault do not count.
	_, _, err := s.Open(ctxT(t), channel.Header{Endpoint: "echo", Namespace: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	s.Open(ctxT(t), []byte(`{"endpoint":"nope","namespace":"a"}`))
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session still open after the fourth malformed header")
	}
	waitFor(t, 5*time.Second, func() error {
		if code, reason := s.CloseReason(); code != channel.CloseProtocolError || !strings.Contains(reason, "3") {
			return errorf("close %d %q, want 4400 naming the budget", code, reason)
		}
		return nil
	})
	echoRoundTrip(t, other)
	waitFor(t, 5*time.Second, func() error {
		st := ts.Stats()
		if st.Rejected[channel.CodeBadHeader] != 3 || st.Rejected[channel.CodeUnknownEndpoint] != 1 || st.Closes[channel.CloseProtocolError] != 1 {
			return errorf("stats %+v", st)
		}
		return nil
	})
}

// Streams opened faster than the rate get `limit` naming it.
func TestStreamOpenRate(t *testing.T) {
	const rate = 5
	ts := newTestServer(t, server.Config{MaxStreamOpensPerSecond: rate})
	s := dial(t, ts.URL)
	refused := 0
	// 2*rate+1 opens in well under a second span at most two one-second
	// windows, so at least one window holds more than rate.
	for i := 0; i < 2*rate+1; i++ {
		st, _, err := s.Open(ctxT(t), channel.Header{Endpoint: "echo", Namespace: "r"})
		if err != nil {
			perr := wantCode(t, err, channel.CodeLimit)
			if perr.Message != "stream opens per second limit (5) reached" {
				t.Fatalf("message %q", perr.Message)
			}
			refused++
			continue
		}
		st.Close()
	}
	if refused == 0 {
		t.Fatal("no stream refused")
	}
}

// Sessions past the per-address or total cap are closed with 4429 naming
// the cap; one more fits once a session ends.
func TestSessionCaps(t *testing.T) {
	for name, cfg := range map[string]server.Config{
		"per address": {MaxSessionsPerIP: 2},
		"total":       {MaxSessions: 2},
	} {
		t.Run(name, func(t *testing.T) {
			ts := newTestServer(t, cfg)
			a := dial(t, ts.URL)
			dial(t, ts.URL)
			ws, _, err := websocket.DefaultDialer.Dial(ts.URL, http.Header{})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			code, reason := readClose(t, ws)
			if code != channel.CloseLimit || !strings.Contains(reason, "(2)") {
				t.Fatalf("close %d %q, want 4429 naming the cap", code, reason)
			}
			a.Close()
			waitFor(t, 5*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s, err := client.Dial(ctx, ts.URL, client.DialOptions{})
				if err != nil {
					return err
				}
				defer s.Close()
				_, err = s.Echo(ctx, "x")
				return err
			})
		})
	}
}

// Drain: no new sessions or streams, open streams go on until they finish,
// then Shutdown closes the sessions with 1001.
func TestDrain(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	s := dial(t, ts.URL)
	e, err := s.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- ts.Drain(ctx)
	}()
	waitFor(t, 5*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s2, err := client.Dial(ctx, ts.URL, client.DialOptions{}); err == nil {
			s2.Close()
			return errorf("new session accepted while draining")
		}
		return nil
	})
	waitFor(t, 5*time.Second, func() error {
		if st, _, err := s.Open(ctxT(t), channel.Header{Endpoint: "echo", Namespace: "late"}); err == nil {
			st.Close()
			return errorf("new stream accepted while draining")
		}
		return nil
	})
	if err := e.Send([]byte("still flowing")); err != nil {
		t.Fatal(err)
	}
	if f, err := e.Recv(); err != nil || string(f) != "still flowing" {
		t.Fatalf("%q %v", f, err)
	}
	select {
	case err := <-drained:
		t.Fatalf("drain ended with a stream open: %v", err)
	default:
	}
	e.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not end after the last stream")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.Shutdown(ctx)
	<-s.Done()
	if code, _ := s.CloseReason(); code != 1001 {
		t.Fatalf("close %d", code)
	}
}
