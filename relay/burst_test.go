package relay_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/relay"
)

// pipeStream is a relay.Stream over one end of a net.Pipe. A Read gets at
// most what one Write at the other end gave, so a test decides exactly how
// much each read of the copy returns. It cannot half-close.
type pipeStream struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

var _ relay.Stream = (*pipeStream)(nil)

func (s *pipeStream) CloseWrite() error     { return errors.New("pipeStream: no half-close") }
func (s *pipeStream) Done() <-chan struct{} { return s.done }
func (s *pipeStream) PeerClosed() bool      { return false } // no half-close

func (s *pipeStream) Reset() error {
	s.once.Do(func() { close(s.done) })
	return s.Conn.Close()
}

// pipePair returns the client end of a new pipe and the server end as a
// Stream; both are closed at cleanup.
func pipePair(t testing.TB) (net.Conn, *pipeStream) {
	c, s := net.Pipe()
	srv := &pipeStream{Conn: s, done: make(chan struct{})}
	t.Cleanup(func() {
		c.Close()
		srv.Reset()
	})
	return c, srv
}

// runLink links a and b and runs both sides. wait waits for both Runs
// and returns their errors; cleanup resets the link and waits too.
func runLink(t testing.TB, a, b relay.Stream, lim relay.Limits) (l *relay.Link, wait func() []error) {
	t.Helper()
	l, err := relay.NewLink(a, b, lim)
	if err != nil {
		t.Fatal(err)
	}
	var runs sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []relay.Stream{a, b} {
		runs.Go(func() { errs[i] = l.Run(context.Background(), s) })
	}
	t.Cleanup(func() {
		l.Reset()
		runs.Wait()
	})
	return l, func() []error {
		runs.Wait()
		return errs
	}
}

// send writes each of chunks to from, in one goroutine, while it reads
// them back whole from to.
func send(t testing.TB, from, to net.Conn, chunks ...[]byte) {
	t.Helper()
	written := make(chan error, 1)
	go func() {
		for _, c := range chunks {
			if _, err := from.Write(c); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	want := bytes.Join(chunks, nil)
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer to.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(want), err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes changed on the way")
	}
}

// waitIdle waits until no copy of l holds a big buffer, and checks that l
// is still open.
func waitIdle(t testing.TB, l *relay.Link) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		if held, _ := l.BigBuffers(); held != 0 {
			return fmt.Errorf("an idle pair holds %d big buffers", held)
		}
		return nil
	})
	select {
	case <-l.Done():
		t.Fatalf("link ended: %v", l.Err())
	default:
	}
}

// An open pair through which nothing moves holds no big buffer: not
// before its first byte, not after a small message, not after a burst,
// even one whose every read was large so that only the wait for the next
// byte can tell that it is over.
func TestIdlePairHoldsNoBigBuffer(t *testing.T) {
	ca, sa := pipePair(t)
	cb, sb := pipePair(t)
	l, _ := runLink(t, sa, sb, relay.Limits{})

	small := bytes.Repeat([]byte{'s'}, relay.SmallBufSize-1)
	send(t, ca, cb, small)
	send(t, cb, ca, small)
	if held, taken := l.BigBuffers(); held != 0 || taken != 0 {
		t.Fatalf("small messages: %d big buffers held, %d taken; want none", held, taken)
	}

	big := make([]byte, relay.BigBufSize)
	for i := range big {
		big[i] = byte(i)
	}
	for round := 1; round <= 2; round++ {
		send(t, ca, cb, big, big, big, big)
		send(t, cb, ca, big, big)
		if _, taken := l.BigBuffers(); taken < int64(2*round) {
			t.Fatalf("round %d: bursts took %d big buffers, want at least %d", round, taken, 2*round)
		}
		waitIdle(t, l)

		// The burst's read deadline is gone: a pair quiet for longer
		// still carries a small message and takes no big buffer for it.
		_, before := l.BigBuffers()
		time.Sleep(50 * time.Millisecond)
		send(t, ca, cb, small)
		send(t, cb, ca, small)
		if held, taken := l.BigBuffers(); held != 0 || taken != before {
			t.Fatalf("round %d: a small message after a burst: %d big buffers held, %d more taken", round, held, taken-before)
		}
	}
}

// Bytes arrive intact both ways across many bursts that start and end
// every way they can: short reads, full reads, pauses longer than a burst
// waits, and messages of every size around the buffers'.
func TestBurstsIntact(t *testing.T) {
	const size = 24 << 20 // each way
	ca, sa := tcpPair(t)
	cb, sb := tcpPair(t)
	l, wait := runLink(t, sa, sb, relay.Limits{})

	var wg sync.WaitGroup
	var sent, got [2][sha256.Size]byte
	for i, d := range [][2]*net.TCPConn{{ca, cb}, {cb, ca}} {
		wg.Go(func() { sent[i] = sendBursts(t, d[0], size, uint64(i)) })
		wg.Go(func() {
			d[1].SetReadDeadline(time.Now().Add(60 * time.Second))
			h := sha256.New()
			if n, err := io.Copy(h, d[1]); err != nil || n != size {
				t.Errorf("direction %d: received %d of %d bytes: %v", i, n, size, err)
			}
			copy(got[i][:], h.Sum(nil))
		})
	}
	wg.Wait()
	for _, err := range wait() {
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	if sent != got {
		t.Fatalf("SHA-256 differs: sent %x, received %x", sent, got)
	}
	if st := l.Stats(); st.AToB != size || st.BToA != size {
		t.Fatalf("stats: %+v", st)
	}
	if held, taken := l.BigBuffers(); held != 0 || taken < 4 {
		t.Fatalf("after the pair ended: %d big buffers held, %d taken in all", held, taken)
	}
}

// sendBursts writes size random bytes to c in writes of random sizes,
// pausing now and then, half-closes c and returns the bytes' SHA-256.
func sendBursts(t testing.TB, c *net.TCPConn, size int, seed uint64) [sha256.Size]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	src := rand.NewChaCha8([32]byte{byte(seed)})
	sizes := []int{1, relay.SmallBufSize - 1, relay.SmallBufSize, relay.SmallBufSize + 1,
		relay.BigBufSize - 1, relay.BigBufSize, relay.BigBufSize + 1, 3 * relay.BigBufSize}
	h := sha256.New()
	buf := make([]byte, 3*relay.BigBufSize)
	for left, i := size, 0; left > 0; i++ {
		n := sizes[rng.IntN(len(sizes))]
		if rng.IntN(2) == 0 {
			n = 1 + rng.IntN(n)
		}
		p := buf[:min(n, left)]
		src.Read(p)
		h.Write(p)
		if _, err := c.Write(p); err != nil {
			t.Errorf("write: %v", err)
			return [sha256.Size]byte{}
		}
		left -= len(p)
		if i%8 == 7 {
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}
