package endpoints_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/relay"
)

// readTimeout bounds every read of these tests, so that a failure ends the
// test instead of hanging it.
const readTimeout = 10 * time.Second

// newRelayServer starts a server with the relay endpoint. The endpoint is
// closed after the server has shut down.
func newRelayServer(t testing.TB, cfg endpoints.RelayConfig, opts ...sctest.Options) (*sctest.Server, *endpoints.Relay) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = sctest.QuietLogger()
	}
	r, err := endpoints.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close) // runs after the server's shutdown, registered below
	var o sctest.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	o.Register = func(h *server.Handler) { h.Handle(channel.EndpointRelay, r) }
	return sctest.NewServer(t, o), r
}

// relayOpen opens a relay stream and waits until it is paired.
func relayOpen(t testing.TB, s *client.Session, ns, local, remote string) *client.RelayConn {
	t.Helper()
	c, err := s.Relay(sctest.Ctx(t), ns, local, remote)
	if err != nil {
		t.Fatalf("relay %s %s->%s: %v", ns, local, remote, err)
	}
	return c
}

type relayResult struct {
	c   *client.RelayConn
	err error
}

// relayGo opens a relay stream in a goroutine; the result arrives once it
// is paired or refused.
func relayGo(t testing.TB, s *client.Session, ns, local, remote string) <-chan relayResult {
	t.Helper()
	ctx := sctest.Ctx(t)
	ch := make(chan relayResult, 1)
	go func() {
		c, err := s.Relay(ctx, ns, local, remote)
		ch <- relayResult{c, err}
	}()
	return ch
}

func relayWait(t testing.TB, ch <-chan relayResult) *client.RelayConn {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("relay: %v", r.err)
		}
		return r.c
	case <-time.After(readTimeout):
		t.Fatal("relay stream not paired in time")
		return nil
	}
}

// relayPair opens a pair: a waits first, then b completes it.
func relayPair(t testing.TB, r *endpoints.Relay, sa, sb *client.Session, ns, a, b string) (*client.RelayConn, *client.RelayConn) {
	t.Helper()
	waiting := r.Stats().Waiting
	ca := relayGo(t, sa, ns, a, b)
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == waiting+1 })
	cb := relayOpen(t, sb, ns, b, a)
	return relayWait(t, ca), cb
}

// relayStats waits until cond holds for the relay's counters.
func relayStats(t testing.TB, r *endpoints.Relay, cond func(relay.Stats) bool) {
	t.Helper()
	sctest.WaitFor(t, readTimeout, func() error {
		if st := r.Stats(); !cond(st) {
			return fmt.Errorf("relay stats %+v", st)
		}
		return nil
	})
}

// rawRelay opens a relay stream by hand: it writes the header line and then
// early, without reading the reply.
func rawRelay(t testing.TB, s *client.Session, ns, local, remote string, early []byte) *client.Stream {
	t.Helper()
	st, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	line := fmt.Sprintf(`{"endpoint":"relay","namespace":%q,"local":%q,"remote":%q}`+"\n", ns, local, remote)
	if _, err := st.Write(append([]byte(line), early...)); err != nil {
		t.Fatal(err)
	}
	return st
}

// readLine reads one line, byte by byte so that nothing after it is taken.
func readLine(t testing.TB, st *client.Stream) string {
	t.Helper()
	st.SetReadDeadline(time.Now().Add(readTimeout))
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(st, b); err != nil {
			t.Fatalf("reading a line after %q: %v", line, err)
		}
		if b[0] == '\n' {
			return string(line)
		}
		line = append(line, b[0])
	}
}

type deadlineReader = sctest.DeadlineReader

var (
	expectRead = sctest.ExpectRead
	expectEOF  = sctest.ExpectEOF
)

// expectReset reads until the stream ends and checks it was reset; it
// returns the bytes read before.
func expectReset(t testing.TB, r deadlineReader) int64 {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(readTimeout))
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("want a reset after %d bytes, got %v", n, err)
	}
	return n
}

func write(t testing.TB, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// closePair half-closes both ends and checks each reads EOF; the pair then
// ends without a reset. No other pair may open or close meanwhile.
func closePair(t testing.TB, r *endpoints.Relay, a, b *client.RelayConn) {
	t.Helper()
	open := r.Stats().Open
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, b)
	if err := b.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, a)
	relayStats(t, r, func(st relay.Stats) bool { return st.Open == open-1 })
	for _, c := range []*client.RelayConn{a, b} {
		select {
		case <-c.Done():
			t.Fatal("a pair closed by both sides was reset")
		default:
		}
		c.Close()
	}
}

const openReply = `{"ok":true,"open":true,"limit":{"bytes":0,"seconds":0}}`

// 5.1, 5.3: a stream pairs with its mirror whichever arrives first; both
// get the open reply, then bytes flow both ways unchanged.
func TestRelayPairBothOrders(t *testing.T) {
	for _, first := range []string{"A", "B"} {
		t.Run(first+" waits", func(t *testing.T) {
			ts, r := newRelayServer(t, endpoints.RelayConfig{})
			sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
			ka, kb := [2]string{"A", "B"}, [2]string{"B", "A"}
			if first == "B" {
				ka, kb = kb, ka
			}
			a := rawRelay(t, sa, "g", ka[0], ka[1], nil)
			relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
			b := rawRelay(t, sb, "g", kb[0], kb[1], nil)
			for _, st := range []*client.Stream{a, b} {
				if got := readLine(t, st); got != openReply {
					t.Fatalf("reply %s, want %s", got, openReply)
				}
			}
			if st := r.Stats(); st.Waiting != 0 || st.Open != 1 || st.Paired != 1 {
				t.Fatalf("stats after pairing: %+v", st)
			}
			all := make([]byte, 256)
			for i := range all {
				all[i] = byte(i)
			}
			write(t, a, "from a\x00"+string(all))
			write(t, b, "from b\n")
			expectRead(t, b, "from a\x00"+string(all))
			expectRead(t, a, "from b\n")
			a.CloseWrite()
			expectEOF(t, b)
			b.CloseWrite()
			expectEOF(t, a)
			relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 && st.Bytes == int64(7+256+7) })
		})
	}
}

// 5.2: bytes and a FIN sent before pairing are held and delivered after
// the open reply, in order.
func TestRelayEarlyBytesAndFIN(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
	a := rawRelay(t, sa, "early", "A", "B", []byte("sent before pairing"))
	if err := a.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })

	b := relayOpen(t, sb, "early", "B", "A")
	expectRead(t, b, "sent before pairing")
	expectEOF(t, b)
	if got := readLine(t, a); got != openReply {
		t.Fatalf("reply %s", got)
	}
	write(t, b, "answer")
	b.CloseWrite()
	expectRead(t, a, "answer")
	expectEOF(t, a)
	relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
}

// 5.2: past one stream window the client's early writes wait; all of it is
// delivered after pairing.
func TestRelayEarlyBytesWait(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
	data := randomBytes(1 << 20)
	a := rawRelay(t, sa, "early", "A", "B", nil)
	wrote := make(chan error, 1)
	go func() {
		_, err := a.Write(data)
		wrote <- err
	}()
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
	select {
	case err := <-wrote:
		t.Fatalf("a 1 MiB write completed before pairing: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	b := relayOpen(t, sb, "early", "B", "A")
	got := make([]byte, len(data))
	b.SetReadDeadline(time.Now().Add(readTimeout))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("early bytes corrupted")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, a); got != openReply {
		t.Fatalf("reply %s", got)
	}
}

// 5.2: the server sends nothing to a waiting stream; the first bytes it
// gets are the open reply.
func TestRelayNothingBeforePairing(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
	a := rawRelay(t, sa, "quiet", "A", "B", nil)
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
	a.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := a.Read(make([]byte, 64)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a waiting stream read %d bytes, %v", n, err)
	}
	b := relayOpen(t, sb, "quiet", "B", "A")
	write(t, b, "first")
	if got := readLine(t, a); got != openReply {
		t.Fatalf("first line %q, want the open reply", got)
	}
	expectRead(t, a, "first")
}

// 5.4: a third stream with the tokens of a waiting stream, or either token
// order of an open pair, gets conflict and disturbs nothing; after the pair
// closes the tokens pair again.
func TestRelayConflict(t *testing.T) {
	for _, first := range []string{"A", "B"} {
		t.Run(first+" waits", func(t *testing.T) {
			ts, r := newRelayServer(t, endpoints.RelayConfig{})
			sa, sb, sc := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
			ka, kb := [2]string{"A", "B"}, [2]string{"B", "A"}
			if first == "B" {
				ka, kb = kb, ka
			}
			conflict := func(k [2]string) {
				t.Helper()
				_, err := sc.Relay(sctest.Ctx(t), "c", k[0], k[1])
				sctest.WantCode(t, err, channel.CodeConflict)
			}

			pa := relayGo(t, sa, "c", ka[0], ka[1])
			relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
			conflict(ka) // same tokens while waiting
			if st := r.Stats(); st.Waiting != 1 || st.Conflicts != 1 {
				t.Fatalf("stats: %+v", st)
			}

			b := relayOpen(t, sb, "c", kb[0], kb[1])
			a := relayWait(t, pa)
			conflict(ka) // either order while open
			conflict(kb)
			if st := r.Stats(); st.Open != 1 || st.Conflicts != 3 {
				t.Fatalf("stats: %+v", st)
			}
			write(t, a, "still here")
			expectRead(t, b, "still here")
			closePair(t, r, a, b)

			// A pair is used once: the same tokens pair again, either order.
			b2, a2 := relayPair(t, r, sb, sa, "c", kb[0], kb[1])
			write(t, b2, "again")
			expectRead(t, a2, "again")
			closePair(t, r, a2, b2)
			sctest.EchoRoundTrip(t, sc) // conflicts left the session unharmed
		})
	}
}

// 5.2: a waiting stream that is reset, whose session ends or whose client
// gives up is forgotten at once: its partner arriving later waits, and the
// tokens may wait again.
func TestRelayWaitingGone(t *testing.T) {
	for _, how := range []string{"reset", "session end", "context"} {
		t.Run(how, func(t *testing.T) {
			ts, r := newRelayServer(t, endpoints.RelayConfig{})
			s := sctest.Dial(t, ts.URL)
			switch how {
			case "reset":
				a := rawRelay(t, s, "gone", "A", "B", nil)
				relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
				a.Reset()
			case "session end":
				rawRelay(t, s, "gone", "A", "B", nil)
				relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
				s.Close()
			case "context":
				ctx, cancel := context.WithCancel(sctest.Ctx(t))
				done := make(chan error, 1)
				go func() {
					_, err := s.Relay(ctx, "gone", "A", "B")
					done <- err
				}()
				relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("canceled Relay returned %v", err)
				}
			}
			relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 0 && st.Open == 0 })

			// The partner now waits instead of pairing with the gone stream.
			sb := sctest.Dial(t, ts.URL)
			pb := relayGo(t, sb, "gone", "B", "A")
			relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 && st.Paired == 0 })
			// The same tokens wait and pair again.
			a := relayOpen(t, sctest.Dial(t, ts.URL), "gone", "A", "B")
			b := relayWait(t, pb)
			write(t, a, "fresh")
			expectRead(t, b, "fresh")
			closePair(t, r, a, b)
			if st := r.Stats(); st.Paired != 1 || st.Conflicts != 0 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

// 5.5: no partner within the pairing timeout: timeout, and the entry is
// gone.
func TestRelayTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ts, r := newRelayServer(t, endpoints.RelayConfig{PairTimeout: timeout})
	s := sctest.Dial(t, ts.URL)
	start := time.Now()
	_, err := s.Relay(sctest.Ctx(t), "t", "A", "B")
	perr := sctest.WantCode(t, err, channel.CodeTimeout)
	if d := time.Since(start); d < timeout {
		t.Fatalf("timeout after %v, before the pairing timeout %v", d, timeout)
	}
	if !strings.Contains(perr.Message, "500ms") {
		t.Fatalf("message %q does not name the timeout", perr.Message)
	}
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 0 && st.Timeouts == 1 })
	// The tokens may wait again, and pair. The partner must come within
	// the pairing timeout: on a machine too busy for that, the first
	// stream times out again, legitimately, and the pair is tried anew.
	other := sctest.Dial(t, ts.URL)
	for attempt := 1; ; attempt++ {
		ca := relayGo(t, s, "t", "A", "B")
		relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 || st.Timeouts > uint64(attempt) })
		cb, err := other.Relay(sctest.Ctx(t), "t", "B", "A")
		if err == nil {
			closePair(t, r, relayWait(t, ca), cb)
			return
		}
		if attempt == 5 {
			t.Fatalf("no pair in %d attempts: %v", attempt, err)
		}
		sctest.WantCode(t, err, channel.CodeTimeout)
		relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 0 })
	}
}

// 5.6: a FIN from one side becomes a FIN to the other while the other
// direction goes on; the pair ends when both are closed.
func TestRelayHalfClose(t *testing.T) {
	for _, closer := range []string{"A", "B"} {
		t.Run(closer+" closes first", func(t *testing.T) {
			ts, r := newRelayServer(t, endpoints.RelayConfig{})
			a, b := relayPair(t, r, sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL), "h", "A", "B")
			if closer == "B" {
				a, b = b, a
			}
			write(t, a, "last words")
			a.CloseWrite()
			expectRead(t, b, "last words")
			expectEOF(t, b)
			for i := range 20 {
				msg := fmt.Sprintf("still flowing %d;", i)
				write(t, b, msg)
				expectRead(t, a, msg)
			}
			if st := r.Stats(); st.Open != 1 {
				t.Fatalf("pair closed after one half-close: %+v", st)
			}
			b.CloseWrite()
			expectEOF(t, a)
			relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
			for _, c := range []*client.RelayConn{a, b} {
				select {
				case <-c.Done():
					t.Fatal("reset after a clean close")
				default:
				}
			}
		})
	}
}

// 5.6: a reset, or a session end, on one side resets the other.
func TestRelayResetPropagates(t *testing.T) {
	for _, how := range []string{"A resets", "B resets", "A's session ends"} {
		t.Run(how, func(t *testing.T) {
			ts, r := newRelayServer(t, endpoints.RelayConfig{})
			sa := sctest.Dial(t, ts.URL)
			a, b := relayPair(t, r, sa, sctest.Dial(t, ts.URL), "r", "A", "B")
			write(t, a, "before")
			expectRead(t, b, "before")
			switch how {
			case "A resets":
				a.Reset()
			case "B resets":
				a, b = b, a
				a.Reset()
			case "A's session ends":
				sa.Close()
			}
			expectReset(t, b)
			select {
			case <-b.Done():
			case <-time.After(readTimeout):
				t.Fatal("Done not closed after the reset")
			}
			relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
		})
	}
}

// 5.3, 5.6: the byte cap per direction: exactly N pass, one more resets
// both sides.
func TestRelayBytesCap(t *testing.T) {
	const n = 100_000
	ts, r := newRelayServer(t, endpoints.RelayConfig{Limits: relay.Limits{Bytes: n}})
	sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)

	t.Run("exactly N", func(t *testing.T) {
		a, b := relayPair(t, r, sa, sb, "cap", "A", "B")
		if got := a.Limit(); got != (channel.RelayLimit{Bytes: n}) {
			t.Fatalf("announced %+v", got)
		}
		data := randomBytes(n)
		for _, d := range [][2]*client.RelayConn{{a, b}, {b, a}} {
			go d[0].Write(data)
			got := make([]byte, n)
			d[1].SetReadDeadline(time.Now().Add(readTimeout))
			if _, err := io.ReadFull(d[1], got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes: %v", n, err)
			}
		}
		closePair(t, r, a, b)
	})
	t.Run("N+1", func(t *testing.T) {
		a, b := relayPair(t, r, sa, sb, "cap", "A", "B")
		go a.Write(randomBytes(n + 1))
		if got := expectReset(t, b); got > n {
			t.Fatalf("%d bytes passed a cap of %d", got, n)
		}
		expectReset(t, a)
		relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
	})
}

// 5.3, 5.6: the lifetime cap, announced in seconds: the pair carries bytes
// until then, and both sides are reset when it is over.
func TestRelayLifetimeCap(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{Limits: relay.Limits{Lifetime: time.Second}})
	sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
	start := time.Now() // the pair opens later
	a, b := relayPair(t, r, sa, sb, "life", "A", "B")
	if got := b.Limit(); got != (channel.RelayLimit{Seconds: 1}) {
		t.Fatalf("announced %+v", got)
	}
	write(t, a, "in time")
	expectRead(t, b, "in time")
	expectReset(t, b)
	expectReset(t, a)
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Fatalf("pair reset %v after pairing began, want about 1s", d)
	}
	relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
}

// Caps on open pairs and waiting streams: N are fine, one more gets limit
// with a message naming the limit and its value.
func TestRelayServerCaps(t *testing.T) {
	t.Run("pairs", func(t *testing.T) {
		const max = 3
		ts, r := newRelayServer(t, endpoints.RelayConfig{MaxPairs: max})
		sa, sb := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
		var as, bs []*client.RelayConn
		for i := range max {
			a, b := relayPair(t, r, sa, sb, "p", fmt.Sprint("a", i), fmt.Sprint("b", i))
			as, bs = append(as, a), append(bs, b)
		}
		waiter := relayGo(t, sa, "p", "a-last", "b-last")
		relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 })
		_, err := sb.Relay(sctest.Ctx(t), "p", "b-last", "a-last")
		perr := sctest.WantCode(t, err, channel.CodeLimit)
		if perr.Message != "relay open pairs limit (3) reached" {
			t.Fatalf("message %q", perr.Message)
		}
		if st := r.Stats(); st.Waiting != 1 || st.Open != max || st.Rejected != 1 {
			t.Fatalf("stats: %+v", st)
		}
		// Once a pair closes, the stream that kept waiting pairs.
		closePair(t, r, as[0], bs[0])
		b := relayOpen(t, sb, "p", "b-last", "a-last")
		a := relayWait(t, waiter)
		write(t, b, "made it")
		expectRead(t, a, "made it")
		closePair(t, r, a, b)
		for i := 1; i < max; i++ {
			closePair(t, r, as[i], bs[i])
		}
	})
	t.Run("waiting", func(t *testing.T) {
		const max = 3
		ts, r := newRelayServer(t, endpoints.RelayConfig{MaxWaiting: max})
		s := sctest.Dial(t, ts.URL)
		var waiters []<-chan relayResult
		for i := range max {
			waiters = append(waiters, relayGo(t, s, "w", fmt.Sprint("a", i), fmt.Sprint("b", i)))
		}
		relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == max })
		_, err := s.Relay(sctest.Ctx(t), "w", "a-last", "b-last")
		perr := sctest.WantCode(t, err, channel.CodeLimit)
		if perr.Message != "relay waiting streams limit (3) reached" {
			t.Fatalf("message %q", perr.Message)
		}
		// A partner still completes a waiting pair.
		s2 := sctest.Dial(t, ts.URL)
		for i, w := range waiters {
			b := relayOpen(t, s2, "w", fmt.Sprint("b", i), fmt.Sprint("a", i))
			closePair(t, r, relayWait(t, w), b)
		}
	})
}

func TestRelayConfig(t *testing.T) {
	for _, c := range []endpoints.RelayConfig{
		{Limits: relay.Limits{Lifetime: 1500 * time.Millisecond}},
		{Limits: relay.Limits{Lifetime: -time.Second}},
		{Limits: relay.Limits{Bytes: -1}},
		{PairTimeout: -1},
		{MaxPairs: -1},
		{MaxWaiting: -1},
	} {
		if _, err := endpoints.NewRelay(c); err == nil {
			t.Errorf("NewRelay(%+v) accepted", c)
		}
	}
	r, err := endpoints.NewRelay(endpoints.RelayConfig{Limits: relay.Limits{Lifetime: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	if d := endpoints.DefaultRelayConfig(); d.PairTimeout != 30*time.Second || d.Limits != (relay.Limits{}) {
		t.Fatalf("defaults %+v", d)
	}
}

// Close resets waiting streams and open pairs without a reply, and streams
// that arrive later.
func TestRelayClose(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	s := sctest.Dial(t, ts.URL)
	a, b := relayPair(t, r, s, s, "x", "A", "B")
	w := rawRelay(t, s, "x", "C", "D", nil)
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 1 && st.Open == 1 })
	r.Close()
	for _, c := range []deadlineReader{a, b, w} {
		if n := expectReset(t, c); n != 0 {
			t.Fatalf("%d bytes before the reset", n)
		}
	}
	late := rawRelay(t, s, "x", "E", "F", nil)
	if n := expectReset(t, late); n != 0 {
		t.Fatalf("%d bytes before the reset", n)
	}
	sctest.EchoRoundTrip(t, s)
}

// Section 2: namespaces of different endpoints are distinct, and relay
// streams of different namespaces never pair.
func TestRelayNamespacesDistinct(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	s := sctest.Dial(t, ts.URL)
	room, err := s.Echo(sctest.Ctx(t), "shared")
	if err != nil {
		t.Fatal(err)
	}
	defer room.Close()

	pa := relayGo(t, s, "shared", "A", "B")
	relayGo(t, s, "other", "B", "A") // a mirror in another namespace
	relayStats(t, r, func(st relay.Stats) bool { return st.Waiting == 2 && st.Paired == 0 })
	b := relayOpen(t, s, "shared", "B", "A")
	a := relayWait(t, pa)
	write(t, a, "relay bytes")
	expectRead(t, b, "relay bytes")
	if err := room.Send([]byte("echo frame")); err != nil {
		t.Fatal(err)
	}
	room.Stream().SetReadDeadline(time.Now().Add(readTimeout))
	if f, err := room.Recv(); err != nil || string(f) != "echo frame" {
		t.Fatalf("echo got %q, %v", f, err)
	}
	if st := ts.Echo.Stats(); st.Namespaces != 1 || st.Members != 1 {
		t.Fatalf("echo stats %+v", st)
	}
	b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := b.Read(make([]byte, 16)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("relay stream read %d bytes, %v", n, err)
	}
	closePair(t, r, a, b)
}

// 100 pairs at once on one server, each carrying its own data both ways.
func TestRelayManyPairs(t *testing.T) {
	const pairs, size, perSession = 100, 256 << 10, 10
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	var sessions []*client.Session
	for range 2 * pairs / perSession {
		sessions = append(sessions, sctest.Dial(t, ts.URL))
	}
	ctx := sctest.Ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	for i := range pairs {
		for side := range 2 {
			local, remote := fmt.Sprint("p", i, "-a"), fmt.Sprint("p", i, "-b")
			if side == 1 {
				local, remote = remote, local
			}
			s := sessions[(2*i+side)%len(sessions)]
			wg.Go(func() {
				c, err := s.Relay(ctx, "many", local, remote)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				out := patterned(local, size)
				wrote := make(chan error, 1)
				go func() {
					_, err := c.Write(out)
					if err == nil {
						err = c.CloseWrite()
					}
					wrote <- err
				}()
				in, err := io.ReadAll(c)
				if err == nil && !bytes.Equal(in, patterned(remote, size)) {
					err = fmt.Errorf("%s got %d bytes, not what %s sent", local, len(in), remote)
				}
				if werr := <-wrote; err == nil {
					err = werr
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	relayStats(t, r, func(st relay.Stats) bool {
		return st.Paired == pairs && st.Open == 0 && st.Bytes == 2*pairs*size
	})
}

// patterned returns size bytes that depend on seed.
func patterned(seed string, size int) []byte {
	h := sha256.Sum256([]byte(seed))
	return bytes.Repeat(h[:], size/len(h)+1)[:size]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(b)
	return b
}

// bigTransferSize is 1 GiB, or 64 MiB with -short. Under the race
// detector on two cores 1 GiB takes about 20 s.
func bigTransferSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// A large transfer arrives intact: the SHA-256 of what was sent equals
// that of what was received.
func TestRelayLargeTransfer(t *testing.T) {
	size := bigTransferSize()
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	a, b := relayPair(t, r, sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL), "big", "A", "B")
	deadline := time.Now().Add(5 * time.Minute)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)

	start := time.Now()
	sent := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), h)
		if _, err := io.CopyBuffer(a, src, make([]byte, 256<<10)); err != nil {
			t.Errorf("send: %v", err)
		}
		a.CloseWrite()
		sent <- h.Sum(nil)
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(h, b, make([]byte, 256<<10))
	if err != nil || n != size {
		t.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
	if got, want := h.Sum(nil), <-sent; !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 %x, sent %x", got, want)
	}
	d := time.Since(start)
	t.Logf("%d MiB in %v: %.0f MB/s", size>>20, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
	closePair(t, r, a, b)
}

// A half-close may last longer than the stream close timeout: the other
// direction keeps flowing until it closes too.
func TestRelayHalfCloseOutlivesCloseTimeout(t *testing.T) {
	const closeTimeout = 100 * time.Millisecond
	ts, r := newRelayServer(t, endpoints.RelayConfig{}, sctest.Options{Channel: server.Config{StreamCloseTimeout: closeTimeout}})
	a, b := relayPair(t, r, sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL), "long", "A", "B")
	a.CloseWrite()
	expectEOF(t, b)
	deadline := time.Now().Add(8 * closeTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("late %d;", i)
		write(t, b, msg)
		expectRead(t, a, msg)
		time.Sleep(closeTimeout / 4) // pacing the writer, not waiting for a condition
	}
	b.CloseWrite()
	expectEOF(t, a)
	relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
}

// A peer that sends, half-closes and hangs up at once loses nothing: its
// partner reads every byte and then EOF, not a reset.
func TestRelaySendCloseHangUp(t *testing.T) {
	ts, r := newRelayServer(t, endpoints.RelayConfig{})
	for i := range 10 {
		sa := sctest.Dial(t, ts.URL)
		ns := fmt.Sprint("hangup-", i)
		a, b := relayPair(t, r, sa, sctest.Dial(t, ts.URL), ns, "A", "B")
		b.CloseWrite()
		expectEOF(t, a)
		payload := patterned(ns, 300<<10) // more than one stream window
		done := make(chan error, 1)
		go func() {
			b.SetReadDeadline(time.Now().Add(readTimeout))
			got, err := io.ReadAll(b)
			if err == nil && !bytes.Equal(got, payload) {
				err = fmt.Errorf("got %d bytes, want %d", len(got), len(payload))
			}
			done <- err
		}()
		if _, err := a.Write(payload); err != nil {
			t.Fatal(err)
		}
		a.CloseWrite()
		sa.Close()
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	relayStats(t, r, func(st relay.Stats) bool { return st.Open == 0 })
}
