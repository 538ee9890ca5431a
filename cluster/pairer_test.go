package cluster

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/relay"
)

const readTimeout = 10 * time.Second

type relayResult struct {
	c   *client.RelayConn
	err error
}

// relayGo opens a relay stream in a goroutine; the result arrives once it
// is paired or refused.
func relayGo(t testing.TB, url, ns, local, remote string) <-chan relayResult {
	t.Helper()
	s := sctest.Dial(t, url)
	ctx := sctest.Ctx(t)
	ch := make(chan relayResult, 1)
	go func() {
		c, err := s.Relay(ctx, ns, local, remote)
		ch <- relayResult{c, err}
	}()
	return ch
}

func relayWait(t testing.TB, ch <-chan relayResult) (*client.RelayConn, error) {
	t.Helper()
	select {
	case r := <-ch:
		if r.c != nil {
			t.Cleanup(func() { r.c.Reset(); r.c.Close() })
		}
		return r.c, r.err
	case <-time.After(readTimeout):
		t.Fatal("relay stream not answered in time")
		return nil, nil
	}
}

func mustPair(t testing.TB, ch <-chan relayResult) *client.RelayConn {
	t.Helper()
	c, err := relayWait(t, ch)
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	return c
}

// waitWaiting waits until node n has k streams waiting.
func waitWaiting(t testing.TB, n *testNode, k int) {
	t.Helper()
	sctest.WaitFor(t, readTimeout, func() error {
		if st := n.pairer.Stats(); st.Waiting != k {
			return fmt.Errorf("%s: %+v", n.node.Name(), st)
		}
		return nil
	})
}

type deadlineReader = sctest.DeadlineReader

var (
	expectRead = sctest.ExpectRead
	expectEOF  = sctest.ExpectEOF
)

func expectReset(t testing.TB, r deadlineReader) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(readTimeout))
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("want a reset after %d bytes, got %v", n, err)
	}
}

func write(t testing.TB, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// A pair across two nodes, in both orders of arrival: bytes, half-close
// and the pair's end pass through, and the tokens may pair again.
func TestPairerAcrossNodes(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{})
	for i, order := range [][2]int{{0, 1}, {2, 0}, {1, 2}, {0, 1}} {
		a := relayGo(t, nodes[order[0]].srv.URL, "calls", "A", "B")
		waitWaiting(t, nodes[order[0]], 1)
		ca := mustPair(t, relayGo(t, nodes[order[1]].srv.URL, "calls", "B", "A"))
		cb := mustPair(t, a)
		msg := fmt.Sprintf("hello %d", i)
		write(t, ca, msg)
		expectRead(t, cb, msg)
		write(t, cb, "back "+msg)
		expectRead(t, ca, "back "+msg)
		// Half-close one way; the other way flows on.
		if err := ca.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		expectEOF(t, cb)
		write(t, cb, "after FIN")
		expectRead(t, ca, "after FIN")
		if err := cb.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		expectEOF(t, ca)
		for _, n := range nodes {
			sctest.WaitFor(t, readTimeout, func() error {
				if st := n.pairer.Stats(); st.Open != 0 || st.Waiting != 0 {
					return fmt.Errorf("%s: %+v", n.node.Name(), st)
				}
				return nil
			})
		}
		for _, c := range []*client.RelayConn{ca, cb} {
			select {
			case <-c.Done():
				t.Fatal("a pair closed by both sides was reset")
			default:
			}
		}
	}
	for _, n := range nodes {
		n.pairer.mu.Lock()
		pipes, rvs := len(n.pairer.pipes), len(n.pairer.rvs)
		n.pairer.mu.Unlock()
		if pipes != 0 || rvs != 0 {
			t.Fatalf("%s keeps %d pipes and %d subscriptions", n.node.Name(), pipes, rvs)
		}
	}
}

// Bytes written before pairing, and a FIN, are delivered after it; a reset
// on one node resets the stream on the other.
func TestPairerEarlyBytesAndReset(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 2)), clusterOptions{})
	s := sctest.Dial(t, nodes[0].srv.URL)
	st, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Write([]byte(`{"endpoint":"relay","namespace":"g","local":"A","remote":"B"}` + "\nearly bytes")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitWaiting(t, nodes[0], 1)
	b := mustPair(t, relayGo(t, nodes[1].srv.URL, "g", "B", "A"))
	expectRead(t, b, "early bytes")
	expectEOF(t, b)

	// Reset travels across.
	c := relayGo(t, nodes[1].srv.URL, "g2", "A", "B")
	waitWaiting(t, nodes[1], 1)
	d := mustPair(t, relayGo(t, nodes[0].srv.URL, "g2", "B", "A"))
	cc := mustPair(t, c)
	write(t, cc, "x")
	expectRead(t, d, "x")
	d.Reset()
	expectReset(t, cc)
}

// A second stream with the key of one waiting or open on another node gets
// conflict, so does one with the mirror key of an open pair; a stream
// without partner gets timeout.
func TestPairerConflictAndTimeout(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{relay: PairerConfig{PairTimeout: 2 * time.Second}})
	a := relayGo(t, nodes[0].srv.URL, "c", "A", "B")
	waitWaiting(t, nodes[0], 1)
	_, err := relayWait(t, relayGo(t, nodes[1].srv.URL, "c", "A", "B"))
	sctest.WantCode(t, err, channel.CodeConflict)

	b := mustPair(t, relayGo(t, nodes[2].srv.URL, "c", "B", "A"))
	ca := mustPair(t, a)
	for i, n := range nodes {
		for _, k := range [][2]string{{"A", "B"}, {"B", "A"}} {
			_, err := relayWait(t, relayGo(t, n.srv.URL, "c", k[0], k[1]))
			if err == nil {
				t.Fatalf("node %d: %s->%s paired while the pair is open", i, k[0], k[1])
			}
			sctest.WantCode(t, err, channel.CodeConflict)
		}
	}
	write(t, ca, "still open")
	expectRead(t, b, "still open")

	start := time.Now()
	_, err = relayWait(t, relayGo(t, nodes[1].srv.URL, "c", "lonely", "nobody"))
	sctest.WantCode(t, err, channel.CodeTimeout)
	if d := time.Since(start); d < 1900*time.Millisecond || d > 4*time.Second {
		t.Fatalf("timeout after %v, want about 2s", d)
	}
}

// Many token pairs whose streams arrive at the same moment on random
// nodes, each with a duplicate of one side: every pair opens exactly once,
// each duplicate gets conflict, and the bytes go to the right partner.
func TestPairerExactlyOnceUnderRaces(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{})
	const pairs = 30
	type side struct {
		tok  [2]string
		node int
		ch   <-chan relayResult
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var sides [][]side
	for i := 0; i < pairs; i++ {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		toks := [][2]string{{a, b}, {b, a}, {a, b}} // the third duplicates the first
		if i%2 == 1 {
			toks[2] = [2]string{b, a}
		}
		var ss []side
		for _, tk := range toks {
			ss = append(ss, side{tok: tk, node: rng.IntN(len(nodes))})
		}
		sides = append(sides, ss)
	}
	// Start them all at once, sessions dialed first.
	start := make(chan struct{})
	for i := range sides {
		for j := range sides[i] {
			sd := &sides[i][j]
			sess := sctest.Dial(t, nodes[sd.node].srv.URL)
			ctx := sctest.Ctx(t)
			ch := make(chan relayResult, 1)
			go func() {
				<-start
				c, err := sess.Relay(ctx, "race", sd.tok[0], sd.tok[1])
				ch <- relayResult{c, err}
			}()
			sd.ch = ch
		}
	}
	close(start)
	for i, ss := range sides {
		var conns []*client.RelayConn
		var toks [][2]string
		conflicts := 0
		for _, sd := range ss {
			c, err := relayWait(t, sd.ch)
			switch {
			case err == nil:
				conns = append(conns, c)
				toks = append(toks, sd.tok)
			case errors.As(err, new(*channel.Error)) && err.(*channel.Error).Code == channel.CodeConflict:
				conflicts++
			default:
				t.Fatalf("pair %d: %v", i, err)
			}
		}
		if len(conns) != 2 || conflicts != 1 || toks[0] != [2]string{toks[1][1], toks[1][0]} {
			t.Fatalf("pair %d: %d paired (%v), %d conflicts", i, len(conns), toks, conflicts)
		}
		write(t, conns[0], fmt.Sprint("to ", i))
		expectRead(t, conns[1], fmt.Sprint("to ", i))
	}
}

// transferSize is what TestPairerLargeTransfer sends each way: 32 MiB, 64
// times the pipe's window, so that flow control turns over many times, and
// little enough to finish on a slow machine (about 10 s on two busy cores
// under the race detector); 8 MiB with -short.
func transferSize() int64 {
	if testing.Short() {
		return 8 << 20
	}
	return 32 << 20
}

// A pair across two nodes carries a large transfer intact both ways at once:
// the SHA-256 of what each side sent equals that of what the other received.
// The nodes take each other for dead only after a minute of silence: the
// test is of the bytes, and a starved machine may be silent for seconds.
func TestPairerLargeTransfer(t *testing.T) {
	size := transferSize()
	const opTimeout = time.Minute // one read or write, on a starved machine
	nodes := newCluster(t, urlsOf(startNATS(t, 2)), clusterOptions{node: Config{DeadAfter: time.Minute}})
	ch := relayGo(t, nodes[0].srv.URL, "big", "A", "B")
	waitWaiting(t, nodes[0], 1)
	b := mustPair(t, relayGo(t, nodes[1].srv.URL, "big", "B", "A"))
	a := mustPair(t, ch)

	start := time.Now()
	var wg sync.WaitGroup
	sums := make([][2][]byte, 2) // [sent, received] per side
	for i, c := range []*client.RelayConn{a, b} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			h := sha256.New()
			src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{byte(i + 1)}), size), h)
			buf := make([]byte, 64<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					c.SetWriteDeadline(time.Now().Add(opTimeout))
					if _, werr := c.Write(buf[:n]); werr != nil {
						t.Errorf("side %d send: %v", i, werr)
						return
					}
				}
				if err == io.EOF {
					break
				}
			}
			c.CloseWrite()
			sums[i][0] = h.Sum(nil)
		}()
		go func() {
			defer wg.Done()
			h := sha256.New()
			buf := make([]byte, 64<<10)
			var n int64
			for {
				c.SetReadDeadline(time.Now().Add(opTimeout))
				k, err := c.Read(buf)
				h.Write(buf[:k])
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("side %d received %d of %d bytes: %v", i, n, size, err)
					return
				}
			}
			if n != size {
				t.Errorf("side %d received %d of %d bytes", i, n, size)
			}
			sums[i][1] = h.Sum(nil)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range sums {
		if sent, got := sums[i][0], sums[1-i][1]; !bytes.Equal(sent, got) {
			t.Fatalf("side %d sent SHA-256 %x, the other received %x", i, sent, got)
		}
	}
	d := time.Since(start)
	t.Logf("%d MiB each way in %v: %.0f MB/s per direction", size>>20, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
	// Flow control bounded what waited on either node.
	for _, n := range nodes {
		if st := n.pairer.Stats(); st.Bytes < 2*size {
			t.Fatalf("%s counted %d bytes", n.node.Name(), st.Bytes)
		}
	}
}

// A slow reader stalls the writer across nodes: no more than the window
// and the streams' own windows wait in between.
func TestPairerFlowControl(t *testing.T) {
	const window = 64 << 10
	nodes := newCluster(t, urlsOf(startNATS(t, 2)), clusterOptions{relay: PairerConfig{Window: window, ChunkBytes: 16 << 10}})
	ch := relayGo(t, nodes[0].srv.URL, "slow", "A", "B")
	waitWaiting(t, nodes[0], 1)
	b := mustPair(t, relayGo(t, nodes[1].srv.URL, "slow", "B", "A"))
	a := mustPair(t, ch)

	var written int64
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 16<<10)
		for {
			a.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := a.Write(buf)
			mu.Lock()
			written += int64(n)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	<-done // the writer stalled: its deadline passed
	mu.Lock()
	stalled := written
	mu.Unlock()
	// Each yamux stream holds 256 KiB and each node's copy a buffer of as
	// much while a burst is stuck; the cluster adds at most one window.
	if limit := int64(2*256<<10 + 2*256<<10 + window + 64<<10); stalled > limit {
		t.Fatalf("%d bytes went out to a reader that reads nothing, want at most %d", stalled, limit)
	}
	nodes[1].pairer.mu.Lock()
	for _, pp := range nodes[1].pairer.pipes {
		pp.mu.Lock()
		if buffered := pp.rcvd - pp.consumed; buffered > window {
			t.Errorf("pipe buffers %d bytes, window %d", buffered, window)
		}
		pp.mu.Unlock()
	}
	nodes[1].pairer.mu.Unlock()
	// The reader drains it all.
	got := int64(0)
	buf := make([]byte, 64<<10)
	for got < stalled {
		b.SetReadDeadline(time.Now().Add(readTimeout))
		n, err := b.Read(buf)
		got += int64(n)
		if err != nil {
			t.Fatalf("read %d of %d: %v", got, stalled, err)
		}
	}
}

var _ = relay.ErrConflict
