package baseline

import "errors"

// Errors of the baseline servers and clients.
var (
	// ErrClosed is returned by Serve after Close.
	ErrClosed = errors.New("baseline: server closed")
	// ErrBadToken is a splice token line that is empty or too long.
	ErrBadToken = errors.New("baseline: bad splice token")
	// ErrNoPartner is a splice connection that found no partner in time.
	ErrNoPartner = errors.New("baseline: no splice partner in time")
	// ErrBadFrame is a broadcast message that does not hold whole
	// length-prefixed frames.
	ErrBadFrame = errors.New("baseline: malformed broadcast frame")
	// ErrSlowClient is the reason a broadcast client whose queue overflowed
	// was dropped.
	ErrSlowClient = errors.New("baseline: client too slow, dropped")
)
