package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/internal/baseline"
)

// relayParams are the relay scenario's own flags.
type relayParams struct {
	Pairs      int           `json:"pairs"`
	Chunk      int           `json:"chunk"`
	Duration   time.Duration `json:"duration"`
	Baseline   bool          `json:"baseline"`
	Rounds     int           `json:"rounds"`
	NoiseLimit float64       `json:"noiseLimit"`
	Namespace  string        `json:"namespace"`
}

// relayRun is one round against one server.
type relayRun struct {
	Round int    `json:"round"`
	Kind  string `json:"kind"`
	Pairs int    `json:"pairs"`
	Bytes int64  `json:"bytes"`
	// TotalMBps is all pairs' bytes over the run, in MB/s (10^6 bytes).
	TotalMBps float64 `json:"totalMBps"`
	// PairMBps are each pair's own rate: mean, slowest and fastest.
	PairMeanMBps float64 `json:"pairMeanMBps"`
	PairMinMBps  float64 `json:"pairMinMBps"`
	PairMaxMBps  float64 `json:"pairMaxMBps"`
	// ServerCPU is in cores over the run and per GB moved; -1 unknown.
	ServerCPU      float64 `json:"serverCPUCores"`
	ServerCPUPerGB float64 `json:"serverCPUSecondsPerGB"`
	ClientCPU      float64 `json:"clientCPUCores"`
	ClientCPUPerGB float64 `json:"clientCPUSecondsPerGB"`
	OthersCPU      float64 `json:"othersCPUCores"` // other processes: the noise
	Errors         int     `json:"errors"`
}

// relayRatio compares signalchannel with the splice: the ratio of total
// throughput in each round (both measured back to back), their median,
// minimum and maximum, and medians of the figures.
type relayRatio struct {
	Rounds        []float64 `json:"roundRatios"`
	Noisy         int       `json:"noisyRoundsLeftOut"`
	Ratio         float64   `json:"ratio"`
	Min           float64   `json:"minRatio"`
	Max           float64   `json:"maxRatio"`
	Signalchannel float64   `json:"signalchannelTotalMBps"`
	Baseline      float64   `json:"baselineTotalMBps"`
	CPUPerByte    float64   `json:"serverCPUPerByteRatio"` // median of rounds; -1 unknown
	// CPUBound is the throughput ratio the CPU cost implies, immune to
	// what other processes take: splice (server + clients) CPU per byte
	// over signalchannel's, median of rounds; -1 unknown.
	CPUBound float64 `json:"cpuBoundRatio"`
}

type relayResults struct {
	Runs  []relayRun  `json:"runs"`
	Ratio *relayRatio `json:"ratio,omitempty"`
}

// pipeEnd is one end of a relay pair or a splice pair.
type pipeEnd interface {
	io.ReadWriteCloser
	CloseWrite() error
}

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := relayParams{}
	err := c.parse("relay", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.Pairs, "pairs", 1, "relay pairs, each moving bytes one way as fast as it can")
		fs.IntVar(&p.Chunk, "chunk", 64<<10, "bytes per write")
		fs.DurationVar(&p.Duration, "duration", 5*time.Second, "how long each pair writes")
		fs.BoolVar(&p.Baseline, "baseline", false, "run the same load through the TCP splice baseline, and print the ratio")
		fs.IntVar(&p.Rounds, "rounds", 1, "rounds; with -baseline the two servers run back to back in each round, and the ratio is the median of the rounds' ratios")
		fs.Float64Var(&p.NoiseLimit, "noise-limit", 0, "leave out of the ratio the rounds in which other processes took more than this many cores during either server's run (0: keep every round)")
		fs.StringVar(&p.Namespace, "namespace", "bench", "relay namespace")
	})
	if err != nil {
		return err
	}
	switch {
	case p.Pairs < 1 || p.Pairs > 10_000:
		return fmt.Errorf("-pairs %d: want 1 to 10000 (the server's default -relay-max-pairs)", p.Pairs)
	case p.Chunk < 1 || p.Chunk > 16<<20:
		return fmt.Errorf("-chunk %d: want 1 to 16 MiB", p.Chunk)
	case p.Duration <= 0:
		return fmt.Errorf("-duration must be positive")
	case p.Rounds < 1 || p.Rounds > 100:
		return fmt.Errorf("-rounds %d: want 1 to 100", p.Rounds)
	}
	if err := fitsOneProcess(&c, 2*p.Pairs, p.Baseline); err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	ss := &servers{o: &c}
	defer ss.closeAll()
	rep := newReport(&c)
	rep.Params = p
	res := &relayResults{}
	rep.Results = res
	kinds := []string{kindSignalchannel}
	if p.Baseline {
		kinds = append(kinds, kindSplice)
	}
	srvs, err := ss.startAll(ctx, rep, kinds...)
	if err != nil {
		return err
	}
	errs := &errTally{}
	for round := 1; round <= p.Rounds && ctx.Err() == nil; round++ {
		order := slices.Clone(kinds)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, k := range order {
			c.progress("round %d: %s, %d pairs for %s", round, k, p.Pairs, p.Duration)
			r, err := relayOnce(ctx, &c, srvs[k], p, round, errs, rep)
			if err != nil {
				rep.note("round %d %s: %v", round, k, err)
				continue
			}
			res.Runs = append(res.Runs, r)
			c.progress("  %s: %.0f MB/s in total, %.0f MB/s per pair", k, r.TotalMBps, r.PairMeanMBps)
		}
	}
	t := rep.addTable("relay (one way, MB = 10^6 bytes)", "round", "server", "pairs", "total MB/s", "pair mean MB/s", "pair min", "pair max", "srv cores", "srv CPU s/GB", "client cores", "client CPU s/GB", "others' cores", "errors")
	for _, r := range res.Runs {
		t.add(r.Round, r.Kind, r.Pairs, r.TotalMBps, r.PairMeanMBps, r.PairMinMBps, r.PairMaxMBps, orDash(r.ServerCPU), orDash(r.ServerCPUPerGB), orDash(r.ClientCPU), orDash(r.ClientCPUPerGB), orDash(r.OthersCPU), r.Errors)
	}
	if p.Baseline {
		r := relayRatios(res.Runs, p.NoiseLimit)
		res.Ratio = r
		rt := rep.addTable("signalchannel relay / TCP splice baseline (ratio: median of the rounds' ratios; figures: medians)", "rounds", "noisy", "ratio", "min", "max", "signalchannel MB/s", "splice MB/s", "srv CPU/byte ratio", "CPU-bound ratio")
		if len(r.Rounds) == 0 {
			rt.add(0, r.Noisy, "-", "-", "-", "-", "-", "-", "-")
		} else {
			rt.add(len(r.Rounds), r.Noisy, r.Ratio, r.Min, r.Max, r.Signalchannel, r.Baseline, orDash(r.CPUPerByte), orDash(r.CPUBound))
		}
		rep.note("CPU-bound ratio: the throughput ratio the CPU cost per byte (server and clients) implies when both saturate the machine; unlike the measured ratio it does not depend on what other processes take")
	}
	rep.noteErrors("errors", errs)
	return rep.write(stdout, c.jsonOut)
}

func relayRatios(runs []relayRun, noiseLimit float64) *relayRatio {
	byRound := map[int]map[string]relayRun{}
	for _, r := range runs {
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]relayRun{}
		}
		byRound[r.Round][r.Kind] = r
	}
	out := &relayRatio{CPUPerByte: -1, CPUBound: -1}
	var sc, base, cpu, bound []float64
	for round := 1; round <= len(byRound)+1; round++ {
		a, okA := byRound[round][kindSignalchannel]
		b, okB := byRound[round][kindSplice]
		if !okA || !okB || b.TotalMBps <= 0 {
			continue
		}
		if noiseLimit > 0 && (a.OthersCPU > noiseLimit || b.OthersCPU > noiseLimit) {
			out.Noisy++
			continue
		}
		out.Rounds = append(out.Rounds, a.TotalMBps/b.TotalMBps)
		sc, base = append(sc, a.TotalMBps), append(base, b.TotalMBps)
		if a.ServerCPUPerGB > 0 && b.ServerCPUPerGB > 0 {
			cpu = append(cpu, a.ServerCPUPerGB/b.ServerCPUPerGB)
			if a.ClientCPUPerGB > 0 && b.ClientCPUPerGB > 0 {
				bound = append(bound, (b.ServerCPUPerGB+b.ClientCPUPerGB)/(a.ServerCPUPerGB+a.ClientCPUPerGB))
			}
		}
	}
	if len(out.Rounds) == 0 {
		return out
	}
	out.Ratio = median(slices.Clone(out.Rounds))
	out.Min, out.Max = slices.Min(out.Rounds), slices.Max(out.Rounds)
	out.Signalchannel, out.Baseline = median(sc), median(base)
	if len(cpu) > 0 {
		out.CPUPerByte = median(cpu)
	}
	if len(bound) > 0 {
		out.CPUBound = median(bound)
	}
	return out
}

// relayOnce pairs, moves bytes for the duration and closes, against one
// server.
func relayOnce(ctx context.Context, c *common, srv *server, p relayParams, round int, errs *errTally, rep *report) (relayRun, error) {
	run := relayRun{Round: round, Kind: srv.Kind, Pairs: p.Pairs, ServerCPU: -1, ServerCPUPerGB: -1}
	d, err := newDialers(srv.Addr, c.sources, 0)
	if err != nil {
		return run, err
	}
	from := make([]pipeEnd, p.Pairs)
	to := make([]pipeEnd, p.Pairs)
	var closers []func()
	var mu sync.Mutex
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	switch srv.Kind {
	case kindSignalchannel:
		sessions := (p.Pairs + c.perSession - 1) / c.perSession
		forEach(pctx, sessions, max(1, c.dialConc/2), func(si int) {
			var wg sync.WaitGroup
			for side := range 2 {
				wg.Go(func() {
					sess, err := d.dialSession(pctx, srv.URL, 2*si+side)
					if err != nil {
						errs.add(err, nil)
						return
					}
					mu.Lock()
					closers = append(closers, func() { sess.Close() })
					mu.Unlock()
					var open sync.WaitGroup
					for k := 0; k < c.perSession; k++ {
						i := si*c.perSession + k
						if i >= p.Pairs {
							break
						}
						local, remote := fmt.Sprintf("r%d-p%d-a", round, i), fmt.Sprintf("r%d-p%d-b", round, i)
						if side == 1 {
							local, remote = remote, local
						}
						open.Go(func() {
							rc, err := sess.Relay(pctx, p.Namespace, local, remote)
							if err != nil {
								errs.add(err, sess)
								return
							}
							if side == 0 {
								from[i] = rc
							} else {
								to[i] = rc
							}
						})
					}
					open.Wait()
				})
			}
			wg.Wait()
		})
	case kindSplice:
		forEach(pctx, p.Pairs, max(1, c.dialConc/2), func(i int) {
			var wg sync.WaitGroup
			for side := range 2 {
				wg.Go(func() {
					tc, err := baseline.DialSplice(pctx, d.tcpDialer(2*i+side), srv.Addr, fmt.Sprintf("r%d-p%d", round, i))
					if err != nil {
						errs.add(err, nil)
						return
					}
					mu.Lock()
					closers = append(closers, func() { tc.Close() })
					mu.Unlock()
					if side == 0 {
						from[i] = tc
					} else {
						to[i] = tc
					}
				})
			}
			wg.Wait()
		})
	default:
		return run, fmt.Errorf("relay runs against signalchannel or splice, not %s", srv.Kind)
	}
	for i := range from {
		if from[i] == nil || to[i] == nil {
			return run, errors.New("not every pair opened")
		}
	}

	meter := startCPU(srv.PID)
	var prof chan error
	if c.profileDir != "" && round == 1 {
		prof = startCPUProfile(ctx, c, rep, srv, "relay", p.Duration)
	}
	start := time.Now()
	got := make([]int64, p.Pairs)
	took := make([]time.Duration, p.Pairs)
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range from {
		wg.Go(func() {
			buf := make([]byte, p.Chunk)
			for time.Since(start) < p.Duration && ctx.Err() == nil {
				if _, err := from[i].Write(buf); err != nil {
					errs.add(err, nil)
					failed.Store(i, true)
					break
				}
			}
			from[i].CloseWrite()
		})
		wg.Go(func() {
			buf := make([]byte, max(p.Chunk, 64<<10))
			var n int64
			for {
				k, err := to[i].Read(buf)
				n += int64(k)
				if err == io.EOF {
					break
				}
				if err != nil {
					errs.add(err, nil)
					failed.Store(i, true)
					break
				}
			}
			got[i], took[i] = n, time.Since(start)
			to[i].Close()
		})
	}
	stop := context.AfterFunc(ctx, func() {
		for i := range from {
			from[i].Close()
			to[i].Close()
		}
	})
	wg.Wait()
	stop()
	elapsed := time.Since(start)
	cpu := meter.stop()
	if prof != nil {
		if err := <-prof; err != nil {
			rep.note("CPU profile: %v", err)
		}
	}
	var rates []float64
	for i := range got {
		run.Bytes += got[i]
		rates = append(rates, float64(got[i])/1e6/took[i].Seconds())
	}
	failed.Range(func(any, any) bool { run.Errors++; return true })
	run.TotalMBps = float64(run.Bytes) / 1e6 / elapsed.Seconds()
	run.PairMinMBps, run.PairMaxMBps = slices.Min(rates), slices.Max(rates)
	for _, r := range rates {
		run.PairMeanMBps += r / float64(len(rates))
	}
	run.ServerCPU, run.ClientCPU, run.OthersCPU = cpu.Server, cpu.Client, cpu.Others
	run.ClientCPUPerGB = -1
	if cpu.Server >= 0 && run.Bytes > 0 {
		run.ServerCPUPerGB = cpu.ServerT.Seconds() / (float64(run.Bytes) / 1e9)
	}
	if cpu.Client >= 0 && run.Bytes > 0 {
		run.ClientCPUPerGB = cpu.Client * cpu.Elapsed.Seconds() / (float64(run.Bytes) / 1e9)
	}
	return run, nil
}
