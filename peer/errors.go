package peer

import (
	"errors"
	"fmt"
)

var (
	// ErrTimeout is returned by Room.Call when the callee did not answer
	// within the call timeout.
	ErrTimeout = errors.New("peer: timeout: the callee did not answer in time")
	// ErrClosed is returned once the room was left or its session ended.
	ErrClosed = errors.New("peer: room closed")
	// ErrAnswered is returned by Request.Accept and Reject for a request
	// already answered, or one its caller gave up.
	ErrAnswered = errors.New("peer: the request was answered or given up")
)

// RejectedError is returned by Room.Call when the callee rejected the call;
// Reason is the callee's.
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string { return fmt.Sprintf("peer: rejected: %s", e.Reason) }

// ByeError is returned by Call.Recv when the other side ended the call;
// Reason is its.
type ByeError struct {
	Reason string
}

func (e *ByeError) Error() string {
	return fmt.Sprintf("peer: the other side ended the call: %s", e.Reason)
}

// ReasonBusy is the reason of a request rejected because the callee
// already handles as many as RoomOptions.MaxPending allows.
const ReasonBusy = "busy"
