package endpoints

import (
	"errors"
	"fmt"
)

// Sentinel errors of the endpoints.
var (
	// ErrLimit marks a server limit that would be exceeded; the wrapping
	// error's message names the limit and its value and is sent to the
	// client with the `limit` code.
	ErrLimit = errors.New("endpoints: limit reached")
	// ErrSlowMember marks an echo member dropped because its queue was full.
	ErrSlowMember = errors.New("endpoints: member queue overflow")
)

// limitError is an ErrLimit whose message is fit for the client.
type limitError struct{ msg string }

func (e *limitError) Error() string        { return e.msg }
func (e *limitError) Is(target error) bool { return target == ErrLimit }

// limitf returns an error that is ErrLimit, with a message naming the limit
// and its value.
func limitf(format string, args ...any) error {
	return &limitError{msg: fmt.Sprintf(format, args...)}
}
