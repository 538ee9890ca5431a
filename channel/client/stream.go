package client

import (
	"net"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/mux"
)

// Stream is one yamux stream of a client session, after the server's reply. It is a
// net.Conn whose Close half-closes (FIN) and that can also be reset (RST).
//
// Read and Write may be called from two goroutines at once; Reset and
// CloseWrite from any goroutine.
type Stream struct {
	sc     *mux.Stream
	local  net.Addr
	remote net.Addr
	pre    []byte   // bytes read past the reply line
	sess   *Session // the session the stream belongs to
}

func newStream(sc *mux.Stream, sess *Session) *Stream {
	return &Stream{sc: sc, local: sess.local, remote: sess.remote, sess: sess}
}

// ID returns the yamux stream id.
func (s *Stream) ID() uint32 { return s.sc.ID() }

// Read reads from the stream. It returns io.EOF once the peer half-closed and
// everything before was read, and ErrStreamReset after a reset.
func (s *Stream) Read(p []byte) (int, error) {
	if len(s.pre) > 0 {
		n := copy(p, s.pre)
		s.pre = s.pre[n:]
		if len(s.pre) == 0 {
			s.pre = nil
		}
		return n, nil
	}
	return s.sc.Read(p)
}

// Write writes p whole unless an error occurs; it blocks while the peer's
// window is full.
func (s *Stream) Write(p []byte) (int, error) { return s.sc.Write(p) }

// CloseWrite half-closes the stream: the peer reads EOF after what was
// written; reading goes on.
func (s *Stream) CloseWrite() error { return s.sc.CloseWrite() }

// Close half-closes the stream (FIN) like CloseWrite and gives it up: if
// the server has not half-closed too within DialOptions.StreamCloseTimeout, the
// stream is reset, so a peer that never closes cannot pin it. Close does not
// block. (A stream only half-closed with CloseWrite has no such timeout: a
// relay's other direction may flow for as long as it likes.)
func (s *Stream) Close() error { return s.sc.Close() }

// PeerClosed reports whether the peer half-closed the stream (sent FIN):
// everything it wrote has arrived, and reads end with io.EOF once it is read,
// even if the session ends meanwhile.
func (s *Stream) PeerClosed() bool { return s.sc.PeerClosed() }

// Reset aborts both directions: the peer gets an RST, pending and later
// Read and Write calls return ErrStreamReset at once. It may block while the
// RST is written (at most the write timeout). Calling it again does nothing.
func (s *Stream) Reset() error { return s.sc.Reset() }

// Done is closed when the stream is reset, by either side, or its session
// ends. It lets a stream that is not reading notice that its peer went away.
func (s *Stream) Done() <-chan struct{} { return s.sc.Done() }

// SetDeadline sets the read and write deadlines (net.Conn).
func (s *Stream) SetDeadline(t time.Time) error {
	s.sc.SetReadDeadline(t)
	return s.sc.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline (net.Conn).
func (s *Stream) SetReadDeadline(t time.Time) error { return s.sc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline (net.Conn).
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.sc.SetWriteDeadline(t) }

// LocalAddr returns the session's local address (net.Conn).
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the session's remote address (net.Conn).
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

var _ net.Conn = (*Stream)(nil)

// readLine reads one line of at most max bytes including the newline and
// returns it without the newline; bytes read past it are kept for Read.
func (s *Stream) readLine(max int) ([]byte, error) {
	line, rest, err := channel.ReadLine(s, max)
	if len(rest) > 0 {
		s.pre = rest
	}
	return line, err
}
