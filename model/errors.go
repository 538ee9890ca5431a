package model

import (
	"errors"
	"fmt"
)

// The error codes of PROTOCOL.md section 4, sent in an error object
// {"error":{"code":..,"message":..}}.
const (
	// CodeLimit: a line breaks a limit (key, value, key count, line length).
	CodeLimit = "limit"
	// CodeBadLine: a line is not JSON or not a protocol message.
	CodeBadLine = "bad_line"
	// CodeForbidden: a stream with an owner wrote a key, or as a source,
	// that is not its owner's (ReplicateOptions.Owner).
	CodeForbidden = "forbidden"
)

// Sentinel errors. A ProtocolError wraps one of the specific ones, and
// errors.Is(err, ErrLimit) or errors.Is(err, ErrBadLine) tests its code.
var (
	// ErrLimit matches every ProtocolError with code "limit".
	ErrLimit = errors.New("model: limit exceeded")
	// ErrBadLine matches every ProtocolError with code "bad_line".
	ErrBadLine = errors.New("model: bad line")

	// ErrKeyTooLong: a key is longer than Options.MaxKeyBytes.
	ErrKeyTooLong = errors.New("model: key too long")
	// ErrValueTooLarge: a value, as JSON, is larger than Options.MaxValueBytes.
	ErrValueTooLarge = errors.New("model: value too large")
	// ErrTooManyKeys: a write would make more than Options.MaxKeys live keys.
	ErrTooManyKeys = errors.New("model: too many keys")
	// ErrLineTooLong: a line is longer than Options.MaxLineBytes.
	ErrLineTooLong = errors.New("model: line too long")

	// ErrInvalidJSON: a line, or a value given to Set or Apply, is not JSON.
	ErrInvalidJSON = errors.New("model: invalid JSON")
	// ErrInvalidMessage: a line is JSON but not a protocol message.
	ErrInvalidMessage = errors.New("model: invalid message")
	// ErrInvalidKey: a key or source is not valid UTF-8.
	ErrInvalidKey = errors.New("model: invalid key")
	// ErrForbidden: a stream with an owner wrote a key its owner does not
	// own, or used a source that wrote another peer's keys.
	ErrForbidden = errors.New("model: forbidden")

	// ErrClosed is returned by writes, Subscription.Err and Replicate once the
	// Model is closed.
	ErrClosed = errors.New("model: closed")
	// ErrSlowPeer ends a Replicate stream whose queue of outgoing updates
	// overflowed because the peer did not read fast enough.
	ErrSlowPeer = errors.New("model: peer too slow, update queue overflowed")
	// ErrSlowSubscriber is reported by Subscription.Err when the subscriber
	// did not keep up and its buffer overflowed.
	ErrSlowSubscriber = errors.New("model: subscriber too slow, buffer overflowed")
)

// ProtocolError is a protocol violation: a code from PROTOCOL.md section 4
// ("limit" or "bad_line", or any code a peer sent) and a message a person can
// act on, such as "value larger than 8192 bytes". It is what Replicate writes
// as an error object, what it returns after writing one, and what it returns
// when the peer sends one (then Remote is true). Set and Apply return it for a
// write that breaks a limit. Test it with errors.As, or with errors.Is against
// ErrLimit, ErrBadLine or the specific sentinel it wraps.
type ProtocolError struct {
	Code    string
	Message string
	// Remote is true when the peer sent this error.
	Remote bool

	err error // the specific sentinel, nil for a remote error
}

func protoErr(code string, sentinel error, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Message: fmt.Sprintf(format, args...), err: sentinel}
}

func (e *ProtocolError) Error() string {
	if e.Remote {
		return "model: peer sent error: " + e.Code + ": " + e.Message
	}
	return "model: " + e.Code + ": " + e.Message
}

// Unwrap returns the specific sentinel error, such as ErrValueTooLarge.
func (e *ProtocolError) Unwrap() error { return e.err }

// Is reports whether target is ErrLimit or ErrBadLine and matches the code.
func (e *ProtocolError) Is(target error) bool {
	switch target {
	case ErrLimit:
		return e.Code == CodeLimit
	case ErrBadLine:
		return e.Code == CodeBadLine
	case ErrForbidden:
		return e.Code == CodeForbidden
	}
	return false
}
