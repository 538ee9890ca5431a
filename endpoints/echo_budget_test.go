package endpoints_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// seqFrame is a writer's frame i of size bytes: i, then the byte i.
func seqFrame(i, size int) []byte {
	f := bytes.Repeat([]byte{byte(i)}, size)
	binary.BigEndian.PutUint32(f, uint32(i))
	return f
}

// received is what a member read: frames, then why it stopped.
type received struct {
	frames [][]byte
	err    error
}

// collect reads e's frames in a goroutine until the frame marker (not
// kept), an error, or, with marker nil, the first error. With rate > 0 it
// reads at most rate bytes per second, as a client that does something
// with each frame does.
func collect(e *client.Echo, marker []byte, rate int) <-chan received {
	out := make(chan received, 1)
	go func() {
		var r received
		start, n := time.Now(), 0
		for {
			f, err := e.Recv()
			if err != nil || marker != nil && bytes.Equal(f, marker) {
				r.err = err
				out <- r
				return
			}
			r.frames = append(r.frames, f)
			if n += len(f); rate > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate))))
			}
		}
	}()
	return out
}

// readerRate is how fast the readers of publishPastBudget read: 4 MB/s,
// more than a writer paced at 3 MB/s sends, far less than a burst.
const readerRate = 4_000_000

// wantFrames checks that got is frames 0 to n-1 of size bytes, in order.
func wantFrames(t *testing.T, who string, got [][]byte, n, size int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s got %d frames, want the %d accepted", who, len(got), n)
	}
	for i, f := range got {
		if !bytes.Equal(f, seqFrame(i, size)) {
			t.Fatalf("%s: frame %d is not the writer's frame %d", who, i, i)
		}
	}
}

// refusalWait bounds the wait for a refusal: the writer's frames cross
// loopback in well under a second, even on a busy machine.
const refusalWait = 20 * time.Second

// publishPastBudget joins a writer and three readers that keep reading
// (at readerRate);
// the writer sends frames of size bytes, one every pace (0: all at once),
// until the server refuses one. The writer must read the `limit` error
// with msg, and every reader exactly the frames accepted before it, in
// order; no member is dropped as slow.
func publishPastBudget(t *testing.T, ts *sctest.Server, frames, size int, pace time.Duration, msg string) {
	const ns = "budget"
	writer := join(t, sctest.Dial(t, ts.URL), ns)
	var readers []*client.Echo
	for range 3 {
		readers = append(readers, join(t, sctest.Dial(t, ts.URL), ns))
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 4})
	marker := []byte("end")
	var got []<-chan received
	for _, r := range readers {
		got = append(got, collect(r, marker, readerRate))
	}
	own := collect(writer, nil, 0)

	sent := make(chan error, 1)
	go func() {
		var tick <-chan time.Time
		if pace > 0 {
			tk := time.NewTicker(pace)
			defer tk.Stop()
			tick = tk.C
		}
		for i := 0; i < frames; i++ {
			if ts.Echo.Counters().Refused > 0 {
				break // what follows is discarded
			}
			if err := writer.Send(seqFrame(i, size)); err != nil {
				sent <- fmt.Errorf("frame %d: %v", i, err)
				return
			}
			if tick != nil {
				<-tick
			}
		}
		sent <- nil
	}()
	sctest.WaitFor(t, refusalWait, func() error {
		c := ts.Echo.Counters()
		if c.Dropped != 0 {
			t.Fatalf("%d members dropped as slow, %d writers refused", c.Dropped, c.Refused)
		}
		if c.Refused != 1 {
			return fmt.Errorf("%d writers refused", c.Refused)
		}
		return nil
	})
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// No frame of the writer is published after the refusal.
	accepted := int(ts.Echo.Counters().FramesIn)
	if accepted == 0 || accepted >= frames {
		t.Fatalf("%d of %d frames accepted", accepted, frames)
	}

	w := <-own
	perr := sctest.WantCode(t, w.err, channel.CodeLimit)
	if perr.Message != msg {
		t.Fatalf("writer's error %q, want %q", perr.Message, msg)
	}
	// What was queued for the writer may be dropped: it reads a prefix.
	wantFrames(t, "writer", w.frames, len(w.frames), size)
	if len(w.frames) > accepted {
		t.Fatalf("writer read %d frames, %d accepted", len(w.frames), accepted)
	}
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 3})

	if err := readers[2].Send(marker); err != nil {
		t.Fatal(err)
	}
	for i, ch := range got {
		r := <-ch
		if r.err != nil {
			t.Fatalf("reader %d after %d frames: %v", i, len(r.frames), r.err)
		}
		wantFrames(t, fmt.Sprint("reader ", i), r.frames, accepted, size)
	}
	if c := ts.Echo.Counters(); c.Dropped != 0 {
		t.Fatalf("%d members dropped as slow", c.Dropped)
	}
}

// One member writing 55 frames of 60 KB at once (3.3 MB) used to fill the
// queue of every member reading at a few MB/s, and the server dropped them
// all as slow. With the default budget the writer is refused and the
// readers lose nothing.
func TestEchoBurstDoesNotEvictReaders(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Echo: endpoints.EchoConfig{PublishRate: endpoints.DefaultEchoPublishRate}})
	publishPastBudget(t, ts, 55, 60000, 0,
		"echo publish budget (262144 bytes/s, burst 524288 bytes) exceeded")
}

// A writer at ten times its rate is cut off once its burst is spent.
func TestEchoPublishBudgetPaced(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Echo: endpoints.EchoConfig{PublishRate: 64 << 10, PublishBurst: 128 << 10}})
	// 8 KiB every 12.5 ms: 640 KiB/s.
	publishPastBudget(t, ts, 400, 8<<10, 12500*time.Microsecond,
		"echo publish budget (65536 bytes/s, burst 131072 bytes) exceeded")
}

// Frames count with their length prefix: frames of exactly the burst pass,
// one byte more is refused. The rate (1 byte/s) adds nothing meanwhile.
func TestEchoPublishBudgetEdge(t *testing.T) {
	const burst = 100000
	ts := sctest.NewServer(t, sctest.Options{Echo: endpoints.EchoConfig{PublishRate: 1, PublishBurst: burst}})
	exact := join(t, sctest.Dial(t, ts.URL), "edge")
	over := join(t, sctest.Dial(t, ts.URL), "edge")
	reader := join(t, sctest.Dial(t, ts.URL), "edge")
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 3})

	// Two frames in one write: 60004 + 39996 bytes framed.
	first := seqFrame(0, 60000)
	two := func(last int) []byte {
		return channel.AppendFrame(channel.AppendFrame(nil, first), seqFrame(1, last))
	}
	if _, err := exact.Stream().Write(two(burst - 60004 - 4)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*client.Echo{reader, exact} {
		got := recvN(t, m, 2)
		if !bytes.Equal(got[0], first) || len(got[1]) != burst-60004-4 {
			t.Fatal("the frames of exactly the burst did not pass whole")
		}
	}
	if c := ts.Echo.Counters(); c.Refused != 0 {
		t.Fatalf("%d refused at exactly the burst", c.Refused)
	}

	if _, err := over.Stream().Write(two(burst - 60004 - 4 + 1)); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, reader, 1); !bytes.Equal(f[0], first) {
		t.Fatal("the frame within the budget did not pass")
	}
	if err := reader.Send([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, reader, 1); string(f[0]) != "next" {
		t.Fatalf("the frame one byte past the budget was delivered (%d bytes)", len(f[0]))
	}
	r := <-collect(over, nil, 0)
	sctest.WantCode(t, r.err, channel.CodeLimit)
	if c := ts.Echo.Counters(); c.Refused != 1 || c.FramesIn != 4 {
		t.Fatalf("counters %+v, want 1 refused and 4 frames in", c)
	}
	// The refused member's stream is still readable: EOF follows.
	if _, err := over.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the error record: %v, want EOF", err)
	}
}
