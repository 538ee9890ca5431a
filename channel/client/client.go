package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/internal/wsconn"
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
	// WriteTimeout bounds every write, and the wait for a keepalive ping's
	// answer; default 10s.
	WriteTimeout time.Duration
	// StreamCloseTimeout is how long a stream given up with Close waits
	// for the server's FIN before it is reset; default 30s.
	StreamCloseTimeout time.Duration
	// Logger receives the session's debug logs; default none.
	Logger *slog.Logger
}

// Defaults of DialOptions.
const (
	DefaultKeepAliveInterval  = 30 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultStreamCloseTimeout = 30 * time.Second
)

func (o DialOptions) withDefaults() DialOptions {
	if o.KeepAliveInterval <= 0 {
		o.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.StreamCloseTimeout <= 0 {
		o.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
	return o
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
	conn          *wsconn.Conn
	mux           *mux.Session
	local, remote net.Addr
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
	dd.Subprotocols = []string{channel.Subprotocol}
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
	opts = opts.withDefaults()
	conn := wsconn.New(ws, opts.WriteTimeout, true)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		log:         log,
		conn:        conn,
		local:       ws.LocalAddr(),
		remote:      ws.RemoteAddr(),
		done:        make(chan struct{}),
		Subprotocol: ws.Subprotocol(),
	}
	s.mux = mux.New(conn, mux.Config{
		Client:       true,
		KeepAlive:    opts.KeepAliveInterval,
		PingTimeout:  opts.WriteTimeout,
		CloseTimeout: opts.StreamCloseTimeout,
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
	s.conn.WS.Close()
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
	if ce := s.conn.PeerCloseError(); ce != nil {
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
func (s *Session) Open(ctx context.Context, header any) (*Stream, channel.Reply, error) {
	var line []byte
	switch h := header.(type) {
	case []byte:
		line = append(append([]byte(nil), h...), '\n')
	default:
		b, err := json.Marshal(h)
		if err != nil {
			return nil, channel.Reply{}, fmt.Errorf("channel: header: %w", err)
		}
		line = append(b, '\n')
	}
	st, err := s.OpenStream()
	if err != nil {
		return nil, channel.Reply{}, err
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*Stream, channel.Reply, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		st.Reset()
		st.Close()
		return nil, channel.Reply{}, err
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
	reply, err := channel.ParseReply(rl)
	if err != nil {
		var perr *channel.Error
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
	return newStream(ms, s), nil
}
