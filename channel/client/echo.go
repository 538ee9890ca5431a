package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/signalchannel/signalchannel/channel"
)

// Echo joins the echo namespace and returns the member, after the server
// accepted it.
func (s *Session) Echo(ctx context.Context, namespace string) (*Echo, error) {
	st, reply, err := s.Open(ctx, channel.Header{Endpoint: channel.EndpointEcho, Namespace: namespace})
	if err != nil {
		return nil, err
	}
	max := reply.MaxFrame
	if max <= 0 {
		max = channel.DefaultMaxFrame
	}
	return &Echo{st: st, max: max, r: bufio.NewReaderSize(st, echoReadBuffer)}, nil
}

// echoReadBuffer buffers a member's reads: a frame's prefix and body in one
// stream read instead of two (each yamux read takes locks and may send a
// window update).
const echoReadBuffer = 16 << 10

// Echo is a member of an echo namespace (PROTOCOL.md section 3). Send and
// Recv may be called from two goroutines at once.
type Echo struct {
	st  *Stream
	r   *bufio.Reader
	max int
	mu  sync.Mutex
	buf []byte

	slab []byte // Recv's: what is left of the slab small frames come from
}

// MaxFrame is the largest frame the server accepts.
func (e *Echo) MaxFrame() int { return e.max }

// Send writes one frame. Every member, this one included, receives it whole.
// A frame longer than MaxFrame is refused here with ErrFrameTooLarge.
func (e *Echo) Send(p []byte) error {
	if len(p) > e.max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", channel.ErrFrameTooLarge, len(p), e.max)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = channel.AppendFrame(e.buf[:0], p)
	_, err := e.st.Write(e.buf)
	if cap(e.buf) > 4<<10 {
		e.buf = nil
	}
	return err
}

// Recv returns the next frame of the namespace. It returns io.EOF after
// Close, once the server has sent what was queued, ErrStreamReset if the
// server dropped this member (too slow, or a frame too large), and the
// *Error of an error record (code `limit`: a frame past the member's
// publish budget was refused and the member has left the namespace).
func (e *Echo) Recv() ([]byte, error) {
	// The prefix is peeked rather than read into an array: an array passed
	// to a Reader escapes, which would cost an allocation per frame.
	p, err := e.r.Peek(channel.FrameHeaderSize)
	if err != nil {
		if err == io.EOF && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(p)
	e.r.Discard(channel.FrameHeaderSize)
	if n == channel.ErrorRecordPrefix {
		return nil, channel.ReadErrorRecord(e.r)
	}
	if uint64(n) > uint64(e.max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", channel.ErrFrameTooLarge, n, e.max)
	}
	buf := e.alloc(int(n))
	if _, err := io.ReadFull(e.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// alloc returns room for a frame of n bytes. Small frames are carved from a
// slab, one allocation for many frames: a member receiving a stream of
// them would otherwise give the garbage collector a small object per
// frame. Each frame is capped at its length, so appending to it copies;
// a frame kept alive keeps its slab (recvSlab bytes) alive.
func (e *Echo) alloc(n int) []byte {
	if n == 0 || n > slabFrame {
		return make([]byte, n)
	}
	if len(e.slab) < n {
		e.slab = make([]byte, recvSlab)
	}
	b := e.slab[:n:n]
	e.slab = e.slab[n:]
	return b
}

// Frames of up to slabFrame bytes are carved from slabs of recvSlab bytes.
const (
	recvSlab  = 2 << 10
	slabFrame = 128
)

// Close leaves the namespace gracefully: the server stops sending new frames,
// delivers what it had queued, then ends the stream (Recv returns io.EOF).
func (e *Echo) Close() error { return e.st.Close() }

// Stream returns the underlying stream.
func (e *Echo) Stream() *Stream { return e.st }
