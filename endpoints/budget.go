package endpoints

import "time"

// budget is a token bucket of bytes: it holds at most burst bytes, starts
// full and fills at rate bytes per second. An echo member's reading side
// owns it and uses it from one goroutine at a time, so it needs no lock.
// Its zero value is off: it allows everything.
type budget struct {
	rate, burst float64 // rate 0: off
	tokens      float64
	last        time.Time
}

func newBudget(rate, burst int, now time.Time) budget {
	return budget{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// on reports whether the budget limits anything.
func (b *budget) on() bool { return b.rate > 0 }

// spend takes n bytes at time now and reports whether the budget held
// them; a refused spend takes nothing. Times that go backwards add nothing.
func (b *budget) spend(n int, now time.Time) bool {
	if !b.on() {
		return true
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}
