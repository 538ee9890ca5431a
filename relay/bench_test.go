package relay_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/signalchannel/signalchannel/relay"
)

// BenchmarkRelay moves bytes one way between two loopback TCP clients,
// through a Link and, for comparison, through a plain io.Copy splice of the
// two server connections. One op is one 64 KiB chunk per pair.
//
//	go test -run '^$' -bench Relay -benchtime 2s ./relay/
func BenchmarkRelay(b *testing.B) {
	for _, pairs := range []int{1, 100} {
		for _, via := range []string{"link", "splice"} {
			b.Run(fmt.Sprintf("%s/pairs=%d", via, pairs), func(b *testing.B) {
				benchRelay(b, via, pairs)
			})
		}
	}
}

const benchChunk = 64 << 10

func benchRelay(b *testing.B, via string, pairs int) {
	type pair struct{ from, to *net.TCPConn }
	var pipes sync.WaitGroup
	ps := make([]pair, pairs)
	for i := range ps {
		ca, sa := tcpPair(b)
		cb, sb := tcpPair(b)
		ps[i] = pair{ca, cb}
		switch via {
		case "link":
			l, err := relay.NewLink(sa, sb, relay.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range []relay.Stream{sa, sb} {
				pipes.Go(func() { l.Run(context.Background(), s) })
			}
		case "splice":
			for _, d := range [][2]*net.TCPConn{{sa.c, sb.c}, {sb.c, sa.c}} {
				pipes.Go(func() {
					io.Copy(d[1], d[0]) // splice(2) on Linux
					d[1].CloseWrite()
				})
			}
		}
	}

	b.SetBytes(int64(benchChunk * pairs))
	b.ReportAllocs()
	b.ResetTimer()
	var clients sync.WaitGroup
	for _, p := range ps {
		clients.Go(func() {
			buf := make([]byte, benchChunk)
			for range b.N {
				if _, err := p.from.Write(buf); err != nil {
					b.Error(err)
					return
				}
			}
			p.from.CloseWrite()
		})
		clients.Go(func() {
			buf := make([]byte, benchChunk)
			var n int64
			for {
				m, err := p.to.Read(buf)
				n += int64(m)
				if err != nil {
					break
				}
			}
			if n != int64(b.N)*benchChunk {
				b.Errorf("received %d bytes, want %d", n, int64(b.N)*benchChunk)
			}
		})
	}
	clients.Wait()
	b.StopTimer()
	for _, p := range ps {
		p.to.CloseWrite()
	}
	pipes.Wait()
}
