package relay

import (
	"fmt"
	"time"
)

// Config configures a Pairer. Zero fields take their defaults.
type Config struct {
	// PairTimeout is how long a stream waits for its partner before Pair
	// returns ErrTimeout. Default 30s.
	PairTimeout time.Duration
	// MaxWaiting caps the streams waiting for a partner at once; Pair
	// refuses more with a *LimitError. Default 10 000.
	MaxWaiting int
	// MaxPairs caps the pairs open at once; the stream that would open one
	// more is refused with a *LimitError and its partner keeps waiting.
	// Default 10 000.
	MaxPairs int
	// Limits are the caps of every pair. Default: no caps.
	Limits Limits
}

// Limits caps one pair. Every field defaults to 0, which means no cap.
type Limits struct {
	// Bytes caps the bytes copied in each direction. Exactly Bytes pass;
	// one more resets both streams and the link ends with ErrBytesLimit.
	Bytes int64
	// Lifetime caps how long a pair stays open, counted from pairing; then
	// both streams are reset and the link ends with ErrLifetime.
	Lifetime time.Duration
	// Idle ends a pair through which no byte moved, either way, for this
	// long: both streams are reset and the link ends with ErrIdle.
	Idle time.Duration
	// BytesPerSecond paces the copy in each direction (a token bucket with a
	// burst of 1/16 s, at most 32 KiB).
	BytesPerSecond int64
}

// Defaults.
const (
	DefaultPairTimeout = 30 * time.Second
	DefaultMaxWaiting  = 10000
	DefaultMaxPairs    = 10000
)

// DefaultConfig returns the configuration that the zero Config stands for.
func DefaultConfig() Config {
	return Config{
		PairTimeout: DefaultPairTimeout,
		MaxWaiting:  DefaultMaxWaiting,
		MaxPairs:    DefaultMaxPairs,
	}
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PairTimeout == 0 {
		c.PairTimeout = d.PairTimeout
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = d.MaxWaiting
	}
	if c.MaxPairs == 0 {
		c.MaxPairs = d.MaxPairs
	}
	return c
}

// Validate reports the first field that cannot be used: a negative value
// anywhere.
func (c Config) Validate() error {
	switch {
	case c.PairTimeout < 0:
		return fmt.Errorf("relay: PairTimeout is negative (%v)", c.PairTimeout)
	case c.MaxWaiting < 0:
		return fmt.Errorf("relay: MaxWaiting is negative (%d)", c.MaxWaiting)
	case c.MaxPairs < 0:
		return fmt.Errorf("relay: MaxPairs is negative (%d)", c.MaxPairs)
	}
	return c.Limits.Validate()
}

// Validate reports a negative cap.
func (l Limits) Validate() error {
	switch {
	case l.Bytes < 0:
		return fmt.Errorf("relay: Limits.Bytes is negative (%d)", l.Bytes)
	case l.Lifetime < 0:
		return fmt.Errorf("relay: Limits.Lifetime is negative (%v)", l.Lifetime)
	case l.Idle < 0:
		return fmt.Errorf("relay: Limits.Idle is negative (%v)", l.Idle)
	case l.BytesPerSecond < 0:
		return fmt.Errorf("relay: Limits.BytesPerSecond is negative (%d)", l.BytesPerSecond)
	}
	return nil
}
