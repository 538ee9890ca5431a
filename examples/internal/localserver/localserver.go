// Package localserver runs a signalchannel server inside an example's own
// process, on 127.0.0.1, so that each example runs with one command.
package localserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/endpoints"
)

// Start runs a server with the echo, scuttlebutt and relay endpoints on a
// free port of 127.0.0.1. It returns the channel URL and a function that
// shuts the server down and waits for it. sb tunes the scuttlebutt endpoint
// (its zero value means the defaults).
func Start(sb endpoints.ScuttlebuttConfig) (url string, stop func(), err error) {
	quiet := slog.New(slog.DiscardHandler)
	srv, err := signalchannel.New(signalchannel.Config{Scuttlebutt: sb, Logger: quiet})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Shutdown(context.Background())
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/channel", srv)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln)
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Shutdown(ctx)
		<-done
	}
	return "ws://" + ln.Addr().String() + "/v1/channel", stop, nil
}
