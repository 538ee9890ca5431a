package relay

import (
	"errors"
	"os"
	"sync"
	"time"
)

// A direction waits for bytes with a small buffer and moves them with a big
// one only while they keep coming. Big reads make big yamux frames and
// WebSocket messages, which is most of the relay's throughput (one pair:
// about 0.48 of a TCP splice with 32 KiB reads, 0.53 to 0.59 with 256 KiB);
// but an open pair is idle most of its life, and two big buffers per pair
// held for all of it would cost 512 KiB a pair.
const (
	// smallBufSize is the buffer a direction holds for its whole life. A
	// read that fills it is taken as the start of a burst.
	smallBufSize = 16 << 10
	// bigBufSize is the buffer of a burst: one yamux stream window, all a
	// peer can have in flight.
	bigBufSize = 256 << 10
	// bigIdle is about how long a read may wait for bytes while it holds
	// the big buffer: a read blocks with its buffer, so a burst that ends
	// on a full read would otherwise keep the big buffer until the next
	// byte, perhaps for the rest of the pair's life.
	bigIdle = 10 * time.Millisecond
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
)

// burstReader reads one direction's stream, choosing the buffer for each
// read from how the last one went: a full small read starts a burst, a big
// read that got less than a small buffer's worth ends it, and so does a big
// read that waited bigIdle for nothing. A burst costs one Get and one Put
// however many reads it takes, and messages smaller than the small buffer
// never touch the pool.
//
// While it holds the big buffer, burstReader owns the stream's read
// deadline.
type burstReader struct {
	src   Stream
	d     *direction
	grow  bool // may take the big buffer
	small *[]byte
	big   *[]byte   // during a burst, else nil
	until time.Time // src's read deadline during a burst
	last  int       // bytes the last read returned
}

// newBurstReader returns a reader of src for d. Unless grow is set it
// keeps to the small buffer.
func newBurstReader(src Stream, d *direction, grow bool) *burstReader {
	return &burstReader{src: src, d: d, grow: grow, small: smallPool.Get().(*[]byte)}
}

// read reads up to size bytes (size > 0) and returns them; they are valid
// until the next read or close.
func (r *burstReader) read(size int) ([]byte, error) {
	for {
		r.resize()
		r.armDeadline()
		p := *r.small
		if r.big != nil {
			p = *r.big
		}
		p = p[:min(len(p), size)]
		n, err := r.src.Read(p)
		r.last = n
		if r.big != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Nothing came for bigIdle: the burst is over, and the
			// next read waits with the small buffer.
			r.last = 0
			if n == 0 {
				continue
			}
			err = nil
		}
		return p[:n], err
	}
}

// resize takes or gives back the big buffer before a read.
func (r *burstReader) resize() {
	switch {
	case r.big == nil && r.grow && r.last == smallBufSize:
		r.big = bigPool.Get().(*[]byte)
		r.d.bigHeld.Store(true)
		r.d.bursts.Add(1)
	case r.big != nil && r.last < smallBufSize:
		r.endBurst()
	}
}

// armDeadline bounds the next read's wait during a burst. It moves the
// deadline only when half of bigIdle is gone, not before every read.
func (r *burstReader) armDeadline() {
	if r.big == nil {
		return
	}
	now := time.Now()
	if r.until.Sub(now) >= bigIdle/2 {
		return
	}
	r.until = now.Add(bigIdle)
	if r.src.SetReadDeadline(r.until) != nil {
		// The wait cannot be bounded: read into the small buffer.
		r.endBurst()
	}
}

// endBurst gives back the big buffer and clears the read deadline.
func (r *burstReader) endBurst() {
	bigPool.Put(r.big)
	r.big = nil
	r.d.bigHeld.Store(false)
	if !r.until.IsZero() {
		r.until = time.Time{}
		_ = r.src.SetReadDeadline(time.Time{})
	}
}

// close gives back both buffers.
func (r *burstReader) close() {
	if r.big != nil {
		r.endBurst()
	}
	smallPool.Put(r.small)
	r.small = nil
}
