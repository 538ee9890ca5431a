package relay_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/relay"
)

// A FIN from one side reaches the other while the other direction keeps
// flowing; the pair ends cleanly when both are closed.
func TestHalfClose(t *testing.T) {
	for _, first := range []string{"A", "B"} {
		t.Run(first+" closes first", func(t *testing.T) {
			p := newPairer(t, relay.Config{})
			x, y := openPair(t, p, "half")
			if first == "B" {
				x, y = y, x
			}
			x.client.Write([]byte("last words"))
			x.client.CloseWrite()
			expectEOF(t, y.client, "last words")

			// y -> x still flows, several times.
			for i := range 3 {
				msg := fmt.Sprint("reply ", i)
				y.client.Write([]byte(msg))
				expectRead(t, x.client, msg)
			}
			select {
			case err := <-x.ran:
				t.Fatalf("Run returned with a direction still open: %v", err)
			default:
			}
			y.client.CloseWrite()
			expectEOF(t, x.client, "")
			for _, s := range []*side{x, y} {
				if err := s.runErr(t); err != nil {
					t.Errorf("Run %v: %v", s.key, err)
				}
			}
		})
	}
}

func TestResetPropagates(t *testing.T) {
	cases := []struct {
		name string
		// kill ends stream a of an open pair.
		kill func(t *testing.T, a, b *side)
		// finned: b's client already read EOF, so the reset shows on write.
		finned bool
	}{
		{"client resets", func(t *testing.T, a, b *side) {
			a.client.SetLinger(0)
			a.client.Close()
		}, false},
		{"session ends", func(t *testing.T, a, b *side) {
			a.srv.endSession()
		}, false},
		{"session ends after half-close", func(t *testing.T, a, b *side) {
			// a -> b is finished, so nothing reads a: only Done tells.
			a.client.CloseWrite()
			expectEOF(t, b.client, "")
			a.srv.markDone()
		}, true},
		{"session ends while both copies wait on b", func(t *testing.T, a, b *side) {
			// a's client fills b, whose client neither reads nor writes:
			// both copies are blocked on b when a goes away.
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := a.client.Write(buf); err != nil {
						return
					}
				}
			}()
			l := a.getLink(t)
			waitFor(t, 10*time.Second, func() error {
				n := l.Stats().AToB
				time.Sleep(20 * time.Millisecond)
				if n == 0 || l.Stats().AToB != n {
					return errors.New("a -> b still moving")
				}
				return nil
			})
			a.srv.markDone()
		}, false},
		{"partner endpoint fails its reply", func(t *testing.T, a, b *side) {
			a.getLink(t).Reset()
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPairer(t, relay.Config{})
			a, b := openPair(t, p, "reset")
			c.kill(t, a, b)
			if c.finned {
				expectWriteFails(t, b.client)
			} else {
				expectReset(t, b.client)
			}
			for _, s := range []*side{a, b} {
				if err := s.runErr(t); !errors.Is(err, relay.ErrReset) {
					t.Errorf("Run %v: %v, want ErrReset", s.key, err)
				}
			}
			expectNoBigBuffers(t, a.getLink(t))
			if st := p.Stats(); st.Open != 0 {
				t.Fatalf("pair still open: %+v", st)
			}
		})
	}
}

// A Run whose context ends ends the pair.
func TestRunCanceled(t *testing.T) {
	p := newPairer(t, relay.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	ka, kb := keys("ctx")
	a := serveWith(t, p, ka, serveOpt{ctx: ctx})
	waiting(t, p, 1)
	b := serve(t, p, kb)
	a.expectOpen(t)
	b.expectOpen(t)
	cancel()
	expectReset(t, b.client)
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); !errors.Is(err, relay.ErrCanceled) {
			t.Errorf("Run %v: %v, want ErrCanceled", s.key, err)
		}
	}
}

// Caps of every size around the copy's buffers: one not a multiple of
// any, one a multiple of the big buffer, and the small buffer's size and
// one less, where a burst would just start.
func TestBytesLimit(t *testing.T) {
	for _, n := range []int{100_000, 3 * relay.BigBufSize, relay.SmallBufSize, relay.SmallBufSize - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testBytesLimit(t, n) })
	}
}

func testBytesLimit(t *testing.T, n int) {
	payload := randomBytes(n + 1)
	lim := relay.Limits{Bytes: int64(n)}

	t.Run("exactly N each way", func(t *testing.T) {
		p := newPairer(t, relay.Config{Limits: lim})
		a, b := openPair(t, p, "bytes")
		go func() { a.client.Write(payload[:n]); a.client.CloseWrite() }()
		go func() { b.client.Write(payload[:n]); b.client.CloseWrite() }()
		expectEOF(t, b.client, string(payload[:n]))
		expectEOF(t, a.client, string(payload[:n]))
		for _, s := range []*side{a, b} {
			if err := s.runErr(t); err != nil {
				t.Errorf("Run %v: %v", s.key, err)
			}
		}
		expectNoBigBuffers(t, a.getLink(t))
	})
	t.Run("N+1 at once", func(t *testing.T) {
		p := newPairer(t, relay.Config{Limits: lim})
		a, b := openPair(t, p, "bytes")
		go a.client.Write(payload)
		if got := expectReset(t, b.client); got > int64(n) {
			t.Fatalf("%d bytes passed a cap of %d", got, n)
		}
		for _, s := range []*side{a, b} {
			if err := s.runErr(t); !errors.Is(err, relay.ErrBytesLimit) {
				t.Errorf("Run %v: %v, want ErrBytesLimit", s.key, err)
			}
		}
		expectNoBigBuffers(t, a.getLink(t))
	})
	t.Run("one byte after N", func(t *testing.T) {
		p := newPairer(t, relay.Config{Limits: lim})
		a, b := openPair(t, p, "bytes")
		a.client.Write(payload[:n])
		expectRead(t, b.client, string(payload[:n]))
		l := a.getLink(t)
		waitFor(t, 10*time.Second, func() error {
			if st := l.Stats(); st.AToB != int64(n) {
				return fmt.Errorf("stats: %+v", st)
			}
			return nil
		})
		a.client.Write([]byte{1})
		expectReset(t, b.client)
		for _, s := range []*side{a, b} {
			if err := s.runErr(t); !errors.Is(err, relay.ErrBytesLimit) {
				t.Errorf("Run %v: %v, want ErrBytesLimit", s.key, err)
			}
		}
		expectNoBigBuffers(t, l)
	})
}

// expectNoBigBuffers checks that l's copies, which have returned, gave
// back their big buffers.
func expectNoBigBuffers(t testing.TB, l *relay.Link) {
	t.Helper()
	if held, _ := l.BigBuffers(); held != 0 {
		t.Errorf("%d big buffers not given back", held)
	}
}

func TestLifetime(t *testing.T) {
	const life = 300 * time.Millisecond
	p := newPairer(t, relay.Config{Limits: relay.Limits{Lifetime: life}})
	start := time.Now()
	a, b := openPair(t, p, "life")
	if got := a.getLink(t).Limits(); got.Lifetime != life {
		t.Fatalf("Limits() = %+v", got)
	}
	a.client.Write([]byte("in time"))
	expectRead(t, b.client, "in time")
	expectReset(t, b.client)
	if el := time.Since(start); el < life {
		t.Fatalf("pair ended after %v, before its lifetime", el)
	}
	expectReset(t, a.client)
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); !errors.Is(err, relay.ErrLifetime) {
			t.Errorf("Run %v: %v, want ErrLifetime", s.key, err)
		}
	}
}

func TestIdle(t *testing.T) {
	const idle = time.Second
	p := newPairer(t, relay.Config{Limits: relay.Limits{Idle: idle}})
	// Traffic in one direction keeps the pair open well past idle: a byte
	// every tenth of it, for twice as long, each read on the other side
	// before the next is written, so the pair sees the gaps the test sees.
	// A machine that stalls for half the limit or more may make a reset
	// legitimate: that attempt proves nothing and another pair tries again.
	for attempt := range 3 {
		a, b := openPair(t, p, fmt.Sprintf("idle-%d", attempt))
		last, stalled := keepBusy(t, a, b, idle)
		if stalled {
			t.Logf("attempt %d: the machine stalled; trying again", attempt)
			continue
		}
		select {
		case err := <-a.ran:
			t.Fatalf("pair ended while busy: %v", err)
		default:
		}

		expectReset(t, a.client)
		if q := time.Since(last); q < idle {
			t.Fatalf("reset after %v of quiet, want at least %v", q, idle)
		}
		for _, s := range []*side{a, b} {
			if err := s.runErr(t); !errors.Is(err, relay.ErrIdle) {
				t.Errorf("Run %v: %v, want ErrIdle", s.key, err)
			}
		}
		return
	}
	t.Fatal("the machine stalled for half the idle limit in every attempt")
}

// keepBusy sends a byte from b to a every idle/10 for twice idle. It returns
// when the last byte was read, and whether a gap of idle/2 or more between
// two bytes leaves the pair's end unproven; a failure without such a gap
// fails the test.
func keepBusy(t *testing.T, a, b *side, idle time.Duration) (last time.Time, stalled bool) {
	t.Helper()
	one := make([]byte, 1)
	for i := range 20 {
		if i > 0 {
			time.Sleep(idle / 10)
		}
		gap := time.Since(last)
		_, err := b.client.Write([]byte{'.'})
		if err == nil {
			a.client.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadFull(a.client, one)
		}
		if i > 0 && time.Since(last) >= idle/2 {
			return last, true
		}
		if err != nil {
			t.Fatalf("byte %d, %v after the previous one: %v", i, gap, err)
		}
		last = time.Now()
	}
	a.client.SetReadDeadline(time.Time{})
	return last, false
}

func TestBandwidth(t *testing.T) {
	const rate = 1 << 20 // per direction
	p := newPairer(t, relay.Config{Limits: relay.Limits{BytesPerSecond: rate}})
	a, b := openPair(t, p, "bw")
	payload := randomBytes(rate)
	start := time.Now()
	go func() { a.client.Write(payload); a.client.CloseWrite() }()
	go func() { b.client.Write(payload); b.client.CloseWrite() }()
	expectEOF(t, b.client, string(payload))
	expectEOF(t, a.client, string(payload))
	// One second of tokens, less the initial burst; both directions paced
	// on their own, so both take about as long.
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Fatalf("%d bytes each way at %d B/s took only %v", rate, rate, el)
	}
	for _, s := range []*side{a, b} {
		if err := s.runErr(t); err != nil {
			t.Errorf("Run %v: %v", s.key, err)
		}
	}
	// A paced direction reads its burst at a time into the small buffer.
	if _, taken := a.getLink(t).BigBuffers(); taken != 0 {
		t.Errorf("paced copies took %d big buffers", taken)
	}
}

// 100 pairs at once, each side arriving in random order, each carrying
// its own bytes both ways.
func TestManyPairs(t *testing.T) {
	const pairs, size = 100, 64 << 10
	p := newPairer(t, relay.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	sides := make([][2]*side, pairs)
	for i := range pairs {
		ka := relay.Key{Namespace: "many", Local: fmt.Sprint("a", i), Remote: fmt.Sprint("b", i)}
		first, second := ka, ka.Mirror()
		if rand.IntN(2) == 0 {
			first, second = second, first
		}
		sides[i] = [2]*side{serve(t, p, first), serve(t, p, second)}
	}
	for i := range pairs {
		for j, s := range sides[i] {
			data := bytes.Repeat([]byte{byte(i), byte(j)}, size/2)
			other := sides[i][1-j]
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := s.client.Write(data); err != nil {
					errs <- err
					return
				}
				if err := s.client.CloseWrite(); err != nil {
					errs <- err
				}
			}()
			go func() {
				defer wg.Done()
				other.client.SetReadDeadline(time.Now().Add(20 * time.Second))
				got, err := io.ReadAll(other.client)
				switch {
				case err != nil:
					errs <- err
				case !bytes.Equal(got, append([]byte(openLine), data...)):
					errs <- fmt.Errorf("pair %d: side %d got %d bytes, not its partner's", i, 1-j, len(got))
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range pairs {
		for _, s := range sides[i] {
			if err := s.runErr(t); err != nil {
				t.Errorf("Run %v: %v", s.key, err)
			}
		}
	}
	st := p.Stats()
	if st.Paired != pairs || st.Open != 0 || st.Waiting != 0 || st.Bytes != 2*pairs*size {
		t.Fatalf("stats: %+v", st)
	}
}

// A gibibyte one way, with a smaller stream the other way, arrives intact.
func TestLargeTransfer(t *testing.T) {
	const size = 1 << 30
	p := newPairer(t, relay.Config{})
	a, b := openPair(t, p, "large")
	start := time.Now()

	var wg sync.WaitGroup
	var sent, got [sha256.Size]byte
	var sendErr, recvErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		h := sha256.New()
		src := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 256<<10)
		for left := size; left > 0; left -= len(buf) {
			src.Read(buf)
			h.Write(buf)
			if _, err := a.client.Write(buf); err != nil {
				sendErr = err
				return
			}
		}
		copy(sent[:], h.Sum(nil))
		sendErr = a.client.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		h := sha256.New()
		n, err := io.Copy(h, b.client)
		if err == nil && n != size {
			err = fmt.Errorf("received %d bytes, want %d", n, size)
		}
		recvErr = err
		copy(got[:], h.Sum(nil))
	}()
	wg.Wait()
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v, receive: %v", sendErr, recvErr)
	}
	if sent != got {
		t.Fatalf("SHA-256 differs: sent %x, received %x", sent, got)
	}
	t.Logf("1 GiB in %v", time.Since(start))
	l := a.getLink(t)
	if st := l.Stats(); st.AToB != size {
		t.Fatalf("stats: %+v", st)
	}
	if _, taken := l.BigBuffers(); taken == 0 {
		t.Error("a gibibyte went through without a big buffer")
	}
	closeBoth(t, a, b)
	expectNoBigBuffers(t, l)
}

// NewLink pipes any two streams, without a Pairer.
func TestNewLink(t *testing.T) {
	ca, sa := tcpPair(t)
	cb, sb := tcpPair(t)
	if _, err := relay.NewLink(sa, sa, relay.Limits{}); err == nil {
		t.Fatal("NewLink accepted one stream twice")
	}
	if _, err := relay.NewLink(sa, sb, relay.Limits{Bytes: -1}); err == nil {
		t.Fatal("NewLink accepted a negative cap")
	}
	l, err := relay.NewLink(sa, sb, relay.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, other := tcpPair(t)
	if err := l.Run(context.Background(), other); !errors.Is(err, relay.ErrNotSide) {
		t.Fatalf("Run with a foreign stream: %v", err)
	}

	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []relay.Stream{sa, sb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Run(context.Background(), s)
		}()
	}
	ca.Write([]byte("ping"))
	expectRead(t, cb, "ping")
	if err := l.Run(context.Background(), sa); !errors.Is(err, relay.ErrNotSide) {
		t.Fatalf("second Run for one side: %v", err)
	}
	cb.Write([]byte("pong"))
	expectRead(t, ca, "pong")
	ca.CloseWrite()
	cb.CloseWrite()
	expectEOF(t, ca, "")
	expectEOF(t, cb, "")
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if st := l.Stats(); st.AToB != 4 || st.BToA != 4 {
		t.Fatalf("stats: %+v", st)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after both Runs returned")
	}
	if l.Err() != nil {
		t.Fatalf("Err() = %v", l.Err())
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{2}).Read(b)
	return b
}
