package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	chserver "github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/peer"
)

// idleParams are the idle scenario's own flags.
type idleParams struct {
	N             int           `json:"sessions"`
	Procs         int           `json:"procs"`
	Settle        time.Duration `json:"settle"`
	Hold          time.Duration `json:"hold"`
	Probe         int           `json:"probe"`
	NamespaceSize int           `json:"namespaceSize"`
	Room          bool          `json:"room"`
}

// idleResults are the idle scenario's figures.
type idleResults struct {
	Plan        fdPlan     `json:"plan"`
	Opened      int        `json:"opened"`
	Errors      []errCount `json:"errors,omitempty"`
	OpenSeconds float64    `json:"openSeconds"`
	Lost        int        `json:"lostDuringHold"`
	ProbeOK     int        `json:"probeOK"`
	ProbeFailed int        `json:"probeFailed"`
	Before      procSample `json:"serverBefore"`
	After       procSample `json:"serverAfter"`
	Closed      procSample `json:"serverAfterClose"`
	// Per session: deltas between Before and After over Opened. The Go
	// runtime figures are -1 when the server has no /metrics with them.
	RSSPerSession        float64 `json:"serverRSSPerSessionBytes"`
	HeapPerSession       float64 `json:"serverHeapPerSessionBytes"`
	StackPerSession      float64 `json:"serverStackPerSessionBytes"`
	GoroutinesPerSession float64 `json:"serverGoroutinesPerSession"`
	FDsPerSession        float64 `json:"serverFDsPerSession"`
	ClientRSSPerSession  float64 `json:"clientRSSPerSessionBytes"`
}

func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := idleParams{}
	err := c.parse("idle", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.N, "n", 1000, "sessions, each with one echo stream")
		fs.IntVar(&p.Procs, "procs", 0, "client processes: 1 runs the clients here, more start child processes; 0 picks as few as the open-files limit allows")
		fs.DurationVar(&p.Settle, "settle", 3*time.Second, "wait after the last session opened before reading the server's memory")
		fs.DurationVar(&p.Hold, "hold", 5*time.Second, "then keep the sessions open this long, and count those that ended")
		fs.IntVar(&p.Probe, "probe", 100, "then check this many sessions still serve, with an echo round trip each")
		fs.IntVar(&p.NamespaceSize, "namespace-size", 1, "sessions per echo namespace or room (1: one each)")
		fs.BoolVar(&p.Room, "room", false, "each session joins a room of the peer layer (its member record over a scuttlebutt stream) instead of an echo namespace")
	})
	if err != nil {
		return err
	}
	if p.N < 1 || p.N > 1_000_000 {
		return fmt.Errorf("-n %d: want 1 to 1000000", p.N)
	}
	if p.NamespaceSize < 1 {
		return fmt.Errorf("-namespace-size must be at least 1")
	}
	if c.perSession != 1 {
		return fmt.Errorf("idle opens one stream per session; -streams-per-session does not apply")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()

	ss := &servers{o: &c}
	defer ss.closeAll()
	srv, err := ss.start(ctx, kindSignalchannel)
	if err != nil {
		return err
	}
	rep := newReport(&c)
	rep.Servers = []*server{srv}
	rep.Params = p
	res := &idleResults{}
	rep.Results = res

	clientLimit, err := nofile()
	if err != nil {
		return err
	}
	var serverLimit uint64
	if srv.PID > 0 && srv.Spawn != spawnInproc {
		if serverLimit, err = processNofile(srv.PID); err != nil {
			rep.note("server open-files limit unknown: %v", err)
		}
	}
	plan, err := planSessions(p.N, clientLimit, serverLimit, srv.Spawn == spawnInproc, p.Procs)
	if err != nil {
		return err
	}
	res.Plan = plan
	if srv.PID == 0 {
		rep.note("server pid unknown (give -server-pid): no RSS, CPU or descriptor figures")
	}
	if srv.Spawn == spawnInproc {
		rep.note("the server runs in this process: its RSS includes the clients when -procs is 1")
	}
	if perIP := (p.N + c.sources - 1) / c.sources; perIP > chserver.DefaultMaxSessionsPerIP && srv.Addr != "" && !strings.HasPrefix(srv.Addr, "[") {
		rep.note("each of the %d source addresses opens up to %d sessions, over the server's default -max-sessions-per-ip %d: raise -sources", c.sources, perIP, chserver.DefaultMaxSessionsPerIP)
	}

	var group idleGroup
	if plan.Procs == 1 {
		group = newLocalIdle(&c, srv, p)
	} else {
		group, err = startIdleChildren(ctx, &c, srv, p, plan)
		if err != nil {
			return err
		}
	}
	defer group.close()

	settleServer(ctx, srv)
	var notes []string
	res.Before, notes = srv.sample(ctx)
	rep.Notes = append(rep.Notes, notes...)

	c.progress("opening %d sessions in %d process(es) against %s", p.N, plan.Procs, srv.URL)
	start := time.Now()
	opened, clientRSS, errs := group.open(ctx)
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = opened
	res.Errors = errs.summary()
	c.progress("%d sessions open in %.1fs; settling %s", opened, res.OpenSeconds, p.Settle)

	sleepCtx(ctx, p.Settle)
	settleServer(ctx, srv)
	if c.profileDir != "" {
		saveHeapProfile(ctx, &c, rep, srv, "idle")
	}
	res.After, notes = srv.sample(ctx)
	rep.Notes = append(rep.Notes, notes...)

	c.progress("holding %s", p.Hold)
	sleepCtx(ctx, p.Hold)
	res.Lost, res.ProbeOK, res.ProbeFailed = group.probe(ctx, p.Probe)
	c.progress("closing")
	group.close()
	sleepCtx(ctx, time.Second)
	res.Closed, _ = srv.sample(ctx)

	per := func(a, b float64) float64 {
		if a < 0 || b < 0 || opened == 0 {
			return -1
		}
		return (b - a) / float64(opened)
	}
	res.RSSPerSession = per(float64(res.Before.RSS), float64(res.After.RSS))
	res.HeapPerSession = per(res.Before.Heap, res.After.Heap)
	res.StackPerSession = per(res.Before.Stack, res.After.Stack)
	res.GoroutinesPerSession = per(res.Before.Goroutines, res.After.Goroutines)
	res.FDsPerSession = per(float64(res.Before.FDs), float64(res.After.FDs))
	if clientRSS >= 0 && opened > 0 {
		res.ClientRSSPerSession = float64(clientRSS) / float64(opened)
	}
	if srv.PID == 0 {
		res.RSSPerSession, res.FDsPerSession = -1, -1
	}

	what := "idle sessions (one echo stream each)"
	if p.Room {
		what = fmt.Sprintf("idle room members (rooms of %d)", p.NamespaceSize)
	}
	t := rep.addTable(what, "requested", "opened", "errors", "lost", "probe ok/fail", "procs", "open s")
	t.add(p.N, opened, errs.total(), res.Lost, fmt.Sprintf("%d/%d", res.ProbeOK, res.ProbeFailed), plan.Procs, res.OpenSeconds)
	m := rep.addTable("server memory per session", "RSS KiB", "heap KiB", "stacks KiB", "goroutines", "fds", "client RSS KiB")
	m.add(kibOrDash(res.RSSPerSession), kibOrDash(res.HeapPerSession), kibOrDash(res.StackPerSession),
		orDash(res.GoroutinesPerSession), orDash(res.FDsPerSession), kibOrDash(res.ClientRSSPerSession))
	tot := rep.addTable("server totals", "", "RSS MiB", "heap MiB", "goroutines", "fds")
	for _, row := range []struct {
		name string
		s    procSample
	}{{"before", res.Before}, {"open", res.After}, {"after close", res.Closed}} {
		tot.add(row.name, mibOrDash(float64(row.s.RSS), srv.PID > 0), mibOrDash(row.s.Heap, row.s.Heap >= 0), orDash(row.s.Goroutines), orDash(float64(row.s.FDs)))
	}
	if res.Before.Heap < 0 {
		rep.note("the server has no /metrics with go_memstats_heap_inuse_bytes: Go heap not measured")
	}
	rep.noteErrors("session errors", errs)
	if opened < p.N {
		rep.note("only %d of %d sessions opened", opened, p.N)
	}
	return rep.write(stdout, c.jsonOut)
}

// settleServer asks a server with /debug/pprof/ to collect garbage (a heap
// profile with gc=1) so that its heap is read without garbage; with an
// in-process server it collects here. Others are left to their own GC.
func settleServer(ctx context.Context, srv *server) {
	switch {
	case srv.Spawn == spawnInproc:
		runtime.GC()
		debug.FreeOSMemory()
	case srv.Pprof:
		fetchTo(ctx, srv.HTTP, "/debug/pprof/heap?gc=1", "/dev/null")
	}
}

// saveHeapProfile saves the server's heap profile, and its goroutines
// grouped by stack, in -profile.
func saveHeapProfile(ctx context.Context, c *common, rep *report, srv *server, name string) {
	if !srv.Pprof {
		rep.note("no heap profile: the server has no /debug/pprof/ (use -spawn self)")
		return
	}
	file := fmt.Sprintf("%s/%s-%s-heap.pprof", c.profileDir, name, srv.Kind)
	if err := fetchTo(ctx, srv.HTTP, "/debug/pprof/heap?gc=1", file); err != nil {
		rep.note("heap profile: %v", err)
		return
	}
	rep.note("heap profile: %s", file)
	gfile := fmt.Sprintf("%s/%s-%s-goroutines.txt", c.profileDir, name, srv.Kind)
	if err := fetchTo(ctx, srv.HTTP, "/debug/pprof/goroutine?debug=1", gfile); err != nil {
		rep.note("goroutine profile: %v", err)
		return
	}
	rep.note("goroutines by stack: %s", gfile)
}

func kibOrDash(v float64) string {
	if v < 0 {
		return "-"
	}
	return cell(kib(v))
}

func mibOrDash(v float64, ok bool) string {
	if !ok || v < 0 {
		return "-"
	}
	return cell(mib(v))
}

func orDash(v float64) string {
	if v < 0 {
		return "-"
	}
	return cell(v)
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// idleGroup holds idle sessions, in this process or in children.
type idleGroup interface {
	// open opens the sessions and returns how many opened, the clients'
	// RSS growth (-1 if unknown) and the errors.
	open(ctx context.Context) (opened int, clientRSS int64, errs *errTally)
	// probe counts the sessions that ended and checks k of them serve.
	probe(ctx context.Context, k int) (lost, ok, failed int)
	close()
}

// idleClients are idle sessions held by this process.
type idleClients struct {
	url      string
	d        *dialers
	n        int
	conc     int
	group    int
	prefix   string
	room     bool // join a room rather than an echo namespace
	pool     sessionPool
	echoes   []*client.Echo
	rooms    []*peer.Room
	errs     errTally
	progress func(format string, args ...any)
}

func newLocalIdle(c *common, srv *server, p idleParams) *idleClients {
	return &idleClients{url: srv.URL, n: p.N, conc: c.dialConc, group: p.NamespaceSize, prefix: "idle", room: p.Room,
		progress: c.progress, d: mustDialers(srv.Addr, c.sources, 0)}
}

func mustDialers(addr string, n, offset int) *dialers {
	d, err := newDialers(addr, n, offset)
	if err != nil {
		panic(err) // the address was checked when the server was set up
	}
	return d
}

func (ic *idleClients) open(ctx context.Context) (int, int64, *errTally) {
	rss0, _ := readRSS(selfPID)
	ic.echoes = make([]*client.Echo, ic.n)
	ic.rooms = make([]*peer.Room, ic.n)
	var opened atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if ic.progress != nil {
					ic.progress("%d/%d sessions open", opened.Load(), ic.n)
				}
			}
		}
	}()
	forEach(ctx, ic.n, ic.conc, func(i int) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		sess, err := ic.d.dialSession(dctx, ic.url, i)
		if err != nil {
			ic.errs.add(err, nil)
			return
		}
		name := fmt.Sprintf("%s-%d", ic.prefix, i/ic.group)
		if ic.room {
			r, err := peer.Join(ctx, sess, name, peer.RoomOptions{})
			if err != nil {
				ic.errs.add(err, sess)
				sess.Close()
				return
			}
			ic.rooms[i] = r
		} else {
			e, err := sess.Echo(dctx, name)
			if err != nil {
				ic.errs.add(err, sess)
				sess.Close()
				return
			}
			ic.echoes[i] = e
		}
		ic.pool.add(sess)
		opened.Add(1)
	})
	close(stop)
	runtime.GC()
	rss1, _ := readRSS(selfPID)
	return int(opened.Load()), rss1 - rss0, &ic.errs
}

func (ic *idleClients) probe(ctx context.Context, k int) (lost, ok, failed int) {
	lost = ic.pool.lost()
	if k <= 0 {
		return lost, 0, 0
	}
	step := max(1, ic.n/k)
	for i := 0; i < ic.n && ok+failed < k && ctx.Err() == nil; i += step {
		if ic.room {
			if r := ic.rooms[i]; r != nil {
				if err := roomProbe(r); err != nil {
					failed++
					ic.errs.add(err, nil)
				} else {
					ok++
				}
			}
			continue
		}
		e := ic.echoes[i]
		if e == nil {
			continue
		}
		if err := echoRoundTrip(e, uint64(i), ic.group); err != nil {
			failed++
			ic.errs.add(err, nil)
		} else {
			ok++
		}
	}
	return lost, ok, failed
}

// echoRoundTrip sends a frame with tag and waits for it to come back,
// skipping frames of other members of the namespace (at most group).
func echoRoundTrip(e *client.Echo, tag uint64, group int) error {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], tag)
	e.Stream().SetReadDeadline(time.Now().Add(5 * time.Second))
	defer e.Stream().SetReadDeadline(time.Time{})
	if err := e.Send(msg[:]); err != nil {
		return err
	}
	for range group + 1 {
		f, err := e.Recv()
		if err != nil {
			return err
		}
		if bytes.Equal(f, msg[:]) {
			return nil
		}
	}
	return fmt.Errorf("echo probe: own frame not received")
}

// roomProbe checks that a member still serves: its room has not ended and
// its record can be written again.
func roomProbe(r *peer.Room) error {
	select {
	case <-r.Done():
		return fmt.Errorf("room probe: the room ended")
	default:
	}
	return r.SetMeta(nil)
}

func (ic *idleClients) close() { ic.pool.closeAll(ic.conc) }
