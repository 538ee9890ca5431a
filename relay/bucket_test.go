package relay

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	b := newBucket(1600, maxBurst) // burst 100 bytes
	if b.burst != 100 {
		t.Fatalf("burst %d, want 100", b.burst)
	}
	now := b.last
	if d := b.take(now, 100); d != 0 {
		t.Fatalf("a full bucket made 100 bytes wait %v", d)
	}
	if d := b.take(now, 160); d != 100*time.Millisecond {
		t.Fatalf("160 bytes over an empty bucket wait %v, want 100ms", d)
	}
	// After the wait the debt is paid; an hour idle refills only the burst.
	now = now.Add(100 * time.Millisecond)
	if d := b.take(now, 0); d != 0 {
		t.Fatalf("debt left after waiting: %v", d)
	}
	now = now.Add(time.Hour)
	if d := b.take(now, 116); d != 10*time.Millisecond {
		t.Fatalf("burst not capped: wait %v, want 10ms", d)
	}

	for _, c := range []struct {
		rate  int64
		burst int
	}{{1, 1}, {15, 1}, {16 << 20, maxBurst}} {
		if got := newBucket(c.rate, maxBurst).burst; got != c.burst {
			t.Errorf("rate %d: burst %d, want %d", c.rate, got, c.burst)
		}
	}
}
