package endpoints

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
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
	// PublishRate is the publish budget of each member, in bytes per
	// second, and PublishBurst the most of it a member may spend at once;
	// a frame counts with its 4-byte length prefix, as in the queue. A
	// frame past the budget is not delivered: the member gets an error
	// record (code `limit`) and leaves the namespace (PROTOCOL.md section
	// 8). A burst no larger than QueueBytes keeps a writer alone from
	// overflowing the queue of a member that keeps up. Defaults 256 KiB/s
	// and 512 KiB (QueueBytes if smaller, yet at least one frame of
	// MaxFrame); a negative PublishRate turns the budget off.
	PublishRate, PublishBurst int
	// MaxNamespaces caps the echo namespaces of the server (default 0: no
	// cap) and MaxMembers the members of one namespace (default 0: no cap).
	// Ignored when Broker is set: the broker enforces its own.
	MaxNamespaces, MaxMembers int
	// Broker carries frames between members. Default: a MemoryBroker.
	Broker Broker
	// Logger receives debug logs. Default slog.Default().
	Logger *slog.Logger
}

// Echo defaults. The publish budget is far above what signalling sends
// (an offer is a few KiB) and its burst half the member queue, so that a
// writer alone fills at most half the queue of a member that keeps up.
const (
	DefaultEchoMaxFrame     = channel.DefaultMaxFrame
	DefaultEchoQueueBytes   = 1 << 20
	DefaultEchoPublishRate  = 256 << 10
	DefaultEchoPublishBurst = 512 << 10
)

// Echo is the echo endpoint (PROTOCOL.md section 3): broadcast namespaces
// where every frame a member writes reaches every member, itself included.
type Echo struct {
	cfg    EchoConfig
	broker Broker
	local  *MemoryBroker // nil when a custom broker is used
	count  echoCounters
	// refusal is the error record a member past its budget gets.
	refusal []byte
}

// echoCounters are the endpoint's running totals.
type echoCounters struct {
	framesIn, bytesIn, framesOut, bytesOut, dropped, refused atomic.Int64
}

// EchoCounters are totals since the endpoint started.
type EchoCounters struct {
	FramesIn, BytesIn   int64 // frames accepted from members, and their bytes
	FramesOut, BytesOut int64 // frames written to members, and their bytes
	Dropped             int64 // members reset because their queue overflowed
	Refused             int64 // members refused for publishing past their budget
}

// Counters returns the totals since the endpoint started.
func (e *Echo) Counters() EchoCounters {
	return EchoCounters{
		FramesIn: e.count.framesIn.Load(), BytesIn: e.count.bytesIn.Load(),
		FramesOut: e.count.framesOut.Load(), BytesOut: e.count.bytesOut.Load(),
		Dropped: e.count.dropped.Load(), Refused: e.count.refused.Load(),
	}
}

var _ server.Endpoint = (*Echo)(nil)

// NewEcho returns the echo endpoint.
func NewEcho(cfg EchoConfig) *Echo {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultEchoMaxFrame
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultEchoQueueBytes
	}
	if cfg.PublishRate == 0 {
		cfg.PublishRate = DefaultEchoPublishRate
	}
	if cfg.PublishBurst <= 0 {
		cfg.PublishBurst = max(min(DefaultEchoPublishBurst, cfg.QueueBytes), cfg.MaxFrame+channel.FrameHeaderSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Echo{cfg: cfg, broker: cfg.Broker}
	if cfg.PublishRate > 0 {
		e.refusal = channel.AppendErrorRecord(nil, channel.Errorf(channel.CodeLimit,
			"echo publish budget (%d bytes/s, burst %d bytes) exceeded", cfg.PublishRate, cfg.PublishBurst))
	}
	if e.broker == nil {
		e.local = NewMemoryBroker(cfg.MaxNamespaces, cfg.MaxMembers)
		e.broker = e.local
	}
	return e
}

// Publish sends payload to every member of namespace, on every server of
// a cluster, as if a member had written it: the server's own frame (an
// announcement of the app's back end).
func (e *Echo) Publish(namespace string, payload []byte) error {
	if len(payload) > e.cfg.MaxFrame {
		return channel.Errorf(channel.CodeLimit, "a frame of %d bytes, at most %d (-echo-max-frame)", len(payload), e.cfg.MaxFrame)
	}
	e.count.framesIn.Add(1)
	e.count.bytesIn.Add(int64(len(payload)))
	return e.broker.Publish(namespace, payload)
}

// Namespaces returns the members of each echo namespace on this server;
// nil with a broker that does not say.
func (e *Echo) Namespaces() map[string]int {
	if n, ok := e.broker.(interface{ Namespaces() map[string]int }); ok {
		return n.Namespaces()
	}
	return nil
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

// ServeStream implements server.Endpoint. The member's frames are read
// inline by the session (server.Stream.ReadInline) and published as they
// arrive; the namespace's frames are written to the member by a writer
// goroutine that runs only while some are queued. So an idle member holds
// no goroutine: ServeStream returns once the member has joined, and the
// member's last writer ends the stream's service.
func (e *Echo) ServeStream(ctx context.Context, s *server.Stream, req *server.Request) {
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
	m.mu.Lock()
	m.leave = unsubscribe
	m.mu.Unlock()
	m.start()
	in := &memberInput{e: e, m: m, ns: ns, session: req.SessionID,
		parser: channel.FrameParser{Max: e.cfg.MaxFrame}}
	if e.cfg.PublishRate > 0 {
		in.budget = newBudget(e.cfg.PublishRate, e.cfg.PublishBurst, time.Now())
	}
	done, err := s.ReadInline(in.data, in.end)
	if err != nil { // the stream was accepted: not reached
		in.stop(memberGone)
		m.writer.Wait()
		return
	}
	m.setDone(done)
}

// memberInput is the reading side of a member: it runs in the session's
// read loop, one call at a time, and never blocks.
type memberInput struct {
	e       *Echo
	m       *member
	ns      string
	session string
	parser  channel.FrameParser
	budget  budget
	stopped bool
}

// data publishes the frames completed by p, each within the member's
// budget; the first past it ends the member's publishing.
func (in *memberInput) data(p []byte) {
	if in.stopped {
		return
	}
	var now time.Time // the frames of one read arrived together
	if in.budget.on() {
		now = time.Now()
	}
	err := in.parser.Feed(p, func(frame []byte) {
		if in.stopped {
			return
		}
		if !in.budget.spend(channel.FrameHeaderSize+len(frame), now) {
			in.e.count.refused.Add(1)
			in.e.cfg.Logger.Debug("echo publish budget exceeded", "session", in.session, "namespace", in.ns)
			in.stop(memberRefused)
			return
		}
		in.e.count.framesIn.Add(1)
		in.e.count.bytesIn.Add(int64(len(frame)))
		if perr := in.e.broker.Publish(in.ns, frame); perr != nil {
			in.e.cfg.Logger.Error("echo publish", "session", in.session, "err", perr)
			in.stop(memberGone)
		}
	})
	if err != nil && !in.stopped { // after a refusal the rest is discarded
		in.e.cfg.Logger.Debug("echo frame too large", "session", in.session, "err", err)
		in.stop(memberAborted)
	}
}

// end takes the end of the member's input: a FIN (a frame cut short by it
// is dropped) delivers what is queued, then half-closes; after a reset or
// the session's end there is nothing to tell the client.
func (in *memberInput) end(err error) {
	if in.stopped {
		return
	}
	if err == io.EOF {
		in.stop(memberFinishing)
		return
	}
	in.stop(memberGone)
}

// stop leaves the namespace and moves the member to its final state.
func (in *memberInput) stop(st memberState) {
	in.stopped = true
	in.m.leaveNamespace()
	switch st {
	case memberFinishing:
		in.m.finish()
	case memberRefused:
		in.m.refuse(in.e.refusal)
	case memberAborted:
		in.m.abort()
	default:
		in.m.setState(memberGone)
		in.m.s.SetWriteDeadline(time.Unix(1, 0))
	}
}

// member is one echo stream: a bounded queue filled by publishers and
// drained by a writer goroutine. The writer runs only while there is work:
// the publisher that queues into an idle member starts it, and it stops
// once the queue is empty, so an idle member costs no goroutine stack.
//
// Invariant, under mu: while the member is open and started, a non-empty
// queue has a running writer. At most one writer runs at a time, which
// keeps the member's frames in the order they were queued.
type member struct {
	s     *server.Stream
	limit int
	count *echoCounters

	mu      sync.Mutex
	queue   [][]byte
	queued  int // bytes in queue, prefixes included
	state   memberState
	started bool     // the stream was accepted: writing may begin
	running bool     // a writer goroutine is running
	spare   [][]byte // a drained queue kept for reuse; only the writer sets it
	leave   func()   // leaves the namespace: taken by the first leaveNamespace
	refusal []byte   // the error record of a refused member
	done    func()   // ends the stream's service (ReadInline)
	over    bool     // the last writer has run
	// writer counts the running writer (0 or 1). ServeStream waits on it
	// after the member reached a final state, when no new writer can start.
	writer sync.WaitGroup
}

type memberState int

const (
	memberOpen      memberState = iota
	memberFinishing             // flush the queue, then FIN
	memberRefused               // drop the queue, send the error record, then FIN
	memberAborted               // reset now
	memberGone                  // stream already reset or session over
)

func newMember(s *server.Stream, limit int, count *echoCounters) *member {
	return &member{s: s, limit: limit, count: count}
}

// leaveNamespace leaves the namespace, once however often it is called.
func (m *member) leaveNamespace() {
	m.mu.Lock()
	leave := m.leave
	m.leave = nil
	m.mu.Unlock()
	if leave != nil {
		leave()
	}
}

// Deliver implements Subscriber. It never blocks: on overflow the member is
// marked for reset, and a write its writer is blocked in is cut short.
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
		m.kickLocked() // Reset may block: the writer does it, not the publisher
		m.mu.Unlock()
		m.s.SetWriteDeadline(time.Unix(1, 0)) // never blocks
		return
	}
	m.queue = append(m.queue, frame)
	m.queued += size
	m.kickLocked()
	m.mu.Unlock()
}

// start lets the writer run once the stream is accepted: nothing may be
// written before the reply. Frames queued meanwhile are written now.
func (m *member) start() {
	m.mu.Lock()
	m.started = true
	if len(m.queue) > 0 || m.state != memberOpen {
		m.kickLocked()
	}
	m.mu.Unlock()
}

// kickLocked starts the writer unless one is running or the stream is not
// yet accepted. m.mu must be held: the check and the start are one step
// with the writer's decision to stop, so no queued frame is left without a
// writer.
func (m *member) kickLocked() {
	if m.running || !m.started {
		return
	}
	m.running = true
	m.writer.Add(1)
	go m.writeLoop()
}

func (m *member) finish() { m.setState(memberFinishing) }

// refuse ends a member that published past its budget: what was queued for
// it is dropped, and its writer sends record, then FIN. A member that does
// not take the record (and what was being written) within refusalTimeout
// is reset instead.
func (m *member) refuse(record []byte) {
	m.mu.Lock()
	refused := m.state < memberRefused
	if refused {
		m.state = memberRefused
		m.queue, m.queued = nil, 0
		m.refusal = record
	}
	m.kickLocked()
	m.mu.Unlock()
	if refused {
		m.s.SetWriteDeadline(time.Now().Add(refusalTimeout))
	}
}

// refusalTimeout bounds the writes to a refused member: the server's
// default write timeout.
const refusalTimeout = server.DefaultWriteTimeout

func (m *member) abort() {
	m.setState(memberAborted)
	m.s.SetWriteDeadline(time.Unix(1, 0))
}

// setState moves the member towards its end, never back, and starts a
// writer if none runs, to carry the final step out (FIN, RST).
func (m *member) setState(st memberState) {
	m.mu.Lock()
	if m.state < st {
		m.state = st
	}
	m.kickLocked()
	m.mu.Unlock()
}

// writeLoop writes queued frames, batched into one stream write, until the
// queue is empty (it stops, and the next frame starts a new writer) or the
// member finishes (FIN after the queue), is refused (the error record, then
// FIN), is aborted (RST) or is gone.
func (m *member) writeLoop() {
	final := true // the member's last writer ends the stream's service
	defer func() {
		m.writer.Done()
		if final {
			m.ended()
		}
	}()
	yielded := false
	for {
		// With nothing queued, the writer first yields once: frames that
		// arrive meanwhile go out in this batch, and a steady stream of
		// them keeps one writer rather than starting one per frame (a new
		// goroutine grows its stack in the write path each time).
		batch, size, state := m.take(yielded)
		switch {
		case state == memberGone:
			return
		case state == memberAborted:
			m.s.Reset()
			return
		case state == memberRefused:
			if _, err := m.s.Write(m.refusal); err != nil {
				m.fail()
				return
			}
			m.s.CloseWrite()
			return
		case len(batch) > 0:
			if err := m.write(batch, size); err != nil {
				m.fail()
				return
			}
			yielded = false
		case state == memberFinishing:
			m.s.CloseWrite()
			return
		case !yielded:
			yielded = true
			runtime.Gosched()
		default: // open and nothing queued: take cleared running
			final = false
			return
		}
	}
}

// setDone gives the member the function that ends its stream's service,
// and calls it if the member has already ended.
func (m *member) setDone(done func()) {
	m.mu.Lock()
	m.done = done
	over := m.over
	m.mu.Unlock()
	if over {
		done()
	}
}

// ended is called by the member's last writer: a member reset by the
// server (overflow, a failed write) leaves the namespace here.
func (m *member) ended() {
	m.leaveNamespace()
	m.mu.Lock()
	m.over = true
	done := m.done
	m.mu.Unlock()
	if done != nil {
		done()
	}
}

// take returns the queued frames and their size in bytes. With nothing
// queued on an open member and stop set, it marks the writer stopped, under
// the same lock as the check, so the next Deliver starts a new one.
func (m *member) take(stop bool) (batch [][]byte, size int, state memberState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) > 0 {
		// Take the queue; the spare slice, owned by no one else, becomes
		// the new one.
		batch, m.queue, m.spare = m.queue, m.spare[:0], nil
		size, m.queued = m.queued, 0
	} else if m.state == memberOpen && stop {
		m.running = false
		// An idle member keeps its queue slices for the next burst,
		// unless a large one would pin memory while nothing flows.
		if cap(m.queue) > maxIdleQueue {
			m.queue = nil
		}
		if cap(m.spare) > maxIdleQueue {
			m.spare = nil
		}
	}
	return batch, size, m.state
}

// maxIdleQueue is the longest queue slice, in frames, an idle member keeps.
const maxIdleQueue = 64

// fail ends a member whose stream could not be written: nothing more is
// queued for it, and the stream is reset.
func (m *member) fail() {
	m.mu.Lock()
	if m.state < memberGone {
		m.state = memberGone
	}
	m.queue, m.queued = nil, 0
	m.mu.Unlock()
	m.s.Reset()
}

// write writes batch, size bytes once framed, in one stream write, from a
// pooled buffer: members share a few buffers instead of each growing and
// keeping its own.
func (m *member) write(batch [][]byte, size int) error {
	bp := getBatchBuf(size)
	buf := (*bp)[:0]
	for _, f := range batch {
		buf = channel.AppendFrame(buf, f)
	}
	frames := len(batch)
	clear(batch)
	m.mu.Lock()
	m.spare = batch
	m.mu.Unlock()
	_, err := m.s.Write(buf)
	if err == nil {
		m.count.framesOut.Add(int64(frames))
		m.count.bytesOut.Add(int64(len(buf) - channel.FrameHeaderSize*frames))
	}
	putBatchBuf(bp, buf)
	return err
}

// Batch buffers. A stream write has returned once the stream has copied or
// sent the bytes, so the buffer can be reused right after it.
var batchPool sync.Pool // of *[]byte

const (
	// minBatchBuf is the least a new buffer holds, so that batches of small
	// frames growing a little do not allocate again.
	minBatchBuf = 4 << 10
	// maxPooledBatch bounds the buffers put back: one large batch is left
	// to the garbage collector rather than pinned in the pool. It holds a
	// frame of the default maximum size with room to spare.
	maxPooledBatch = 2 * DefaultEchoMaxFrame
)

// getBatchBuf returns an empty buffer with room for size bytes.
func getBatchBuf(size int) *[]byte {
	if bp, ok := batchPool.Get().(*[]byte); ok {
		if cap(*bp) >= size {
			return bp
		}
		putBatchBuf(bp, *bp) // too small for this batch; another may fit
	}
	b := make([]byte, 0, max(size, minBatchBuf))
	return &b
}

func putBatchBuf(bp *[]byte, buf []byte) {
	if cap(buf) > maxPooledBatch {
		return
	}
	*bp = buf[:0]
	batchPool.Put(bp)
}
