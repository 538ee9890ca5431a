package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childIdleCmd is the hidden subcommand a child client process runs: it
// holds a share of the idle scenario's sessions and takes its orders on
// stdin, one line each ("open", "probe K", "close"), answering with one
// JSON line each on stdout.
const childIdleCmd = "child-idle"

// childMsg is a child's answer.
type childMsg struct {
	Phase     string     `json:"phase"` // "ready", "probed", "closed"
	Opened    int        `json:"opened,omitempty"`
	ClientRSS int64      `json:"clientRSS,omitempty"`
	Errors    []errCount `json:"errors,omitempty"`
	Lost      int        `json:"lost,omitempty"`
	OK        int        `json:"ok,omitempty"`
	Failed    int        `json:"failed,omitempty"`
}

func runChildIdle(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(childIdleCmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "channel URL")
	n := fs.Int("n", 0, "sessions")
	sources := fs.Int("sources", 64, "source addresses")
	offset := fs.Int("source-offset", 0, "first source address, counted from 127.0.0.2")
	prefix := fs.String("prefix", "idle", "namespace prefix")
	group := fs.Int("namespace-size", 1, "sessions per namespace")
	room := fs.Bool("room", false, "join rooms rather than echo namespaces")
	conc := fs.Int("dial-concurrency", 64, "sessions dialled at once")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the child's life")
	if err := fs.Parse(args); err != nil {
		return err
	}
	wsURL, addr, _, err := parseTarget(*url)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	d, err := newDialers(addr, *sources, *offset)
	if err != nil {
		return err
	}
	ic := &idleClients{url: wsURL, d: d, n: *n, conc: *conc, group: max(1, *group), prefix: *prefix, room: *room}
	defer ic.close()
	enc := json.NewEncoder(stdout)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch {
		case ok && cmd == "open":
			opened, rss, errs := ic.open(ctx)
			enc.Encode(childMsg{Phase: "ready", Opened: opened, ClientRSS: rss, Errors: errs.summary()})
		case ok && cmd == "probe":
			k, _ := strconv.Atoi(arg)
			lost, pok, failed := ic.probe(ctx, k)
			enc.Encode(childMsg{Phase: "probed", Lost: lost, OK: pok, Failed: failed})
		default: // "close", stdin closed, or out of time
			ic.close()
			enc.Encode(childMsg{Phase: "closed"})
			return nil
		}
	}
}

// idleChildren are idle sessions held by child processes.
type idleChildren struct {
	c        *common
	procs    []*idleChild
	progress func(string, ...any)
}

type idleChild struct {
	*child
	stdin io.WriteCloser
	msgs  chan childMsg
}

func startIdleChildren(ctx context.Context, c *common, srv *server, p idleParams, plan fdPlan) (*idleChildren, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	g := &idleChildren{c: c, progress: c.progress}
	for j, n := range plan.PerProc {
		args := []string{childIdleCmd, "-url", srv.URL, "-n", strconv.Itoa(n),
			"-sources", strconv.Itoa(c.sources), "-source-offset", strconv.Itoa(j * c.sources),
			"-prefix", fmt.Sprintf("idle-c%d", j), "-namespace-size", strconv.Itoa(p.NamespaceSize), fmt.Sprintf("-room=%v", p.Room),
			"-dial-concurrency", strconv.Itoa(max(1, c.dialConc/len(plan.PerProc))), "-timeout", c.timeout.String()}
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), childEnv+"=1")
		cmd.Stderr = c.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			g.close()
			return nil, err
		}
		out := &lineWriter{msgs: make(chan childMsg, 4)}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			g.close()
			return nil, fmt.Errorf("client process %d: %w", j, err)
		}
		ch := &idleChild{child: watchChild(cmd), stdin: stdin, msgs: out.msgs}
		go func() { <-ch.exited; out.close() }()
		g.procs = append(g.procs, ch)
	}
	return g, nil
}

// errChildExited is a client process that ended before answering.
var errChildExited = errors.New("client process exited early")

// await returns the child's next message of phase.
func (ch *idleChild) await(ctx context.Context, phase string) (childMsg, error) {
	for {
		select {
		case m, ok := <-ch.msgs:
			if !ok {
				return childMsg{}, fmt.Errorf("%w (pid %d: %v)", errChildExited, ch.cmd.Process.Pid, ch.err)
			}
			if m.Phase == phase {
				return m, nil
			}
		case <-ctx.Done():
			return childMsg{}, ctx.Err()
		}
	}
}

func (g *idleChildren) open(ctx context.Context) (int, int64, *errTally) {
	for _, ch := range g.procs {
		fmt.Fprintln(ch.stdin, "open")
	}
	var errs errTally
	opened, rss := 0, int64(0)
	for j, ch := range g.procs {
		m, err := ch.await(ctx, "ready")
		if err != nil {
			errs.add(fmt.Errorf("client process %d: %w", j, err), nil)
			continue
		}
		opened += m.Opened
		rss += m.ClientRSS
		errs.merge(m.Errors)
		g.progress("client process %d: %d sessions open", j, m.Opened)
	}
	return opened, rss, &errs
}

func (g *idleChildren) probe(ctx context.Context, k int) (lost, ok, failed int) {
	share := (k + len(g.procs) - 1) / len(g.procs)
	for _, ch := range g.procs {
		fmt.Fprintf(ch.stdin, "probe %d\n", share)
	}
	for _, ch := range g.procs {
		m, err := ch.await(ctx, "probed")
		if err != nil {
			failed += share
			continue
		}
		lost += m.Lost
		ok += m.OK
		failed += m.Failed
	}
	return lost, ok, failed
}

func (g *idleChildren) close() {
	for _, ch := range g.procs {
		fmt.Fprintln(ch.stdin, "close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, ch := range g.procs {
		ch.await(ctx, "closed")
		ch.stdin.Close()
		select {
		case <-ch.exited:
		case <-time.After(10 * time.Second):
			ch.stop()
		}
	}
	g.procs = nil
}

// lineWriter is a child's stdout: it decodes one JSON message per line.
type lineWriter struct {
	buf    []byte
	msgs   chan childMsg
	closed bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		var m childMsg
		if err := json.Unmarshal(w.buf[:i], &m); err == nil && !w.closed {
			w.msgs <- m
		}
		w.buf = w.buf[i+1:]
	}
}

// close is called once the child has exited, after its last Write.
func (w *lineWriter) close() {
	w.closed = true
	close(w.msgs)
}
