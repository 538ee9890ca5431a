package wsraw

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// parking waits for a Conn's input in the shared epoll set instead of in a
// goroutine. Only a plain TCP or Unix connection parks: a TLS one (or any
// other wrapper) may hold input of its own that the socket does not show.
type parking struct {
	raw    syscall.RawConn // nil: the Conn does not park
	resume func()

	mu     sync.Mutex
	parked bool    // armed in the epoll set, no goroutine reading
	p      *poller // the set the Conn is in, from its first park
	token  uint64
	gone   bool // forgotten: parks no more
}

func (k *parking) init(nc net.Conn, resume func()) {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	k.raw, k.resume = raw, resume
}

func (k *parking) able() bool { return k.raw != nil }

// tryRead reads into b without blocking: syscall.EAGAIN when nothing is
// there, 0 and nil at the end of input.
func (k *parking) tryRead(b []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	err := k.raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), b)
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EINTR:
		return 0, syscall.EAGAIN // level-triggered: the set reports it at once
	case rerr != nil:
		return 0, rerr
	}
	return n, nil
}

// park arms the Conn in the epoll set, unless it is closing (the reader
// then lingers for the peer's close message). It returns false if the Conn
// is to go on reading.
func (k *parking) park(closing *atomic.Bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if closing.Load() || k.gone {
		return false
	}
	if k.p == nil {
		p, token, err := register(k)
		if err != nil {
			k.gone = true // this Conn reads with a goroutine from now on
			return false
		}
		k.p, k.token = p, token
		if err := k.ctl(syscall.EPOLL_CTL_ADD); err != nil {
			return false
		}
	} else if err := k.ctl(syscall.EPOLL_CTL_MOD); err != nil {
		return false
	}
	k.parked = true
	return true
}

// ctl adds or re-arms the socket in the set for one readiness event; it runs
// under the socket's own reference, so that a socket closed meanwhile is
// never confused with a new one given the same descriptor.
func (k *parking) ctl(op int) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(k.token)),
		Pad:    int32(uint32(k.token >> 32)),
	}
	var err error
	if cerr := k.raw.Control(func(fd uintptr) {
		err = syscall.EpollCtl(k.p.epfd, op, int(fd), &ev)
	}); cerr != nil {
		return cerr
	}
	return err
}

// wake starts a reader for a parked Conn: input came, or it was closed.
func (k *parking) wake() {
	if k.raw == nil {
		return
	}
	k.mu.Lock()
	parked := k.parked
	k.parked = false
	k.mu.Unlock()
	if parked {
		go k.resume()
	}
}

// forget takes the Conn out of the set for good; the reader calls it when
// it ends.
func (k *parking) forget() {
	k.mu.Lock()
	p, gone := k.p, k.gone
	k.gone, k.parked = true, false
	if p != nil && !gone {
		k.raw.Control(func(fd uintptr) {
			syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	k.mu.Unlock()
	if p != nil && !gone {
		unregister(p, k.token)
	}
}

// poller is an epoll set and the goroutine that waits on it, shared by every
// parked Conn of the process. It starts with the first Conn to park and
// stops when the last one is forgotten.
type poller struct {
	epfd    int
	stop    [2]int // a pipe: a byte on it ends run
	done    chan struct{}
	mu      sync.Mutex
	members map[uint64]*parking
	next    uint64
}

var pollers struct {
	mu  sync.Mutex
	cur *poller
}

func register(k *parking) (*poller, uint64, error) {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	p := pollers.cur
	if p == nil {
		var err error
		if p, err = newPoller(); err != nil {
			return nil, 0, err
		}
		pollers.cur = p
	}
	p.mu.Lock()
	p.next++
	token := p.next
	p.members[token] = k
	p.mu.Unlock()
	return p, token, nil
}

func unregister(p *poller, token uint64) {
	pollers.mu.Lock()
	p.mu.Lock()
	delete(p.members, token)
	last := len(p.members) == 0
	p.mu.Unlock()
	if last && pollers.cur == p {
		pollers.cur = nil
	} else {
		last = false
	}
	pollers.mu.Unlock()
	if last {
		syscall.Write(p.stop[1], []byte{0})
		<-p.done
		syscall.Close(p.epfd)
		syscall.Close(p.stop[0])
		syscall.Close(p.stop[1])
	}
}

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, done: make(chan struct{}), members: make(map[uint64]*parking)}
	if err := syscall.Pipe2(p.stop[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	// Token 0 is the stop pipe: Conns' tokens start at 1.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.stop[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.stop[0])
		syscall.Close(p.stop[1])
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	go p.run()
	return p, nil
}

// run waits for readiness and starts a reader for each Conn that has input.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*parking, 0, len(events))
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// Only a broken set fails this way; its descriptor is closed
			// only after run returns.
			panic(fmt.Sprintf("wsraw: epoll_wait: %v", err))
		}
		ready = ready[:0]
		p.mu.Lock()
		for _, ev := range events[:n] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if token == 0 {
				p.mu.Unlock()
				return
			}
			if k := p.members[token]; k != nil {
				ready = append(ready, k)
			}
		}
		p.mu.Unlock()
		for _, k := range ready {
			k.wake()
		}
	}
}
