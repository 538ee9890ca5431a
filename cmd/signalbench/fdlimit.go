package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Descriptors a process keeps for itself besides its sessions: standard
// streams, the poller, listeners, pipes to child processes, /proc reads,
// HTTP requests for /metrics.
const (
	clientReserve = 64
	serverReserve = 32
)

// errUnreachable is a session count the open-files limits cannot hold.
var errUnreachable = errors.New("requested sessions cannot be reached")

// nofile returns this process's RLIMIT_NOFILE soft limit (the Go runtime
// raises it to the hard limit at start).
func nofile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

// processNofile returns the open-files soft limit of process pid, from
// /proc/<pid>/limits.
func processNofile(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "Max open files") {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, "Max open files"))
		if len(fields) < 1 {
			break
		}
		if fields[0] == "unlimited" {
			return 1 << 40, nil
		}
		return strconv.ParseUint(fields[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/limits: no \"Max open files\" line", pid)
}

// fdPlan spreads N client sessions over client processes so that none
// exceeds its open-files limit, and says whether the server can hold them.
// Each session costs one descriptor in the client process and one in the
// server's.
type fdPlan struct {
	Sessions    int    `json:"sessions"`
	Procs       int    `json:"procs"`
	PerProc     []int  `json:"perProc"`
	ClientLimit uint64 `json:"clientLimit"`
	// ServerLimit is the server's open-files limit; 0 when unknown.
	ServerLimit uint64 `json:"serverLimit,omitempty"`
	// ServerMax is the most sessions the server can hold; -1 when unknown.
	ServerMax int `json:"serverMax"`
}

// planSessions plans n sessions. clientLimit is the limit of every client
// process (the children inherit this one's); serverLimit that of the server
// (0: unknown). serverHere is true when the server runs in this process, so
// that its descriptors count against this process's limit too. procs is the
// number of client processes asked for, 0 for as few as fit.
func planSessions(n int, clientLimit, serverLimit uint64, serverHere bool, procs int) (fdPlan, error) {
	p := fdPlan{Sessions: n, ClientLimit: clientLimit, ServerLimit: serverLimit, ServerMax: -1}
	if n <= 0 {
		return p, fmt.Errorf("%d sessions: want at least 1", n)
	}
	if procs < 0 {
		return p, fmt.Errorf("-procs %d: want 0 (automatic) or more", procs)
	}
	if clientLimit <= clientReserve {
		return p, fmt.Errorf("%w: the open-files limit is %d, and a client process keeps %d descriptors for itself", errUnreachable, clientLimit, clientReserve)
	}
	perProc := int(clientLimit - clientReserve)
	if serverHere {
		serverLimit = clientLimit
	}
	if serverLimit > 0 {
		p.ServerLimit = serverLimit
		p.ServerMax = max(0, int(serverLimit)-serverReserve)
		if serverHere {
			p.ServerMax = max(0, int(serverLimit)-serverReserve-clientReserve)
		}
		if n > p.ServerMax {
			return p, fmt.Errorf("%w: the server's open-files limit is %d, so it can hold at most %d sessions (one descriptor each, %d kept for itself); asked for %d. Ask for fewer (-n %d) or raise the server's limit (ulimit -n)",
				errUnreachable, serverLimit, p.ServerMax, serverReserve, n, p.ServerMax)
		}
	}
	// -procs 1 runs the clients in this process; more start that many
	// child processes and this one holds none. With the server here too,
	// each session costs this process two descriptors.
	here := perProc
	if serverHere {
		here = (perProc - serverReserve) / 2
	}
	need := 1
	if n > here {
		need = max(2, (n+perProc-1)/perProc)
	}
	switch {
	case procs == 0:
		procs = need
	case procs == 1 && need > 1 && serverHere:
		return p, fmt.Errorf("%w: with the server in this process each session costs it two descriptors, so the open-files limit %d holds at most %d sessions with their clients; asked for %d. Use -procs 2 or more, or -spawn self",
			errUnreachable, clientLimit, here, n)
	case procs < need:
		return p, fmt.Errorf("%w: %d sessions need %d client processes at an open-files limit of %d (%d sessions each); use -procs %d or -procs 0",
			errUnreachable, n, need, clientLimit, perProc, need)
	}
	if procs > n {
		procs = n // one session per process at most
	}
	p.Procs = procs
	p.PerProc = make([]int, procs)
	for i := range p.PerProc {
		p.PerProc[i] = n / procs
		if i < n%procs {
			p.PerProc[i]++
		}
	}
	return p, nil
}
