package mux

import (
	"io"
	"time"
)

// Conn is the message transport under a Session: wsConn, or a fake in
// tests and fuzzing.
type Conn interface {
	// NextMessage returns a reader for the next binary message.
	NextMessage() (io.Reader, error)
	// ReadFailed records an error from a message reader and ends reading.
	ReadFailed(err error) error
	// WriteFrame sends one whole frame as one message.
	WriteFrame(frame []byte) error
	SetCloseStatus(code int, reason string)
	// fail closes with the status set and discards input until the peer's
	// close or a deadline, then returns err.
	Fail(err error) error
	Close() error
}

// Parker is a Conn that can wait for its next message without a goroutine.
// The read loop calls Park between messages (a message reader that returns
// io.EOF with the last bytes of its message lets it do so after every one).
// Park returns false when input is at hand or the Conn cannot park now; it
// returns true when it has nothing buffered and will have Run called again,
// in a new goroutine, once input arrives or the Conn is closed. The read loop
// then returns ErrParked without touching the session's read state again.
type Parker interface {
	Park() bool
}

// PartsWriter is a Conn that writes a frame given as its header and its
// body, as one message, sparing the Session a copy of the body.
type PartsWriter interface {
	WriteFrameParts(header, body []byte) error
}

// Config tunes a Session.
type Config struct {
	Client       bool          // the client role: opens odd stream ids
	KeepAlive    time.Duration // between keepalive pings; 0 disables them
	PingTimeout  time.Duration // for a keepalive ping's answer
	CloseTimeout time.Duration // how long a stream given up with Close waits for the peer's FIN before it is reset
	OnPing       func() bool   // per ping the peer sends; false closes with 4400
	OnStream     func(*Stream) // per stream the peer opens, in the read loop; nil resets them
}
