package model

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Defaults of Options, those of PROTOCOL.md section 4.
const (
	DefaultMaxAge        = 60 * time.Second
	DefaultMaxSkew       = 30 * time.Second
	DefaultSweepInterval = time.Second
	DefaultMaxKeyBytes   = 256
	DefaultMaxValueBytes = 8 << 10
	DefaultMaxKeys       = 10000
	DefaultMaxLineBytes  = 16 << 10
	// MaxIDBytes is the longest replica id Options.ID may be.
	MaxIDBytes = 256
	// minLineBytes is the smallest line limit Validate allows: a digest with
	// a long id must fit.
	minLineBytes = 2 * MaxIDBytes
)

// Options configure a Model. The zero value of every field means its default.
type Options struct {
	// ID is the replica id, the source of local writes. Default: 32 random
	// upper-case hex digits. At most MaxIDBytes bytes of UTF-8.
	ID string
	// MaxAge is how long a record lives after its own timestamp. Remote
	// updates as old or older are ignored. Default 60 s.
	MaxAge time.Duration
	// MaxSkew is how far ahead of the local clock a remote timestamp may be
	// before the update is ignored. Default 30 s.
	MaxSkew time.Duration
	// SweepInterval is how often the sweeper purges expired records.
	// Default 1 s.
	SweepInterval time.Duration
	// SilentExpiry, when true, purges expired live records without issuing
	// deletions, for a replica that relies on another (a server) to announce
	// expiry. Default false: expiry issues a deletion, as PROTOCOL.md asks of
	// the server.
	SilentExpiry bool

	// MaxKeyBytes is the longest key, in bytes of UTF-8. Default 256.
	MaxKeyBytes int
	// MaxValueBytes is the largest value, in bytes of compact JSON.
	// Default 8192.
	MaxValueBytes int
	// MaxKeys is the most live keys (deletions do not count). Default 10000.
	MaxKeys int
	// MaxLineBytes is the longest line Replicate reads, newline included,
	// and the longest line any stored update may encode to. Default 16384.
	MaxLineBytes int

	// Now returns the current time. Default time.Now. Tests set it to drive
	// expiry deterministically.
	Now func() time.Time
}

// DefaultOptions returns Options with every default filled in, except ID,
// which New draws at random when empty.
func DefaultOptions() Options {
	return Options{
		MaxAge:        DefaultMaxAge,
		MaxSkew:       DefaultMaxSkew,
		SweepInterval: DefaultSweepInterval,
		MaxKeyBytes:   DefaultMaxKeyBytes,
		MaxValueBytes: DefaultMaxValueBytes,
		MaxKeys:       DefaultMaxKeys,
		MaxLineBytes:  DefaultMaxLineBytes,
		Now:           time.Now,
	}
}

// errOptions is wrapped by every error Validate returns.
var errOptions = errors.New("model: invalid options")

// Validate reports the first invalid field: a negative duration or limit, an
// id that is too long or not UTF-8, a line limit below 512 bytes, or a
// duration shorter than a millisecond.
func (o Options) Validate() error {
	if len(o.ID) > MaxIDBytes || !utf8.ValidString(o.ID) {
		return fmt.Errorf("%w: ID must be at most %d bytes of UTF-8", errOptions, MaxIDBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxAge", o.MaxAge}, {"MaxSkew", o.MaxSkew}, {"SweepInterval", o.SweepInterval}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Millisecond) {
			return fmt.Errorf("%w: %s must be 0 (default) or at least 1ms, not %v", errOptions, d.name, d.v)
		}
	}
	for _, l := range []struct {
		name string
		v    int
	}{{"MaxKeyBytes", o.MaxKeyBytes}, {"MaxValueBytes", o.MaxValueBytes}, {"MaxKeys", o.MaxKeys}, {"MaxLineBytes", o.MaxLineBytes}} {
		if l.v < 0 {
			return fmt.Errorf("%w: %s must not be negative, not %d", errOptions, l.name, l.v)
		}
	}
	if o.MaxLineBytes > 0 && o.MaxLineBytes < minLineBytes {
		return fmt.Errorf("%w: MaxLineBytes must be at least %d, not %d", errOptions, minLineBytes, o.MaxLineBytes)
	}
	return nil
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.MaxAge == 0 {
		o.MaxAge = d.MaxAge
	}
	if o.MaxSkew == 0 {
		o.MaxSkew = d.MaxSkew
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = d.SweepInterval
	}
	if o.MaxKeyBytes == 0 {
		o.MaxKeyBytes = d.MaxKeyBytes
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = d.MaxValueBytes
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = d.MaxKeys
	}
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = d.MaxLineBytes
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	return o
}
