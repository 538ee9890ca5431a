package endpoints_test

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// BenchmarkEchoFanout measures one writer fanning frames out to M members
// through a real server on 127.0.0.1; clients run in the same process, so
// the figures include their cost. One op is one frame published; the
// reported rate counts frames delivered to members.
//
//	go test -run '^$' -bench EchoFanout -benchtime 20000x ./endpoints/
func BenchmarkEchoFanout(b *testing.B) {
	for _, members := range []int{100, 1000} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("members=%d/frame=%dB", members, size), func(b *testing.B) {
				benchFanout(b, members, size)
			})
		}
	}
}

func benchFanout(b *testing.B, members, size int) {
	const perSession = 50
	ts := sctest.NewServer(b, sctest.Options{Channel: server.Config{MaxStreams: perSession + 1}})
	var (
		sessions []*client.Session
		echoes   []*client.Echo
	)
	for i := 0; i < members; i++ {
		if i%perSession == 0 {
			sessions = append(sessions, sctest.Dial(b, ts.URL))
		}
		e, err := sessions[len(sessions)-1].Echo(sctest.Ctx(b), "fanout")
		if err != nil {
			b.Fatal(err)
		}
		echoes = append(echoes, e)
	}
	writer, err := sctest.Dial(b, ts.URL).Echo(sctest.Ctx(b), "fanout")
	if err != nil {
		b.Fatal(err)
	}
	sctest.WaitFor(b, 10*time.Second, func() error {
		if st := ts.Echo.Stats(); st.Members != members+1 {
			return fmt.Errorf("%d members", st.Members)
		}
		return nil
	})

	// The writer sends in windows of frames and waits until every member
	// has them, so no member's queue overflows.
	window := max(1, (256<<10)/(size+4)/2)
	var received atomic.Int64
	var wg sync.WaitGroup
	total := int64(b.N)
	for _, e := range echoes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(0); n < total; n++ {
				if _, err := e.Recv(); err != nil {
					b.Errorf("member: %v", err)
					return
				}
				received.Add(1)
			}
		}()
	}
	go func() { // the writer's own copies
		for n := int64(0); n < total; n++ {
			if _, err := writer.Recv(); err != nil {
				return
			}
		}
	}()
	frame := make([]byte, size)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	b.SetBytes(int64(size * members))
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; {
		n := min(window, b.N-sent)
		for i := 0; i < n; i++ {
			if err := writer.Send(frame); err != nil {
				b.Fatal(err)
			}
		}
		sent += n
		want := int64(sent) * int64(members)
		deadline := time.Now().Add(30 * time.Second)
		for received.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("members have %d of %d frames", received.Load(), want)
			}
			runtime.Gosched()
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	wg.Wait()
	delivered := float64(b.N) * float64(members)
	b.ReportMetric(delivered/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/delivered, "allocs/delivery")
}
