package peer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/peer"
)

// BenchmarkConnect measures the time from Connect to a ready connection,
// Go to Go on loopback: over the data channel (direct), over the relay
// (forced, so without the wait for ICE), and the fallback when ICE cannot
// form (whose time is the direct timeout, 1 s here, plus the relay's).
// Each iteration places a call first, outside the measured time; it
// reports the median and the 99th percentile of the caller's Connect, and
// the time from the call to its answer (a rejection the same).
//
//	go test ./peer -run XXX -bench Connect -benchtime 200x
func BenchmarkConnect(b *testing.B) {
	for _, c := range []struct {
		name string
		opts func() peer.ConnOptions
	}{
		{"direct", func() peer.ConnOptions {
			return peer.ConnOptions{SettingEngine: loopback(false), DirectTimeout: time.Minute}
		}},
		{"relay", func() peer.ConnOptions { return peer.ConnOptions{ForceRelay: true} }},
		{"fallback", func() peer.ConnOptions {
			return peer.ConnOptions{SettingEngine: loopback(true), DirectTimeout: time.Second}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Back-to-back calls open streams faster than a session may by
			// default.
			ts := sctest.NewServer(b, sctest.Options{Channel: server.Config{MaxStreamOpensPerSecond: 100_000}})
			a, _ := join(b, ts.URL, "r", nil, peer.RoomOptions{})
			bb, bm := join(b, ts.URL, "r", nil, peer.RoomOptions{})
			waitMember(b, a, bb.ID())
			var ready, answered []time.Duration
			for b.Loop() {
				b.StopTimer()
				t0 := time.Now()
				ac, bc := acceptedCall(b, a, bb, bm)
				answered = append(answered, time.Since(t0))
				b.StartTimer()
				t1 := time.Now()
				ca, cb := connectPair(b, ac, bc, c.opts)
				ready = append(ready, time.Since(t1))
				b.StopTimer()
				ca.Close()
				cb.Close()
				b.StartTimer()
			}
			q := func(ds []time.Duration, p float64) float64 {
				slices.Sort(ds)
				return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(ready, 0.5), "ms-ready-p50")
			b.ReportMetric(q(ready, 0.99), "ms-ready-p99")
			b.ReportMetric(q(answered, 0.5), "ms-answer-p50")
			b.ReportMetric(q(ready, 0.9), "ms-ready-p90")
			b.ReportMetric(0, "ns/op")
		})
	}
}
