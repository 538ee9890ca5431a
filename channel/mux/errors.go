package mux

import (
	"errors"
	"fmt"
	"net"
)

// CloseProtocolError is the WebSocket close code with which a session ends
// when the peer breaks the yamux rules (PROTOCOL.md section 6).
const CloseProtocolError = 4400

// Sentinel errors of the multiplexer.
var (
	// ErrStreamReset is returned by Stream reads and writes once the stream
	// was reset by either side.
	ErrStreamReset = errors.New("channel: stream reset")
	// ErrProtocol marks a yamux protocol violation by the peer (close 4400).
	ErrProtocol = errors.New("channel: yamux protocol violation")
	// ErrGoAway is returned by OpenStream once the peer has said it takes
	// no new streams.
	ErrGoAway = errors.New("channel: the server takes no new streams (draining)")
	// ErrParked is returned by Run when its Conn parked: the session is
	// open, waiting for input with no goroutine of its own (Parker).
	ErrParked = errors.New("channel: session parked until input arrives")
)

var (
	errSessionEnded = fmt.Errorf("channel: session ended: %w", net.ErrClosed)
	errStreamIDs    = errors.New("channel: no stream ids left in this session")
)
