package server

import (
	"encoding/json"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/mux"
)

// Stream is one yamux stream of a session, after its header line. It is a
// net.Conn whose Close half-closes (FIN) and that can also be reset (RST).
//
// Read and Write may be called from two goroutines at once; Reset and
// CloseWrite from any goroutine.
type Stream struct {
	sc     *mux.Stream
	local  net.Addr
	remote net.Addr

	pre      []byte // bytes read past the header or reply line
	replied  atomic.Bool
	rejected atomic.Bool
	onReject func(channel.Code) // counts failure replies, server side
	// On the server: the session, and what the stream's end is told with
	// (session.go, detach and served); opened is set when debug logging is.
	sess      *session
	endpoint  string
	namespace string
	opened    time.Time
	inline    atomic.Bool // ReadInline was called
	inlineF   func(p []byte)
	done      atomic.Bool       // ReadInline's done was called
	peer      *channel.PeerInfo // the session's, when the header was read; shared, read-only

	in, out  atomic.Int64 // bytes read and written after the header, for the debug log
	onAccept func()       // told once the endpoint accepted the stream
}

// PeerIdentity returns the peer id of the stream's session and the public
// metadata of its token (nil when none), as they were when the stream's
// header was read: "" before.
func (s *Stream) PeerIdentity() (id string, meta json.RawMessage) {
	if s.peer == nil {
		return "", nil
	}
	return s.peer.ID, s.peer.Meta
}

// ReadInline hands the reading of the stream to its session, so that a
// stream waiting for its peer costs no goroutine: f gets the data as it
// arrives, in order, and end is called once when the peer half-closes
// (io.EOF), resets (ErrStreamReset) or the session ends (net.ErrClosed).
// After the endpoint itself resets the stream, end may or may not be called
// (with ErrStreamReset): an endpoint that resets must clean up by itself,
// and its end must be idempotent.
//
// f and end run in the session's read loop (what arrived before the call is
// passed on by the call itself): they must return quickly, never wait on the
// network, and not read the stream; f's slice is valid only during the call.
//
// An endpoint calls ReadInline after Accept and may then return from
// ServeStream: the stream stays open, and the endpoint calls done, once,
// when it has finished with the stream, which the server takes as the
// endpoint's return (FIN, then a reset unless the peer half-closes within
// the stream close timeout).
func (s *Stream) ReadInline(f func(p []byte), end func(err error)) (done func(), err error) {
	if !s.replied.Load() || s.rejected.Load() {
		return nil, errors.New("channel: ReadInline before Accept")
	}
	s.inlineF = f
	if len(s.pre) > 0 {
		pre := s.pre
		s.pre = nil
		s.countIn(pre)
	}
	s.sc.ReadInline(s.countIn, end)
	s.inline.Store(true)
	return s.inlineDone, nil
}

// countIn passes inline data on, counted.
func (s *Stream) countIn(p []byte) {
	s.in.Add(int64(len(p)))
	s.inlineF(p)
}

// inlineDone is ReadInline's done: once, it ends the stream's service.
func (s *Stream) inlineDone() {
	if !s.done.CompareAndSwap(false, true) {
		return
	}
	if s.sess != nil {
		s.detach()
	} else {
		s.Close()
	}
}

func newStream(sc *mux.Stream, local, remote net.Addr) *Stream {
	return &Stream{sc: sc, local: local, remote: remote}
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
		s.in.Add(int64(n))
		return n, nil
	}
	n, err := s.sc.Read(p)
	s.in.Add(int64(n))
	return n, err
}

// Write writes p whole unless an error occurs; it blocks while the peer's
// window is full.
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.sc.Write(p)
	s.out.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the stream: the peer reads EOF after what was
// written; reading goes on.
func (s *Stream) CloseWrite() error { return s.sc.CloseWrite() }

// Close half-closes the stream (FIN) like CloseWrite and gives it up: if
// the peer has not half-closed too within Config.StreamCloseTimeout, the
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

// Accept sends the success reply `{"ok":true,...}` with fields, which must
// marshal to a JSON object (or be nil). An endpoint calls Accept or Reject
// once, before anything else is written.
func (s *Stream) Accept(fields any) error {
	b, err := channel.EncodeReply(fields)
	if err != nil {
		return err
	}
	if !s.replied.CompareAndSwap(false, true) {
		return errors.New("channel: stream already answered")
	}
	_, err = s.Write(b)
	if err == nil && s.onAccept != nil {
		s.onAccept()
	}
	return err
}

// Reject sends the failure reply with e's code and message and half-closes
// the stream. The handler discards what the client sends after it.
func (s *Stream) Reject(e *channel.Error) error {
	if !s.replied.CompareAndSwap(false, true) {
		return errors.New("channel: stream already answered")
	}
	s.rejected.Store(true)
	if s.onReject != nil {
		s.onReject(e.Code)
	}
	_, err := s.Write(channel.EncodeError(e))
	if cerr := s.CloseWrite(); err == nil {
		err = cerr
	}
	return err
}
