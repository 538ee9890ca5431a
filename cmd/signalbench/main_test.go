package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain makes the test binary act as signalbench when it is started as
// a child (a server, or a client process of -procs).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runJSON runs signalbench with args plus -json and decodes its report,
// the results into results.
func runJSON(t *testing.T, results any, args ...string) *report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, append(args, "-json"), strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("signalbench %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	var rep struct {
		report
		Results json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if err := json.Unmarshal(rep.Results, results); err != nil {
		t.Fatalf("results: %v\n%s", err, rep.Results)
	}
	if len(rep.Tables) == 0 || rep.Command == "" {
		t.Fatalf("report without tables or command:\n%s", out.String())
	}
	return &rep.report
}

// runErr runs signalbench and returns its error.
func runErr(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(ctx, args, strings.NewReader(""), io.Discard, io.Discard)
}

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"ws://127.0.0.1:8080/v1/channel", true},
		{"ws://127.1.2.3:8080", true},
		{"http://localhost:8080/v1/channel", true},
		{"ws://[::1]:8080/v1/channel", true},
		{"ws://[::ffff:127.0.0.1]:8080", true},
		{"ws://10.0.0.1:8080/v1/channel", false},
		{"ws://0.0.0.0:8080", false},
		{"ws://[::]:8080", false},
		{"ws://[::ffff:10.0.0.1]:8080", false},
		{"ws://[2001:db8::1]:8080", false},
		{"ws://example.com:8080", false},
		{"ws://127.0.0.1.example.com:8080", false},
	} {
		_, _, _, err := parseTarget(tc.url)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.url, err)
		}
		if !tc.ok && !errors.Is(err, errNotLoopback) {
			t.Errorf("%s: %v, want a loopback error", tc.url, err)
		}
	}
	// Every scenario refuses such a target before doing anything.
	for _, sc := range []string{"idle", "fanout", "presence", "relay", "churn", "calls"} {
		err := runErr(sc, "-url", "ws://192.0.2.1:8080/v1/channel")
		if !errors.Is(err, errNotLoopback) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: %v, want a loopback error", sc, err)
		}
	}
	if err := runErr("server", "-addr", "192.0.2.1:0"); !errors.Is(err, errNotLoopback) {
		t.Errorf("server: %v, want a loopback error", err)
	}
}

func TestSourceIPs(t *testing.T) {
	ips := sourceIPs([]byte{127, 0, 0, 1}, 600, 0)
	if len(ips) != 600 {
		t.Fatalf("%d addresses", len(ips))
	}
	seen := map[string]bool{}
	for _, ip := range ips {
		v4 := ip.To4()
		if v4 == nil || v4[0] != 127 || v4[3] == 0 || v4[3] == 255 || ip.String() == "127.0.0.1" {
			t.Fatalf("bad source %s", ip)
		}
		if seen[ip.String()] {
			t.Fatalf("%s twice", ip)
		}
		seen[ip.String()] = true
	}
	if ips[0].String() != "127.0.0.2" {
		t.Fatalf("first source %s", ips[0])
	}
	if got := sourceIPs([]byte{127, 0, 0, 1}, 1, 5)[0].String(); got != "127.0.0.7" {
		t.Fatalf("offset 5: %s", got)
	}
	if ips := sourceIPs(make([]byte, 16), 4, 0); ips != nil { // [::]
		t.Fatalf("IPv6 target: %v", ips)
	}
}

func TestPlanSessions(t *testing.T) {
	for _, tc := range []struct {
		name        string
		n           int
		client      uint64
		server      uint64
		here        bool
		procs       int
		wantProcs   int
		wantErr     string
		wantPerProc []int
	}{
		{name: "fits one process", n: 19000, client: 20000, server: 20000, wantProcs: 1},
		{name: "spread over children", n: 19000, client: 10000, server: 20000, wantProcs: 2, wantPerProc: []int{9500, 9500}},
		{name: "three children", n: 25000, client: 10000, server: 30000, wantProcs: 3},
		{name: "asked for more", n: 100, client: 20000, procs: 4, wantProcs: 4, wantPerProc: []int{25, 25, 25, 25}},
		{name: "server limit", n: 19990, client: 20000, server: 20000, wantErr: "at most 19968 sessions"},
		{name: "too few procs", n: 25000, client: 20000, procs: 1, wantErr: "need 2 client processes"},
		{name: "server here, clients too", n: 9000, client: 20000, here: true, wantProcs: 1},
		{name: "server here, clients in children", n: 12000, client: 20000, here: true, wantProcs: 2},
		{name: "server here, -procs 1", n: 12000, client: 20000, here: true, procs: 1, wantErr: "two descriptors"},
		{name: "server here, its limit", n: 19950, client: 20000, here: true, procs: 2, wantErr: "at most 19904 sessions"},
		{name: "tiny limit", n: 10, client: 50, wantErr: "keeps 64"},
		{name: "no sessions", n: 0, client: 20000, wantErr: "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planSessions(tc.n, tc.client, tc.server, tc.here, tc.procs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Procs != tc.wantProcs || len(p.PerProc) != p.Procs {
				t.Fatalf("plan %+v, want %d procs", p, tc.wantProcs)
			}
			sum := 0
			for i, k := range p.PerProc {
				sum += k
				if k > int(tc.client)-clientReserve {
					t.Fatalf("process %d holds %d sessions at limit %d", i, k, tc.client)
				}
				if tc.wantPerProc != nil && k != tc.wantPerProc[i] {
					t.Fatalf("per process %v, want %v", p.PerProc, tc.wantPerProc)
				}
			}
			if sum != tc.n {
				t.Fatalf("plan holds %d sessions, want %d", sum, tc.n)
			}
			if tc.here && p.Procs == 1 && 2*tc.n > int(tc.client)-clientReserve {
				t.Fatalf("server and clients here exceed the limit: %+v", p)
			}
		})
	}
}

// A session count the limits cannot hold is refused up front, clearly.
func TestIdleUnreachable(t *testing.T) {
	err := runErr("idle", "-spawn", "inproc", "-n", "1000000", "-procs", "1")
	if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "open-files limit") {
		t.Fatalf("%v, want an open-files explanation", err)
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d > 0.04 || d < -0.04 {
			t.Errorf("q%.3f: %s, want about %s", tc.q, got, tc.want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10000 {
		t.Errorf("max %s count %d", h.Max(), h.Count())
	}
	var o hist
	o.Record(time.Second)
	h.Merge(&o)
	if h.Max() != time.Second || h.Quantile(1) != time.Second {
		t.Errorf("after merge: max %s, q1 %s", h.Max(), h.Quantile(1))
	}
	var empty hist
	if empty.Quantile(0.99) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram not zero")
	}
	for v := uint64(0); v < 1<<20; v = v*3/2 + 1 {
		if i := histBucket(v); histLow(i) > v || histLow(i+1) <= v {
			t.Fatalf("%d in bucket %d [%d, %d)", v, i, histLow(i), histLow(i+1))
		}
	}
}

func TestIdle(t *testing.T) {
	var res idleResults
	runJSON(t, &res, "idle", "-spawn", "inproc", "-n", "40", "-settle", "0s", "-hold", "100ms", "-probe", "10", "-namespace-size", "4")
	if res.Opened != 40 || len(res.Errors) != 0 || res.Lost != 0 {
		t.Fatalf("opened %d, errors %v, lost %d", res.Opened, res.Errors, res.Lost)
	}
	if res.ProbeOK != 10 || res.ProbeFailed != 0 {
		t.Fatalf("probes %d ok, %d failed", res.ProbeOK, res.ProbeFailed)
	}
	// The server is in this process: one descriptor each side.
	if res.FDsPerSession < 1.9 || res.FDsPerSession > 2.1 {
		t.Fatalf("%.2f descriptors per session, want 2", res.FDsPerSession)
	}
	// Both count: the client's read loop each (an idle server session
	// parks without one on Linux).
	if res.GoroutinesPerSession < 1 || res.HeapPerSession <= 0 || res.RSSPerSession <= 0 {
		t.Fatalf("per session: %.1f goroutines, heap %.0f B, RSS %.0f B", res.GoroutinesPerSession, res.HeapPerSession, res.RSSPerSession)
	}
}

// With -procs the sessions are held by child processes.
func TestIdleChildren(t *testing.T) {
	var res idleResults
	runJSON(t, &res, "idle", "-spawn", "inproc", "-n", "30", "-procs", "2", "-settle", "0s", "-hold", "100ms", "-probe", "4")
	if res.Plan.Procs != 2 || res.Opened != 30 || len(res.Errors) != 0 || res.ProbeOK != 4 {
		t.Fatalf("plan %+v, opened %d, errors %v, probes %d", res.Plan, res.Opened, res.Errors, res.ProbeOK)
	}
	// Only the server's side of each connection is in this process.
	if res.FDsPerSession < 0.9 || res.FDsPerSession > 1.1 {
		t.Fatalf("%.2f descriptors per session here, want 1", res.FDsPerSession)
	}
}

func TestFanout(t *testing.T) {
	var res fanoutResults
	runJSON(t, &res, "fanout", "-spawn", "inproc", "-baseline", "-members", "8", "-publishers", "2",
		"-rates", "max,half,200", "-step", "400ms", "-drain", "2s", "-latency-sample", "1")
	if len(res.Steps) != 6 {
		t.Fatalf("%d steps, want 3 for each server", len(res.Steps))
	}
	for _, s := range res.Steps {
		if s.Members != 8 || s.Delivered != s.Expected || s.Delivered == 0 {
			t.Errorf("%s %s: %d members, %d of %d delivered", s.Kind, s.Step, s.Members, s.Delivered, s.Expected)
		}
		if s.Latency.Count != uint64(s.Delivered) || s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
			t.Errorf("%s %s: latency %+v", s.Kind, s.Step, s.Latency)
		}
		if s.Step == "200" && (s.PublishRate < 300 || s.PublishRate > 500) {
			t.Errorf("%s: published %.0f/s at 2 × 200/s", s.Kind, s.PublishRate)
		}
	}
	if len(res.Ratios) != 3 || res.Ratios[0].Ratio <= 0 {
		t.Fatalf("ratios %+v", res.Ratios)
	}
}

// TestFanoutRawClient: lean members deliver every frame too, more than a
// window's worth each, so their flow control works both ways.
func TestFanoutRawClient(t *testing.T) {
	var res fanoutResults
	runJSON(t, &res, "fanout", "-spawn", "inproc", "-client", "raw", "-members", "6", "-publishers", "2",
		"-frame-size", "4096", "-rates", "max", "-step", "500ms", "-drain", "2s", "-latency-sample", "1")
	for _, s := range res.Steps {
		if s.Members != 6 || s.Delivered != s.Expected || s.Delivered == 0 {
			t.Errorf("%s %s: %d members, %d of %d delivered", s.Kind, s.Step, s.Members, s.Delivered, s.Expected)
		}
		if per := s.Delivered / int64(s.Members) * 4096; per < 2*rawWindow {
			t.Errorf("%d bytes per member: not past the window", per)
		}
	}
}

func TestPresence(t *testing.T) {
	var res presenceResults
	runJSON(t, &res, "presence", "-spawn", "inproc", "-members", "6", "-streams-per-session", "2",
		"-interval", "100ms", "-duration", "600ms")
	if res.Joined != 6 || res.Sets == 0 || res.Delivered != res.Expected || len(res.Errors) != 0 {
		t.Fatalf("joined %d, %d sets, %d of %d delivered, errors %v", res.Joined, res.Sets, res.Delivered, res.Expected, res.Errors)
	}
	if res.Latency.Count != uint64(res.Delivered) || res.ServerCPU < 0 {
		t.Fatalf("latency %+v, server CPU %.2f", res.Latency, res.ServerCPU)
	}
}

func TestRelay(t *testing.T) {
	var res relayResults
	runJSON(t, &res, "relay", "-spawn", "inproc", "-baseline", "-pairs", "3", "-duration", "300ms", "-chunk", "16384")
	if len(res.Runs) != 2 || res.Ratio == nil || res.Ratio.Ratio <= 0 || len(res.Ratio.Rounds) != 1 {
		t.Fatalf("runs %+v ratio %+v", res.Runs, res.Ratio)
	}
	for _, r := range res.Runs {
		if r.Errors != 0 || r.Bytes == 0 || r.PairMinMBps <= 0 || r.TotalMBps <= 0 {
			t.Errorf("%s: %+v", r.Kind, r)
		}
	}
}

func TestChurn(t *testing.T) {
	var res churnResults
	runJSON(t, &res, "churn", "-spawn", "inproc", "-concurrency", "3", "-duration", "400ms", "-settle", "0s")
	if res.Cycles == 0 || res.Failed != 0 || res.Latency.Count != uint64(res.Cycles) {
		t.Fatalf("%d cycles, %d failed, errors %v", res.Cycles, res.Failed, res.Errors)
	}
}

// A count bounds churn as well as the duration does.
func TestChurnMaxCount(t *testing.T) {
	var res churnResults
	runJSON(t, &res, "churn", "-spawn", "inproc", "-concurrency", "2", "-duration", "20s", "-max-count", "5", "-settle", "0s")
	if res.Cycles != 5 {
		t.Fatalf("%d cycles, want 5", res.Cycles)
	}
}

// -spawn self runs the server in a child process, whose figures are its
// own.
func TestSpawnSelf(t *testing.T) {
	var res churnResults
	rep := runJSON(t, &res, "churn", "-spawn", "self", "-concurrency", "2", "-duration", "300ms", "-settle", "0s")
	if len(rep.Servers) != 1 || rep.Servers[0].PID == os.Getpid() || rep.Servers[0].PID == 0 {
		t.Fatalf("servers %+v", rep.Servers)
	}
	if res.Cycles == 0 || res.Failed != 0 || res.Before.FDs == 0 || res.Before.Heap <= 0 {
		t.Fatalf("%d cycles, %d failed, before %+v", res.Cycles, res.Failed, res.Before)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"idle"},
		{"idle", "-spawn", "inproc", "-url", "ws://127.0.0.1:1/v1/channel"},
		{"idle", "-spawn", "elsewhere"},
		{"idle", "-spawn", "inproc", "-n", "0"},
		{"fanout", "-spawn", "inproc", "-rates", "half,max"},
		{"fanout", "-spawn", "inproc", "-rates", "fast"},
		{"fanout", "-spawn", "inproc", "-frame-size", "8"},
		{"fanout", "-spawn", "inproc", "-client", "yamux"},
		{"fanout", "-spawn", "inproc", "-publishers", "5", "-members", "2"},
		{"presence", "-spawn", "inproc", "-interval", "2m"},
		{"relay", "-spawn", "inproc", "-pairs", "0"},
		{"churn", "-spawn", "inproc", "extra"},
		{"idle", "-spawn", "binary", "-server-args", "-addr :9", "-server-bin", "/bin/false"},
	} {
		if err := runErr(args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// Calls are placed, accepted and connected, over the relay and over a
// loopback data channel, each to its count.
func TestCalls(t *testing.T) {
	for _, webrtc := range []string{"false", "true"} {
		var res callsResults
		runJSON(t, &res, "calls", "-spawn", "inproc", "-server-args", "-max-stream-opens-per-second 100000", "-pairs", "2", "-duration", "20s", "-max-count", "6", "-webrtc="+webrtc)
		if res.SetUps != 6 || res.Failed != 0 || res.Latency.Count != 6 {
			t.Fatalf("webrtc %s: %d set-ups, %d failed, errors %v", webrtc, res.SetUps, res.Failed, res.Errors)
		}
	}
}

// A room member is held like an echo session, and its record can be
// written again.
func TestIdleRoom(t *testing.T) {
	var res idleResults
	runJSON(t, &res, "idle", "-spawn", "inproc", "-procs", "1", "-n", "12", "-room", "-namespace-size", "4", "-settle", "0s", "-hold", "0s", "-probe", "12")
	if res.Opened != 12 || res.ProbeOK != 12 || res.ProbeFailed != 0 || res.Lost != 0 {
		t.Fatalf("%d opened, probes %d ok %d failed, %d lost, errors %v", res.Opened, res.ProbeOK, res.ProbeFailed, res.Lost, res.Errors)
	}
}
