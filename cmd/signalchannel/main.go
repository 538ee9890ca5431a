// Command signalchannel runs the signalchannel server.
//
//	signalchannel serve [-addr :8080] [flags]
//
// Every flag has an environment twin: -max-streams is SIGNALCHANNEL_MAX_STREAMS.
// A flag given on the command line wins over its environment variable.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "signalchannel:", err)
		os.Exit(1)
	}
}
