package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
)

// churnParams are the churn scenario's own flags.
type churnParams struct {
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration"`
	MaxCount    int           `json:"maxCount"`
	Settle      time.Duration `json:"settle"`
}

type churnResults struct {
	Cycles     int64      `json:"cycles"`
	Failed     int64      `json:"failed"`
	Rate       float64    `json:"cyclesPerSec"`
	Latency    latency    `json:"latency"`
	Before     procSample `json:"serverBefore"`
	After      procSample `json:"serverAfter"`
	ServerCPU  float64    `json:"serverCPUCores"`
	ServerUsPC float64    `json:"serverCPUMicrosPerCycle"`
	ClientCPU  float64    `json:"clientCPUCores"`
	OthersCPU  float64    `json:"othersCPUCores"`
	Errors     []errCount `json:"errors,omitempty"`
}

func runChurn(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := churnParams{}
	err := c.parse("churn", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.Concurrency, "concurrency", 8, "clients churning at once")
		fs.DurationVar(&p.Duration, "duration", 10*time.Second, "how long to churn")
		fs.IntVar(&p.MaxCount, "max-count", 1_000_000, "stop after this many cycles")
		fs.DurationVar(&p.Settle, "settle", 3*time.Second, "after the last cycle, wait this long before reading the server's descriptors and memory")
	})
	if err != nil {
		return err
	}
	switch {
	case p.Concurrency < 1 || p.Concurrency > 10_000:
		return fmt.Errorf("-concurrency %d: want 1 to 10000", p.Concurrency)
	case p.Duration <= 0 || p.MaxCount < 1:
		return fmt.Errorf("-duration and -max-count must be positive")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res := &churnResults{ServerCPU: -1, ServerUsPC: -1}
	ss, srv, rep, d, err := oneServer(ctx, &c, p, res)
	if err != nil {
		return err
	}
	defer ss.closeAll()
	settleServer(ctx, srv)
	res.Before, _ = srv.sample(ctx)
	meter := startCPU(srv.PID)
	var prof chan error
	if c.profileDir != "" {
		prof = startCPUProfile(ctx, &c, rep, srv, "churn", p.Duration)
	}

	c.progress("churning with %d clients for %s", p.Concurrency, p.Duration)
	h, failed, elapsed, errs := loopFor(ctx, p.Concurrency, p.Duration, p.MaxCount, func(ctx context.Context, _, i int) (*client.Session, error) {
		return churnOnce(ctx, d, srv.URL, i)
	})
	cpu := meter.stop()
	if prof != nil {
		if err := <-prof; err != nil {
			rep.note("CPU profile: %v", err)
		}
	}
	c.progress("settling %s", p.Settle)
	sleepCtx(ctx, p.Settle)
	settleServer(ctx, srv)
	res.After, _ = srv.sample(ctx)

	res.Cycles = int64(h.Count())
	res.Failed = failed
	res.Rate = float64(res.Cycles) / elapsed.Seconds()
	res.Latency = h.Summary()
	res.ServerCPU, res.ClientCPU, res.OthersCPU = cpu.Server, cpu.Client, cpu.Others
	if cpu.Server >= 0 && res.Cycles > 0 {
		res.ServerUsPC = float64(cpu.ServerT.Microseconds()) / float64(res.Cycles)
	}
	res.Errors = errs.summary()

	t := rep.addTable("churn: dial, join an echo namespace, one round trip, close", "clients", "cycles", "failed", "cycles/s", "p50 ms", "p99 ms", "p999 ms", "srv cores", "srv µs/cycle", "client cores", "others' cores")
	t.add(p.Concurrency, res.Cycles, res.Failed, res.Rate, res.Latency.P50, res.Latency.P99, res.Latency.P999, orDash(res.ServerCPU), orDash(res.ServerUsPC), orDash(res.ClientCPU), orDash(res.OthersCPU))
	if srv.PID > 0 {
		s := rep.addTable("server before and after", "", "fds", "RSS MiB", "heap MiB", "goroutines")
		for _, row := range []struct {
			name string
			s    procSample
		}{{"before", res.Before}, {"after", res.After}} {
			s.add(row.name, row.s.FDs, mib(float64(row.s.RSS)), mibOrDash(row.s.Heap, row.s.Heap >= 0), orDash(row.s.Goroutines))
		}
		if srv.Spawn != spawnInproc && res.After.FDs > res.Before.FDs+p.Concurrency {
			rep.note("the server holds %d more descriptors than before the churn, after %s", res.After.FDs-res.Before.FDs, p.Settle)
		}
	} else {
		rep.note("server pid unknown: no server CPU or descriptor figures (give -server-pid)")
	}
	if srv.Spawn == spawnInproc {
		rep.note("the server runs in this process: its CPU and descriptor figures include the clients")
	}
	rep.noteErrors("errors", errs)
	return rep.write(stdout, c.jsonOut)
}

// churnOnce opens session i, joins its own echo namespace, sends a frame,
// receives it and closes. On error it returns the session, closed, if it
// was opened, for the close code the server sent.
func churnOnce(ctx context.Context, d *dialers, url string, i int) (*client.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sess, err := d.dialSession(ctx, url, i)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	e, err := sess.Echo(ctx, fmt.Sprintf("churn-%d", i))
	if err != nil {
		return sess, err
	}
	if err := echoRoundTrip(e, uint64(i), 0); err != nil {
		return sess, err
	}
	return sess, e.Close()
}

// oneServer starts the signalchannel server of a one-server scenario, its
// report (with the scenario's params and results) and the dialers of its
// clients. The caller closes ss.
func oneServer(ctx context.Context, c *common, params, results any) (*servers, *server, *report, *dialers, error) {
	ss := &servers{o: c}
	srv, err := ss.start(ctx, kindSignalchannel)
	if err != nil {
		ss.closeAll()
		return nil, nil, nil, nil, err
	}
	rep := newReport(c)
	rep.Servers = []*server{srv}
	rep.Params = params
	rep.Results = results
	d, err := newDialers(srv.Addr, c.sources, 0)
	if err != nil {
		ss.closeAll()
		return nil, nil, nil, nil, err
	}
	return ss, srv, rep, d, nil
}

// loopFor runs n workers, each calling one again and again, with the
// number of the call, until d passes or max calls have started. It returns
// the times of the calls that succeeded, how many failed, the time it took
// and the errors. An error at the end of the run, when the deadline cut a
// call short, is not counted: it is not the server's, as the network
// deadline may pass a moment before the context says so.
func loopFor(ctx context.Context, n int, d time.Duration, max int, one func(ctx context.Context, w, i int) (*client.Session, error)) (hist, int64, time.Duration, *errTally) {
	errs := &errTally{}
	var next, failed atomic.Int64
	hists := make([]hist, n)
	rctx, rcancel := context.WithTimeout(ctx, d)
	defer rcancel()
	start := time.Now()
	deadline := start.Add(d)
	over := func() bool { return rctx.Err() != nil || !time.Now().Before(deadline) }
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for !over() {
				i := int(next.Add(1) - 1)
				if i >= max {
					return
				}
				t0 := time.Now()
				sess, err := one(rctx, w, i)
				if err != nil {
					if !over() {
						errs.add(err, sess)
						failed.Add(1)
					}
					continue
				}
				hists[w].Record(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var h hist
	for i := range hists {
		h.Merge(&hists[i])
	}
	return h, failed.Load(), elapsed, errs
}
