package cluster

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// singleNsPerOp holds each benchmark's single-server figure of this run, for
// the ratio its cluster sub-benchmark reports.
var singleNsPerOp = map[string]float64{}

// recordRatio stores the single-server figure, or reports the cluster's
// throughput as a fraction of it ("x-single": 1 is as fast, 0.5 half).
func recordRatio(b *testing.B, name, via string) {
	nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	if via == "single" {
		singleNsPerOp[name] = nsPerOp
		return
	}
	if base, ok := singleNsPerOp[name]; ok && nsPerOp > 0 {
		b.ReportMetric(base/nsPerOp, "x-single")
	}
}

// BenchmarkEchoFanout: one writer, 6 or 30 members (on one server, or
// spread evenly over three nodes, the writer's node included), 1 KiB
// frames. One op is one frame delivered to every member; the writer stays
// at most 128 frames ahead of the slowest member so that no queue
// overflows.
//
//	go test -run '^$' -bench EchoFanout -benchtime 3s ./cluster/
func BenchmarkEchoFanout(b *testing.B) {
	for _, members := range []int{6, 30} {
		for _, via := range []string{"single", "cluster"} {
			b.Run(fmt.Sprintf("members=%d/%s", members, via), func(b *testing.B) { benchEcho(b, via, members) })
		}
	}
}

func benchEcho(b *testing.B, via string, members int) {
	const frameSize, ahead = 1 << 10, 128
	var urls []string
	switch via {
	case "single":
		urls = []string{sctest.NewServer(b, sctest.Options{}).URL}
	case "cluster":
		for _, n := range newCluster(b, urlsOf(startNATS(b, 3)), clusterOptions{}) {
			urls = append(urls, n.srv.URL)
		}
	}
	var es []*client.Echo
	for i := 0; i < members; i++ {
		e, err := sctest.Dial(b, urls[i%len(urls)]).Echo(sctest.Ctx(b), "bench")
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
	}
	// Warm up: every member hears a frame from the writer.
	warm := func() bool {
		if err := es[0].Send([]byte("warm")); err != nil {
			b.Fatal(err)
		}
		return true
	}
	for i := range es {
		for {
			es[i].Stream().SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if f, err := es[i].Recv(); err == nil && string(f) == "warm" {
				break
			}
			warm()
		}
	}
	// Drain the extra warm-up frames.
	for _, e := range es {
		for {
			e.Stream().SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := e.Recv(); err != nil {
				break
			}
		}
	}

	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	got := make([]int, members)
	minGot := func() int {
		m := got[0]
		for _, g := range got[1:] {
			m = min(m, g)
		}
		return m
	}
	frame := make([]byte, frameSize)
	b.SetBytes(int64(frameSize * members))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < b.N; k++ {
				e.Stream().SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := e.Recv(); err != nil {
					b.Errorf("member %d after %d frames: %v", i, k, err)
					mu.Lock()
					got[i] = b.N
					cond.Broadcast()
					mu.Unlock()
					return
				}
				mu.Lock()
				got[i]++
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	for k := 0; k < b.N; k++ {
		mu.Lock()
		for k-minGot() >= ahead {
			cond.Wait()
		}
		mu.Unlock()
		if err := es[0].Send(frame); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	recordRatio(b, fmt.Sprint("echo", members), via)
}

// BenchmarkRelayThroughput: one relay pair, one direction, 64 KiB writes;
// both streams on one node, or on two nodes (the bytes then cross NATS).
// One op is one 64 KiB chunk.
//
//	go test -run '^$' -bench RelayThroughput -benchtime 3s ./cluster/
func BenchmarkRelayThroughput(b *testing.B) {
	for _, via := range []string{"single", "cluster"} {
		b.Run(via, func(b *testing.B) { benchRelay(b, via) })
	}
}

func benchRelay(b *testing.B, via string) {
	const chunk = 64 << 10
	nodes := newCluster(b, urlsOf(startNATS(b, 2)), clusterOptions{})
	other := nodes[1]
	if via == "single" {
		other = nodes[0]
	}
	ch := relayGo(b, nodes[0].srv.URL, "bench", "A", "B")
	waitWaiting(b, nodes[0], 1)
	dst := mustPair(b, relayGo(b, other.srv.URL, "bench", "B", "A"))
	src := mustPair(b, ch)

	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		rb := make([]byte, 256<<10)
		want := int64(b.N) * chunk
		var n int64
		for n < want {
			dst.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, err := dst.Read(rb)
			n += int64(k)
			if err != nil {
				done <- fmt.Errorf("after %d of %d bytes: %w", n, want, err)
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		src.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := src.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil && err != io.EOF {
		b.Fatal(err)
	}
	b.StopTimer()
	recordRatio(b, "relay", via)
}
