package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel"
	chserver "github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/baseline"
)

// Server kinds.
const (
	kindSignalchannel = "signalchannel"
	kindBroadcast     = "broadcast"
	kindSplice        = "splice"
)

// local is a server running in this process.
type local struct {
	addr     string // where clients connect
	httpAddr string // /healthz, /metrics and, if enabled, /debug/pprof/
	close    func() error
}

// localOptions configure runLocal.
type localOptions struct {
	addr    string // listen address; loopback only
	pprof   bool   // serve /debug/pprof/
	log     *slog.Logger
	channel chserver.Config // signalchannel only
}

// runLocal starts a server of kind in this process. The signalchannel
// server is set up as cmd/signalchannel sets it up with its default flags:
// the three endpoints with their default configurations, except that echo
// has no publish budget.
func runLocal(kind string, o localOptions) (*local, error) {
	addr, err := checkLoopbackAddr(o.addr)
	if err != nil {
		return nil, err
	}
	if o.log == nil {
		o.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/metrics", serveRuntimeMetrics)
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	var (
		shutdown func() error // closes the sessions, before the listener
		spliceLn net.Listener
	)
	switch kind {
	case kindSignalchannel:
		// Without a publish budget: publishers here write as fast as the
		// window allows, far past a budget meant for signalling.
		srv, err := signalchannel.New(signalchannel.Config{
			Channel: o.channel,
			Echo:    endpoints.EchoConfig{PublishRate: -1},
			Relay:   endpoints.DefaultRelayConfig(),
			Logger:  o.log,
		})
		if err != nil {
			return nil, err
		}
		mux.Handle("/v1/channel", srv)
		shutdown = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return srv.Shutdown(ctx)
		}
	case kindBroadcast:
		b := baseline.NewBroadcast(baseline.BroadcastConfig{})
		mux.Handle("/v1/channel", b)
		shutdown = b.Close
	case kindSplice:
		s := baseline.NewSplice(baseline.SpliceConfig{})
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		done := make(chan struct{})
		go func() { s.Serve(ln); close(done) }()
		shutdown = func() error { s.Close(); <-done; return nil }
		spliceLn = ln
		// HTTP (/healthz, /metrics, pprof) gets a port of its own.
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		addr = net.JoinHostPort(host, "0")
	default:
		return nil, fmt.Errorf("unknown server kind %q: want %s, %s or %s", kind, kindSignalchannel, kindBroadcast, kindSplice)
	}
	hl, err := serveHTTP(addr, mux)
	if err != nil {
		shutdown()
		return nil, err
	}
	l := &local{addr: hl.addr, httpAddr: hl.addr, close: func() error {
		return errors.Join(shutdown(), hl.close())
	}}
	if spliceLn != nil {
		l.addr = spliceLn.Addr().String()
	}
	return l, nil
}

// httpListener is an http.Server on a listener of its own.
type httpListener struct {
	addr  string
	close func() error
}

func serveHTTP(addr string, h http.Handler) (*httpListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	return &httpListener{addr: ln.Addr().String(), close: func() error {
		err := srv.Close() // hijacked connections are the handlers' to close
		wg.Wait()
		return err
	}}, nil
}

// serveRuntimeMetrics writes the Go runtime gauges signalbench reads, under
// the names of the Prometheus Go collector.
func serveRuntimeMetrics(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	fmt.Fprintf(w, "# TYPE go_memstats_stack_inuse_bytes gauge\ngo_memstats_stack_inuse_bytes %d\n", ms.StackInuse)
	fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
}
