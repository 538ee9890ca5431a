package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel"
)

// fanoutParams are the fanout scenario's own flags.
type fanoutParams struct {
	Members    int           `json:"members"`
	Publishers int           `json:"publishers"`
	FrameSize  int           `json:"frameSize"`
	Rates      []string      `json:"rates"`
	Step       time.Duration `json:"step"`
	Drain      time.Duration `json:"drain"`
	Window     int           `json:"window"`
	Sample     int           `json:"latencySample"`
	Baseline   bool          `json:"baseline"`
	Rounds     int           `json:"rounds"`
	NoiseLimit float64       `json:"noiseLimit"`
	Namespace  string        `json:"namespace"`
	Client     string        `json:"client"`
}

// A fanout frame starts with a header that the members read: the frame's
// kind, the step it belongs to, its publish time and its publisher.
const (
	frameHeader = 24
	frameSync   = 0 // sent until every member has one: all have joined
	frameData   = 1
)

func putFrameHeader(f []byte, kind byte, step int, pub int) {
	f[0] = kind
	binary.BigEndian.PutUint32(f[4:8], uint32(step))
	binary.BigEndian.PutUint32(f[16:20], uint32(pub))
}

func stampFrame(f []byte, t time.Time) { binary.BigEndian.PutUint64(f[8:16], uint64(t.UnixNano())) }

// stepSpec is one entry of -rates.
type stepSpec struct {
	Name string
	Rate float64 // frames/s per publisher; 0 for max
	Half bool    // half of the max step's publish rate
}

func parseRates(list string) ([]stepSpec, error) {
	var out []stepSpec
	seenMax := false
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "":
			continue
		case "max":
			seenMax = true
			out = append(out, stepSpec{Name: "max"})
		case "half":
			if !seenMax {
				return nil, fmt.Errorf("-rates: \"half\" is half of the rate the \"max\" step reached: put max before it")
			}
			out = append(out, stepSpec{Name: "half", Half: true})
		default:
			r, err := strconv.ParseFloat(s, 64)
			if err != nil || r <= 0 || r > 1e7 {
				return nil, fmt.Errorf("-rates: %q is not max, half or a rate in frames per second per publisher", s)
			}
			out = append(out, stepSpec{Name: s, Rate: r})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-rates is empty")
	}
	return out, nil
}

// fanoutStep is the figures of one step against one server.
type fanoutStep struct {
	Round      int     `json:"round"`
	Kind       string  `json:"kind"`
	Step       string  `json:"step"`
	TargetRate float64 `json:"targetRatePerPublisher"` // 0: as fast as the window allows
	// PublishRate is frames published per second, all publishers.
	PublishRate float64 `json:"publishedPerSec"`
	// DeliveredRate is frames delivered to members per second.
	DeliveredRate float64 `json:"deliveredPerSec"`
	Expected      int64   `json:"expectedDeliveries"`
	Delivered     int64   `json:"delivered"`
	Latency       latency `json:"latency"` // of every -latency-sample-th frame
	Members       int     `json:"membersAlive"`
	// Server and client CPU in cores (CPU seconds per second) over the
	// step and its drain, and server CPU per delivery; -1 when unknown.
	ServerCPU        float64 `json:"serverCPUCores"`
	ServerUsPerDeliv float64 `json:"serverCPUMicrosPerDelivery"`
	ClientCPU        float64 `json:"clientCPUCores"`
	ClientUsPerDeliv float64 `json:"clientCPUMicrosPerDelivery"`
	// OthersCPU is what other processes on the machine took, in cores:
	// the noise of the step.
	OthersCPU         float64 `json:"othersCPUCores"`
	Saturated         bool    `json:"saturated"`
	AchievedPerPubSec float64 `json:"achievedPerPublisher"`
}

type fanoutResults struct {
	Steps  []fanoutStep  `json:"steps"`
	Ratios []fanoutRatio `json:"ratios,omitempty"`
}

// fanoutRatio compares signalchannel with the baseline on one step: the
// ratio of each round (both servers measured back to back), and their
// median, minimum and maximum; and the medians of the figures themselves.
type fanoutRatio struct {
	Step           string    `json:"step"`
	Rounds         []float64 `json:"roundRatios"`
	Noisy          int       `json:"noisyRoundsLeftOut"`
	Ratio          float64   `json:"ratio"`
	Min            float64   `json:"minRatio"`
	Max            float64   `json:"maxRatio"`
	Signalchannel  float64   `json:"signalchannelDeliveredPerSec"`
	Baseline       float64   `json:"baselineDeliveredPerSec"`
	CPUPerDelivery float64   `json:"serverCPUPerDeliveryRatio"` // signalchannel / baseline, median of rounds; -1 unknown
	// CPUBound is the throughput ratio the CPU cost implies, immune to
	// what other processes take: baseline (server + clients) CPU per
	// delivery over signalchannel's, median of rounds; -1 unknown.
	CPUBound    float64 `json:"cpuBoundRatio"`
	P99         float64 `json:"signalchannelP99Ms"`
	BaselineP99 float64 `json:"baselineP99Ms"`
}

func runFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := fanoutParams{}
	var rates string
	err := c.parse("fanout", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.Members, "members", 100, "members of the namespace, publishers included")
		fs.IntVar(&p.Publishers, "publishers", 1, "members that publish")
		fs.IntVar(&p.FrameSize, "frame-size", 64, "frame size in bytes (at least 24: the header the members read)")
		fs.StringVar(&rates, "rates", "max,half,1000,2000,5000", "steps: frames per second per publisher, \"max\" (as fast as -window allows) and \"half\" (half the rate max reached)")
		fs.DurationVar(&p.Step, "step", 5*time.Second, "duration of each step")
		fs.DurationVar(&p.Drain, "drain", 5*time.Second, "after each step, wait at most this long for frames in flight")
		fs.IntVar(&p.Window, "window", 0, "max step: frames the slowest member may lag behind the publishers (0: as many as fit 512 KiB, half a member's queue on the server)")
		fs.IntVar(&p.Sample, "latency-sample", 8, "time every n-th frame a member receives (the clock costs about as much as a baseline client's read)")
		fs.BoolVar(&p.Baseline, "baseline", false, "run the same load against the WebSocket broadcast baseline, and print the ratio")
		fs.IntVar(&p.Rounds, "rounds", 1, "rounds; with -baseline the two servers run back to back in each round, first one then the other, and the ratio is the median of the rounds' ratios")
		fs.Float64Var(&p.NoiseLimit, "noise-limit", 0, "leave out of the ratio the rounds in which other processes took more than this many cores during either server's step (0: keep every round)")
		fs.StringVar(&p.Namespace, "namespace", "fanout", "echo namespace")
		fs.StringVar(&p.Client, "client", "go", "signalchannel members: go (channel/client.Session.Echo, the project's Go client) or raw (a lean yamux reader on its own WebSocket, as cheap as the baseline's client)")
	})
	if err != nil {
		return err
	}
	specs, err := parseRates(rates)
	if err != nil {
		return err
	}
	for _, s := range specs {
		p.Rates = append(p.Rates, s.Name)
	}
	switch {
	case p.Members < 1 || p.Members > 100_000:
		return fmt.Errorf("-members %d: want 1 to 100000", p.Members)
	case p.Publishers < 1 || p.Publishers > p.Members:
		return fmt.Errorf("-publishers %d: want 1 to -members", p.Publishers)
	case p.FrameSize < frameHeader || p.FrameSize > channel.DefaultMaxFrame:
		return fmt.Errorf("-frame-size %d: want %d to %d", p.FrameSize, frameHeader, channel.DefaultMaxFrame)
	case p.Step <= 0 || p.Drain < 0:
		return fmt.Errorf("-step must be positive, -drain not negative")
	case p.Rounds < 1 || p.Rounds > 100:
		return fmt.Errorf("-rounds %d: want 1 to 100", p.Rounds)
	case p.Window < 0:
		return fmt.Errorf("-window must not be negative")
	case p.Sample < 1:
		return fmt.Errorf("-latency-sample must be at least 1")
	}
	if p.Client != "go" && p.Client != "raw" {
		return fmt.Errorf("-client %q: want go or raw", p.Client)
	}
	if p.Window == 0 {
		p.Window = max(1, (512<<10)/(p.FrameSize+channel.FrameHeaderSize))
	}
	if err := fitsOneProcess(&c, p.Members, p.Baseline); err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()

	ss := &servers{o: &c}
	defer ss.closeAll()
	rep := newReport(&c)
	rep.Params = p
	res := &fanoutResults{}
	rep.Results = res
	kinds := []string{kindSignalchannel}
	if p.Baseline {
		kinds = append(kinds, kindBroadcast)
	}
	srvs, err := ss.startAll(ctx, rep, kinds...)
	if err != nil {
		return err
	}
	if p.Baseline && c.perSession > 1 {
		rep.note("the baseline has one connection per member; signalchannel %d members per session", c.perSession)
	}

	errs := &errTally{}
	for round := 1; round <= p.Rounds && ctx.Err() == nil; round++ {
		order := slices.Clone(kinds)
		if round%2 == 0 {
			slices.Reverse(order) // alternate, so that drift hits both alike
		}
		for _, k := range order {
			c.progress("round %d: %s, %d members, %d publishers, %d B frames", round, k, p.Members, p.Publishers, p.FrameSize)
			steps, err := fanoutOnce(ctx, &c, srvs[k], p, specs, round, errs, rep)
			res.Steps = append(res.Steps, steps...)
			if err != nil {
				rep.note("round %d %s: %v", round, k, err)
			}
		}
	}

	t := rep.addTable("fan-out steps", "round", "server", "step", "target/pub", "published/s", "delivered/s", "lost", "p50 ms", "p99 ms", "p999 ms", "srv cores", "srv µs/deliv", "client cores", "client µs/deliv", "others' cores", "members")
	for _, s := range res.Steps {
		target := "max"
		if s.TargetRate > 0 {
			target = cell(s.TargetRate)
		}
		lost := cell(s.Expected - s.Delivered)
		if s.Saturated {
			lost += " (saturated)"
		}
		t.add(s.Round, s.Kind, s.Step, target, s.PublishRate, s.DeliveredRate, lost, s.Latency.P50, s.Latency.P99, s.Latency.P999,
			orDash(s.ServerCPU), orDash(s.ServerUsPerDeliv), orDash(s.ClientCPU), orDash(s.ClientUsPerDeliv), orDash(s.OthersCPU), s.Members)
	}
	if p.Baseline {
		res.Ratios = fanoutRatios(res.Steps, specs, p.NoiseLimit)
		rt := rep.addTable("signalchannel / WebSocket broadcast baseline (ratio: median of the rounds' ratios; figures: medians)", "step", "rounds", "noisy", "ratio", "min", "max", "signalchannel deliv/s", "baseline deliv/s", "srv CPU/deliv ratio", "CPU-bound ratio", "p99 ms", "baseline p99 ms")
		for _, r := range res.Ratios {
			if len(r.Rounds) == 0 {
				rt.add(r.Step, 0, r.Noisy, "-", "-", "-", "-", "-", "-", "-", "-", "-")
				continue
			}
			rt.add(r.Step, len(r.Rounds), r.Noisy, r.Ratio, r.Min, r.Max, r.Signalchannel, r.Baseline, orDash(r.CPUPerDelivery), orDash(r.CPUBound), r.P99, r.BaselineP99)
		}
		rep.note("CPU-bound ratio: the delivered/s ratio the CPU cost per delivery (server and clients) implies when both saturate the machine; unlike the measured ratio it does not depend on what other processes take")
	}
	rep.noteErrors("member errors", errs)
	return rep.write(stdout, c.jsonOut)
}

// fitsOneProcess checks that clients, in sessions of -streams-per-session
// streams (one connection each with a baseline), fit this process's
// open-files limit; with the server in this process (-spawn inproc) each
// connection costs two descriptors.
func fitsOneProcess(c *common, clients int, baseline bool) error {
	fdsPerSession := 1
	if c.spawn == spawnInproc {
		fdsPerSession = 2
	}
	perSession := c.perSession
	limit, err := nofile()
	if err != nil {
		return err
	}
	sessions := (clients + perSession - 1) / perSession
	if baseline {
		sessions = clients
	}
	have := int(limit) - clientReserve - serverReserve
	if sessions*fdsPerSession > have {
		return fmt.Errorf("%w: %d sessions (%d descriptors each) exceed this process's open-files limit %d; use -streams-per-session to put several clients on one session",
			errUnreachable, sessions, fdsPerSession, limit)
	}
	return nil
}

// echoMember is a member of a broadcast namespace: a signalchannel echo
// stream or a baseline broadcast client.
type echoMember interface {
	Send([]byte) error
	Recv() ([]byte, error)
	Close() error
}

// memberStats is what one member's reader counted, per step.
type memberStats struct {
	got   atomic.Int64 // data frames received, all steps
	mu    sync.Mutex
	steps []stepAcc
}

type stepAcc struct {
	n atomic.Uint64 // frames received
	h hist          // latency of every sample-th frame, under memberStats.mu
}

// fanoutState is one server's members during a round.
type fanoutState struct {
	members   []echoMember
	stats     []*memberStats
	gone      []atomic.Bool // the member's stream ended
	published atomic.Int64
	alive     atomic.Int64
	synced    atomic.Int64
	sample    uint64 // time every sample-th frame
	closing   atomic.Bool
	readers   sync.WaitGroup
	closers   []func()
}

func (st *fanoutState) close() {
	st.closing.Store(true)
	forEach(context.Background(), len(st.closers), 64, func(i int) { st.closers[i]() })
	st.readers.Wait()
}

// joinFanout connects M members of the namespace to srv.
func joinFanout(ctx context.Context, c *common, srv *server, p fanoutParams, nsteps int, errs *errTally) (*fanoutState, error) {
	d, err := newDialers(srv.Addr, c.sources, 0)
	if err != nil {
		return nil, err
	}
	st := &fanoutState{members: make([]echoMember, p.Members), sample: uint64(p.Sample)}
	var mu sync.Mutex
	var failed atomic.Int64
	switch {
	case srv.Kind == kindSignalchannel && p.Client == "raw":
		forEach(ctx, p.Members, c.dialConc, func(i int) {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			e, err := dialRawEcho(dctx, srv.URL, d.wsDialer(i), p.Namespace)
			if err != nil {
				errs.add(err, nil)
				failed.Add(1)
				return
			}
			mu.Lock()
			st.closers = append(st.closers, func() { e.Close() })
			mu.Unlock()
			st.members[i] = e
		})
	case srv.Kind == kindSignalchannel:
		sessions := (p.Members + c.perSession - 1) / c.perSession
		forEach(ctx, sessions, c.dialConc, func(si int) {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			sess, err := d.dialSession(dctx, srv.URL, si)
			if err != nil {
				errs.add(err, nil)
				failed.Add(1)
				return
			}
			mu.Lock()
			st.closers = append(st.closers, func() { sess.Close() })
			mu.Unlock()
			for k := 0; k < c.perSession; k++ {
				i := si*c.perSession + k
				if i >= p.Members {
					break
				}
				e, err := sess.Echo(dctx, p.Namespace)
				if err != nil {
					errs.add(err, sess)
					failed.Add(1)
					return
				}
				st.members[i] = e
			}
		})
	case srv.Kind == kindBroadcast:
		forEach(ctx, p.Members, c.dialConc, func(i int) {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			bc, err := d.dialBroadcast(dctx, srv.URL, i)
			if err != nil {
				errs.add(err, nil)
				failed.Add(1)
				return
			}
			mu.Lock()
			st.closers = append(st.closers, func() { bc.Close() })
			mu.Unlock()
			st.members[i] = bc
		})
	default:
		return nil, fmt.Errorf("fanout runs against signalchannel or broadcast, not %s", srv.Kind)
	}
	if n := failed.Load(); n > 0 || ctx.Err() != nil {
		st.close()
		return nil, fmt.Errorf("%d members could not join", n)
	}
	st.alive.Store(int64(p.Members))
	st.stats = make([]*memberStats, p.Members)
	st.gone = make([]atomic.Bool, p.Members)
	for i, m := range st.members {
		ms := &memberStats{steps: make([]stepAcc, nsteps)}
		st.stats[i] = ms
		st.readers.Go(func() { st.read(m, ms, &st.gone[i], errs) })
	}
	return st, nil
}

// read is a member's reader: it counts every data frame and its latency.
func (st *fanoutState) read(m echoMember, ms *memberStats, gone *atomic.Bool, errs *errTally) {
	seenSync := false
	for {
		f, err := m.Recv()
		if err != nil {
			gone.Store(true)
			if !st.closing.Load() {
				errs.add(err, nil)
				st.alive.Add(-1)
			}
			return
		}
		if len(f) < frameHeader {
			continue
		}
		if f[0] == frameSync {
			if !seenSync {
				seenSync = true
				st.synced.Add(1)
			}
			continue
		}
		step := int(binary.BigEndian.Uint32(f[4:8]))
		if step < len(ms.steps) {
			a := &ms.steps[step]
			// Reading the clock costs as much as a baseline client's
			// whole read: only every sample-th frame is timed.
			if a.n.Add(1)%st.sample == 0 {
				lat := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(f[8:16])))
				ms.mu.Lock()
				a.h.Record(lat)
				ms.mu.Unlock()
			}
		}
		ms.got.Add(1)
	}
}

// delivered returns the data frames all members have received.
func (st *fanoutState) delivered() int64 {
	var n int64
	for _, ms := range st.stats {
		n += ms.got.Load()
	}
	return n
}

// minGot returns the data frames the slowest member still in the
// namespace has received.
func (st *fanoutState) minGot() int64 {
	low := int64(-1)
	for i, ms := range st.stats {
		if st.gone[i].Load() {
			continue
		}
		if g := ms.got.Load(); low < 0 || g < low {
			low = g
		}
	}
	return max(low, 0)
}

// sync has the first publisher send sync frames until every member has
// seen one, so that no member joins late.
func (st *fanoutState) sync(ctx context.Context, p fanoutParams) error {
	f := make([]byte, p.FrameSize)
	putFrameHeader(f, frameSync, 0, 0)
	deadline := time.Now().Add(30 * time.Second)
	for st.synced.Load() < int64(len(st.members)) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d members saw the sync frames", st.synced.Load(), len(st.members))
		}
		if err := st.members[0].Send(f); err != nil {
			return err
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return nil
}

// fanoutOnce runs every step against one server.
func fanoutOnce(ctx context.Context, c *common, srv *server, p fanoutParams, specs []stepSpec, round int, errs *errTally, rep *report) ([]fanoutStep, error) {
	st, err := joinFanout(ctx, c, srv, p, len(specs), errs)
	if err != nil {
		return nil, err
	}
	defer st.close()
	if err := st.sync(ctx, p); err != nil {
		return nil, err
	}
	var out []fanoutStep
	maxPerPub := 0.0
	for i, spec := range specs {
		if ctx.Err() != nil {
			break
		}
		rate := spec.Rate
		if spec.Half {
			if maxPerPub <= 0 {
				break
			}
			rate = maxPerPub / 2
		}
		s := runFanoutStep(ctx, c, srv, st, p, i, spec, rate, round, rep)
		if spec.Rate == 0 && !spec.Half {
			maxPerPub = s.AchievedPerPubSec
		}
		out = append(out, s)
		c.progress("  %s %s: %.0f delivered/s, p99 %.2f ms", srv.Kind, spec.Name, s.DeliveredRate, s.Latency.P99)
		if st.alive.Load() < int64(p.Members) {
			return out, fmt.Errorf("%d members were dropped at step %s; later steps skipped", int64(p.Members)-st.alive.Load(), spec.Name)
		}
	}
	return out, nil
}

// runFanoutStep publishes for one step, at rate frames/s per publisher or,
// with rate 0, as fast as the window allows; then drains.
func runFanoutStep(ctx context.Context, c *common, srv *server, st *fanoutState, p fanoutParams, idx int, spec stepSpec, rate float64, round int, rep *report) fanoutStep {
	res := fanoutStep{Round: round, Kind: srv.Kind, Step: spec.Name, TargetRate: rate, ServerCPU: -1, ServerUsPerDeliv: -1}
	pub0, del0 := st.published.Load(), st.delivered()
	meter := startCPU(srv.PID)
	var prof chan error
	if c.profileDir != "" && spec.Name == "max" && round == 1 {
		prof = startCPUProfile(ctx, c, rep, srv, "fanout", p.Step)
	}
	start := time.Now()
	var wg sync.WaitGroup
	var sendErrs atomic.Int64
	// In the max step the publishers wait while the slowest member lags
	// more than the window, so that no member's queue overflows.
	var low atomic.Int64
	low.Store(st.minGot())
	monitorDone := make(chan struct{})
	var monitor sync.WaitGroup
	if rate == 0 {
		monitor.Go(func() {
			for {
				select {
				case <-monitorDone:
					return
				case <-time.After(200 * time.Microsecond):
					low.Store(st.minGot())
				}
			}
		})
	}
	window := int64(p.Window)
	for pi := 0; pi < p.Publishers; pi++ {
		m := st.members[pi]
		wg.Go(func() {
			f := make([]byte, p.FrameSize)
			putFrameHeader(f, frameData, idx, pi)
			sent := 0
			for ctx.Err() == nil {
				el := time.Since(start)
				if el >= p.Step {
					return
				}
				if rate > 0 {
					if due := int(rate*el.Seconds()) + 1; sent >= due {
						wait := time.Duration(float64(sent)/rate*float64(time.Second)) - el
						time.Sleep(max(wait, 50*time.Microsecond))
						continue
					}
				} else if st.published.Load()-low.Load() >= window {
					time.Sleep(20 * time.Microsecond)
					continue
				}
				stampFrame(f, time.Now())
				if err := m.Send(f); err != nil {
					sendErrs.Add(1)
					return
				}
				sent++
				st.published.Add(1)
			}
		})
	}
	wg.Wait()
	close(monitorDone)
	monitor.Wait()
	elapsed := time.Since(start)
	del1 := st.delivered()
	published := st.published.Load() - pub0
	drainUntil := time.Now().Add(p.Drain)
	for st.delivered()-del0 < published*st.alive.Load() && time.Now().Before(drainUntil) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	cpu := meter.stop()
	if prof != nil {
		if err := <-prof; err != nil {
			rep.note("CPU profile: %v", err)
		}
	}

	var h hist
	var got uint64
	for _, ms := range st.stats {
		ms.mu.Lock()
		a := &ms.steps[idx]
		got += a.n.Load()
		h.Merge(&a.h)
		ms.mu.Unlock()
	}
	res.Members = int(st.alive.Load())
	res.PublishRate = float64(published) / elapsed.Seconds()
	res.AchievedPerPubSec = res.PublishRate / float64(p.Publishers)
	res.DeliveredRate = float64(del1-del0) / elapsed.Seconds()
	res.Expected = published * int64(p.Members)
	res.Delivered = int64(got)
	res.Latency = h.Summary()
	res.Saturated = rate > 0 && res.AchievedPerPubSec < 0.95*rate
	res.ServerCPU, res.ClientCPU, res.OthersCPU = cpu.Server, cpu.Client, cpu.Others
	res.ClientUsPerDeliv = -1
	if cpu.Server >= 0 && got > 0 {
		res.ServerUsPerDeliv = float64(cpu.ServerT.Microseconds()) / float64(got)
	}
	if cpu.Client >= 0 && got > 0 {
		res.ClientUsPerDeliv = cpu.Client * cpu.Elapsed.Seconds() * 1e6 / float64(got)
	}
	if n := sendErrs.Load(); n > 0 {
		rep.note("round %d %s step %s: %d publishers failed to send", round, srv.Kind, spec.Name, n)
	}
	return res
}

// startCPUProfile profiles, over d, the server (from its /debug/pprof/)
// and this process, the clients (with runtime/pprof), in the background;
// the channel yields the outcome.
func startCPUProfile(ctx context.Context, c *common, rep *report, srv *server, name string, d time.Duration) chan error {
	ch := make(chan error, 1)
	secs := max(1, int(d.Seconds())-1)
	clientFile := fmt.Sprintf("%s/%s-%s-client-cpu.pprof", c.profileDir, name, srv.Kind)
	stopClient := func() error { return nil }
	if f, err := os.Create(clientFile); err != nil {
		rep.note("client CPU profile: %v", err)
	} else if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		rep.note("client CPU profile: %v", err)
	} else {
		stopClient = func() error {
			pprof.StopCPUProfile()
			rep.note("client CPU profile over %ds: %s", secs, clientFile)
			return f.Close()
		}
	}
	if !srv.Pprof {
		rep.note("no CPU profile of the %s server: it has no /debug/pprof/ (use -spawn self)", srv.Kind)
	}
	go func() {
		var err error
		if srv.Pprof {
			file := fmt.Sprintf("%s/%s-%s-cpu.pprof", c.profileDir, name, srv.Kind)
			err = fetchTo(ctx, srv.HTTP, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), file)
			if err == nil {
				rep.note("server CPU profile over %ds: %s", secs, file)
			}
		} else {
			sleepCtx(ctx, time.Duration(secs)*time.Second)
		}
		ch <- errors.Join(err, stopClient())
	}()
	return ch
}

// fanoutRatios compares the servers step by step, round by round.
func fanoutRatios(steps []fanoutStep, specs []stepSpec, noiseLimit float64) []fanoutRatio {
	var out []fanoutRatio
	for _, spec := range specs {
		byRound := map[int]map[string]fanoutStep{}
		for _, s := range steps {
			if s.Step == spec.Name {
				if byRound[s.Round] == nil {
					byRound[s.Round] = map[string]fanoutStep{}
				}
				byRound[s.Round][s.Kind] = s
			}
		}
		r := fanoutRatio{Step: spec.Name, CPUPerDelivery: -1, CPUBound: -1}
		var sc, base, scP99, baseP99, cpu, bound []float64
		for round := 1; round <= len(byRound)+1; round++ {
			a, okA := byRound[round][kindSignalchannel]
			b, okB := byRound[round][kindBroadcast]
			if !okA || !okB || b.DeliveredRate <= 0 {
				continue
			}
			if noiseLimit > 0 && (a.OthersCPU > noiseLimit || b.OthersCPU > noiseLimit) {
				r.Noisy++
				continue
			}
			r.Rounds = append(r.Rounds, a.DeliveredRate/b.DeliveredRate)
			sc, base = append(sc, a.DeliveredRate), append(base, b.DeliveredRate)
			scP99, baseP99 = append(scP99, a.Latency.P99), append(baseP99, b.Latency.P99)
			if a.ServerUsPerDeliv > 0 && b.ServerUsPerDeliv > 0 {
				cpu = append(cpu, a.ServerUsPerDeliv/b.ServerUsPerDeliv)
				if a.ClientUsPerDeliv > 0 && b.ClientUsPerDeliv > 0 {
					bound = append(bound, (b.ServerUsPerDeliv+b.ClientUsPerDeliv)/(a.ServerUsPerDeliv+a.ClientUsPerDeliv))
				}
			}
		}
		if len(r.Rounds) == 0 {
			out = append(out, r) // every round too noisy
			continue
		}
		r.Ratio = median(slices.Clone(r.Rounds))
		r.Min, r.Max = slices.Min(r.Rounds), slices.Max(r.Rounds)
		r.Signalchannel, r.Baseline = median(sc), median(base)
		r.P99, r.BaselineP99 = median(scP99), median(baseP99)
		if len(cpu) > 0 {
			r.CPUPerDelivery = median(cpu)
		}
		if len(bound) > 0 {
			r.CPUBound = median(bound)
		}
		out = append(out, r)
	}
	return out
}

// median of xs (not empty); xs is reordered.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// safeRatio is a/b, or -1 when b is not positive (JSON has no NaN).
func safeRatio(a, b float64) float64 {
	if b <= 0 {
		return -1
	}
	return a / b
}
