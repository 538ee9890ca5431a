package relay

import (
	"encoding/json"
	"io"
	"time"
)

// Stream is one end of a relay pipe: on a server, a yamux stream after its
// header line; across servers, a network-backed stand-in for the partner.
//
// Read and Write are called from different goroutines at once, Reset and
// CloseWrite from any goroutine. Streams are compared with ==, so the
// dynamic type must be comparable (a pointer is).
type Stream interface {
	io.Reader
	io.Writer
	// CloseWrite half-closes: a FIN to the peer after pending writes; reads
	// go on.
	CloseWrite() error
	// Reset aborts both directions at once (RST); it unblocks pending Read
	// and Write calls.
	Reset() error
	// Done is closed when the stream is reset, by either side, or its
	// session ends. It should be closed before a Read returns io.EOF because
	// the session ended, so that the end is not taken for a half-close.
	Done() <-chan struct{}
	// PeerClosed reports that the peer half-closed the stream: then a
	// session that ends afterwards loses nothing the peer sent, and the
	// pipe delivers it and half-closes the partner instead of resetting
	// it. A stream that cannot tell returns false.
	PeerClosed() bool
	// SetReadDeadline is as net.Conn's: a Read past the deadline fails
	// with an error that matches os.ErrDeadlineExceeded, and the stream
	// stays usable. While it runs, a Link sets its own read deadlines.
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Identified is what a Stream may also implement to name the peer it
// belongs to: its peer id, which its server vouches for, and the public
// metadata of its credentials (nil when none). The relay endpoint tells each
// side of a pair who is at the other end (Link.Partner).
type Identified interface {
	PeerIdentity() (id string, meta json.RawMessage)
}

// IdentityOf returns the peer id and metadata of s, or "" and nil when s
// does not name its peer.
func IdentityOf(s Stream) (string, json.RawMessage) {
	if i, ok := s.(Identified); ok {
		return i.PeerIdentity()
	}
	return "", nil
}
