package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	chserver "github.com/signalchannel/signalchannel/channel/server"
)

// runServer is the server subcommand: it runs one server in this process
// until ctx ends (SIGINT, SIGTERM), after printing
// "listening ADDR HTTPADDR" on stdout. The signalchannel server is set up
// as cmd/signalchannel's serve with its defaults, logs included (JSON at
// info on stderr), but no echo publish budget, and serves /metrics with the Go runtime's heap, stack
// and goroutine gauges.
func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", kindSignalchannel, "server to run: signalchannel, broadcast (WebSocket broadcast baseline) or splice (TCP splice baseline)")
	addr := fs.String("addr", "127.0.0.1:0", "listen address, loopback only")
	pprof := fs.Bool("pprof", false, "serve /debug/pprof/")
	logLevel := fs.String("log-level", "info", "signalchannel log level: debug, info, warn or error")
	cfg := chserver.DefaultConfig()
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "signalchannel sessions on the server")
	fs.IntVar(&cfg.MaxSessionsPerIP, "max-sessions-per-ip", cfg.MaxSessionsPerIP, "signalchannel sessions from one client address")
	fs.IntVar(&cfg.MaxStreams, "max-streams", cfg.MaxStreams, "signalchannel streams per session")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	l, err := runLocal(*kind, localOptions{addr: *addr, pprof: *pprof, log: log, channel: cfg})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s %s\n", l.addr, l.httpAddr)
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	<-ctx.Done()
	return l.close()
}
