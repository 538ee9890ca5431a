package relay

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned by Pair.
var (
	// ErrConflict: a stream with the same key is already waiting, or the key
	// belongs to an open pair (either token order). Protocol code "conflict".
	ErrConflict = errors.New("relay: tokens already waiting or open")
	// ErrTimeout: no partner arrived within Config.PairTimeout. Protocol code
	// "timeout".
	ErrTimeout = errors.New("relay: no partner within the pairing timeout")
	// ErrLimit is wrapped by a *LimitError when MaxWaiting or MaxPairs is
	// reached. Protocol code "limit".
	ErrLimit = errors.New("relay: limit reached")
	// ErrBadKey: the key's Local and Remote tokens are equal, so it can never
	// pair. Protocol code "bad_token".
	ErrBadKey = errors.New("relay: local and remote tokens are equal")
	// ErrClosed: the Pairer was closed. Also ends the links it had open.
	ErrClosed = errors.New("relay: pairer closed")
)

// Errors returned by Pair and Run that tell why a stream or a link ended.
var (
	// ErrReset: a stream was reset, by either side, or its session ended.
	// Wraps the I/O error when there was one.
	ErrReset = errors.New("relay: stream reset")
	// ErrCanceled: the context passed to Pair or Run ended. Wraps the
	// context's cause, so errors.Is(err, context.Canceled) also holds.
	ErrCanceled = errors.New("relay: canceled")
)

// Errors returned by Run that tell which cap of Limits ended a link.
var (
	// ErrBytesLimit: a direction carried more than Limits.Bytes.
	ErrBytesLimit = errors.New("relay: byte limit reached")
	// ErrLifetime: the pair was open for Limits.Lifetime.
	ErrLifetime = errors.New("relay: lifetime limit reached")
	// ErrIdle: no byte moved, either way, for Limits.Idle.
	ErrIdle = errors.New("relay: idle timeout")
)

// ErrNotSide is returned by Run for a stream that is not one of the link's
// two, or whose Run was already called.
var ErrNotSide = errors.New("relay: not a side of this link, or already running")

// LimitError reports which cap refused a stream. It wraps ErrLimit; its
// message names the limit and its value, as PROTOCOL.md asks of "limit".
type LimitError struct {
	Limit string // "open pairs" or "waiting streams"
	Value int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("relay: %s limit (%d) reached", e.Limit, e.Value)
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }

func resetError(err error) error {
	if err == nil || errors.Is(err, ErrReset) {
		return ErrReset
	}
	return fmt.Errorf("%w: %w", ErrReset, err)
}

func canceledError(ctx context.Context) error {
	return fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
}
