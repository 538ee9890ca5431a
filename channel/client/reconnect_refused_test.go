package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

// A Client whose token expires, with no way to get another, reports the
// 4401 and stops: it does not dial again.
func TestClientStopsOnExpiredToken(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	c, dials := connectCounting(t, ts.URL, client.ReconnectOptions{
		Dial:       client.DialOptions{Token: sctest.Mint(t, sctest.TestSecret, 1500*time.Millisecond, "echo:*")},
		MinBackoff: time.Millisecond,
	})
	room, err := c.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the client is still running after its token expired")
	}
	var ce *channel.CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != channel.CloseUnauthorized || ce.Reason != "token expired" {
		t.Fatalf("Err %v, want the 4401 token expired", err)
	}
	if _, err := room.Recv(); !errors.As(err, &ce) {
		t.Fatalf("Recv after the end: %v, want the 4401", err)
	}
	if err := room.Send([]byte("x")); !errors.As(err, &ce) {
		t.Fatalf("Send after the end: %v, want the 4401", err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := ts.Stats().Closes[channel.CloseUnauthorized]; n != 1 {
			return errorf("server closed %d sessions with 4401, want 1", n)
		}
		return nil
	})
}

// A server that upgrades and then refuses (an expired token from the token
// callback, a sessions limit) is dialled with backoff, at most 10 times in
// 10 s, by a Client that reconnects as by one that has not connected yet,
// and the client recovers once the server accepts it again.
func TestClientBacksOffWhenRefused(t *testing.T) {
	const window = 10 * time.Second
	t.Run("expired token", func(t *testing.T) {
		t.Parallel()
		ts := sctest.NewAuthServer(t)
		var good atomic.Bool
		tokens := func(context.Context) (string, error) {
			if good.Load() {
				return sctest.Mint(t, sctest.TestSecret, time.Hour, "echo:*"), nil
			}
			return sctest.Mint(t, sctest.TestSecret, -time.Minute, "echo:*"), nil
		}
		c := reconnectAfter(t, ts.URL, client.ReconnectOptions{TokenFunc: tokens}, window,
			func() int64 { return ts.Stats().Closes[channel.CloseUnauthorized] }, func() { good.Store(true) })
		waitEcho(t, c)
	})
	t.Run("sessions limit", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, server.Config{MaxSessionsPerIP: 1})
		holder := dial(t, ts.URL)
		c := reconnectAfter(t, ts.URL, client.ReconnectOptions{}, window,
			func() int64 { return ts.Stats().Closes[channel.CloseLimit] }, func() { holder.Close() })
		waitEcho(t, c)
	})
	t.Run("token expires in session", func(t *testing.T) {
		t.Parallel()
		ts := sctest.NewAuthServer(t)
		var calls atomic.Int32
		var good atomic.Bool
		tokens := func(context.Context) (string, error) {
			switch {
			case calls.Add(1) == 1:
				return sctest.Mint(t, sctest.TestSecret, 2*time.Second, "echo:*"), nil
			case good.Load():
				return sctest.Mint(t, sctest.TestSecret, time.Hour, "echo:*"), nil
			}
			return sctest.Mint(t, sctest.TestSecret, -time.Minute, "echo:*"), nil
		}
		c, dials := connectCounting(t, ts.URL, client.ReconnectOptions{TokenFunc: tokens})
		// The refreshes fail, the token expires, and the redials are
		// refused with backoff.
		waitFor(t, 30*time.Second, func() error {
			if n := ts.Stats().Closes[channel.CloseUnauthorized]; n < 2 {
				return errorf("%d sessions closed with 4401", n)
			}
			return nil
		})
		checkRefusals(t, window, func() int64 { return ts.Stats().Closes[channel.CloseUnauthorized] })
		if err := c.Err(); err != nil {
			t.Fatalf("the client ended: %v", err)
		}
		good.Store(true)
		waitEcho(t, c)
		if n := dials.Load(); n != 2 {
			t.Fatalf("%d sessions opened, want 2", n)
		}
	})
}

// reconnectAfter starts Reconnect against a server that refuses it, checks
// the refusals over window (checkRefusals), then calls accept and returns
// the Client once Reconnect has returned it.
func reconnectAfter(t *testing.T, url string, o client.ReconnectOptions, window time.Duration, refusals func() int64, accept func()) *client.Client {
	t.Helper()
	o.URLs = []string{url}
	type result struct {
		c   *client.Client
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := client.Reconnect(ctxT(t), o)
		got <- result{c, err}
	}()
	checkRefusals(t, window, refusals)
	select {
	case r := <-got:
		t.Fatalf("Reconnect returned while refused: %v", r.err)
	default:
	}
	accept()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// connectCounting connects a Client to url and counts its dials.
func connectCounting(t *testing.T, url string, o client.ReconnectOptions) (*client.Client, *atomic.Int64) {
	t.Helper()
	dials := new(atomic.Int64)
	o.URLs = []string{url}
	o.OnConnect = func(string) { dials.Add(1) }
	c, err := client.Reconnect(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dials
}

// checkRefusals watches a refused client for window: the server must
// refuse it again and again, at most 10 times (the client backs off).
func checkRefusals(t *testing.T, window time.Duration, refusals func() int64) {
	t.Helper()
	before := refusals()
	time.Sleep(window) // the window is what is measured
	n := refusals() - before
	if n > 10 || n < 2 {
		t.Fatalf("%d refusals in %v, want 2 to 10", n, window)
	}
	t.Logf("%d refusals in %v", n, window)
}

// waitEcho waits until the client holds a session that serves an echo
// member: after the backoff of a refused client, the next dial succeeds.
func waitEcho(t *testing.T, c *client.Client) {
	t.Helper()
	sctest.WaitFor(t, 30*time.Second, func() error {
		room, err := c.Echo(ctxT(t), "room")
		if err != nil {
			return err
		}
		defer room.Close()
		if err := room.Send([]byte("back")); err != nil {
			return err
		}
		_, err = room.Recv()
		return err
	})
}

// A server going away (1001) sends the client to the next URL at once,
// whatever the backoff.
func TestClientMovesOnAtShutdown(t *testing.T) {
	a, b := newTestServer(t, server.Config{}), newTestServer(t, server.Config{})
	var mu sync.Mutex
	var urls []string
	c, err := client.Reconnect(ctxT(t), client.ReconnectOptions{
		URLs:       []string{a.URL, b.URL},
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
		OnConnect: func(url string) { mu.Lock(); urls = append(urls, url); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.Shutdown(ctx)
	cancel()
	sctest.WaitFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(urls) != 2 || urls[1] != b.URL {
			return errorf("connected to %q", urls)
		}
		return nil
	})
}

// An echo member whose rejoin the new session refuses for good (its token
// no longer allows the namespace) ends with that error.
func TestClientEchoEndsOnPermanentRefusal(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	var calls atomic.Int32
	tokens := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return sctest.Mint(t, sctest.TestSecret, 2*time.Second, "echo:room"), nil
		}
		// The session's refresh (another sub: the server closes it with
		// 4401) and the next session's token.
		return mintFor(t, "bob", time.Hour, "echo:other"), nil
	}
	c, _ := connectCounting(t, ts.URL, client.ReconnectOptions{TokenFunc: tokens, MinBackoff: 10 * time.Millisecond})
	room, err := c.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		for {
			if _, err := room.Recv(); err != nil {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if !errors.Is(err, &channel.Error{Code: channel.CodeForbidden}) {
			t.Fatalf("Recv: %v, want forbidden", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Recv still waiting after a permanent refusal")
	}
	if err := room.Send([]byte("x")); !errors.Is(err, &channel.Error{Code: channel.CodeForbidden}) {
		t.Fatalf("Send: %v, want forbidden", err)
	}
}

// A replica the server ends while the session lives (a key over the limit)
// is reported: Done closes, Err carries the server's error.
func TestClientReplicaReportsServerEnd(t *testing.T) {
	ts := newPresenceServer(t)
	c, _ := connectCounting(t, ts.URL, client.ReconnectOptions{})
	// The local model takes longer keys than the server does.
	m := model.New(model.Options{ID: "client", MaxKeyBytes: 1024})
	defer m.Close()
	r, err := c.Replicate(ctxT(t), "presence", m, client.ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Set(strings.Repeat("k", 300), "too long a key"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("replica still running after the server ended it")
	}
	if err := r.Err(); !errors.Is(err, &channel.Error{Code: channel.CodeLimit}) {
		t.Fatalf("Err %v, want limit", err)
	}
	if c.Session() == nil {
		t.Fatal("the session ended too")
	}
}
