package channel

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/signalchannel/signalchannel/channel/mux"
)

// DialOptions configures Dial. The zero value is ready to use.
type DialOptions struct {
	// Token, if set, is sent as "Authorization: Bearer <token>".
	Token string
	// Header holds extra HTTP headers for the WebSocket handshake.
	Header http.Header
	// Dialer is the WebSocket dialer; default websocket.DefaultDialer.
	Dialer *websocket.Dialer
	// KeepAliveInterval is how often the client pings; default 30s.
	KeepAliveInterval time.Duration
	// WriteTimeout bounds every write; default 10s.
	WriteTimeout time.Duration
	// Logger receives the session's debug logs; default none.
	Logger *slog.Logger
}

// defaultDialer writes a whole yamux frame as one WebSocket frame: a client
// masks what it sends through its write buffer, and gorilla's default 4 KiB
// buffer would cut a 256 KiB frame into 64 writes. The buffers are pooled,
// so an idle session holds none.
var defaultDialer = &websocket.Dialer{
	Proxy:            http.ProxyFromEnvironment,
	HandshakeTimeout: 45 * time.Second,
	WriteBufferSize:  mux.MaxFrameBytes + 16,
	WriteBufferPool:  &sync.Pool{},
}

// Session is a client's connection: one WebSocket carrying one yamux client
// session, run by the same multiplexer as the server's. One goroutine, which
// the Session owns, reads; writers write under one lock. Its methods may be
// called from any goroutine.
type Session struct {
	conn          *wsConn
	mux           *mux.Session
	local, remote net.Addr
	linger        time.Duration
	log           *slog.Logger
	done          chan struct{} // closed by run
	// Subprotocol is the WebSocket subprotocol the server selected.
	Subprotocol string
}

// Dial connects to a signalchannel server at url (ws:// or wss://, path
// /v1/channel) and starts the yamux session. It blocks until the WebSocket
// handshake completes or ctx ends.
func Dial(ctx context.Context, url string, opts DialOptions) (*Session, error) {
	d := opts.Dialer
	if d == nil {
		d = defaultDialer
	}
	dd := *d
	dd.Subprotocols = []string{Subprotocol}
	hdr := http.Header{}
	for k, v := range opts.Header {
		hdr[k] = v
	}
	if opts.Token != "" {
		hdr.Set("Authorization", "Bearer "+opts.Token)
	}
	ws, resp, err := dd.DialContext(ctx, url, hdr)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("channel: dial %s: %w (HTTP %s)", url, err, resp.Status)
		}
		return nil, fmt.Errorf("channel: dial %s: %w", url, err)
	}
	cfg := Config{KeepAliveInterval: opts.KeepAliveInterval, WriteTimeout: opts.WriteTimeout}.withDefaults()
	conn := newWSConn(ws, cfg.WriteTimeout)
	conn.client = true
	log := opts.Logger
	if log == nil {
		log = discardLogger
	}
	s := &Session{
		log:         log,
		conn:        conn,
		local:       ws.LocalAddr(),
		remote:      ws.RemoteAddr(),
		linger:      cfg.StreamCloseTimeout,
		done:        make(chan struct{}),
		Subprotocol: ws.Subprotocol(),
	}
	s.mux = mux.New(conn, mux.Config{
		Client:      true,
		KeepAlive:   cfg.KeepAliveInterval,
		PingTimeout: cfg.WriteTimeout,
	})
	go s.run()
	return s, nil
}

// run is the session's read loop. It closes done once the session has ended
// and the reader has read the last it will: the server's close message, or
// nothing within the linger after the session ended. Whatever ended the
// session (Close, a failed write, the server's close), the close code is
// known by then.
func (s *Session) run() {
	err := s.mux.Run()
	s.conn.ws.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("session ended", "err", err)
	}
	close(s.done)
}

// Close ends the session with close code 1000; its streams end at once. It
// waits for the server's close message, at most a second.
func (s *Session) Close() error {
	err := s.mux.Close()
	<-s.done
	return err
}

// Done is closed when the session has ended and the server's close code,
// if it sent one, is known (CloseReason).
func (s *Session) Done() <-chan struct{} { return s.done }

// CloseReason returns the WebSocket close code and reason the server sent
// when it ended the session (PROTOCOL.md section 6: 1001 shutting down,
// 4400 protocol violation, 4401 credentials, 4429 limit), or 0 and "" if it
// sent none or the session is still open.
func (s *Session) CloseReason() (code int, reason string) {
	if ce := s.conn.peerCloseError(); ce != nil {
		return ce.Code, ce.Text
	}
	return 0, ""
}

// maxReplyBytes bounds a reply line.
const maxReplyBytes = 64 << 10

// Open opens a stream, sends header as its first line and reads the reply.
// header is marshalled as JSON, except a []byte, which is sent as it is
// (the newline is added). A failure reply is returned as an *Error carrying
// the protocol code; the stream is then closed. Open blocks until the reply
// arrives (for a relay, until it is paired) or ctx ends, which resets the
// stream.
func (s *Session) Open(ctx context.Context, header any) (*Stream, Reply, error) {
	var line []byte
	switch h := header.(type) {
	case []byte:
		line = append(append([]byte(nil), h...), '\n')
	default:
		b, err := json.Marshal(h)
		if err != nil {
			return nil, Reply{}, fmt.Errorf("channel: header: %w", err)
		}
		line = append(b, '\n')
	}
	st, err := s.OpenStream()
	if err != nil {
		return nil, Reply{}, err
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*Stream, Reply, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		st.Reset()
		st.Close()
		return nil, Reply{}, err
	}
	if _, err := st.Write(line); err != nil {
		return fail(err)
	}
	rl, err := st.readLine(maxReplyBytes)
	if err != nil {
		return fail(fmt.Errorf("channel: reading reply: %w", err))
	}
	if !stop() {
		return fail(ctx.Err())
	}
	reply, err := parseReply(rl)
	if err != nil {
		var perr *Error
		if errors.As(err, &perr) {
			st.Close()
			return nil, reply, err
		}
		return fail(err)
	}
	return st, reply, nil
}

// OpenStream opens a stream without sending a header: the caller writes the
// header line and reads the reply itself.
func (s *Session) OpenStream() (*Stream, error) {
	ms, err := s.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("channel: open stream: %w", err)
	}
	st := newStream(ms, s.local, s.remote, s.linger)
	st.sess = s
	return st, nil
}

// Echo joins the echo namespace and returns the member, after the server
// accepted it.
func (s *Session) Echo(ctx context.Context, namespace string) (*Echo, error) {
	st, reply, err := s.Open(ctx, Header{Endpoint: EndpointEcho, Namespace: namespace})
	if err != nil {
		return nil, err
	}
	max := reply.MaxFrame
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &Echo{st: st, max: max, r: bufio.NewReaderSize(st, echoReadBuffer)}, nil
}

// echoReadBuffer buffers a member's reads: a frame's prefix and body in one
// stream read instead of two (each yamux read takes locks and may send a
// window update).
const echoReadBuffer = 16 << 10

// Echo is a member of an echo namespace (PROTOCOL.md section 3). Send and
// Recv may be called from two goroutines at once.
type Echo struct {
	st  *Stream
	r   *bufio.Reader
	max int
	mu  sync.Mutex
	buf []byte

	slab []byte // Recv's: what is left of the slab small frames come from
}

// MaxFrame is the largest frame the server accepts.
func (e *Echo) MaxFrame() int { return e.max }

// Send writes one frame. Every member, this one included, receives it whole.
// A frame longer than MaxFrame is refused here with ErrFrameTooLarge.
func (e *Echo) Send(p []byte) error {
	if len(p) > e.max {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, len(p), e.max)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = AppendFrame(e.buf[:0], p)
	_, err := e.st.Write(e.buf)
	if cap(e.buf) > 4<<10 {
		e.buf = nil
	}
	return err
}

// Recv returns the next frame of the namespace. It returns io.EOF after
// Close, once the server has sent what was queued, ErrStreamReset if the
// server dropped this member (too slow, or a frame too large), and the
// *Error of an error record (code `limit`: a frame past the member's
// publish budget was refused and the member has left the namespace).
func (e *Echo) Recv() ([]byte, error) {
	// The prefix is peeked rather than read into an array: an array passed
	// to a Reader escapes, which would cost an allocation per frame.
	p, err := e.r.Peek(FrameHeaderSize)
	if err != nil {
		if err == io.EOF && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(p)
	e.r.Discard(FrameHeaderSize)
	if n == ErrorRecordPrefix {
		return nil, readErrorRecord(e.r)
	}
	if uint64(n) > uint64(e.max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, e.max)
	}
	buf := e.alloc(int(n))
	if _, err := io.ReadFull(e.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// alloc returns room for a frame of n bytes. Small frames are carved from a
// slab, one allocation for many frames: a member receiving a stream of
// them would otherwise give the garbage collector a small object per
// frame. Each frame is capped at its length, so appending to it copies;
// a frame kept alive keeps its slab (recvSlab bytes) alive.
func (e *Echo) alloc(n int) []byte {
	if n == 0 || n > slabFrame {
		return make([]byte, n)
	}
	if len(e.slab) < n {
		e.slab = make([]byte, recvSlab)
	}
	b := e.slab[:n:n]
	e.slab = e.slab[n:]
	return b
}

// Frames of up to slabFrame bytes are carved from slabs of recvSlab bytes.
const (
	recvSlab  = 2 << 10
	slabFrame = 128
)

// Close leaves the namespace gracefully: the server stops sending new frames,
// delivers what it had queued, then ends the stream (Recv returns io.EOF).
func (e *Echo) Close() error { return e.st.Close() }

// Stream returns the underlying stream.
func (e *Echo) Stream() *Stream { return e.st }
