// Command signalbench is the load generator of signalchannel. It measures a
// signalchannel server on this machine, over loopback only, and the two
// baseline servers of internal/baseline under the same load, so that each
// figure can be quoted as a ratio to its baseline measured in the same run.
//
//	signalbench idle     [flags]   N sessions with one echo stream each: server memory per session
//	signalbench fanout   [flags]   one echo namespace, M members, P publishers, stepped rates
//	signalbench presence [flags]   K scuttlebutt members refreshing every S seconds
//	signalbench relay    [flags]   K relay pairs: throughput per pair and in total
//	signalbench churn    [flags]   sessions opened, one echo stream used, closed, per second
//	signalbench calls    [flags]   calls placed, accepted, connected and closed per second
//	signalbench server   [flags]   run a server (signalchannel or a baseline) for the others
//
// The server under test is a running one (-url ws://127.0.0.1:8080/v1/channel,
// with -server-pid for its memory and CPU) or one signalbench starts:
// -spawn binary builds and runs ./cmd/signalchannel with -server-args,
// -spawn self runs this program's server subcommand as a child (it serves
// /metrics and /debug/pprof/), and -spawn inproc runs it in this process.
// -baseline runs fanout and relay against the baseline too, in the same
// run, and prints the ratio.
//
// Clients connect from 127.0.0.2 upwards (-sources addresses), so that the
// ephemeral ports and the server's per-address session cap are shared out,
// and the open-files limit of every process is respected: idle spreads its
// sessions over child processes (-procs) when one process cannot hold them,
// and says so when the server cannot.
//
// Every scenario is bounded in time (-duration, -timeout) and count. The
// output is a table, or JSON with -json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "signalbench:", err)
		os.Exit(1)
	}
}

const usage = `signalbench: load generator for signalchannel, over loopback only

Usage:
  signalbench idle     [flags]   N sessions, one echo stream each: server memory per session
  signalbench fanout   [flags]   one echo namespace: M members, P publishers, stepped rates
  signalbench presence [flags]   K scuttlebutt members refreshing every S seconds
  signalbench relay    [flags]   K relay pairs: throughput per pair and in total
  signalbench churn    [flags]   sessions opened, one echo stream used, closed, per second
  signalbench calls    [flags]   calls placed, accepted, connected and closed per second
  signalbench server   [flags]   run a server: -kind signalchannel, broadcast or splice

Run "signalbench <scenario> -h" for its flags.
`

// run is the whole program.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("name a scenario")
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "idle":
		err = runIdle(ctx, args, stdout, stderr)
	case "fanout":
		err = runFanout(ctx, args, stdout, stderr)
	case "presence":
		err = runPresence(ctx, args, stdout, stderr)
	case "relay":
		err = runRelay(ctx, args, stdout, stderr)
	case "churn":
		err = runChurn(ctx, args, stdout, stderr)
	case "calls":
		err = runCalls(ctx, args, stdout, stderr)
	case "server":
		err = runServer(ctx, args, stdout, stderr)
	case childIdleCmd:
		err = runChildIdle(ctx, args, stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown scenario %q", cmd)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
