package baseline_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/internal/baseline"
)

func newBroadcast(t *testing.T, cfg baseline.BroadcastConfig) (*baseline.Broadcast, string) {
	t.Helper()
	b := baseline.NewBroadcast(cfg)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		b.Close()
		srv.Close()
	})
	return b, "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, url string) *baseline.BroadcastClient {
	t.Helper()
	c, err := baseline.DialBroadcast(ctx(t), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Every client, the sender included, receives every message whole, and
// all in one order, as the echo endpoint promises (PROTOCOL.md section 3).
func TestBroadcastDeliversToAllInOneOrder(t *testing.T) {
	b, url := newBroadcast(t, baseline.BroadcastConfig{})
	const clients, perWriter = 5, 200
	cs := make([]*baseline.BroadcastClient, clients)
	for i := range cs {
		cs[i] = dial(t, url)
	}
	waitFor(t, func() bool { return b.Clients() == clients })

	var wg sync.WaitGroup
	got := make([][]string, clients)
	for i, c := range cs {
		wg.Go(func() {
			for range clients * perWriter {
				f, err := c.Recv()
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				got[i] = append(got[i], string(f))
			}
		})
	}
	for w, c := range cs {
		wg.Go(func() {
			for k := range perWriter {
				if err := c.Send([]byte(fmt.Sprintf("w%d-%d", w, k))); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := 1; i < clients; i++ {
		if strings.Join(got[i], ",") != strings.Join(got[0], ",") {
			t.Fatalf("client %d saw another order than client 0", i)
		}
	}
	// Each writer's frames keep their order.
	next := make([]int, clients)
	for _, f := range got[0] {
		var w, k int
		fmt.Sscanf(f, "w%d-%d", &w, &k)
		if k != next[w] {
			t.Fatalf("writer %d: frame %d after %d", w, k, next[w]-1)
		}
		next[w]++
	}
}

// A frame may be empty or as long as the echo endpoint's largest.
func TestBroadcastFrameSizes(t *testing.T) {
	_, url := newBroadcast(t, baseline.BroadcastConfig{})
	c := dial(t, url)
	for _, n := range []int{0, 1, 64 << 10} {
		p := bytes.Repeat([]byte{'x'}, n)
		if err := c.Send(p); err != nil {
			t.Fatal(err)
		}
		f, err := c.Recv()
		if err != nil || !bytes.Equal(f, p) {
			t.Fatalf("%d bytes: got %d, %v", n, len(f), err)
		}
	}
}

// A client that does not read is dropped when its queue overflows; the
// others go on.
func TestBroadcastDropsSlowClient(t *testing.T) {
	b, url := newBroadcast(t, baseline.BroadcastConfig{QueueBytes: 64 << 10})
	dial(t, url) // never reads
	fast := dial(t, url)
	waitFor(t, func() bool { return b.Clients() == 2 })
	frame := make([]byte, 16<<10)
	for i := 0; b.Clients() == 2; i++ {
		if i > 100000 {
			t.Fatal("the slow client was never dropped")
		}
		// One frame in flight at a time: the fast client's queue never
		// holds more than one.
		if err := fast.Send(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := fast.Recv(); err != nil {
			t.Fatalf("the fast client was dropped: %v", err)
		}
	}
	if err := fast.Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if f, err := fast.Recv(); err != nil || string(f) != "after" {
		t.Fatalf("after the drop: %q, %v", f, err)
	}
}

// Close ends every connection and refuses later ones.
func TestBroadcastClose(t *testing.T) {
	b, url := newBroadcast(t, baseline.BroadcastConfig{})
	c := dial(t, url)
	waitFor(t, func() bool { return b.Clients() == 1 })
	b.Close()
	if _, err := c.Recv(); err == nil {
		t.Fatal("Recv after Close succeeded")
	}
	if _, err := baseline.DialBroadcast(ctx(t), url, nil); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	b.Close() // twice
}
