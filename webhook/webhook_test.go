package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("the webhook secret of the app's back end")

// receiver collects deliveries, checking each signature; while down it
// answers 503.
type receiver struct {
	mu     sync.Mutex
	events []server.Event
	bad    []string
	down   atomic.Bool
	posts  atomic.Int64
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.posts.Add(1)
	if r.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := webhook.Verify(secret, req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var got struct{ Events []server.Event }
	if err := json.Unmarshal(body, &got); err != nil {
		r.bad = append(r.bad, err.Error())
	}
	r.events = append(r.events, got.Events...)
}

// lines returns the events of peer as "type endpoint namespace".
func (r *receiver) lines(peer string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.PeerID == peer {
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s", e.Type, e.Endpoint, e.Namespace)))
		}
	}
	return out
}

func start(t testing.TB, cfg webhook.Config) *webhook.Sender {
	t.Helper()
	cfg.Secret = secret
	cfg.Logger = sctest.QuietLogger()
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

// A scripted session's events reach the receiver in order, signed; the
// filter leaves other types out.
func TestDeliveredInOrder(t *testing.T) {
	rcv := &receiver{}
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	wh := start(t, webhook.Config{URL: hs.URL, Interval: 10 * time.Millisecond,
		Types: []server.EventType{server.EventSessionOpened, server.EventNamespaceJoined, server.EventNamespaceLeft, server.EventSessionClosed}})
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Hooks: server.Hooks{Event: wh.Send}}})
	s := sctest.Dial(t, ts.URL)
	id := s.ID()
	for _, ns := range []string{"a", "b"} {
		e, err := s.Echo(sctest.Ctx(t), ns)
		if err != nil {
			t.Fatal(err)
		}
		e.Send([]byte("x"))
		e.Recv()
		e.Close()
		sctest.WaitFor(t, 10*time.Second, func() error {
			for _, l := range rcv.lines(id) {
				if l == "namespace.left echo "+ns {
					return nil
				}
			}
			return fmt.Errorf("no left %s yet: %v", ns, rcv.lines(id))
		})
	}
	s.Close()
	want := "session.opened\nnamespace.joined echo a\nnamespace.left echo a\nnamespace.joined echo b\nnamespace.left echo b\nsession.closed"
	sctest.WaitFor(t, 10*time.Second, func() error {
		if got := strings.Join(rcv.lines(id), "\n"); got != want {
			return fmt.Errorf("got\n%s\nwant\n%s", got, want)
		}
		return nil
	})
	if len(rcv.bad) != 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}
}

// A receiver down, then up, gets the events after retries.
func TestRetriedUntilTaken(t *testing.T) {
	rcv := &receiver{}
	rcv.down.Store(true)
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	wh := start(t, webhook.Config{URL: hs.URL, Interval: 10 * time.Millisecond})
	for i := range 5 {
		wh.Send(server.Event{Type: server.EventSessionOpened, PeerID: fmt.Sprint("p", i)})
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if n := wh.Stats().Failures.Load(); n < 2 {
			return fmt.Errorf("%d failures", n)
		}
		return nil
	})
	rcv.down.Store(false)
	sctest.WaitFor(t, 30*time.Second, func() error {
		if n := wh.Stats().Sent.Load(); n != 5 {
			return fmt.Errorf("%d sent", n)
		}
		return nil
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for i, e := range rcv.events {
		if e.PeerID != fmt.Sprint("p", i) {
			t.Fatalf("event %d is %s's", i, e.PeerID)
		}
	}
}

// A receiver that stays down: the queue fills, what comes past it is
// dropped and counted, and the sessions of the server go on unhindered.
func TestOverflowCountedSessionsUnaffected(t *testing.T) {
	rcv := &receiver{}
	rcv.down.Store(true)
	hs := httptest.NewServer(rcv)
	defer hs.Close()
	wh := start(t, webhook.Config{URL: hs.URL, Queue: 10, Interval: 10 * time.Millisecond})
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Hooks: server.Hooks{Event: wh.Send}}})
	for range 8 {
		s := sctest.Dial(t, ts.URL)
		e, err := s.Echo(sctest.Ctx(t), "busy")
		if err != nil {
			t.Fatal(err)
		}
		e.Send([]byte("still served"))
		if f, err := e.Recv(); err != nil || string(f) != "still served" {
			t.Fatalf("%q %v", f, err)
		}
	}
	if wh.Queued() != 10 || wh.Stats().Dropped.Load() < 6 {
		t.Fatalf("queued %d, dropped %d", wh.Queued(), wh.Stats().Dropped.Load())
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"events":[]}`)
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	sig := "v1=" + webhook.Sign(secret, ts, body)
	if err := webhook.Verify(secret, ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"altered body": webhook.Verify(secret, ts, sig, []byte(`{"events":[1]}`), now, time.Minute),
		"other secret": webhook.Verify([]byte("x"), ts, sig, body, now, time.Minute),
		"old":          webhook.Verify(secret, ts, sig, body, now.Add(2*time.Minute), time.Minute),
		"bad stamp":    webhook.Verify(secret, "soon", sig, body, now, time.Minute),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
