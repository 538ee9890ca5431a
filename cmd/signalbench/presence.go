package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/model"
)

// presenceParams are the presence scenario's own flags.
type presenceParams struct {
	Members   int           `json:"members"`
	Interval  time.Duration `json:"interval"`
	Duration  time.Duration `json:"duration"`
	Drain     time.Duration `json:"drain"`
	ValueSize int           `json:"valueSize"`
	Namespace string        `json:"namespace"`
}

type presenceResults struct {
	Joined        int     `json:"joined"`
	JoinSeconds   float64 `json:"joinSeconds"`
	ConvergeSecs  float64 `json:"convergeSeconds"` // until every member saw every key
	Sets          int64   `json:"sets"`
	SetRate       float64 `json:"setsPerSec"`
	Expected      int64   `json:"expectedDeliveries"`
	Delivered     int64   `json:"delivered"`
	DeliveredRate float64 `json:"deliveredPerSec"`
	Latency       latency `json:"latency"`
	// ServerCPU is CPU seconds per second over the run; -1 when unknown.
	ServerCPU        float64    `json:"serverCPUCores"`
	ServerUsPerDeliv float64    `json:"serverCPUMicrosPerDelivery"`
	ClientCPU        float64    `json:"clientCPUCores"`
	OthersCPU        float64    `json:"othersCPUCores"`
	SlowSubscribers  int64      `json:"slowSubscribers"`
	Errors           []errCount `json:"errors,omitempty"`
}

// presenceMember is one member: its Model, replicated over one stream.
type presenceMember struct {
	m   *model.Model
	rep *client.Replica
	key string
	mu  sync.Mutex
	h   hist
}

func runPresence(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := presenceParams{}
	err := c.parse("presence", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.Members, "members", 100, "members of the scuttlebutt namespace, each refreshing its own key")
		fs.DurationVar(&p.Interval, "interval", 5*time.Second, "each member refreshes its key this often (staggered)")
		fs.DurationVar(&p.Duration, "duration", 20*time.Second, "measured time")
		fs.DurationVar(&p.Drain, "drain", 5*time.Second, "then wait at most this long for updates in flight")
		fs.IntVar(&p.ValueSize, "value-size", 64, "bytes of padding in each value")
		fs.StringVar(&p.Namespace, "namespace", "presence", "scuttlebutt namespace")
	})
	if err != nil {
		return err
	}
	switch {
	case p.Members < 2 || p.Members > 10_000:
		return fmt.Errorf("-members %d: want 2 to 10000 (the server's keys per namespace)", p.Members)
	case p.Interval <= 0 || p.Duration <= 0 || p.Drain < 0:
		return fmt.Errorf("-interval and -duration must be positive")
	case p.Interval >= model.DefaultMaxAge:
		return fmt.Errorf("-interval %s: keys expire after %s; refresh more often", p.Interval, model.DefaultMaxAge)
	case p.ValueSize < 0 || p.ValueSize > 4096:
		return fmt.Errorf("-value-size %d: want 0 to 4096", p.ValueSize)
	}
	if err := fitsOneProcess(&c, p.Members, false); err != nil {
		return err
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
	res := &presenceResults{ServerCPU: -1, ServerUsPerDeliv: -1}
	rep.Results = res
	if srv.PID == 0 {
		rep.note("server pid unknown: no server CPU figures (give -server-pid)")
	} else if srv.Spawn == spawnInproc {
		rep.note("the server runs in this process: its CPU figures include the clients")
	}

	d, err := newDialers(srv.Addr, c.sources, 0)
	if err != nil {
		return err
	}
	errs := &errTally{}
	var pool sessionPool
	defer pool.closeAll(c.dialConc)
	members := make([]*presenceMember, p.Members)
	defer func() {
		forEach(context.Background(), len(members), c.dialConc, func(i int) {
			if pm := members[i]; pm != nil {
				pm.rep.Close()
				pm.m.Close()
			}
		})
	}()
	c.progress("joining %d members to scuttlebutt %q", p.Members, p.Namespace)
	start := time.Now()
	sessions := (p.Members + c.perSession - 1) / c.perSession
	forEach(ctx, sessions, c.dialConc, func(si int) {
		dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		sess, err := d.dialSession(dctx, srv.URL, si)
		if err != nil {
			errs.add(err, nil)
			return
		}
		pool.add(sess)
		for k := 0; k < c.perSession; k++ {
			i := si*c.perSession + k
			if i >= p.Members {
				break
			}
			id := fmt.Sprintf("bench-%06d", i)
			m := model.New(model.Options{ID: id, SilentExpiry: true})
			r, err := sess.Replicate(dctx, p.Namespace, m, client.ReplicateOptions{Ephemeral: true})
			if err == nil {
				err = r.WaitSync(dctx)
				if err != nil {
					r.Close()
				}
			}
			if err != nil {
				errs.add(err, sess)
				m.Close()
				return
			}
			members[i] = &presenceMember{m: m, rep: r, key: id}
		}
	})
	for _, pm := range members {
		if pm != nil {
			res.Joined++
		}
	}
	res.JoinSeconds = time.Since(start).Seconds()
	if res.Joined < p.Members {
		rep.noteErrors("join errors", errs)
		rep.write(stdout, c.jsonOut)
		return fmt.Errorf("only %d of %d members joined", res.Joined, p.Members)
	}

	value, _ := json.Marshal(map[string]string{"status": "online", "pad": strings.Repeat("x", p.ValueSize)})
	start = time.Now()
	for _, pm := range members {
		if err := pm.m.Set(pm.key, json.RawMessage(value)); err != nil {
			return err
		}
	}
	c.progress("%d members joined in %.1fs; waiting for every member to see every key", res.Joined, res.JoinSeconds)
	converged := waitUntil(ctx, 60*time.Second, func() bool {
		for _, pm := range members {
			if len(pm.m.Keys()) < p.Members {
				return false
			}
		}
		return true
	})
	res.ConvergeSecs = time.Since(start).Seconds()
	if !converged {
		rep.note("members had not all seen every key after %.0fs", res.ConvergeSecs)
	}

	// Count remote updates from now on.
	var delivered, slow atomic.Int64
	var counters sync.WaitGroup
	subs := make([]*model.Subscription, len(members))
	t0 := time.Now()
	t0ms := float64(t0.UnixMicro()) / 1000
	for i, pm := range members {
		sub := pm.m.Subscribe(1 << 14)
		subs[i] = sub
		counters.Go(func() {
			for u := range sub.Updates() {
				if u.Source == pm.key || u.TS < t0ms || u.Deleted() {
					continue
				}
				lat := time.Since(time.UnixMicro(int64(u.TS * 1000)))
				pm.mu.Lock()
				pm.h.Record(lat)
				pm.mu.Unlock()
				delivered.Add(1)
			}
			if sub.Err() == model.ErrSlowSubscriber {
				slow.Add(1)
			}
		})
	}
	meter := startCPU(srv.PID)
	var prof chan error
	if c.profileDir != "" {
		prof = startCPUProfile(ctx, &c, rep, srv, "presence", p.Duration)
	}
	c.progress("refreshing every %s for %s", p.Interval, p.Duration)
	var sets atomic.Int64
	var refreshers sync.WaitGroup
	rctx, rcancel := context.WithTimeout(ctx, p.Duration)
	for i, pm := range members {
		offset := time.Duration(int64(p.Interval) * int64(i) / int64(len(members)))
		refreshers.Go(func() {
			sleepCtx(rctx, offset)
			t := time.NewTicker(p.Interval)
			defer t.Stop()
			for rctx.Err() == nil {
				if err := pm.m.Set(pm.key, json.RawMessage(value)); err != nil {
					errs.add(err, nil)
					return
				}
				sets.Add(1)
				select {
				case <-t.C:
				case <-rctx.Done():
				}
			}
		})
	}
	refreshers.Wait()
	rcancel()
	window := time.Since(t0)
	res.Sets = sets.Load()
	res.Expected = res.Sets * int64(p.Members-1)
	waitUntil(ctx, p.Drain, func() bool { return delivered.Load() >= res.Expected })
	total := time.Since(t0)
	cpu := meter.stop()
	if prof != nil {
		if err := <-prof; err != nil {
			rep.note("CPU profile: %v", err)
		}
	}
	for _, sub := range subs {
		sub.Cancel()
	}
	counters.Wait()

	var h hist
	for _, pm := range members {
		h.Merge(&pm.h)
	}
	res.Delivered = delivered.Load()
	res.SetRate = float64(res.Sets) / window.Seconds()
	res.DeliveredRate = float64(res.Delivered) / total.Seconds()
	res.Latency = h.Summary()
	res.SlowSubscribers = slow.Load()
	res.ServerCPU, res.ClientCPU, res.OthersCPU = cpu.Server, cpu.Client, cpu.Others
	if cpu.Server >= 0 && res.Delivered > 0 {
		res.ServerUsPerDeliv = float64(cpu.ServerT.Microseconds()) / float64(res.Delivered)
	}
	res.Errors = errs.summary()

	t := rep.addTable("presence (scuttlebutt)", "members", "interval", "sets/s", "expected/s", "delivered/s", "delivered %", "p50 ms", "p99 ms", "p999 ms", "srv cores", "srv µs/deliv", "client cores", "others' cores")
	t.add(p.Members, p.Interval, res.SetRate, float64(res.Expected)/total.Seconds(), res.DeliveredRate,
		100*safeRatio(float64(res.Delivered), float64(res.Expected)), res.Latency.P50, res.Latency.P99, res.Latency.P999,
		orDash(res.ServerCPU), orDash(res.ServerUsPerDeliv), orDash(res.ClientCPU), orDash(res.OthersCPU))
	j := rep.addTable("join", "members", "join s", "all keys seen s")
	j.add(res.Joined, res.JoinSeconds, res.ConvergeSecs)
	if res.SlowSubscribers > 0 {
		rep.note("%d members' counters fell behind their Model and stopped counting", res.SlowSubscribers)
	}
	rep.noteErrors("errors", errs)
	return rep.write(stdout, c.jsonOut)
}

// waitUntil polls cond every 10ms until it holds, d passes or ctx ends,
// and reports whether it held.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
