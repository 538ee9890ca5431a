package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/relay"
)

func TestPairBothOrders(t *testing.T) {
	for _, first := range []string{"A", "B"} {
		t.Run(first+" waits", func(t *testing.T) {
			p := newPairer(t, relay.Config{})
			ka, kb := keys("g")
			if first == "B" {
				ka, kb = kb, ka
			}
			a := serve(t, p, ka)
			waiting(t, p, 1)
			b := serve(t, p, kb)
			for _, s := range []*side{a, b} {
				if err := s.pairErr(t); err != nil {
					t.Fatalf("Pair %v: %v", s.key, err)
				}
				s.expectOpen(t)
			}
			if la, lb := a.getLink(t), b.getLink(t); la != lb {
				t.Fatal("the two sides got different links")
			}
			if st := p.Stats(); st.Waiting != 0 || st.Open != 1 || st.Paired != 1 {
				t.Fatalf("stats after pairing: %+v", st)
			}

			a.client.Write([]byte("from a"))
			b.client.Write([]byte("from b"))
			expectRead(t, b.client, "from a")
			expectRead(t, a.client, "from b")
			closeBoth(t, a, b)

			st := p.Stats()
			if st.Open != 0 || st.Bytes != 12 {
				t.Fatalf("stats after close: %+v", st)
			}
		})
	}
}

// Bytes and a FIN sent before pairing are held and delivered after the open
// reply.
func TestEarlyBytes(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ka, kb := keys("early")
	a := serve(t, p, ka)
	if _, err := a.client.Write([]byte("sent before pairing")); err != nil {
		t.Fatal(err)
	}
	a.client.CloseWrite()
	waiting(t, p, 1)

	b := serve(t, p, kb)
	b.expectOpen(t)
	expectEOF(t, b.client, "sent before pairing")

	a.expectOpen(t)
	b.client.Write([]byte("answer"))
	b.client.CloseWrite()
	expectEOF(t, a.client, "answer")
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); err != nil {
			t.Errorf("Run %v: %v", s.key, err)
		}
	}
}

// Nothing of the partner reaches a stream before its own open reply, even
// when the partner's Run started long before and its client wrote early.
func TestOpenReplyFirst(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ka, kb := keys("order")
	a := serve(t, p, ka)
	a.client.Write([]byte("early bytes"))
	waiting(t, p, 1)

	gate := make(chan struct{})
	b := serveWith(t, p, kb, serveOpt{gate: gate})
	if err := a.pairErr(t); err != nil {
		t.Fatal(err)
	}
	a.expectOpen(t)
	// A's Run is running and has A's early bytes to copy. Give a wrong
	// implementation the chance to push them into B before B's reply.
	time.Sleep(50 * time.Millisecond)
	close(gate)
	b.expectOpen(t)
	expectRead(t, b.client, "early bytes")
	closeBoth(t, a, b)
}

func TestConflict(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ka, kb := keys("c")
	conflict := func(k relay.Key) {
		t.Helper()
		_, s := tcpPair(t)
		if _, err := p.Pair(context.Background(), k, s); !errors.Is(err, relay.ErrConflict) {
			t.Fatalf("Pair %v: got %v, want ErrConflict", k, err)
		}
	}

	a := serve(t, p, ka)
	waiting(t, p, 1)
	conflict(ka) // same key while waiting

	b := serve(t, p, kb)
	for _, s := range []*side{a, b} {
		if err := s.pairErr(t); err != nil {
			t.Fatal(err)
		}
		s.expectOpen(t)
	}
	conflict(ka) // either order while open
	conflict(kb)
	if st := p.Stats(); st.Conflicts != 3 || st.Waiting != 0 {
		t.Fatalf("stats: %+v", st)
	}

	// The open pair was not disturbed.
	a.client.Write([]byte("still here"))
	expectRead(t, b.client, "still here")
	closeBoth(t, a, b)

	// A pair is used once; then the same tokens pair again, either order.
	a2, b2 := openPair(t, p, "c")
	b2.client.Write([]byte("again"))
	expectRead(t, a2.client, "again")
	closeBoth(t, a2, b2)
	if st := p.Stats(); st.Paired != 2 || st.Open != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// A waiting entry pairs with one partner only, however many race for it.
func TestPairExactlyOnce(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ka, kb := keys("once")
	a := serve(t, p, ka)
	waiting(t, p, 1)

	const n = 20
	var wg sync.WaitGroup
	links := make(chan *relay.Link, n)
	errs := make(chan error, n)
	for range n {
		_, s := tcpPair(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := p.Pair(context.Background(), kb, s)
			if err != nil {
				errs <- err
				return
			}
			links <- l
		}()
	}
	wg.Wait()
	close(links)
	close(errs)
	if len(links) != 1 {
		t.Fatalf("%d streams paired, want 1", len(links))
	}
	for err := range errs {
		if !errors.Is(err, relay.ErrConflict) {
			t.Fatalf("loser got %v, want ErrConflict", err)
		}
	}
	l := <-links
	if l != a.getLink(t) {
		t.Fatal("winner and waiter have different links")
	}
	l.Reset() // the winner's endpoint could not write its reply
	if err := a.runErr(t); !errors.Is(err, relay.ErrReset) {
		t.Fatalf("waiter's Run: %v, want ErrReset", err)
	}
	if st := p.Stats(); st.Open != 0 || st.Waiting != 0 || st.Conflicts != n-1 {
		t.Fatalf("stats: %+v", st)
	}
}

// A waiting stream that is reset or whose session ends is forgotten at
// once: its tokens wait again, and its partner later waits normally.
func TestWaitingGone(t *testing.T) {
	for _, how := range []string{"session ends", "client resets"} {
		t.Run(how, func(t *testing.T) {
			p := newPairer(t, relay.Config{})
			ka, kb := keys("gone")
			a := serve(t, p, ka)
			waiting(t, p, 1)
			switch how {
			case "session ends":
				a.srv.endSession()
			case "client resets":
				// The server's Stream learns of it the way a yamux stream
				// does: Done fires.
				a.client.SetLinger(0)
				a.client.Close()
				a.srv.markDone()
			}
			if err := a.pairErr(t); !errors.Is(err, relay.ErrReset) {
				t.Fatalf("Pair: %v, want ErrReset", err)
			}
			if st := p.Stats(); st.Waiting != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}

			// The partner arrives later and waits: it is not piped into the
			// dead stream.
			b := serve(t, p, kb)
			waiting(t, p, 1)
			// The same tokens may wait again at once; they pair with it.
			a2 := serve(t, p, ka)
			for _, s := range []*side{a2, b} {
				if err := s.pairErr(t); err != nil {
					t.Fatalf("Pair %v: %v", s.key, err)
				}
				s.expectOpen(t)
			}
			a2.client.Write([]byte("hi"))
			expectRead(t, b.client, "hi")
			closeBoth(t, a2, b)
		})
	}
}

func TestWaitingCanceled(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ka, kb := keys("cancel")
	ctx, cancel := context.WithCancel(context.Background())
	a := serveWith(t, p, ka, serveOpt{ctx: ctx})
	waiting(t, p, 1)
	cancel()
	err := a.pairErr(t)
	if !errors.Is(err, relay.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Pair: %v, want ErrCanceled and context.Canceled", err)
	}
	if st := p.Stats(); st.Waiting != 0 {
		t.Fatalf("entry left behind: %+v", st)
	}
	// Already canceled: refused before waiting.
	_, s := tcpPair(t)
	if _, err := p.Pair(ctx, kb, s); !errors.Is(err, relay.ErrCanceled) {
		t.Fatalf("Pair with a done context: %v", err)
	}
	a2, b := openPair(t, p, "cancel")
	closeBoth(t, a2, b)
}

func TestPairTimeout(t *testing.T) {
	const timeout = 150 * time.Millisecond
	p := newPairer(t, relay.Config{PairTimeout: timeout})

	// Several waiters arriving at different times each get their own
	// deadline from the one sweeper.
	start := time.Now()
	var sides []*side
	for i := range 3 {
		k := relay.Key{Namespace: "t", Local: fmt.Sprint("L", i), Remote: "R"}
		sides = append(sides, serve(t, p, k))
		waiting(t, p, i+1)
		time.Sleep(timeout / 3)
	}
	for i, s := range sides {
		if err := s.pairErr(t); !errors.Is(err, relay.ErrTimeout) {
			t.Fatalf("Pair %d: %v, want ErrTimeout", i, err)
		}
	}
	if el := time.Since(start); el < timeout+2*timeout/3 {
		t.Fatalf("last waiter timed out after %v, before its deadline", el)
	}
	if st := p.Stats(); st.Waiting != 0 || st.Timeouts != 3 {
		t.Fatalf("stats: %+v", st)
	}

	// A pair formed in time is not touched by the sweeper.
	a, b := openPair(t, p, "t")
	time.Sleep(2 * timeout)
	a.client.Write([]byte("late"))
	expectRead(t, b.client, "late")
	closeBoth(t, a, b)
}

func TestMaxWaiting(t *testing.T) {
	const max = 3
	p := newPairer(t, relay.Config{MaxWaiting: max})
	var sides []*side
	for i := range max {
		k := relay.Key{Namespace: "w", Local: fmt.Sprint("L", i), Remote: "R"}
		sides = append(sides, serve(t, p, k))
		waiting(t, p, i+1)
	}
	_, s := tcpPair(t)
	_, err := p.Pair(context.Background(), relay.Key{Namespace: "w", Local: "X", Remote: "R"}, s)
	var le *relay.LimitError
	if !errors.Is(err, relay.ErrLimit) || !errors.As(err, &le) || le.Value != max {
		t.Fatalf("Pair past MaxWaiting: %v", err)
	}
	if want := "relay: waiting streams limit (3) reached"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	// A stream whose partner waits needs no slot.
	b := serve(t, p, sides[0].key.Mirror())
	for _, s := range []*side{sides[0], b} {
		if err := s.pairErr(t); err != nil {
			t.Fatal(err)
		}
		s.expectOpen(t)
	}
	closeBoth(t, sides[0], b)
	if st := p.Stats(); st.Rejected != 1 || st.Waiting != max-1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestMaxPairs(t *testing.T) {
	const max = 2
	p := newPairer(t, relay.Config{MaxPairs: max})
	type pair struct{ a, b *side }
	var pairs []pair
	for i := range max {
		a, b := openPair(t, p, fmt.Sprint("p", i))
		pairs = append(pairs, pair{a, b})
	}

	ka, kb := keys("p-extra")
	a := serve(t, p, ka)
	waiting(t, p, 1)
	_, s := tcpPair(t)
	_, err := p.Pair(context.Background(), kb, s)
	var le *relay.LimitError
	if !errors.Is(err, relay.ErrLimit) || !errors.As(err, &le) || le.Value != max {
		t.Fatalf("Pair past MaxPairs: %v", err)
	}
	if !strings.Contains(err.Error(), "open pairs limit (2)") {
		t.Fatalf("message %q does not name the limit", err)
	}
	if st := p.Stats(); st.Open != max || st.Waiting != 1 || st.Rejected != 1 {
		t.Fatalf("stats: %+v", st)
	}

	// Once a pair closes, the waiter (still waiting) can pair.
	closeBoth(t, pairs[0].a, pairs[0].b)
	b := serve(t, p, kb)
	for _, s := range []*side{a, b} {
		if err := s.pairErr(t); err != nil {
			t.Fatal(err)
		}
		s.expectOpen(t)
	}
	closeBoth(t, a, b)
	closeBoth(t, pairs[1].a, pairs[1].b)
}

func TestPairerClose(t *testing.T) {
	p, err := relay.NewPairer(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := openPair(t, p, "open")
	w := serve(t, p, relay.Key{Namespace: "waiting", Local: "A", Remote: "B"})
	waiting(t, p, 1)

	p.Close()
	if err := w.pairErr(t); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("waiting Pair: %v, want ErrClosed", err)
	}
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); !errors.Is(err, relay.ErrClosed) {
			t.Fatalf("Run: %v, want ErrClosed", err)
		}
		expectReset(t, s.client)
	}
	_, s := tcpPair(t)
	if _, err := p.Pair(context.Background(), relay.Key{Namespace: "x", Local: "A", Remote: "B"}, s); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Pair after Close: %v", err)
	}
	p.Close() // again: nothing
	if st := p.Stats(); st.Waiting != 0 || st.Open != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestBadKey(t *testing.T) {
	p := newPairer(t, relay.Config{})
	_, s := tcpPair(t)
	if _, err := p.Pair(context.Background(), relay.Key{Namespace: "n", Local: "A", Remote: "A"}, s); !errors.Is(err, relay.ErrBadKey) {
		t.Fatalf("Pair: %v, want ErrBadKey", err)
	}
}

func TestConfig(t *testing.T) {
	d := relay.DefaultConfig()
	if d.PairTimeout != 30*time.Second || d.MaxWaiting != 10000 || d.MaxPairs != 10000 || d.Limits != (relay.Limits{}) {
		t.Fatalf("DefaultConfig: %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (relay.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, c := range []relay.Config{
		{PairTimeout: -1},
		{MaxWaiting: -1},
		{MaxPairs: -1},
		{Limits: relay.Limits{Bytes: -1}},
		{Limits: relay.Limits{Lifetime: -1}},
		{Limits: relay.Limits{Idle: -1}},
		{Limits: relay.Limits{BytesPerSecond: -1}},
	} {
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "relay: ") {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
		if _, err := relay.NewPairer(c); err == nil {
			t.Errorf("NewPairer(%+v) accepted it", c)
		}
	}
}
