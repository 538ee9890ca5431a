package endpoints

import (
	"testing"
	"time"
)

// The budget holds exactly its burst, refuses one byte more without
// taking anything, fills at its rate up to the burst, and ignores a clock
// that goes back.
func TestBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration // since t0
		n    int
		want bool
	}{
		{0, 1000, true}, // the whole burst
		{0, 1, false},   // one byte more
		{0, 0, true},
		{10 * time.Millisecond, 1, true},      // 100 bytes/s: 1 byte in 10 ms
		{10 * time.Millisecond, 1, false},     // and no more
		{-time.Second, 1, false},              // a clock going back adds nothing
		{time.Hour, 1000, true},               // filled up to the burst only
		{time.Hour, 1, false},                 //
		{time.Hour + time.Second, 101, false}, // 100 bytes in a second
		{time.Hour + time.Second, 100, true},
	}
	b := newBudget(100, 1000, t0)
	for i, s := range steps {
		if got := b.spend(s.n, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: spend(%d) at %v = %v, want %v", i, s.n, s.at, got, s.want)
		}
	}
	var off budget
	if off.on() || !off.spend(1<<30, t0) {
		t.Fatal("the zero budget limits")
	}
}
