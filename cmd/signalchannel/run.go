package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

const usage = `signalchannel: a signal server for WebRTC and real-time apps

Usage:
  signalchannel [serve] [flags]   run the server (the default command)
  signalchannel token [flags]     mint a token for a client
  signalchannel keygen [flags]    write a new Ed25519 key pair for tokens
  signalchannel version           print the version
  signalchannel help              show this text

The most-used flags of serve:
  -addr HOST:PORT                 listen address (default :8080)
  -demo                           serve the WebRTC demo page under /demo/
  -auth-public-key-file FILE      require tokens signed by this Ed25519 key (see keygen)
  -auth-secret-file FILE          require HS256 tokens signed with this secret
  -allowed-origins LIST           browser origins allowed to connect
  -stun URLS, -turn URLS          ICE servers handed to clients
  -turn-secret-file FILE          the secret of TURN credentials
  -turn-listen-udp HOST:PORT      run the embedded TURN server
  -nats URL, -nats-listen ADDR    join a cluster of servers
  -log-level LEVEL                debug, info, warn or error

Run "signalchannel serve -h" for all of the server's flags, "signalchannel
token -h" for the token's. Every flag has an environment twin: -max-streams
is SIGNALCHANNEL_MAX_STREAMS.
`

// run is the whole program; ready, if not nil, is called with the listening
// address once the server accepts connections.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(addr string)) error {
	cmd := "serve"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		cmd, args = "help", nil
	} else if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		err := serve(ctx, args, stderr, ready)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	case "token":
		err := token(args, stdout, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	case "keygen":
		err := keygen(args, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(stdout, "signalchannel", version())
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// version describes the build: the module's version, the VCS revision and
// time when the binary was built from a checkout, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown build)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(len(rev), 12)] + modified
	}
	if at != "" {
		v += " " + at
	}
	return v + " " + bi.GoVersion
}
