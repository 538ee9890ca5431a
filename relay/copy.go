package relay

import (
	"io"
	"time"
)

// maxBurst caps the pacing burst. It is the copy buffer's size from before
// burst buffers, so that pacing sends as it did.
const maxBurst = 32 << 10

// copy moves bytes from src to dst until EOF, which it passes on as
// CloseWrite, or until the link ends. Errors end the link; copy returns
// nothing. It enforces the byte cap and paces to BytesPerSecond.
func (l *Link) copy(src, dst Stream, d *direction) {
	// A paced direction reads at most its burst at a time and spends most
	// of its time waiting for tokens: it keeps to the small buffer rather
	// than hold a big one it would barely fill.
	r := newBurstReader(src, d, l.lim.BytesPerSecond == 0)
	defer r.close()

	maxRead := bigBufSize
	var pace *pacer
	if rate := l.lim.BytesPerSecond; rate > 0 {
		pace = &pacer{bucket: newBucket(rate, maxBurst)}
		defer pace.stop()
		maxRead = pace.burst
	}
	for {
		p, err := r.read(l.readSize(d, maxRead))
		if len(p) > 0 && !l.deliver(dst, d, p, pace) {
			return
		}
		if err != nil {
			l.readEnded(src, dst, err)
			return
		}
	}
}

// readSize bounds the next read of d to size and to one byte past the
// cap, so that exactly Limits.Bytes and then EOF is a clean end and one
// more is over.
func (l *Link) readSize(d *direction, size int) int {
	if l.lim.Bytes == 0 {
		return size
	}
	return int(min(int64(size), l.lim.Bytes-d.n.Load()+1))
}

// deliver writes p, read for d, to dst, paced, and reports whether the
// copy goes on. A p that crosses the cap is cut at it and ends the link.
func (l *Link) deliver(dst Stream, d *direction, p []byte, pace *pacer) bool {
	l.touch()
	limit := l.lim.Bytes
	over := limit > 0 && d.n.Load()+int64(len(p)) > limit
	if over {
		p = p[:limit-d.n.Load()]
	}
	if len(p) > 0 {
		if pace != nil && !l.wait(pace.take(time.Now(), len(p)), &pace.timer) {
			return false
		}
		if _, err := dst.Write(p); err != nil {
			l.end(resetError(err))
			return false
		}
		d.n.Add(int64(len(p)))
		if l.total != nil {
			l.total.Add(int64(len(p)))
		}
		l.touch()
	}
	if over {
		l.end(ErrBytesLimit)
		return false
	}
	return true
}

// readEnded handles the error that ended reading src: EOF is passed on to
// dst as CloseWrite, anything else ends the link.
func (l *Link) readEnded(src, dst Stream, err error) {
	switch {
	case err != io.EOF:
		l.end(resetError(err))
	case isDone(src) && !src.PeerClosed():
		// The session ended; that is no half-close.
		l.end(ErrReset)
	default:
		if cerr := dst.CloseWrite(); cerr != nil {
			l.end(resetError(cerr))
			return
		}
		if l.halfClosed.Add(1) == 2 {
			l.end(nil)
		}
	}
}

// pacer is a direction's token bucket and the timer it waits with.
type pacer struct {
	*bucket
	timer *time.Timer
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}

// wait sleeps for d, or until the link ends (then it returns false).
func (l *Link) wait(d time.Duration, t **time.Timer) bool {
	if d <= 0 {
		return true
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-l.done:
		return false
	}
}

// bucket is a token bucket for one direction, in bytes. take may run it
// into debt; the debt is the time to wait before sending.
type bucket struct {
	rate   float64 // bytes per second
	burst  int
	tokens float64
	last   time.Time
}

// newBucket returns a full bucket with a burst of 1/16 s of rate, at least
// one byte and at most size (the copy buffer).
func newBucket(rate int64, size int) *bucket {
	burst := int(min(max(rate/16, 1), int64(size)))
	return &bucket{rate: float64(rate), burst: burst, tokens: float64(burst), last: time.Now()}
}

// take spends n tokens at now and returns how long to wait before sending
// them.
func (b *bucket) take(now time.Time, n int) time.Duration {
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*b.rate, float64(b.burst))
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
