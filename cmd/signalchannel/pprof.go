package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofHandler serves net/http/pprof's handlers under /debug/pprof/. It is
// a mux of its own: importing net/http/pprof also registers them on
// http.DefaultServeMux, which no listener of this program serves.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startPprof serves the profiling handlers on addr, apart from the public
// listener: profiles expose the program's internals and cost CPU, so they
// are only for whoever can reach the address the operator chose. stop
// closes the listener and the connections, profiles in progress included,
// and waits for the server to return.
func startPprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-pprof-listen: %w", err)
	}
	srv := &http.Server{
		Handler:           pprofHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: a CPU profile or trace takes as long as asked.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	log.Info("pprof listening", "addr", ln.Addr().String(), "path", "/debug/pprof/")
	return func() {
		srv.Close()
		<-done
	}, nil
}
