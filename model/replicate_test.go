package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// num formats f as the protocol does, for the timestamps of tests.
func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func line(msg model.Message) string { return string(model.AppendLine(nil, msg)) }

func updLine(key, value string, ts float64, source string) string {
	return line(model.Message{Kind: model.KindUpdate, Update: upd(key, value, ts, source)})
}

const syncLine = `"SYNC"` + "\n"

// TestReplicateProtocol drives one stream by hand: digest first, then on the
// peer's digest the history it lacks sorted by (ts, source), "SYNC", and live
// updates; updates from the peer are applied; EOF ends the stream cleanly.
func TestReplicateProtocol(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk)
	mustApply(t, m, upd("b", `"old"`, ms(0)+1, "B"), true)
	mustApply(t, m, upd("c", `{"x":[1]}`, ms(0)+2, "C"), true)
	mustApply(t, m, upd("b2", `2`, ms(0)+3, "B"), true)
	mustApply(t, m, upd("gone", `null`, ms(0)+4, "C"), true)

	var gotDigest atomic.Value
	synced := make(chan struct{})
	p := newPeer(t, t.Context(), m, model.ReplicateOptions{
		OnDigest: func(id string) { gotDigest.Store(id) },
		OnSync:   func() { close(synced) },
	})
	p.expect(fmt.Sprintf(`{"id":"S","clock":{"B":%s,"C":%s}}`+"\n", num(ms(0)+3), num(ms(0)+4)))

	p.send(fmt.Sprintf(`{"id":"P","clock":{"B":%s,"X":1},"meta":{"ignored":true}}`+"\n", num(ms(0)+1)))
	p.expect(updLine("c", `{"x":[1]}`, ms(0)+2, "C"))
	p.expect(updLine("b2", `2`, ms(0)+3, "B"))
	p.expect(updLine("gone", `null`, ms(0)+4, "C"))
	p.expect(syncLine)
	if got, _ := gotDigest.Load().(string); got != "P" {
		t.Fatalf("OnDigest got %q", got)
	}

	// The peer's history, its SYNC, then a live update.
	p.send(updLine("p", `"mine"`, ms(0)+5, "P") + syncLine)
	<-synced
	// Like npm scuttlebutt, the update is sent back once.
	p.expect(updLine("p", `"mine"`, ms(0)+5, "P"))
	if got := get(m, "p"); got != `"mine"` {
		t.Fatalf("p = %s", got)
	}
	// Stale lines are ignored silently.
	p.send(updLine("p", `"stale"`, ms(0)+5, "P"))
	p.send(updLine("q", `"too old"`, ms(-time.Minute), "Q"))
	if err := m.Set("live", true); err != nil {
		t.Fatal(err)
	}
	p.expect(updLine("live", `true`, ms(0), "S"))
	if got := get(m, "p"); got != `"mine"` {
		t.Fatalf("p = %s", got)
	}

	p.w.Close()
	if err := p.result(); err != nil {
		t.Fatalf("Replicate after EOF: %v", err)
	}
	p.noMoreLines()
}

// TestReplicateEOFFlushes: a peer that sends its digest and half-closes at
// once still gets the history and "SYNC", then the stream ends with nil.
func TestReplicateEOFFlushes(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk)
	for i := range 100 {
		if err := m.Set(fmt.Sprint("k", i), strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
	p.send(`{"id":"P","clock":{}}` + "\n")
	p.w.Close()
	if !strings.HasPrefix(p.next(), `{"id":"S"`) {
		t.Fatal("no digest")
	}
	for i := range 100 {
		if l := p.next(); !strings.HasPrefix(l, fmt.Sprintf(`[["k%d",`, i)) {
			t.Fatalf("line %d: %q", i, l)
		}
	}
	p.expect(syncLine)
	if err := p.result(); err != nil {
		t.Fatal(err)
	}
	p.noMoreLines()
}

// TestReplicateBadLines: each violation is answered with one error object,
// then Replicate returns the ProtocolError.
func TestReplicateBadLines(t *testing.T) {
	clk := newFakeClock()
	digest := `{"id":"P","clock":{}}` + "\n"
	for _, tc := range []struct {
		name, input, code, message string
	}{
		{"not JSON", "hello\n", "bad_line", "line is not JSON"},
		{"empty line", "\n", "bad_line", "empty line"},
		{"digest without clock", `{"id":"P"}` + "\n", "bad_line", "digest without clock"},
		{"second digest", digest + digest, "bad_line", "a second digest"},
		{"number", "5\n", "bad_line", `line is not a digest, an update, "SYNC" or an error object`},
		{"bad update", `[["k",1],"x","P"]` + "\n", "bad_line", "update timestamp must be a finite number"},
		{"key too long", updLine(strings.Repeat("k", 257), "1", ms(0), "P"), "limit", "key longer than 256 bytes"},
		{"value too large", updLine("k", string(jsonString(8193)), ms(0), "P"), "limit", "value larger than 8192 bytes"},
		{"after good lines", digest + updLine("k", "1", ms(0), "P") + "[", "bad_line", "line is not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(t, "S", clk)
			p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
			p.next() // digest
			p.sendAsync(tc.input)
			if tc.name == "after good lines" {
				p.expect(syncLine)
				p.expect(updLine("k", "1", ms(0), "P")) // the echo
				p.w.Close()                             // the unterminated "[" is the last line
			}
			got := p.next()
			if tc.name == "second digest" && got == syncLine {
				got = p.next() // "SYNC" may or may not come before the error
			}
			if want := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`+"\n", tc.code, tc.message); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			err := p.result()
			var pe *model.ProtocolError
			if !errors.As(err, &pe) || pe.Code != tc.code || pe.Message != tc.message || pe.Remote {
				t.Fatalf("Replicate returned %v", err)
			}
			p.noMoreLines()
		})
	}
}

// TestReplicateRemoteError: an error object from the peer ends the stream
// with a remote ProtocolError and no answer.
func TestReplicateRemoteError(t *testing.T) {
	m := newModel(t, "S", newFakeClock())
	p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
	p.next()
	p.send(`{"error":{"code":"limit","message":"more than 10 keys"}}` + "\n")
	err := p.result()
	var pe *model.ProtocolError
	if !errors.As(err, &pe) || !pe.Remote || pe.Code != "limit" || pe.Message != "more than 10 keys" || !errors.Is(err, model.ErrLimit) {
		t.Fatalf("Replicate returned %v", err)
	}
	p.noMoreLines()
}

func TestReplicateNoEcho(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk)
	p := newPeer(t, t.Context(), m, model.ReplicateOptions{NoEcho: true})
	p.next()
	p.send(`{"id":"P","clock":{}}` + "\n")
	p.expect(syncLine)
	p.send(updLine("p", "1", ms(0), "P"))
	if err := m.Set("s", 1); err != nil {
		t.Fatal(err)
	}
	// Not the echo of p, but the local write.
	p.expect(updLine("s", "1", ms(0), "S"))
}

// TestReplicateConverge replicates models through io.Pipe pairs: sets,
// deletes, ties, forwarding through a middle replica, a late replica that
// syncs everything, and expiry.
func TestReplicateConverge(t *testing.T) {
	clk := newFakeClock()
	opt := func(o *model.Options) { o.MaxAge = 10 * time.Second }
	a := newModel(t, "A", clk, opt)
	b := newModel(t, "B", clk, opt)
	s := newModel(t, "S", clk, opt)

	if err := a.Set("before", "a"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, upd("tie", `"from B"`, ms(0)+7, "B"), true)
	mustApply(t, a, upd("tie", `"from A"`, ms(0)+7, "A"), true)
	connect(t, a, s)
	connect(t, b, s)
	for i := range 50 {
		if err := a.Set(fmt.Sprint("a", i), i); err != nil {
			t.Fatal(err)
		}
		if err := b.Set(fmt.Sprint("b", i), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Delete("a3"); err != nil {
		t.Fatal(err)
	}
	if err := b.Set("a4", "b wrote it last"); err != nil {
		t.Fatal(err)
	}
	converged := func(ms ...*model.Model) func() error {
		return func() error {
			want := ms[0].Snapshot()
			for _, m := range ms[1:] {
				if got := m.Snapshot(); !maps.EqualFunc(got, want, func(x, y json.RawMessage) bool { return string(x) == string(y) }) {
					return fmt.Errorf("%s has %d keys, %s has %d", ms[0].ID(), len(want), m.ID(), len(got))
				}
			}
			return nil
		}
	}
	waitFor(t, 5*time.Second, converged(a, b, s))
	snap := s.Snapshot()
	if len(snap) != 1+1+50+50-1 || string(snap["tie"]) != `"from B"` || string(snap["a4"]) != `"b wrote it last"` {
		t.Fatalf("snapshot: %d keys, tie %s, a4 %s", len(snap), snap["tie"], snap["a4"])
	}
	if _, ok := snap["a3"]; ok {
		t.Fatal("a3 not deleted")
	}

	// A new replica syncs every live record.
	c := newModel(t, "C", clk, opt)
	connect(t, c, b)
	waitFor(t, 5*time.Second, converged(a, b, s, c))

	// Expiry: the server's deletions reach every replica.
	clk.Add(11 * time.Second)
	if err := a.Set("fresh", 1); err != nil {
		t.Fatal(err)
	}
	s.Sweep()
	waitFor(t, 5*time.Second, func() error {
		for _, m := range []*model.Model{a, b, c, s} {
			if keys := m.Keys(); len(keys) != 1 || keys[0] != "fresh" {
				return fmt.Errorf("%s has keys %v", m.ID(), keys)
			}
		}
		return nil
	})
	for _, m := range []*model.Model{a, b, c} {
		m.Sweep() // nothing left to expire: the deletions are fresh
	}
	waitFor(t, 5*time.Second, converged(a, b, s, c))
	if st := c.Stats(); st.Live != 1 {
		t.Fatalf("c: %+v", st)
	}
}

// TestReplicateCancel: Replicate returns when ctx ends, whether the reader
// and writer unblock by deadline (net.Pipe) or by Close (io.Pipe), and when
// the peer's side closes.
func TestReplicateCancel(t *testing.T) {
	clk := newFakeClock()
	t.Run("net.Pipe", func(t *testing.T) {
		m := newModel(t, "S", clk)
		c1, c2 := net.Pipe()
		defer c2.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- replicate(m, ctx, c1, c1, model.ReplicateOptions{}) }()
		// Nobody reads: the writer is blocked writing the digest.
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		c1.Close()
	})
	t.Run("io.Pipe", func(t *testing.T) {
		m := newModel(t, "S", clk)
		ctx, cancel := context.WithCancel(context.Background())
		p := newPeer(t, ctx, m, model.ReplicateOptions{})
		p.next()
		cancel()
		if err := p.result(); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		m := newModel(t, "S", clk)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := replicate(m, ctx, strings.NewReader(""), io.Discard, model.ReplicateOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reader closed with an error", func(t *testing.T) {
		m := newModel(t, "S", clk)
		p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
		p.next()
		boom := errors.New("boom")
		p.w.CloseWithError(boom)
		if err := p.result(); !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
	// After EOF the stream drains its queue to a peer that does not read:
	// ctx or Close of the Model ends the wait.
	for _, how := range []string{"cancel", "close"} {
		t.Run("reader at EOF, writer blocked, "+how, func(t *testing.T) {
			m := model.New(model.Options{ID: "S", Now: clk.Now})
			defer m.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			inR, inW := io.Pipe()
			outR, outW := io.Pipe() // never read
			defer outR.Close()
			done := make(chan error, 1)
			go func() { done <- replicate(m, ctx, inR, outW, model.ReplicateOptions{}) }()
			if _, err := io.WriteString(inW, `{"id":"P","clock":{}}`+"\n"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, func() error {
				if m.Stats().Subscribers != 1 {
					return errNotYet
				}
				return nil
			})
			inW.Close()
			waitFor(t, 5*time.Second, func() error { // EOF seen: unsubscribed
				if m.Stats().Subscribers != 0 {
					return errNotYet
				}
				return nil
			})
			want := context.Canceled
			if how == "cancel" {
				cancel()
			} else {
				m.Close()
				want = model.ErrClosed
			}
			if err := <-done; !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
		})
	}
}

// TestReplicateSlowPeer: a peer that stops reading ends its stream with
// ErrSlowPeer; the Model and other streams go on.
func TestReplicateSlowPeer(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk)
	other := newModel(t, "O", clk)
	connect(t, m, other)

	// A peer that sent its digest and then neither reads nor writes.
	inR, inW := io.Pipe()
	defer inW.Close()
	outR, outW := io.Pipe()
	defer outR.Close()
	done2 := make(chan error, 1)
	go func() { done2 <- replicate(m, t.Context(), inR, outW, model.ReplicateOptions{QueueBytes: 4096}) }()
	go func() { _, _ = io.WriteString(inW, `{"id":"P","clock":{}}`+"\n") }()
	waitFor(t, 5*time.Second, func() error {
		if m.Stats().Subscribers < 2 {
			return errNotYet
		}
		return nil
	})
	for i := range 200 {
		if err := m.Set(fmt.Sprint("k", i), strings.Repeat("x", 100)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done2:
		if !errors.Is(err, model.ErrSlowPeer) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slow peer not dropped")
	}
	waitFor(t, 5*time.Second, func() error {
		if len(other.Keys()) != 200 {
			return errNotYet
		}
		return nil
	})
}

// TestReplicateModelClose: closing the Model ends its streams with ErrClosed.
func TestReplicateModelClose(t *testing.T) {
	clk := newFakeClock()
	m := model.New(model.Options{ID: "S", Now: clk.Now})
	p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
	p.next()
	p.send(`{"id":"P","clock":{}}` + "\n")
	p.expect(syncLine)
	m.Close()
	if err := p.result(); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if err := replicate(m, t.Context(), strings.NewReader(""), io.Discard, model.ReplicateOptions{}); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("Replicate after Close: %v", err)
	}
	// Before the digest, too: the stream is not subscribed yet. It ends
	// when the digest comes (Replicate) or at once (ReplicateInline), when
	// the send may find the input closed.
	m2 := model.New(model.Options{ID: "S2", Now: clk.Now})
	p2 := newPeer(t, t.Context(), m2, model.ReplicateOptions{})
	p2.next()
	m2.Close()
	p2.sendAsync(`{"id":"P","clock":{}}` + "\n")
	if err := p2.result(); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("got %v", err)
	}
}

// TestReplicateDigestTrim: a clock too large for one line is trimmed to its
// newest entries, the own id first, and replication still converges.
func TestReplicateDigestTrim(t *testing.T) {
	clk := newFakeClock()
	s := newModel(t, "S", clk)
	for i := range 2000 {
		mustApply(t, s, upd(fmt.Sprint("k", i), "1", ms(0)+float64(i), fmt.Sprintf("source-%04d", i)), true)
	}
	if err := s.Set("own", 1); err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, t.Context(), s, model.ReplicateOptions{})
	first := p.next()
	msg, err := model.ParseLine([]byte(first))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) > 16384 || len(msg.Digest.Clock) < 100 || len(msg.Digest.Clock) == 2001 {
		t.Fatalf("digest of %d bytes with %d entries", len(first), len(msg.Digest.Clock))
	}
	if _, ok := msg.Digest.Clock["S"]; !ok {
		t.Fatal("own entry dropped")
	}
	if _, ok := msg.Digest.Clock["source-1999"]; !ok {
		t.Fatal("newest entry dropped")
	}
	if _, ok := msg.Digest.Clock["source-0000"]; ok {
		t.Fatal("oldest entry kept")
	}

	c := newModel(t, "C", clk)
	connect(t, c, s)
	waitFor(t, 5*time.Second, func() error {
		if n := len(c.Keys()); n != 2001 {
			return fmt.Errorf("%d keys", n)
		}
		return nil
	})
	// Reconnecting with a full clock: everything the trimmed digest omits
	// comes again and is ignored as stale.
	c2 := newModel(t, "C2", clk)
	connect(t, c2, c)
	waitFor(t, 5*time.Second, func() error {
		if n := len(c2.Keys()); n != 2001 {
			return fmt.Errorf("%d keys", n)
		}
		return nil
	})
}

// TestReplicateConcurrentWriters checks that per-source order survives
// concurrent local writers: a peer never misses an update.
func TestReplicateConcurrentWriters(t *testing.T) {
	a := model.New(model.Options{ID: "A"})
	defer a.Close()
	b := model.New(model.Options{ID: "B"})
	defer b.Close()
	stop := connect(t, a, b)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if err := a.Set(fmt.Sprintf("g%d-%d", g, i), i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 10*time.Second, func() error {
		if n := len(b.Keys()); n != 1600 {
			return fmt.Errorf("%d keys", n)
		}
		return nil
	})
	errA, errB := stop()
	if !errors.Is(errA, context.Canceled) || !errors.Is(errB, context.Canceled) {
		t.Fatalf("stop: %v, %v", errA, errB)
	}
}
