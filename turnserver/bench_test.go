package turnserver_test

import (
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/turnserver"
)

// BenchmarkRelay measures packets through the embedded TURN server against
// a plain UDP forwarder measured in the same run: n clients keep about 16
// datagrams of 1000 bytes in flight in all (a window of 16/n each, at least 1) to a peer that echoes
// them, through its allocation (turn) or through a socket of its own that
// forwards between client and peer (udp). A datagram that does not come
// back within 50 ms is given up and sent anew. It reports round trips per
// second (each crosses the relay twice), megabytes per second through the
// relay, the loss, and, for turn, the heap per allocation (the server and
// the pion client together).
//
//	go test ./turnserver -run XXX -bench Relay -benchtime 20000x -count 3
func BenchmarkRelay(b *testing.B) {
	for _, n := range []int{1, 100} {
		for _, kind := range []string{"udp", "turn"} {
			b.Run(kind+"/allocations="+strconv.Itoa(n), func(b *testing.B) {
				var relays []net.PacketConn
				echo := peer(b)
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				if kind == "turn" {
					s := start(b, turnserver.Config{MaxAllocationsPerPeer: n})
					for i := range n {
						u, p := creds("bench-"+strconv.Itoa(i), time.Now(), time.Hour)
						r, err := allocate(b, client(b, s, u, p))
						if err != nil {
							b.Fatal(err)
						}
						relays = append(relays, r)
					}
				} else {
					for range n {
						relays = append(relays, forwarder(b, echo.LocalAddr()))
					}
				}
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				for _, r := range relays { // permissions, and a first round trip
					if err := roundTrip(r, echo.LocalAddr(), []byte("hello")); err != nil {
						b.Fatal(err)
					}
				}
				var back, sent atomic.Int64
				per := max(1, b.N/n)
				window := max(1, 16/n) // about 16 in flight in all: loopback's buffers hold them
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, r := range relays {
					wg.Go(func() {
						buf := make([]byte, 1500)
						msg := make([]byte, 1000)
						for done := 0; done < per; {
							for range window {
								r.WriteTo(msg, echo.LocalAddr())
								sent.Add(1)
							}
							got := 0
							r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
							for got < window {
								if _, _, err := r.ReadFrom(buf); err != nil {
									break
								}
								got++
							}
							back.Add(int64(got))
							done += window
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.ReportMetric(float64(back.Load())/elapsed.Seconds(), "roundtrips/s")
				b.ReportMetric(float64(back.Load())*2*1000/elapsed.Seconds()/1e6, "MB/s")
				b.ReportMetric(100*(1-float64(back.Load())/float64(sent.Load())), "%loss")
				if kind == "turn" {
					b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n)/1024, "KiB-heap/alloc")
				}
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// forwarder is a plain UDP relay for one client: a socket that sends what
// the client sends it to peer, and what peer sends it to the client, as a
// TURN relay does without TURN's framing. It returns the client's socket,
// whose WriteTo goes to the forwarder whatever its address.
func forwarder(tb testing.TB, peer net.Addr) net.PacketConn {
	tb.Helper()
	fwd, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := fwd.ReadFrom(buf)
			if err != nil {
				return
			}
			if from.String() == client.LocalAddr().String() {
				fwd.WriteTo(buf[:n], peer)
			} else {
				fwd.WriteTo(buf[:n], client.LocalAddr())
			}
		}
	})
	tb.Cleanup(func() {
		fwd.Close()
		client.Close()
		wg.Wait()
	})
	return &forwarded{PacketConn: client, fwd: fwd.LocalAddr()}
}

// forwarded is the client's side of a forwarder.
type forwarded struct {
	net.PacketConn
	fwd net.Addr
}

func (f *forwarded) WriteTo(b []byte, _ net.Addr) (int, error) { return f.PacketConn.WriteTo(b, f.fwd) }
