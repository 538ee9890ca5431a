package relay

import (
	"io"
	"sync"
	"time"
)

// bufSize is the copy buffer: an eighth of a yamux stream window (256 KiB),
// so a writer keeps several chunks in flight without holding much memory
// per idle pair.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copy moves bytes from src to dst until EOF, which it passes on as
// CloseWrite, or until the link ends. Errors end the link; copy returns
// nothing. It enforces the byte cap and paces to BytesPerSecond.
func (l *Link) copy(src, dst Stream, d *direction) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	var pace *bucket
	var timer *time.Timer
	if r := l.lim.BytesPerSecond; r > 0 {
		pace = newBucket(r, len(buf))
		buf = buf[:pace.burst]
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
	}
	limit := l.lim.Bytes

	for {
		p := buf
		if limit > 0 {
			// Read at most one byte past the cap: exactly limit bytes and
			// then EOF is a clean end, one more is over.
			if left := limit - d.n.Load() + 1; left < int64(len(p)) {
				p = p[:left]
			}
		}
		n, err := src.Read(p)
		if n > 0 {
			l.touch()
			over := limit > 0 && d.n.Load()+int64(n) > limit
			if over {
				n = int(limit - d.n.Load())
			}
			if n > 0 {
				if pace != nil && !l.wait(pace.take(time.Now(), n), &timer) {
					return
				}
				if _, werr := dst.Write(p[:n]); werr != nil {
					l.end(resetError(werr))
					return
				}
				d.n.Add(int64(n))
				if l.total != nil {
					l.total.Add(int64(n))
				}
				l.touch()
			}
			if over {
				l.end(ErrBytesLimit)
				return
			}
		}
		switch {
		case err == io.EOF:
			if isDone(src) && !peerClosed(src) {
				// The session ended; that is no half-close.
				l.end(ErrReset)
				return
			}
			if cerr := dst.CloseWrite(); cerr != nil {
				l.end(resetError(cerr))
				return
			}
			if l.halfClosed.Add(1) == 2 {
				l.end(nil)
			}
			return
		case err != nil:
			l.end(resetError(err))
			return
		}
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
