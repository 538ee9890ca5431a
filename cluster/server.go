package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded NATS server. Zero fields mean the
// default.
type ServerConfig struct {
	// Listen is the client address, HOST:PORT; port 0 picks a free one.
	// Default "127.0.0.1:4222".
	Listen string
	// ClusterListen is the address other servers' routes connect to,
	// HOST:PORT (port 0 picks a free one). Default "": no cluster, a single
	// server.
	ClusterListen string
	// Routes are the cluster addresses of the other servers, as
	// nats://HOST:PORT. Listing this server's own address too is harmless,
	// so every server of a cluster may be given the same list. Servers that
	// are not up yet are retried until they are.
	Routes []string
	// ClusterName names the cluster; every server of it must use the same.
	// Default "signalchannel".
	ClusterName string
	// Name names this server in logs and monitoring. Default: generated.
	Name string
	// MaxPayload is the largest message the server accepts. It must hold
	// the largest echo frame. Default 1 MiB.
	MaxPayload int32
	// ReadyTimeout bounds how long StartServer waits for the listeners.
	// Default 10s.
	ReadyTimeout time.Duration
	// Logger receives the server's log at its own levels (NATS debug and
	// trace lines at slog debug). Default: no log.
	Logger *slog.Logger
}

// Server is an embedded NATS server: several signalchannel processes, each
// running one with routes to the others, form a NATS cluster with nothing
// else installed. Create it with StartServer and stop it with Shutdown.
type Server struct {
	ns *natsserver.Server
}

// StartServer starts a NATS server in this process and returns once it
// accepts client connections (routes to other servers are made in the
// background and retried). It fails when an address is invalid or taken.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:4222"
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "signalchannel"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: nats listen address: %w", err)
	}
	opts := &natsserver.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
	}
	if cfg.ClusterListen != "" {
		chost, cport, err := splitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("cluster: nats cluster address: %w", err)
		}
		opts.Cluster = natsserver.ClusterOpts{Name: cfg.ClusterName, Host: chost, Port: cport}
		for _, r := range cfg.Routes {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("cluster: nats route %q: want nats://HOST:PORT", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
	} else if len(cfg.Routes) > 0 {
		return nil, errors.New("cluster: nats routes need a cluster listen address")
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: nats server: %w", err)
	}
	if cfg.Logger != nil {
		ns.SetLoggerV2(slogAdapter{cfg.Logger.With("component", "nats")}, true, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("cluster: nats server not ready within %s (is %s or %s taken?)", cfg.ReadyTimeout, cfg.Listen, cfg.ClusterListen)
	}
	return &Server{ns: ns}, nil
}

// splitHostPort parses HOST:PORT; port 0 becomes the server's "random
// port".
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// ClientURL returns the URL clients connect to, nats://HOST:PORT.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// ClusterURL returns the address other servers route to,
// nats://HOST:PORT, or "" without a cluster.
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + a.String()
}

// Routes returns how many other servers this one is routed to.
func (s *Server) Routes() int { return s.ns.NumRemotes() }

// WaitRoutes blocks until the server is routed to n other servers or ctx
// ends.
func (s *Server) WaitRoutes(ctx context.Context, n int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.Routes() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %d of %d routes: %w", s.Routes(), n, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Shutdown stops the server: its clients and routes are disconnected. It
// blocks until the server has stopped. Calling it again does nothing.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter logs a NATS server through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
