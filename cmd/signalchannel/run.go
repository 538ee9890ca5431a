package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `signalchannel: a signal server for WebRTC and real-time apps

Usage:
  signalchannel [serve] [flags]   run the server (the default command)
  signalchannel token [flags]     mint a token for a client
  signalchannel keygen [flags]    write a new Ed25519 key pair for tokens
  signalchannel help              show this text

Run "signalchannel serve -h" for the server's flags, "signalchannel token -h"
for the token's. Every flag has an
environment twin: -max-streams is SIGNALCHANNEL_MAX_STREAMS.
`

// run is the whole program; ready, if not nil, is called with the listening
// address once the server accepts connections.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(addr string)) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
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
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
