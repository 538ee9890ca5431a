package cluster

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/signalchannel/signalchannel/relay"
)

// pipe is this node's end of a relay pair whose other stream is on another
// node: a relay.Stream standing for that remote stream. Bytes written to it
// go to the other node; bytes the other node sends are read from it.
//
// Each end receives on its own subject, <prefix>.pipe.<node id>.<pipe id>,
// messages whose first byte says what they are:
//
//	'D' offset(8) bytes   data; offset counts the bytes sent before
//	'S' consumed(8) fin(1) final(8)
//	                      state: the bytes read so far (the sender may have
//	                      at most window bytes beyond them in flight), and
//	                      whether the writer half-closed after final bytes
//	'R'                   reset
//
// Flow control is by credit: a writer never has more than window bytes
// unread by the other end, so neither end buffers more than window bytes,
// and a slow reader stalls the writer rather than growing a queue. A state
// message is sent when a quarter of the window has been read, on
// half-close, and every keepalive interval when nothing else was sent; an
// end that hears nothing for the silence timeout takes the other end for
// gone and resets. A message lost on the way (NATS is at most once) is
// detected by the offsets and resets the pair rather than corrupt it.
type pipe struct {
	p      *Pairer
	id     string
	sub    *nats.Subscription
	window int64
	chunk  int

	mu           sync.Mutex
	peerID       string          // the remote stream's peer, as its node vouches
	peerMeta     json.RawMessage // and its public metadata
	peerNode     string
	peerSubj     string // "" until the other end is known
	chunks       [][]byte
	rcvd         int64 // bytes received
	consumed     int64 // bytes read
	advertised   int64 // consumed, as last sent
	finRcvd      bool
	sent         int64 // bytes sent; written by the writer only
	peerConsumed int64
	finSent      bool
	lastSent     time.Time
	lastHeard    time.Time
	err          error         // set when reset or closed
	done         chan struct{} // closed with err
	readable     chan struct{} // capacity 1
	writable     chan struct{} // capacity 1
	rd, wd       deadline

	wbuf []byte // the writer's message buffer
}

var _ relay.Stream = (*pipe)(nil)

const (
	msgData  = 'D'
	msgState = 'S'
	msgReset = 'R'
)

// newPipe creates and subscribes this node's end of a pipe to peerNode.
// Called with p.mu held: it registers the pipe.
// setPeer records who the remote stream belongs to, as its node said.
func (pp *pipe) setPeer(id string, meta json.RawMessage) {
	pp.mu.Lock()
	pp.peerID, pp.peerMeta = id, meta
	pp.mu.Unlock()
}

// PeerIdentity implements relay.Identified: the remote stream's peer.
func (pp *pipe) PeerIdentity() (string, json.RawMessage) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.peerID, pp.peerMeta
}

var _ relay.Identified = (*pipe)(nil)

func (p *Pairer) newPipeLocked(peerNode string) (*pipe, error) {
	now := time.Now()
	pp := &pipe{
		p:         p,
		id:        nuid.Next(),
		window:    int64(p.cfg.Window),
		chunk:     p.cfg.ChunkBytes,
		peerNode:  peerNode,
		lastSent:  now,
		lastHeard: now,
		done:      make(chan struct{}),
		readable:  make(chan struct{}, 1),
		writable:  make(chan struct{}, 1),
		rd:        makeDeadline(),
		wd:        makeDeadline(),
	}
	sub, err := p.node.nc.Subscribe(p.node.subj.pipe(p.node.id, pp.id), pp.onMsg)
	if err != nil {
		return nil, fmt.Errorf("cluster: relay pipe subscribe: %w", err)
	}
	// The window bounds what arrives; the client-side limits stay out of
	// the way.
	_ = sub.SetPendingLimits(-1, -1)
	pp.sub = sub
	p.pipes[pp.id] = pp
	return pp, nil
}

// connect sets the other end's pipe id.
func (pp *pipe) connect(peerPipe string) {
	pp.mu.Lock()
	pp.peerSubj = pp.p.node.subj.pipe(pp.peerNode, peerPipe)
	pp.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// onMsg handles a message from the other end.
func (pp *pipe) onMsg(m *nats.Msg) {
	d := m.Data
	pp.mu.Lock()
	if pp.err != nil {
		pp.mu.Unlock()
		return
	}
	pp.lastHeard = time.Now()
	var fault string
	switch {
	case len(d) >= 9 && d[0] == msgData:
		off, data := int64(binary.BigEndian.Uint64(d[1:9])), d[9:]
		switch {
		case pp.finRcvd:
			fault = "data after half-close"
		case off != pp.rcvd:
			fault = fmt.Sprintf("data at offset %d, expected %d: a message was lost", off, pp.rcvd)
		case pp.rcvd+int64(len(data))-pp.consumed > pp.window:
			fault = "data beyond the window"
		default:
			pp.chunks = append(pp.chunks, data)
			pp.rcvd += int64(len(data))
			signal(pp.readable)
		}
	case len(d) >= 18 && d[0] == msgState:
		if c := int64(binary.BigEndian.Uint64(d[1:9])); c > pp.peerConsumed {
			pp.peerConsumed = c
			signal(pp.writable)
		}
		if d[9] == 1 && !pp.finRcvd {
			if final := int64(binary.BigEndian.Uint64(d[10:18])); final != pp.rcvd {
				fault = fmt.Sprintf("half-close after %d bytes, %d arrived: a message was lost", final, pp.rcvd)
			} else {
				pp.finRcvd = true
				signal(pp.readable)
			}
		}
	case len(d) >= 1 && d[0] == msgReset:
		pp.endLocked(relay.ErrReset)
		pp.mu.Unlock()
		return
	default:
		fault = "unknown message"
	}
	pp.mu.Unlock()
	if fault != "" {
		pp.p.log.Warn("relay pipe reset", "pipe", pp.id, "peer", pp.peerNode, "reason", fault)
		pp.reset(fmt.Errorf("%w: %s", ErrBadMessage, fault), true)
	}
}

// stateLocked builds a state message and records it as sent. Called with
// pp.mu held.
func (pp *pipe) stateLocked() []byte {
	b := make([]byte, 18)
	b[0] = msgState
	binary.BigEndian.PutUint64(b[1:9], uint64(pp.consumed))
	if pp.finSent {
		b[9] = 1
		binary.BigEndian.PutUint64(b[10:18], uint64(pp.sent))
	}
	pp.advertised = pp.consumed
	pp.lastSent = time.Now()
	return b
}

// send publishes a message to the other end; a failure resets the pipe.
func (pp *pipe) send(subj string, msg []byte) error {
	if err := pp.p.node.nc.Publish(subj, msg); err != nil {
		err = fmt.Errorf("%w: %w", relay.ErrReset, err)
		pp.reset(err, false)
		return err
	}
	return nil
}

// Read implements relay.Stream. It returns io.EOF once the other end
// half-closed and everything before was read.
func (pp *pipe) Read(b []byte) (int, error) {
	for {
		pp.mu.Lock()
		// After the other end's FIN, what it sent is delivered even if
		// the pipe ends meanwhile (its node left after half-closing).
		if pp.err != nil && !pp.finRcvd {
			err := pp.err
			pp.mu.Unlock()
			return 0, err
		}
		if len(pp.chunks) > 0 {
			n := 0
			for n < len(b) && len(pp.chunks) > 0 {
				c := copy(b[n:], pp.chunks[0])
				n += c
				if c == len(pp.chunks[0]) {
					pp.chunks[0] = nil
					pp.chunks = pp.chunks[1:]
				} else {
					pp.chunks[0] = pp.chunks[0][c:]
				}
			}
			pp.consumed += int64(n)
			var msg []byte
			subj := pp.peerSubj
			if !pp.finRcvd && subj != "" && pp.consumed-pp.advertised >= pp.window/4 {
				msg = pp.stateLocked()
			}
			pp.mu.Unlock()
			if msg != nil {
				_ = pp.send(subj, msg)
			}
			return n, nil
		}
		if pp.finRcvd {
			pp.mu.Unlock()
			return 0, io.EOF
		}
		pp.mu.Unlock()
		select {
		case <-pp.readable:
		case <-pp.done:
		case <-pp.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write implements relay.Stream: it sends b in chunks as the other end's
// window allows, blocking while it is full.
func (pp *pipe) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		pp.mu.Lock()
		if pp.err != nil {
			err := pp.err
			pp.mu.Unlock()
			return total, err
		}
		if pp.finSent {
			pp.mu.Unlock()
			return total, net.ErrClosed
		}
		avail := pp.peerConsumed + pp.window - pp.sent
		if avail <= 0 || pp.peerSubj == "" {
			pp.mu.Unlock()
			select {
			case <-pp.writable:
			case <-pp.done:
			case <-pp.wd.wait():
				return total, os.ErrDeadlineExceeded
			}
			continue
		}
		n := int(min(int64(len(b)), avail, int64(pp.chunk)))
		off, subj := pp.sent, pp.peerSubj
		pp.mu.Unlock()

		pp.wbuf = append(pp.wbuf[:0], msgData)
		pp.wbuf = binary.BigEndian.AppendUint64(pp.wbuf, uint64(off))
		pp.wbuf = append(pp.wbuf, b[:n]...)
		if err := pp.send(subj, pp.wbuf); err != nil {
			return total, err
		}
		pp.mu.Lock()
		pp.sent += int64(n)
		pp.lastSent = time.Now()
		pp.mu.Unlock()
		b = b[n:]
		total += n
	}
	return total, nil
}

// CloseWrite implements relay.Stream: the other end reads EOF after what
// was written.
func (pp *pipe) CloseWrite() error {
	pp.mu.Lock()
	if pp.err != nil {
		err := pp.err
		pp.mu.Unlock()
		return err
	}
	if pp.finSent {
		pp.mu.Unlock()
		return nil
	}
	pp.finSent = true
	subj := pp.peerSubj
	msg := pp.stateLocked()
	pp.mu.Unlock()
	if subj == "" {
		return nil // sent with the first keepalive once connected
	}
	return pp.send(subj, msg)
}

// Reset implements relay.Stream: both ends are reset.
func (pp *pipe) Reset() error {
	pp.reset(relay.ErrReset, true)
	return nil
}

// reset ends the pipe with err, telling the other end when notify is set.
func (pp *pipe) reset(err error, notify bool) {
	pp.mu.Lock()
	if pp.err != nil {
		pp.mu.Unlock()
		return
	}
	pp.endLocked(err)
	subj := pp.peerSubj
	pp.mu.Unlock()
	if notify && subj != "" {
		_ = pp.p.node.nc.Publish(subj, []byte{msgReset})
	}
}

// endLocked marks the pipe ended. Called with pp.mu held.
func (pp *pipe) endLocked(err error) {
	if pp.err == nil {
		pp.err = err
		close(pp.done)
	}
}

// Done implements relay.Stream: closed when either end reset the pipe,
// the other node is gone, or the pair ended.
func (pp *pipe) Done() <-chan struct{} { return pp.done }

// PeerClosed reports whether the other end half-closed: everything it sent
// has arrived.
func (pp *pipe) PeerClosed() bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.finRcvd
}

// SetReadDeadline implements relay.Stream.
func (pp *pipe) SetReadDeadline(t time.Time) error { pp.rd.set(t); return nil }

// SetWriteDeadline implements relay.Stream.
func (pp *pipe) SetWriteDeadline(t time.Time) error { pp.wd.set(t); return nil }

// keepalive sends a state message when nothing was sent for interval, and
// resets a pipe whose other end was silent for silence. Called by the
// Pairer's sweeper.
func (pp *pipe) keepalive(now time.Time, interval, silence time.Duration) {
	pp.mu.Lock()
	if pp.err != nil || pp.peerSubj == "" {
		pp.mu.Unlock()
		return
	}
	if now.Sub(pp.lastHeard) > silence {
		pp.mu.Unlock()
		pp.reset(fmt.Errorf("%w: %w: nothing heard for %s", relay.ErrReset, ErrPeerGone, silence), true)
		return
	}
	var msg []byte
	if now.Sub(pp.lastSent) >= interval {
		msg = pp.stateLocked()
	}
	subj := pp.peerSubj
	pp.mu.Unlock()
	if msg != nil {
		_ = pp.send(subj, msg)
	}
}

// close unsubscribes the pipe once its pair has ended.
func (pp *pipe) close() {
	pp.p.mu.Lock()
	delete(pp.p.pipes, pp.id)
	pp.p.mu.Unlock()
	_ = pp.sub.Unsubscribe()
	pp.mu.Lock()
	pp.endLocked(net.ErrClosed)
	pp.chunks = nil
	pp.mu.Unlock()
	pp.rd.set(time.Time{})
	pp.wd.set(time.Time{})
}

// deadline is a settable deadline whose wait channel closes when it
// passes, as in net.Pipe.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
