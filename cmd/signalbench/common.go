package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// common are the flags every scenario shares.
type common struct {
	url        string
	spawn      string
	serverArgs string
	serverBin  string
	serverLog  string
	serverPID  int
	jsonOut    bool
	sources    int
	timeout    time.Duration
	profileDir string
	dialConc   int
	perSession int

	args   []string // the scenario's command line, for the report
	stdout io.Writer
	stderr io.Writer
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "the running server to measure, ws://127.0.0.1:PORT/v1/channel (loopback only); or use -spawn")
	fs.StringVar(&c.spawn, "spawn", "", "start the server to measure: binary (go build ./cmd/signalchannel, run as a child with -server-args), self (this program's server subcommand as a child, with /metrics and /debug/pprof/) or inproc (in this process)")
	fs.StringVar(&c.serverArgs, "server-args", "", "flags for the spawned signalchannel server, space-separated, e.g. \"-log-level warn\"")
	fs.StringVar(&c.serverBin, "server-bin", "", "with -spawn binary, run this signalchannel binary instead of building one")
	fs.StringVar(&c.serverLog, "server-log", "", "write spawned servers' logs to this path plus .KIND (default: discarded)")
	fs.IntVar(&c.serverPID, "server-pid", 0, "with -url, the server's process id, to read its memory, CPU and descriptors from /proc")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON")
	fs.IntVar(&c.sources, "sources", 64, "client source addresses, 127.0.0.2 upwards")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.StringVar(&c.profileDir, "profile", "", "save server profiles (CPU over the measured window, heap at its end) in this directory; needs a server with /debug/pprof/ (-spawn self)")
	fs.IntVar(&c.dialConc, "dial-concurrency", 64, "sessions dialled at once")
	fs.IntVar(&c.perSession, "streams-per-session", 1, "streams (members, pairs' ends) per client session")
}

func (c *common) validate() error {
	switch c.spawn {
	case spawnNone:
		if c.url == "" {
			return fmt.Errorf("give -url of a running server, or -spawn binary|self|inproc")
		}
		if _, _, _, err := parseTarget(c.url); err != nil {
			return err
		}
	case spawnBinary, spawnSelf, spawnInproc:
		if c.url != "" {
			return fmt.Errorf("give -url or -spawn, not both")
		}
	default:
		return fmt.Errorf("-spawn %q: want binary, self or inproc", c.spawn)
	}
	if c.serverPID != 0 && c.spawn != spawnNone {
		return fmt.Errorf("-server-pid goes with -url; a spawned server's pid is known")
	}
	if c.sources < 1 || c.sources > 60000 {
		return fmt.Errorf("-sources %d: want 1 to 60000", c.sources)
	}
	if c.timeout <= 0 {
		return fmt.Errorf("-timeout must be positive")
	}
	if c.dialConc < 1 {
		return fmt.Errorf("-dial-concurrency must be at least 1")
	}
	if c.perSession < 1 || c.perSession > 64 {
		return fmt.Errorf("-streams-per-session %d: want 1 to 64 (the server's default -max-streams)", c.perSession)
	}
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// parse parses a scenario's flags: common ones plus those own adds.
func (c *common) parse(name string, args []string, stdout, stderr io.Writer, own func(fs *flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	own(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.args = append([]string{name}, args...)
	c.stdout, c.stderr = stdout, &lockedWriter{w: stderr}
	return c.validate()
}

// lockedWriter serialises writes from progress lines and child processes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// progress prints a line on stderr; stdout carries the report.
func (c *common) progress(format string, args ...any) {
	fmt.Fprintf(c.stderr, "signalbench: "+format+"\n", args...)
}

// withTimeout bounds a run by -timeout.
func (c *common) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// hostInfo describes the machine of a report.
type hostInfo struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"goVersion"`
	Kernel     string `json:"kernel,omitempty"`
	NoFile     uint64 `json:"nofile"`
	LoadAvg    string `json:"loadavg,omitempty"` // at start: others' load on the machine
}

func host() hostInfo {
	h := hostInfo{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			h.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	h.NoFile, _ = nofile()
	return h
}
