// Package signalchannel assembles a signalchannel server: the channel
// Handler (package channel/server) with the echo, scuttlebutt and relay
// endpoints (package endpoints), joined to other servers over NATS when
// given a cluster (package cluster), and the order in which it all
// shuts down. The binary, the load tool, the examples and the test
// helper (internal/sctest) build their servers with New; the cluster's own
// tests wire its seams by hand, to test each one.
//
//	srv, err := signalchannel.New(signalchannel.Config{})
//	if err != nil { ... }
//	http.Handle("/v1/channel", srv)
//	...
//	srv.Shutdown(ctx) // sessions get 1001, then the endpoints stop
package signalchannel

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
)

// Config assembles a Server. Zero fields mean their defaults, as in each
// part's own Config.
type Config struct {
	// Channel tunes sessions and streams.
	Channel server.Config
	// Echo, Relay and Scuttlebutt tune the three endpoints.
	Echo        endpoints.EchoConfig
	Relay       endpoints.RelayConfig
	Scuttlebutt endpoints.ScuttlebuttConfig
	// Cluster, if set, joins this server to others (a *cluster.Node joins
	// the servers on the same NATS): echo frames, presence and relay pairs
	// cross servers. New has it build the endpoints' seams, and Shutdown
	// closes them; the node itself stays the caller's, to close after
	// Shutdown. Echo.Broker, Scuttlebutt.Link and Relay.Pairer must then be
	// nil.
	Cluster Cluster
	// Logger is given to every part whose own Logger is unset. Default
	// slog.Default().
	Logger *slog.Logger
}

// Cluster joins a server to others: Join builds the seams through which
// the endpoints reach the other servers (the echo broker, the replica link
// and the relay pairer) from the endpoints' limits, and sets them in their
// configurations; leave closes them, once the endpoints have stopped.
// *cluster.Node implements it.
type Cluster interface {
	Join(echo *endpoints.EchoConfig, sb *endpoints.ScuttlebuttConfig, relay *endpoints.RelayConfig) (leave func() error, err error)
}

// Disconnector is a Cluster that closes a peer's sessions on every server
// (the HTTP API's disconnect): local closes them here for requests of
// other servers; send asks the others. *cluster.Node implements it.
type Disconnector interface {
	Disconnects(local func(peer string, code int, reason string)) (send func(peer string, code int, reason string), stop func(), err error)
}

// Server is a signalchannel server: an http.Handler for the channel path
// (/v1/channel by convention) and what serves its streams. Its methods may
// be called from any goroutine.
type Server struct {
	handler *server.Handler
	echo    *endpoints.Echo
	relay   *endpoints.Relay
	sb      *endpoints.Scuttlebutt
	leave   func() error // closes the cluster's seams; nil without a cluster
	// disconnect, with a cluster that can, asks the other servers to close
	// a peer's sessions (the API's disconnect).
	disconnect func(peer string, code int, reason string)

	stopOnce sync.Once
	stopErr  error
}

// New builds a Server from cfg: nothing listens yet. Mount it (it is an
// http.Handler) and serve; Shutdown stops it.
func New(cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, l := range []**slog.Logger{&cfg.Channel.Logger, &cfg.Echo.Logger, &cfg.Relay.Logger, &cfg.Scuttlebutt.Logger} {
		if *l == nil {
			*l = cfg.Logger
		}
	}
	if err := errors.Join(cfg.Channel.Validate(), cfg.Relay.Validate(), cfg.Scuttlebutt.Validate()); err != nil {
		return nil, err
	}
	h, err := server.NewHandler(cfg.Channel)
	if err != nil {
		return nil, err
	}
	s := &Server{handler: h}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	if cfg.Cluster != nil {
		if cfg.Echo.Broker != nil || cfg.Scuttlebutt.Link != nil || cfg.Relay.Pairer != nil {
			return nil, errors.New("signalchannel: Config.Cluster builds the echo broker, replica link and relay pairer: leave Echo.Broker, Scuttlebutt.Link and Relay.Pairer nil")
		}
		leave, err := cfg.Cluster.Join(&cfg.Echo, &cfg.Scuttlebutt, &cfg.Relay)
		if err != nil {
			return nil, err
		}
		s.leave = leave
		if d, ok := cfg.Cluster.(Disconnector); ok {
			send, stop, err := d.Disconnects(func(peer string, code int, reason string) { h.Disconnect(peer, code, reason) })
			if err != nil {
				leave()
				return nil, err
			}
			s.disconnect = send
			s.leave = func() error {
				stop()
				return leave()
			}
		}
	}
	s.echo = endpoints.NewEcho(cfg.Echo)
	h.Handle(channel.EndpointEcho, s.echo)
	if s.relay, err = endpoints.NewRelay(cfg.Relay); err != nil {
		return nil, err
	}
	h.Handle(channel.EndpointRelay, s.relay)
	if s.sb, err = endpoints.NewScuttlebutt(cfg.Scuttlebutt); err != nil {
		return nil, err
	}
	h.Handle(channel.EndpointScuttlebutt, s.sb)
	return s, nil
}

// ServeHTTP serves the channel path: it upgrades each request to a session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Handler returns the channel handler: to register more endpoints (before
// serving), set an Authorizer, or read its Stats.
func (s *Server) Handler() *server.Handler { return s.handler }

// Echo, Relay and Scuttlebutt return the endpoints, for their Stats.
func (s *Server) Echo() *endpoints.Echo               { return s.echo }
func (s *Server) Relay() *endpoints.Relay             { return s.relay }
func (s *Server) Scuttlebutt() *endpoints.Scuttlebutt { return s.sb }

// Drain stops new sessions and streams and waits until the open streams
// end or ctx does (then it returns ctx's error); sessions stay open. Call
// Shutdown after it.
func (s *Server) Drain(ctx context.Context) error { return s.handler.Drain(ctx) }

// Shutdown stops the server, in the one order that loses nothing: first
// the handler, which takes no more sessions and closes every session with
// 1001, waiting for them until ctx ends (a client sees its session's 1001
// before any stream of it ends); then the relay and scuttlebutt endpoints
// (pairs still open are reset, replicas stop); then the cluster's seams,
// which no endpoint uses any more. It returns ctx's error if sessions
// were still open when ctx ended; the rest is stopped anyway. Calling it
// again only waits for sessions again.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.handler.Shutdown(ctx)
	return errors.Join(err, s.stop())
}

// stop closes the endpoints and then the cluster's seams, once.
func (s *Server) stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.relay != nil {
			s.relay.Close()
		}
		if s.sb != nil {
			errs = append(errs, s.sb.Close())
		}
		if s.leave != nil {
			errs = append(errs, s.leave())
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
