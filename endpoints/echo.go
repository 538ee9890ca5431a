package endpoints

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel"
)

// EchoConfig tunes the echo endpoint. Zero fields mean the default.
type EchoConfig struct {
	// MaxFrame is the longest frame a member may write; a longer one resets
	// the writer's stream. Default 64 KiB.
	MaxFrame int
	// QueueBytes bounds what may wait for one member, frames and their
	// length prefixes; a member whose queue would overflow has its stream
	// reset. Default 1 MiB.
	QueueBytes int
	// MaxNamespaces caps the echo namespaces of the server (default 0: no
	// cap) and MaxMembers the members of one namespace (default 0: no cap).
	// Ignored when Broker is set: the broker enforces its own.
	MaxNamespaces, MaxMembers int
	// Broker carries frames between members. Default: a MemoryBroker.
	Broker Broker
	// Logger receives debug logs. Default slog.Default().
	Logger *slog.Logger
}

// Echo defaults.
const (
	DefaultEchoMaxFrame   = channel.DefaultMaxFrame
	DefaultEchoQueueBytes = 1 << 20
)

// Echo is the echo endpoint (PROTOCOL.md section 3): broadcast namespaces
// where every frame a member writes reaches every member, itself included.
type Echo struct {
	cfg    EchoConfig
	broker Broker
	local  *MemoryBroker // nil when a custom broker is used
	count  echoCounters
}

// echoCounters are the endpoint's running totals.
type echoCounters struct {
	framesIn, bytesIn, framesOut, bytesOut, dropped atomic.Int64
}

// EchoCounters are totals since the endpoint started.
type EchoCounters struct {
	FramesIn, BytesIn   int64 // frames members wrote, and their bytes
	FramesOut, BytesOut int64 // frames written to members, and their bytes
	Dropped             int64 // members reset because their queue overflowed
}

// Counters returns the totals since the endpoint started.
func (e *Echo) Counters() EchoCounters {
	return EchoCounters{
		FramesIn: e.count.framesIn.Load(), BytesIn: e.count.bytesIn.Load(),
		FramesOut: e.count.framesOut.Load(), BytesOut: e.count.bytesOut.Load(),
		Dropped: e.count.dropped.Load(),
	}
}

var _ channel.Endpoint = (*Echo)(nil)

// NewEcho returns the echo endpoint.
func NewEcho(cfg EchoConfig) *Echo {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultEchoMaxFrame
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultEchoQueueBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Echo{cfg: cfg, broker: cfg.Broker}
	if e.broker == nil {
		e.local = NewMemoryBroker(cfg.MaxNamespaces, cfg.MaxMembers)
		e.broker = e.local
	}
	return e
}

// Stats returns the namespaces and members on this server. With a custom
// broker it returns zeros unless the broker has a Stats method.
func (e *Echo) Stats() BrokerStats {
	if s, ok := e.broker.(interface{ Stats() BrokerStats }); ok {
		return s.Stats()
	}
	return BrokerStats{}
}

type echoReply struct {
	MaxFrame int `json:"maxFrame"`
}

// ServeStream implements channel.Endpoint. It reads the member's frames in
// this goroutine and writes the namespace's frames to it from a second
// goroutine that it starts and waits for.
func (e *Echo) ServeStream(ctx context.Context, s *channel.Stream, req *channel.Request) {
	ns := req.Header.Namespace
	m := newMember(s, e.cfg.QueueBytes, &e.count)
	unsubscribe, err := e.broker.Subscribe(ns, m)
	if err != nil {
		code := channel.CodeInternal
		msg := "could not join the namespace"
		if errors.Is(err, ErrLimit) {
			code, msg = channel.CodeLimit, err.Error()
		} else {
			e.cfg.Logger.Error("echo subscribe", "session", req.SessionID, "err", err)
		}
		s.Reject(&channel.Error{Code: code, Message: msg})
		return
	}
	if err := s.Accept(echoReply{MaxFrame: e.cfg.MaxFrame}); err != nil {
		unsubscribe()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.writeLoop()
	}()

	for {
		frame, err := channel.ReadFrame(s, e.cfg.MaxFrame)
		if err == nil {
			e.count.framesIn.Add(1)
			e.count.bytesIn.Add(int64(len(frame)))
			if perr := e.broker.Publish(ns, frame); perr != nil {
				e.cfg.Logger.Error("echo publish", "session", req.SessionID, "err", perr)
				err = perr
			} else {
				continue
			}
		}
		unsubscribe()
		switch {
		case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
			// FIN (a frame cut short by it is dropped): deliver what is
			// queued, then half-close.
			m.finish()
		case errors.Is(err, channel.ErrFrameTooLarge):
			e.cfg.Logger.Debug("echo frame too large", "session", req.SessionID, "err", err)
			m.abort()
		default:
			// Reset by the client or the session ended: nothing to tell it.
			m.setState(memberGone)
			m.s.SetWriteDeadline(time.Unix(1, 0))
		}
		wg.Wait()
		return
	}
}

// member is one echo stream: a bounded queue filled by publishers and
// drained by its own writer goroutine.
type member struct {
	s     *channel.Stream
	limit int
	count *echoCounters

	mu       sync.Mutex
	queue    [][]byte
	queued   int // bytes in queue, prefixes included
	state    memberState
	wake     chan struct{}
	spare    [][]byte // a drained queue kept for reuse; only the writer sets it
	writeBuf []byte
}

type memberState int

const (
	memberOpen      memberState = iota
	memberFinishing             // flush the queue, then FIN
	memberAborted               // reset now
	memberGone                  // stream already reset or session over
)

func newMember(s *channel.Stream, limit int, count *echoCounters) *member {
	return &member{s: s, limit: limit, count: count, wake: make(chan struct{}, 1)}
}

// Deliver implements Subscriber. It never blocks: on overflow the member is
// marked for reset and its writer is woken, and a write it is blocked in is
// cut short.
func (m *member) Deliver(frame []byte) {
	m.mu.Lock()
	if m.state != memberOpen {
		m.mu.Unlock()
		return
	}
	size := channel.FrameHeaderSize + len(frame)
	if m.queued+size > m.limit {
		m.count.dropped.Add(1)
		m.state = memberAborted
		m.queue, m.queued = nil, 0
		m.mu.Unlock()
		m.s.SetWriteDeadline(time.Unix(1, 0)) // never blocks
		m.signal()
		return
	}
	m.queue = append(m.queue, frame)
	m.queued += size
	m.mu.Unlock()
	m.signal()
}

func (m *member) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *member) finish() { m.setState(memberFinishing) }

func (m *member) abort() {
	m.setState(memberAborted)
	m.s.SetWriteDeadline(time.Unix(1, 0))
}

func (m *member) setState(st memberState) {
	m.mu.Lock()
	if m.state < st {
		m.state = st
	}
	m.mu.Unlock()
	m.signal()
}

// writeLoop writes queued frames, batched into one stream write, until the
// member finishes (FIN after the queue), is aborted (RST) or is gone.
func (m *member) writeLoop() {
	for {
		m.mu.Lock()
		var batch [][]byte
		if len(m.queue) > 0 {
			// Take the queue; the spare slice, owned by no one else,
			// becomes the new one.
			batch, m.queue, m.spare = m.queue, m.spare[:0], nil
			m.queued = 0
		}
		state := m.state
		m.mu.Unlock()
		switch {
		case state == memberGone:
			return
		case state == memberAborted:
			m.s.Reset()
			return
		case len(batch) > 0:
			if err := m.write(batch); err != nil {
				m.s.Reset()
				return
			}
		case state == memberFinishing:
			m.s.CloseWrite()
			return
		default:
			<-m.wake
		}
	}
}

func (m *member) write(batch [][]byte) error {
	buf := m.writeBuf[:0]
	for _, f := range batch {
		buf = channel.AppendFrame(buf, f)
	}
	clear(batch)
	m.mu.Lock()
	m.spare = batch
	m.mu.Unlock()
	_, err := m.s.Write(buf)
	if err == nil {
		m.count.framesOut.Add(int64(len(batch)))
		m.count.bytesOut.Add(int64(len(buf) - channel.FrameHeaderSize*len(batch)))
	}
	if cap(buf) <= 64<<10 {
		m.writeBuf = buf[:0]
	} else {
		m.writeBuf = nil // do not keep a large buffer for an idle member
	}
	return err
}
