package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	chserver "github.com/signalchannel/signalchannel/channel/server"
)

// Ways to get a server to measure.
const (
	spawnNone   = ""       // a running server given by -url
	spawnBinary = "binary" // go build ./cmd/signalchannel, run as a child
	spawnSelf   = "self"   // this program's server subcommand, as a child
	spawnInproc = "inproc" // in this process
)

// childEnv marks a process started by signalbench, for the tests' binary to
// act as signalbench.
const childEnv = "SIGNALBENCH_CHILD"

// server is a server under test.
type server struct {
	Kind  string `json:"kind"`
	Spawn string `json:"spawn"` // "external", "binary", "self" or "inproc"
	URL   string `json:"url,omitempty"`
	Addr  string `json:"addr"`
	// HTTP is the base of /healthz and /metrics ("" when unknown).
	HTTP string `json:"http,omitempty"`
	// PID is the server's process, 0 when unknown; with inproc it is this
	// process, so its figures include the clients.
	PID   int    `json:"pid,omitempty"`
	Pprof bool   `json:"pprof,omitempty"`
	Log   string `json:"log,omitempty"`
	stop  func() error
}

// Close stops a server that was started; a running one given by -url is
// left alone.
func (s *server) Close() error {
	if s == nil || s.stop == nil {
		return nil
	}
	stop := s.stop
	s.stop = nil
	return stop()
}

// sample reads the server process and its /metrics.
func (s *server) sample(ctx context.Context) (procSample, []string) {
	return sampleProc(ctx, s.PID, s.HTTP)
}

// servers starts and remembers the servers of one run, and the server
// binary built for it.
type servers struct {
	o      *common
	mu     sync.Mutex
	binDir string
	all    []*server
}

// closeAll stops every server started and removes the built binary.
func (ss *servers) closeAll() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var errs []error
	for _, s := range ss.all {
		errs = append(errs, s.Close())
	}
	if ss.binDir != "" {
		os.RemoveAll(ss.binDir)
		ss.binDir = ""
	}
	return errors.Join(errs...)
}

// start returns the server of kind to measure: for signalchannel, the one
// -url names or the one -spawn starts; for a baseline, one started in this
// process with -spawn inproc and as a child otherwise.
func (ss *servers) start(ctx context.Context, kind string) (*server, error) {
	o := ss.o
	var s *server
	var err error
	switch {
	case kind == kindSignalchannel && o.spawn == spawnNone:
		s, err = external(o)
	case o.spawn == spawnInproc:
		s, err = startInproc(kind)
	case kind == kindSignalchannel && o.spawn == spawnBinary:
		s, err = ss.startBinary(ctx)
	default:
		s, err = startSelf(ctx, kind, o)
	}
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", kind, err)
	}
	ss.mu.Lock()
	ss.all = append(ss.all, s)
	ss.mu.Unlock()
	return s, nil
}

// external describes the running server -url names.
func external(o *common) (*server, error) {
	wsURL, addr, httpBase, err := parseTarget(o.url)
	if err != nil {
		return nil, err
	}
	s := &server{Kind: kindSignalchannel, Spawn: "external", URL: wsURL, Addr: addr, HTTP: httpBase, PID: o.serverPID}
	if s.PID > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PID)); err != nil {
			return nil, fmt.Errorf("-server-pid %d: %v", s.PID, err)
		}
	}
	return s, nil
}

func startInproc(kind string) (*server, error) {
	l, err := runLocal(kind, localOptions{addr: "127.0.0.1:0", pprof: false, channel: chserver.Config{}})
	if err != nil {
		return nil, err
	}
	s := &server{Kind: kind, Spawn: spawnInproc, Addr: l.addr, HTTP: "http://" + l.httpAddr, PID: os.Getpid(), stop: l.close}
	if kind != kindSplice {
		s.URL = "ws://" + l.addr + "/v1/channel"
	}
	return s, nil
}

// startSelf runs this program's server subcommand as a child, with
// /debug/pprof/ enabled.
func startSelf(ctx context.Context, kind string, o *common) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"server", "-kind", kind, "-addr", "127.0.0.1:0", "-pprof"}
	if kind == kindSignalchannel && o.serverArgs != "" {
		args = append(args, strings.Fields(o.serverArgs)...)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	first := &firstLine{line: make(chan string, 1)}
	cmd.Stdout = first
	logPath, logFile, err := serverLog(o, kind)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	logFile.Close()
	child := watchChild(cmd)
	var line string
	select {
	case line = <-first.line:
	case <-child.exited:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	// "listening ADDR HTTPADDR"
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "listening" {
		child.stop()
		return nil, fmt.Errorf("the server child did not start (said %q; log %s)", line, logPath)
	}
	s := &server{Kind: kind, Spawn: spawnSelf, Addr: f[1], HTTP: "http://" + f[2], PID: cmd.Process.Pid, Pprof: true, Log: logPath, stop: child.stop}
	if kind != kindSplice {
		s.URL = "ws://" + f[1] + "/v1/channel"
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHealthy(hctx, s.HTTP, child.exited); err != nil {
		child.stop()
		return nil, err
	}
	return s, nil
}

// serverLog opens where a child server's stderr goes: the file -server-log
// names (with the kind added), or /dev/null.
func serverLog(o *common, kind string) (string, *os.File, error) {
	path := os.DevNull
	if o.serverLog != "" {
		path = o.serverLog + "." + kind
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	return path, f, err
}

// startBinary builds ./cmd/signalchannel (once per run) and runs it with
// -server-args on a free loopback port.
func (ss *servers) startBinary(ctx context.Context) (*server, error) {
	o := ss.o
	bin := o.serverBin
	if bin == "" {
		var err error
		if bin, err = ss.build(ctx); err != nil {
			return nil, err
		}
	}
	extra := strings.Fields(o.serverArgs)
	for _, a := range extra {
		if a == "-addr" || a == "--addr" || strings.HasPrefix(a, "-addr=") || strings.HasPrefix(a, "--addr=") {
			return nil, errors.New("-server-args must not set -addr: signalbench picks a free loopback port")
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// No echo publish budget, as in process; -server-args may set one.
	args := append([]string{"serve", "-echo-publish-rate", "0"}, extra...)
	args = append(args, "-addr", addr)
	cmd := exec.Command(bin, args...)
	logPath, logFile, err := serverLog(o, kindSignalchannel)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	logFile.Close()
	child := watchChild(cmd)
	s := &server{Kind: kindSignalchannel, Spawn: spawnBinary, URL: "ws://" + addr + "/v1/channel", Addr: addr, HTTP: "http://" + addr, PID: cmd.Process.Pid, Log: logPath, stop: child.stop}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHealthy(hctx, s.HTTP, child.exited); err != nil {
		child.stop()
		return nil, fmt.Errorf("%w (log %s)", err, logPath)
	}
	return s, nil
}

// build compiles ./cmd/signalchannel of the module this command runs in.
func (ss *servers) build(ctx context.Context) (string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.binDir != "" {
		return filepath.Join(ss.binDir, "signalchannel"), nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "signalbench-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "signalchannel")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/signalchannel")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/signalchannel: %v\n%s", err, out)
	}
	ss.binDir = dir
	return bin, nil
}

// moduleRoot finds the signalchannel module from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/signalchannel/signalchannel\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("-spawn binary builds ./cmd/signalchannel: run signalbench inside the signalchannel module, or give -server-bin")
		}
		dir = parent
	}
}

// freePort returns a loopback port free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// child is a started child process and its end.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set before exited is closed
}

func watchChild(cmd *exec.Cmd) *child {
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c
}

// stop asks the child to end (SIGTERM), waits up to 20s, then kills it.
func (c *child) stop() error {
	select {
	case <-c.exited:
		return nil
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(20 * time.Second):
	}
	c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("pid %d did not stop within 20s of SIGTERM and was killed", c.cmd.Process.Pid)
}

// firstLine is a child's stdout: it hands over the first line and discards
// the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	line chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent {
		return len(p), nil
	}
	f.buf = append(f.buf, p...)
	if i := strings.IndexByte(string(f.buf), '\n'); i >= 0 {
		f.line <- string(f.buf[:i])
		f.sent, f.buf = true, nil
	} else if len(f.buf) > 4096 {
		f.line <- string(f.buf)
		f.sent, f.buf = true, nil
	}
	return len(p), nil
}

// startAll starts a server of each kind, records them in rep and notes
// what their figures will lack.
func (ss *servers) startAll(ctx context.Context, rep *report, kinds ...string) (map[string]*server, error) {
	srvs := map[string]*server{}
	for _, k := range kinds {
		s, err := ss.start(ctx, k)
		if err != nil {
			return nil, err
		}
		srvs[k] = s
		rep.Servers = append(rep.Servers, s)
		if s.PID == 0 {
			rep.note("%s server pid unknown: no server CPU figures (give -server-pid)", k)
		} else if s.Spawn == spawnInproc {
			rep.note("%s server runs in this process: its CPU figures include the clients", k)
		}
	}
	return srvs, nil
}
