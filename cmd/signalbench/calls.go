package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/peer"
)

// callsParams are the calls scenario's own flags.
type callsParams struct {
	Pairs    int           `json:"pairs"`
	Duration time.Duration `json:"duration"`
	MaxCount int           `json:"maxCount"`
	WebRTC   bool          `json:"webrtc"`
}

type callsResults struct {
	SetUps     int64      `json:"setUps"`
	Failed     int64      `json:"failed"`
	Rate       float64    `json:"setUpsPerSec"`
	Latency    latency    `json:"latency"`
	ServerCPU  float64    `json:"serverCPUCores"`
	ServerUsPS float64    `json:"serverCPUMicrosPerSetUp"`
	ClientCPU  float64    `json:"clientCPUCores"`
	OthersCPU  float64    `json:"othersCPUCores"`
	Errors     []errCount `json:"errors,omitempty"`
}

// callPair is two members of a room of their own.
type callPair struct {
	a, b   *peer.Room
	calls  chan *peer.Call // b's accepted calls
	sa, sb *client.Session
}

func runCalls(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	p := callsParams{}
	err := c.parse("calls", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&p.Pairs, "pairs", 8, "pairs of members calling at once, each pair in a room of its own")
		fs.DurationVar(&p.Duration, "duration", 10*time.Second, "how long to call")
		fs.IntVar(&p.MaxCount, "max-count", 1_000_000, "stop after this many set-ups")
		fs.BoolVar(&p.WebRTC, "webrtc", false, "connect with WebRTC over loopback (pion on both sides, in this process) rather than over the relay")
	})
	if err != nil {
		return err
	}
	switch {
	case p.Pairs < 1 || p.Pairs > 1000:
		return fmt.Errorf("-pairs %d: want 1 to 1000", p.Pairs)
	case p.Duration <= 0 || p.MaxCount < 1:
		return fmt.Errorf("-duration and -max-count must be positive")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res := &callsResults{ServerCPU: -1, ServerUsPS: -1}
	ss, srv, rep, d, err := oneServer(ctx, &c, p, res)
	if err != nil {
		return err
	}
	defer ss.closeAll()

	pairs := make([]*callPair, p.Pairs)
	defer func() {
		for _, cp := range pairs {
			if cp != nil {
				cp.close()
			}
		}
	}()
	for i := range pairs {
		cp, err := joinPair(ctx, d, srv.URL, i)
		if err != nil {
			return fmt.Errorf("pair %d: %w", i, err)
		}
		pairs[i] = cp
	}
	opts := func() peer.ConnOptions { return peer.ConnOptions{ForceRelay: true} }
	if p.WebRTC {
		opts = func() peer.ConnOptions {
			se := &webrtc.SettingEngine{}
			se.SetIncludeLoopbackCandidate(true)
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
			se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
			return peer.ConnOptions{SettingEngine: se, DirectTimeout: time.Minute}
		}
	}

	settleServer(ctx, srv)
	meter := startCPU(srv.PID)
	c.progress("%d pairs calling for %s", p.Pairs, p.Duration)
	h, failed, elapsed, errs := loopFor(ctx, p.Pairs, p.Duration, p.MaxCount, func(ctx context.Context, w, _ int) (*client.Session, error) {
		return nil, pairs[w].setUp(ctx, opts)
	})
	cpu := meter.stop()

	res.SetUps = int64(h.Count())
	res.Failed = failed
	res.Rate = float64(res.SetUps) / elapsed.Seconds()
	res.Latency = h.Summary()
	res.ServerCPU, res.ClientCPU, res.OthersCPU = cpu.Server, cpu.Client, cpu.Others
	if cpu.Server >= 0 && res.SetUps > 0 {
		res.ServerUsPS = float64(cpu.ServerT.Microseconds()) / float64(res.SetUps)
	}
	res.Errors = errs.summary()
	path := "relay"
	if p.WebRTC {
		path = "WebRTC data channel"
	}
	t := rep.addTable(fmt.Sprintf("calls: call, accept, connect (%s), one byte across, close", path), "pairs", "set-ups", "failed", "set-ups/s", "p50 ms", "p99 ms", "p999 ms", "srv cores", "srv µs/set-up", "client cores", "others' cores")
	t.add(p.Pairs, res.SetUps, res.Failed, res.Rate, res.Latency.P50, res.Latency.P99, res.Latency.P999, orDash(res.ServerCPU), orDash(res.ServerUsPS), orDash(res.ClientCPU), orDash(res.OthersCPU))
	if srv.PID == 0 {
		rep.note("server pid unknown: no server CPU figures (give -server-pid)")
	}
	if srv.Spawn == spawnInproc {
		rep.note("the server runs in this process: its CPU figures include the clients")
	}
	rep.noteErrors("errors", errs)
	return rep.write(stdout, c.jsonOut)
}

// joinPair dials two sessions and joins them to the room calls-i; the
// second accepts every call.
func joinPair(ctx context.Context, d *dialers, url string, i int) (*callPair, error) {
	cp := &callPair{calls: make(chan *peer.Call, 1)}
	var err error
	if cp.sa, err = d.dialSession(ctx, url, 2*i); err != nil {
		return nil, err
	}
	if cp.sb, err = d.dialSession(ctx, url, 2*i+1); err != nil {
		cp.close()
		return nil, err
	}
	name := fmt.Sprintf("calls-%d", i)
	if cp.b, err = peer.Join(ctx, cp.sb, name, peer.RoomOptions{OnRequest: func(q *peer.Request) {
		if c, err := q.Accept(); err == nil {
			cp.calls <- c
		}
	}}); err != nil {
		cp.close()
		return nil, err
	}
	if cp.a, err = peer.Join(ctx, cp.sa, name, peer.RoomOptions{}); err != nil {
		cp.close()
		return nil, err
	}
	return cp, nil
}

// setUp is one cycle: a calls b, both connect, a byte crosses, both close.
func (cp *callPair) setUp(ctx context.Context, opts func() peer.ConnOptions) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ac, err := cp.a.Call(ctx, cp.b.ID(), peer.CallOptions{})
	if err != nil {
		return err
	}
	var bc *peer.Call
	select {
	case bc = <-cp.calls:
	case <-ctx.Done():
		ac.Close("")
		return ctx.Err()
	}
	type result struct {
		c   *peer.Conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := peer.Connect(ctx, bc, opts())
		got <- result{c, err}
	}()
	ca, err := peer.Connect(ctx, ac, opts())
	r := <-got
	if err == nil {
		err = r.err
	}
	defer func() {
		if ca != nil {
			ca.Close()
		}
		if r.c != nil {
			r.c.Close()
		}
		ac.Close("")
		bc.Close("")
	}()
	if err != nil {
		return err
	}
	if _, err := ca.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(r.c, make([]byte, 1))
	return err
}

func (cp *callPair) close() {
	for _, r := range []*peer.Room{cp.a, cp.b} {
		if r != nil {
			r.Leave()
		}
	}
	for _, s := range []*client.Session{cp.sa, cp.sb} {
		if s != nil {
			s.Close()
		}
	}
}
