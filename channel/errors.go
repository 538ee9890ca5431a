package channel

import (
	"errors"
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel/mux"
)

// Code is a protocol error code (PROTOCOL.md section 2). It is what a client
// sees; Go error strings never reach the wire.
type Code string

// The error codes of PROTOCOL.md section 2.
const (
	CodeBadHeader       Code = "bad_header"
	CodeUnknownEndpoint Code = "unknown_endpoint"
	CodeBadNamespace    Code = "bad_namespace"
	CodeBadToken        Code = "bad_token"
	CodeForbidden       Code = "forbidden"
	CodeLimit           Code = "limit"
	CodeTimeout         Code = "timeout"
	CodeConflict        Code = "conflict"
	CodeInternal        Code = "internal"
)

// Error is a protocol error: a code from PROTOCOL.md and a message a person
// can act on. The server sends it as a failure reply; the client returns it
// from Session.Open and friends, so callers can test it with errors.As.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return "signalchannel: " + string(e.Code) + ": " + e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &channel.Error{Code: channel.CodeLimit}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinel errors of the transport.
var (
	// ErrStreamReset is returned by Stream reads and writes once the stream
	// was reset by either side.
	ErrStreamReset = mux.ErrStreamReset
	// ErrFrameTooLarge is returned by ReadFrame for a frame longer than the
	// limit; nothing of the frame has been consumed past its length prefix.
	ErrFrameTooLarge = errors.New("channel: frame too large")
	// ErrBadReply is returned by the client when the server's reply line is
	// not the JSON object PROTOCOL.md describes.
	ErrBadReply = errors.New("channel: malformed reply line")
	// ErrProtocol marks a yamux protocol violation by the peer (close 4400).
	ErrProtocol = mux.ErrProtocol
	// ErrTextMessage marks a text WebSocket message (close 1003).
	ErrTextMessage = errors.New("channel: text message received")
	// ErrGoAway is returned by Session.Open and OpenStream once the server
	// has said it takes no new streams (it is draining before shutdown):
	// a reconnecting client opens them on its next session.
	ErrGoAway = mux.ErrGoAway
)

// CloseError is the close message with which the server ended a session
// (PROTOCOL.md section 6): 4401 with the credentials' fault, 4429 with the
// limit reached, 1001 at shutdown.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("channel: session closed by the server (%d)", e.Code)
	}
	return fmt.Sprintf("channel: session closed by the server (%d %s)", e.Code, e.Reason)
}

// Permanent reports whether a refusal with code would be refused again
// whatever the client waits for: a fault of the header or a refusal of the
// credentials. `limit`, `timeout`, `conflict` and `internal` may pass later.
func (c Code) Permanent() bool {
	switch c {
	case CodeBadHeader, CodeUnknownEndpoint, CodeBadNamespace, CodeBadToken, CodeForbidden:
		return true
	}
	return false
}

// WebSocket close codes of PROTOCOL.md section 6.
const (
	CloseNormal        = websocket.CloseNormalClosure   // 1000
	CloseGoingAway     = websocket.CloseGoingAway       // 1001
	CloseUnsupported   = websocket.CloseUnsupportedData // 1003
	CloseProtocolError = mux.CloseProtocolError         // 4400
	CloseUnauthorized  = 4401
	// CloseForbidden: the server's application refused the session (a
	// Hooks.Session of an embedding program).
	CloseForbidden = 4403
	CloseLimit     = 4429

	// CloseTryAgainLater is RFC 6455's 1013: a server overloaded for now.
	CloseTryAgainLater = websocket.CloseTryAgainLater
)
