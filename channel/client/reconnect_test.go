package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

func newPresenceServer(t *testing.T) *sctest.Server {
	t.Helper()
	return sctest.NewServer(t, sctest.Options{Register: func(h *server.Handler) {
		sb, err := endpoints.NewScuttlebutt(endpoints.ScuttlebuttConfig{Logger: sctest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		h.Handle(channel.EndpointScuttlebutt, sb)
	}})
}

// When its server goes away, a Client dials the next one, rejoins its echo
// namespace and replicates its model again: both sides catch up.
func TestClientReconnects(t *testing.T) {
	a, b := newPresenceServer(t), newPresenceServer(t)
	var mu sync.Mutex
	var events []string
	c, err := client.Reconnect(ctxT(t), client.ReconnectOptions{
		URLs:       []string{a.URL, b.URL},
		MinBackoff: 10 * time.Millisecond,
		OnConnect:  func(url string) { mu.Lock(); events = append(events, "connect "+url); mu.Unlock() },
		OnDisconnect: func(code int, reason string) {
			mu.Lock()
			events = append(events, fmt.Sprint("disconnect ", code))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	room, err := c.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(model.Options{ID: "client"})
	defer m.Close()
	if _, err := c.Replicate(ctxT(t), "presence", m, client.ReplicateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.Set("client", json.RawMessage(`"here"`))

	// On b, a member of the same namespaces, with its own key.
	peer := sctest.Dial(t, b.URL)
	pm := model.New(model.Options{ID: "peer"})
	defer pm.Close()
	if _, err := peer.Replicate(ctxT(t), "presence", pm, client.ReplicateOptions{}); err != nil {
		t.Fatal(err)
	}
	pm.Set("peer", json.RawMessage(`"on b"`))
	pe, err := peer.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.Shutdown(ctx)
	cancel()

	// The peer keeps sending until the client, back on b, hears it.
	got := make(chan []byte, 1)
	go func() {
		f, err := room.Recv()
		if err == nil {
			got <- f
		}
	}()
	sctest.WaitFor(t, 10*time.Second, func() error {
		pe.Send([]byte("hello from b"))
		select {
		case f := <-got:
			if string(f) != "hello from b" {
				t.Fatalf("got %q", f)
			}
			return nil
		default:
			return fmt.Errorf("no frame yet")
		}
	})
	if err := room.Send([]byte("back")); err != nil {
		t.Fatal(err)
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if _, ok := m.Get("peer"); !ok {
			return fmt.Errorf("client model lacks the peer's key")
		}
		if _, ok := pm.Get("client"); !ok {
			return fmt.Errorf("peer model lacks the client's key")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{"connect " + a.URL, "disconnect 1001", "connect " + b.URL}
	if fmt.Sprint(events[:3]) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// A member the server drops (too slow) is rejoined on the same session.
func TestClientEchoRejoinsAfterDrop(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Echo: endpoints.EchoConfig{QueueBytes: 16 << 10}})
	c, err := client.Reconnect(ctxT(t), client.ReconnectOptions{URLs: []string{ts.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	room, err := c.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	sess := c.Session()
	w, err := sctest.Dial(t, ts.URL).Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	// room does not read: 1 MiB overflows its window (256 KiB) and queue.
	// The writer is a member too: it reads each frame back before the next.
	for range 1024 {
		if err := w.Send(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if ts.Echo.Counters().Dropped == 0 {
			return fmt.Errorf("not dropped yet")
		}
		return nil
	})
	got := make(chan error, 1)
	go func() {
		for {
			f, err := room.Recv()
			if err != nil {
				got <- err
				return
			}
			if string(f) == "after" {
				got <- nil
				return
			}
		}
	}()
	go func() { // from now on the writer's own frames are not checked
		for {
			if _, err := w.Recv(); err != nil {
				return
			}
		}
	}()
	sctest.WaitFor(t, 10*time.Second, func() error {
		w.Send([]byte("after"))
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			return nil
		default:
			return fmt.Errorf("nothing yet")
		}
	})
	if c.Session() != sess {
		t.Fatal("the session changed: a drop should not reconnect")
	}
	if err := room.Close(); err != nil {
		t.Fatal(err)
	}
}
