package endpoints_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

func join(t testing.TB, s *client.Session, ns string) *client.Echo {
	t.Helper()
	e, err := s.Echo(sctest.Ctx(t), ns)
	if err != nil {
		t.Fatal(err)
	}
	// A test that goes wrong fails instead of hanging.
	e.Stream().SetReadDeadline(time.Now().Add(30 * time.Second))
	return e
}

func recvN(t testing.TB, e *client.Echo, n int) [][]byte {
	t.Helper()
	out := make([][]byte, 0, n)
	for len(out) < n {
		f, err := e.Recv()
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", len(out), n, err)
		}
		out = append(out, f)
	}
	return out
}

func waitStats(t testing.TB, ts *sctest.Server, want endpoints.BrokerStats) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		if got := ts.Echo.Stats(); got != want {
			return fmt.Errorf("stats %+v, want %+v", got, want)
		}
		return nil
	})
}

// Rule 1: every frame reaches every member, the writer included, whole and
// unchanged; also the reply carries maxFrame.
func TestEchoDeliversToEveryMember(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	var members []*client.Echo
	for i := 0; i < 5; i++ {
		members = append(members, join(t, sctest.Dial(t, ts.URL), "room"))
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 5})
	if members[0].MaxFrame() != 65536 {
		t.Fatalf("maxFrame %d", members[0].MaxFrame())
	}
	frames := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{0, 1, 2, 255}, 1000), make([]byte, 65536)}
	for _, f := range frames {
		if err := members[2].Send(f); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range members {
		got := recvN(t, m, len(frames))
		for j := range frames {
			if !bytes.Equal(got[j], frames[j]) {
				t.Fatalf("member %d frame %d: %d bytes, want %d", i, j, len(got[j]), len(frames[j]))
			}
		}
	}
}

// Rule 2: 50 concurrent writers; no frame interleaves with another and every
// member sees one and the same order.
func TestEchoConcurrentWritersOneOrder(t *testing.T) {
	const writers, perWriter = 50, 20
	ts := sctest.NewServer(t, sctest.Options{})
	var members []*client.Echo
	for i := 0; i < writers; i++ {
		members = append(members, join(t, sctest.Dial(t, ts.URL), "busy"))
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: writers})

	// Each frame is its writer's id and sequence, padded with a byte
	// pattern of that writer, so an interleaved frame is caught. Sizes
	// differ per writer; all of a member's frames (about 300 KiB) fit its
	// queue and window, so no member is dropped for being slow.
	frame := func(w, seq int) []byte {
		f := make([]byte, 8+100+w*5)
		binary.BigEndian.PutUint32(f, uint32(w))
		binary.BigEndian.PutUint32(f[4:], uint32(seq))
		for i := 8; i < len(f); i++ {
			f[i] = byte(w)
		}
		return f
	}
	var wg sync.WaitGroup
	for w, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; seq < perWriter; seq++ {
				if err := m.Send(frame(w, seq)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	orders := make([][]uint64, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := make([]int, writers)
			for n := 0; n < writers*perWriter; n++ {
				f, err := m.Recv()
				if err != nil {
					t.Errorf("member %d after %d frames: %v", i, n, err)
					return
				}
				w, seq := int(binary.BigEndian.Uint32(f)), int(binary.BigEndian.Uint32(f[4:]))
				if w >= writers || !bytes.Equal(f, frame(w, seq)) {
					t.Errorf("member %d got a damaged or interleaved frame", i)
					return
				}
				if seq != next[w] {
					t.Errorf("member %d: writer %d frame %d arrived, want %d", i, w, seq, next[w])
					return
				}
				next[w]++
				orders[i] = append(orders[i], uint64(w)<<32|uint64(seq))
			}
		}()
	}
	wg.Wait()
	for i := 1; i < len(orders); i++ {
		for j := range orders[0] {
			if orders[i][j] != orders[0][j] {
				t.Fatalf("member %d's order differs from member 0's at frame %d", i, j)
			}
		}
	}
}

// Rule 3: a namespace is created by its first member and freed with the
// last; a member leaving disturbs no one.
func TestEchoNamespaceLifecycle(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	waitStats(t, ts, endpoints.BrokerStats{})
	s := sctest.Dial(t, ts.URL)
	a, b := join(t, s, "life"), join(t, s, "life")
	other := join(t, s, "elsewhere")
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 2, Members: 3})

	a.Close()
	if _, err := a.Recv(); err != io.EOF {
		t.Fatalf("leaving member: %v, want EOF", err)
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 2, Members: 2})
	if err := b.Send([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, b, 1); string(f[0]) != "still here" {
		t.Fatalf("%q", f[0])
	}
	b.Stream().Reset()
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 1})
	other.Close()
	waitStats(t, ts, endpoints.BrokerStats{})
	// Separate endpoints' namespaces never meet: only echo ones count here.
}

// Rule 4: a frame of exactly maxFrame passes; one byte more resets the
// writer and reaches no one.
func TestEchoFrameLimit(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	s := sctest.Dial(t, ts.URL)
	writer, reader := join(t, s, "big"), join(t, sctest.Dial(t, ts.URL), "big")

	exact := bytes.Repeat([]byte{7}, 65536)
	if err := writer.Send(exact); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, reader, 1); !bytes.Equal(f[0], exact) {
		t.Fatal("65536-byte frame damaged")
	}
	recvN(t, writer, 1)

	// The client refuses to send it; write the frame by hand.
	over := channel.AppendFrame(nil, bytes.Repeat([]byte{8}, 65537))
	writer.Stream().Write(over)
	if _, err := writer.Recv(); !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("writer after oversize frame: %v, want reset", err)
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 1})
	if err := join(t, s, "big").Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, reader, 1); string(f[0]) != "after" {
		t.Fatalf("reader got %d bytes: part of the oversize frame was delivered", len(f[0]))
	}
	if err := writer.Send(channel.AppendFrame(nil, exact)[:10]); err == nil {
		t.Fatal("write on a reset stream succeeded")
	}
}

// Rule 5: a member that never reads is dropped (its stream reset) while
// every other member receives every frame, with or without a publish
// budget (one the writer stays within: it does not replace this rule).
func TestEchoSlowMemberDropped(t *testing.T) {
	for name, rate := range map[string]int{"no budget": -1, "budget": 1 << 30} {
		t.Run(name, func(t *testing.T) {
			testSlowMemberDropped(t, endpoints.EchoConfig{QueueBytes: 256 << 10, PublishRate: rate})
		})
	}
}

func testSlowMemberDropped(t *testing.T, cfg endpoints.EchoConfig) {
	ts := sctest.NewServer(t, sctest.Options{Echo: cfg})
	slow := join(t, sctest.Dial(t, ts.URL), "firehose")
	fast := join(t, sctest.Dial(t, ts.URL), "firehose")
	writer := join(t, sctest.Dial(t, ts.URL), "firehose")
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 3})

	// Far more than the slow member's stream window (256 KiB) plus its
	// queue (256 KiB): it must overflow. The writer keeps at most a few
	// frames ahead of the fast member, so that one never lags past its
	// own queue however the goroutines are scheduled.
	const frames, size, ahead = 200, 16 << 10, 4
	done := make(chan error, 1)
	credit := make(chan struct{}, ahead)
	for range ahead {
		credit <- struct{}{}
	}
	go func() {
		for i := 0; i < frames; i++ {
			select {
			case <-credit:
			case <-time.After(10 * time.Second):
				done <- fmt.Errorf("fast member stalled at frame %d", i)
				return
			}
			f := bytes.Repeat([]byte{byte(i)}, size)
			if err := writer.Send(f); err != nil {
				done <- err
				return
			}
			if _, err := writer.Recv(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < frames; i++ {
		f, err := fast.Recv()
		if err != nil || len(f) != size || f[0] != byte(i) {
			t.Fatalf("fast member frame %d: %d bytes, %v", i, len(f), err)
		}
		credit <- struct{}{}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 2})
	// The slow member reads what reached it before the reset, then the reset.
	var err error
	for err == nil {
		_, err = slow.Recv()
	}
	if !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("slow member: %v, want reset", err)
	}
}

// Rule 6: a member that half-closes gets what was queued for it, then EOF.
func TestEchoHalfCloseFlushes(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	writer := join(t, sctest.Dial(t, ts.URL), "flush")
	leaver := join(t, sctest.Dial(t, ts.URL), "flush")
	for i := 0; i < 100; i++ {
		if err := writer.Send([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	recvN(t, writer, 100) // all 100 were accepted before the leaver's FIN
	leaver.Close()
	got := 0
	for {
		f, err := leaver.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", got, err)
		}
		if string(f) != fmt.Sprint(got) {
			t.Fatalf("frame %d is %q", got, f)
		}
		got++
	}
	if got != 100 {
		t.Fatalf("leaver got %d of 100 queued frames", got)
	}
}

// A session that ends takes its members out at once.
func TestEchoSessionEndLeaves(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	s := sctest.Dial(t, ts.URL)
	for i := 0; i < 3; i++ {
		join(t, s, fmt.Sprint("ns", i))
	}
	stay := join(t, sctest.Dial(t, ts.URL), "ns0")
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 3, Members: 4})
	s.Close()
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 1})
	if err := stay.Send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	recvN(t, stay, 1)
}

// Caps on namespaces and members answer `limit` naming the cap.
func TestEchoCaps(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Echo: endpoints.EchoConfig{MaxNamespaces: 2, MaxMembers: 2}})
	s := sctest.Dial(t, ts.URL)
	join(t, s, "a")
	join(t, s, "a")
	_, err := s.Echo(sctest.Ctx(t), "a")
	if perr := sctest.WantCode(t, err, channel.CodeLimit); perr.Message != "members per echo namespace limit (2) reached" {
		t.Fatalf("message %q", perr.Message)
	}
	join(t, s, "b")
	_, err = s.Echo(sctest.Ctx(t), "c")
	if perr := sctest.WantCode(t, err, channel.CodeLimit); perr.Message != "echo namespaces limit (2) reached" {
		t.Fatalf("message %q", perr.Message)
	}
	// A namespace freed makes room for another.
	s.Close()
	waitStats(t, ts, endpoints.BrokerStats{})
	sctest.EchoRoundTrip(t, sctest.Dial(t, ts.URL))
}

// echoWriters counts the echo writer goroutines running in this process.
func echoWriters() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "endpoints.(*member).writeLoop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func waitWriters(t testing.TB, want int) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		if got := echoWriters(); got != want {
			return fmt.Errorf("%d echo writer goroutines, want %d", got, want)
		}
		return nil
	})
}

// An idle member holds no writer goroutine: members that joined and got a
// frame have none once it is written.
func TestEchoIdleMembersHaveNoWriter(t *testing.T) {
	const n = 20
	ts := sctest.NewServer(t, sctest.Options{})
	var members []*client.Echo
	for i := 0; i < n; i++ {
		members = append(members, join(t, sctest.Dial(t, ts.URL), "idle"))
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: n})
	waitWriters(t, 0)
	if err := members[0].Send([]byte("wake")); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if f := recvN(t, m, 1); string(f[0]) != "wake" {
			t.Fatalf("%q", f[0])
		}
	}
	waitWriters(t, 0)
}

// A member's writer runs while frames wait for it, blocked on the member's
// full stream window, and stops once they are written; a FIN meanwhile
// still gets every queued frame, in order, before the EOF.
func TestEchoWriterRunsOnlyWhileQueued(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	writer := join(t, sctest.Dial(t, ts.URL), "stuck")
	stuck := join(t, sctest.Dial(t, ts.URL), "stuck")
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 2})
	waitWriters(t, 0)

	// 800 KiB: past the stuck member's stream window (256 KiB), within its
	// queue (1 MiB).
	const frames, size = 100, 8 << 10
	for i := 0; i < frames; i++ {
		if err := writer.Send(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	recvN(t, writer, frames) // the writer's own copies: its writer stops
	waitWriters(t, 1)        // the stuck member's, blocked in a write

	stuck.Close()
	for i := 0; i < frames; i++ {
		f, err := stuck.Recv()
		if err != nil || len(f) != size || f[0] != byte(i) {
			t.Fatalf("frame %d: %d bytes, %v", i, len(f), err)
		}
	}
	if _, err := stuck.Recv(); err != io.EOF {
		t.Fatalf("after the queued frames: %v, want EOF", err)
	}
	waitWriters(t, 0)
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 1})
}
