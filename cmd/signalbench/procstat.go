package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// readRSS returns process pid's resident set size in bytes
// (/proc/<pid>/status VmRSS).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// readCPU returns the CPU time process pid has used, user plus system
// (utime + stime of /proc/<pid>/stat, all its threads).
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// countFDs returns how many descriptors process pid has open.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// metricNames are the /metrics series read, all Go runtime gauges of the
// Prometheus Go collector.
var metricNames = []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"}

// httpClient fetches /healthz, /metrics and profiles; no keep-alive, so
// nothing outlives a request.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// scrapeMetrics reads the unlabelled series of metricNames from base's
// /metrics. It returns nil and no error when the server has no /metrics.
func scrapeMetrics(ctx context.Context, base string) (map[string]float64, error) {
	if base == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		io.Copy(io.Discard, resp.Body)
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", base, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range metricNames {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					out[name] = f
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, nil // a /metrics without Go runtime series
	}
	return out, sc.Err()
}

// procSample is one reading of a process.
type procSample struct {
	At         time.Time
	RSS        int64
	CPU        time.Duration
	FDs        int
	Heap       float64 // go_memstats_heap_inuse_bytes; -1 when not exposed
	Stack      float64 // go_memstats_stack_inuse_bytes; -1 when not exposed
	Goroutines float64 // go_goroutines; -1 when not exposed
}

// sampleProc reads what it can of process pid and of the server's /metrics
// at base. pid 0 skips /proc; base "" skips /metrics.
func sampleProc(ctx context.Context, pid int, base string) (procSample, []string) {
	s := procSample{At: time.Now(), Heap: -1, Stack: -1, Goroutines: -1}
	var notes []string
	if pid > 0 {
		var err error
		if s.RSS, err = readRSS(pid); err != nil {
			notes = append(notes, fmt.Sprintf("RSS of pid %d: %v", pid, err))
		}
		if s.CPU, err = readCPU(pid); err != nil {
			notes = append(notes, fmt.Sprintf("CPU of pid %d: %v", pid, err))
		}
		if s.FDs, err = countFDs(pid); err != nil {
			notes = append(notes, fmt.Sprintf("descriptors of pid %d: %v", pid, err))
		}
	}
	m, err := scrapeMetrics(ctx, base)
	switch {
	case err != nil:
		notes = append(notes, fmt.Sprintf("/metrics: %v", err))
	case m != nil:
		get := func(name string) float64 {
			if v, ok := m[name]; ok {
				return v
			}
			return -1
		}
		s.Heap, s.Stack, s.Goroutines = get(metricNames[0]), get(metricNames[1]), get(metricNames[2])
	}
	return s, notes
}

// waitHealthy polls base/healthz until it answers 200, ctx ends or exited
// is closed.
func waitHealthy(ctx context.Context, base string, exited <-chan struct{}) error {
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", base+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/healthz did not answer: %w", base, ctx.Err())
		case <-exited:
			return fmt.Errorf("the server exited before %s/healthz answered", base)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fetchTo saves base+path (a pprof profile) to file.
func fetchTo(ctx context.Context, base, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %s", base, path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readMachineBusy returns the CPU time all processors have spent busy since
// boot (/proc/stat: everything but idle and iowait). Over a step, this less
// the server's and the clients' CPU is what other processes took.
func readMachineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: malformed")
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: malformed")
		}
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// cpuMeter measures, over an interval, the CPU of the server, of this
// process and of everything else on the machine, in cores.
type cpuMeter struct {
	pid              int
	t0               time.Time
	srv0, own0, all0 time.Duration
	srvErr, allErr   error
}

func startCPU(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid, t0: time.Now()}
	if pid > 0 {
		m.srv0, m.srvErr = readCPU(pid)
	}
	m.own0, _ = readCPU(selfPID)
	m.all0, m.allErr = readMachineBusy()
	return m
}

// cpuUse is a cpuMeter's reading; -1 for what could not be read.
type cpuUse struct {
	Server  float64       // server cores
	Client  float64       // this process's cores
	Others  float64       // other processes' cores
	ServerT time.Duration // server CPU time
	Elapsed time.Duration
}

// stop reads the meter. With the server in this process, Server is this
// process and Client is -1.
func (m *cpuMeter) stop() cpuUse {
	u := cpuUse{Server: -1, Others: -1, Elapsed: time.Since(m.t0)}
	secs := u.Elapsed.Seconds()
	own1, _ := readCPU(selfPID)
	u.Client = (own1 - m.own0).Seconds() / secs
	if m.pid > 0 && m.srvErr == nil {
		if srv1, err := readCPU(m.pid); err == nil {
			u.ServerT = srv1 - m.srv0
			u.Server = u.ServerT.Seconds() / secs
		}
	}
	if m.allErr == nil {
		if all1, err := readMachineBusy(); err == nil {
			others := (all1 - m.all0).Seconds() / secs
			if u.Server >= 0 && m.pid != selfPID {
				others -= u.Server
			}
			u.Others = max(0, others-u.Client)
		}
	}
	if m.pid == selfPID {
		u.Client = -1
	}
	return u
}
