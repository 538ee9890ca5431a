package endpoints_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// BenchmarkRelay moves bytes one way between two clients on loopback,
// through the relay endpoint (WebSocket, yamux, relay.Link) and, as the
// baseline, through a plain TCP proxy that splices two TCP connections
// with io.Copy. Each relay peer has a session of its own. One op is one
// 64 KiB chunk per pair; allocations count the clients and the server.
//
//	go test -run '^$' -bench Relay -benchtime 2s ./endpoints/
func BenchmarkRelay(b *testing.B) {
	for _, pairs := range []int{1, 100} {
		for _, via := range []string{"relay", "splice"} {
			b.Run(fmt.Sprintf("%s/pairs=%d", via, pairs), func(b *testing.B) {
				benchRelay(b, via, pairs)
			})
		}
	}
}

const benchChunk = 64 << 10

// benchConn is a client end of a pipe.
type benchConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

func benchRelay(b *testing.B, via string, pairs int) {
	type pipe struct{ from, to benchConn }
	ps := make([]pipe, pairs)
	var closeAll func()
	switch via {
	case "relay":
		ts, r := newRelayServer(b, endpoints.RelayConfig{})
		conns := make([][2]*client.RelayConn, pairs)
		for i := range ps {
			a, c := relayPair(b, r, sctest.Dial(b, ts.URL), sctest.Dial(b, ts.URL), "bench", fmt.Sprint(i, "a"), fmt.Sprint(i, "b"))
			ps[i], conns[i] = pipe{a, c}, [2]*client.RelayConn{a, c}
		}
		closeAll = func() {
			for _, c := range conns {
				closePair(b, r, c[0], c[1])
			}
		}
	case "splice":
		proxy := newSpliceProxy(b)
		for i := range ps {
			ps[i] = pipe{proxy.dial(b), proxy.dial(b)}
		}
		closeAll = func() {
			for _, p := range ps {
				p.from.CloseWrite()
				io.Copy(io.Discard, p.to)
				p.to.Close()
				p.from.Close()
			}
		}
	}

	b.SetBytes(int64(benchChunk * pairs))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, 2*pairs)
	for _, p := range ps {
		wg.Go(func() {
			buf := make([]byte, benchChunk)
			for range b.N {
				if _, err := p.from.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			buf := make([]byte, benchChunk)
			for left := int64(b.N) * benchChunk; left > 0; {
				n, err := p.to.Read(buf[:min(left, benchChunk)])
				left -= int64(n)
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	closeAll()
}

// spliceProxy pairs TCP connections in the order they arrive and copies
// between the two of each pair, as a TURN-less TCP relay would.
type spliceProxy struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newSpliceProxy(tb testing.TB) *spliceProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &spliceProxy{ln: ln}
	p.wg.Go(func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			c, err := ln.Accept()
			if err != nil {
				a.Close()
				return
			}
			var copies sync.WaitGroup
			for _, d := range [][2]net.Conn{{a, c}, {c, a}} {
				copies.Go(func() {
					io.Copy(d[1], d[0]) // splice(2) between TCP sockets on Linux
					d[1].(*net.TCPConn).CloseWrite()
				})
			}
			p.wg.Go(func() {
				copies.Wait()
				a.Close()
				c.Close()
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *spliceProxy) dial(tb testing.TB) benchConn {
	c, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
