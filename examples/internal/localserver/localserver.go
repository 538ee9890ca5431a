// Package localserver runs a signalchannel server inside an example's own
// process, on 127.0.0.1, so that each example runs with one command.
package localserver

import (
	"context"
	"github.com/signalchannel/signalchannel/channel/server"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/endpoints"
)

// Start runs a server with the echo, scuttlebutt and relay endpoints on a
// free port of 127.0.0.1. It returns the channel URL and a function that
// shuts the server down and waits for it. sb tunes the scuttlebutt endpoint
// (its zero value means the defaults).
func Start(sb endpoints.ScuttlebuttConfig) (url string, stop func(), err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := server.NewHandler(server.Config{Logger: quiet})
	if err != nil {
		return "", nil, err
	}
	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{Logger: quiet}))
	rel, err := endpoints.NewRelay(endpoints.RelayConfig{Logger: quiet})
	if err != nil {
		return "", nil, err
	}
	h.Handle(channel.EndpointRelay, rel)
	sb.Logger = quiet
	scb, err := endpoints.NewScuttlebutt(sb)
	if err != nil {
		rel.Close()
		return "", nil, err
	}
	h.Handle(channel.EndpointScuttlebutt, scb)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rel.Close()
		scb.Close()
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/channel", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Shutdown(ctx)
		<-done
		rel.Close()
		scb.Close()
	}
	return "ws://" + ln.Addr().String() + "/v1/channel", stop, nil
}
