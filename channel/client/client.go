package client

import (
	"context"
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

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/internal/wsconn"
	"github.com/signalchannel/signalchannel/channel/mux"
	"github.com/signalchannel/signalchannel/ice"
)

// DialOptions configures Dial. The zero value is ready to use.
type DialOptions struct {
	// Token, if set, is sent as "Authorization: Bearer <token>".
	Token string
	// TokenFunc, if set, returns a token: the one to dial with when Token
	// is empty, and a fresh one, for the same sub, that the session
	// presents in band ahead of its token's expiry (PROTOCOL.md section
	// 9), so that it is never closed for an expired token. ctx ends when
	// the session does.
	TokenFunc func(ctx context.Context) (string, error)
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
	done          chan struct{}      // closed by run
	ctx           context.Context    // with a TokenFunc only: the refreshes' context
	cancel        context.CancelFunc // by run, when the session has ended
	// Subprotocol is the WebSocket subprotocol the server selected.
	Subprotocol string

	id        string          // the peer id the server vouches for
	meta      json.RawMessage // the token's public metadata
	tokenFunc func(ctx context.Context) (string, error)
	timeout   time.Duration // bounds a refresh

	refreshMu sync.Mutex
	exp       time.Time   // the current token's exp; zero without credentials
	refresher *time.Timer // the next refresh, with a TokenFunc

	iceMu sync.Mutex
	ice   *ice.Servers // from the last session reply; nil when the server hands out none
}

// Dial connects to a signalchannel server at url (ws:// or wss://, path
// /v1/channel), starts the yamux session and asks the server who the
// session is (ID, Meta). It blocks until the server has answered or ctx
// ends. A session the server refuses at once (4401 for credentials, 4429
// for a limit) is returned as a *channel.CloseError with the code and the
// server's reason.
func Dial(ctx context.Context, url string, opts DialOptions) (*Session, error) {
	if opts.Token == "" && opts.TokenFunc != nil {
		tok, err := opts.TokenFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("channel: token for %s: %w", url, err)
		}
		opts.Token = tok
	}
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
	conn := wsconn.New(ws, opts.WriteTimeout)
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
		tokenFunc:   opts.TokenFunc,
		timeout:     opts.WriteTimeout,
	}
	if s.tokenFunc != nil { // refreshes run under it; a session without one holds none
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	s.mux = mux.New(conn, mux.Config{
		Client:       true,
		KeepAlive:    opts.KeepAliveInterval,
		PingTimeout:  opts.WriteTimeout,
		CloseTimeout: opts.StreamCloseTimeout,
	})
	go s.run()
	info, err := s.hello(ctx, "")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.id, s.meta = info.ID, info.Meta
	s.setExp(info.Exp)
	s.setICE(info.ICE)
	return s, nil
}

func (s *Session) setICE(servers *ice.Servers) {
	s.iceMu.Lock()
	s.ice = servers
	s.iceMu.Unlock()
}

// ICEServers returns the ICE servers the server hands this peer
// (PROTOCOL.md section 11): STUN URLs, and TURN URLs with credentials for
// its id; nil when the server hands out none. Credentials with less than
// half their lifetime, or a minute, left are renewed first, in band (a
// session stream), so that what it returns serves a new connection or an
// ICE restart.
func (s *Session) ICEServers(ctx context.Context) (*ice.Servers, error) {
	s.iceMu.Lock()
	cur := s.ice
	s.iceMu.Unlock()
	if cur == nil || cur.Expires == 0 {
		return cur, nil
	}
	left := time.Until(time.Unix(cur.Expires, 0))
	if left > min(time.Duration(cur.TTL)*time.Second/2, time.Minute) {
		return cur, nil
	}
	// Not under iceMu: a refresh in band waits for no other.
	info, err := s.hello(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("channel: ICE servers: %w", err)
	}
	s.iceMu.Lock()
	defer s.iceMu.Unlock()
	if s.ice == nil || info.ICE == nil || info.ICE.Expires >= s.ice.Expires {
		s.ice = info.ICE // the newest of racing renewals stays
	}
	return s.ice, nil
}

// ID returns the session's peer id, which the server vouches for: the sub
// of its token, or an id the server assigned when it takes no credentials.
// Relay tokens and scuttlebutt keys the session owns begin with it
// (PROTOCOL.md section 9).
func (s *Session) ID() string { return s.id }

// Meta returns the public metadata of the session's token (its meta
// claim), nil when it has none. It must not be modified.
func (s *Session) Meta() json.RawMessage { return s.meta }

// Expires returns the expiry of the session's current token, the zero Time
// on a server without credentials.
func (s *Session) Expires() time.Time {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	return s.exp
}

// Refresh presents token, a fresh token for the session's sub, in band:
// the server moves the session's expiry to the new token's and applies its
// allow and own claims to streams opened from now on; nothing is
// interrupted. A token the server does not accept is an *channel.Error
// (forbidden) and changes nothing; a token for another sub makes the server
// close the session with 4401, returned as a *channel.CloseError. With
// DialOptions.TokenFunc the session refreshes by itself.
func (s *Session) Refresh(ctx context.Context, token string) error {
	if token == "" {
		return errors.New("channel: refresh: empty token")
	}
	info, err := s.hello(ctx, token)
	if err != nil {
		return err
	}
	s.setExp(info.Exp)
	s.setICE(info.ICE)
	return nil
}

// sessionHeader is the header of a session endpoint stream.
type sessionHeader struct {
	Endpoint string `json:"endpoint"`
	Token    string `json:"token,omitempty"`
}

// hello asks the session endpoint who the session is, presenting token if
// it is not empty. When the server ended the session instead, it returns
// the *channel.CloseError it sent.
func (s *Session) hello(ctx context.Context, token string) (channel.Reply, error) {
	st, reply, err := s.Open(ctx, sessionHeader{Endpoint: channel.EndpointSession, Token: token})
	if err == nil {
		// The server's FIN follows the reply once the stream no longer
		// counts against the session's streams limit.
		st.CloseWrite()
		stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
		_, _ = io.Copy(io.Discard, io.LimitReader(st, 1))
		stop()
		st.Close()
		return reply, nil
	}
	var perr *channel.Error
	if errors.As(err, &perr) {
		return reply, err
	}
	// The session may have ended: then its close message says why.
	select {
	case <-s.done:
		if code, reason := s.CloseReason(); code != 0 {
			return reply, &channel.CloseError{Code: code, Reason: reason}
		}
	case <-ctx.Done():
	}
	return reply, err
}

// setExp records the token's expiry exp (seconds since the Unix epoch, 0
// for none) and, with a TokenFunc, schedules the next refresh: halfway to
// expiry for a token that lives less than two minutes, a minute before it
// otherwise.
func (s *Session) setExp(exp int64) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if exp == 0 {
		s.exp = time.Time{}
		return
	}
	s.exp = time.Unix(exp, 0)
	if s.tokenFunc == nil || s.ctx.Err() != nil {
		return
	}
	left := time.Until(s.exp)
	s.schedule(left - min(left/2, time.Minute))
}

// schedule arms the refresh timer. Called with refreshMu held.
func (s *Session) schedule(d time.Duration) {
	if s.refresher != nil {
		s.refresher.Stop()
	}
	s.refresher = time.AfterFunc(max(d, 0), s.autoRefresh)
}

// autoRefresh gets a token from TokenFunc and presents it. On failure it
// tries again after a quarter of the time left, while the token lives.
func (s *Session) autoRefresh() {
	ctx, cancel := context.WithTimeout(s.ctx, 2*s.timeout)
	defer cancel()
	tok, err := s.tokenFunc(ctx)
	if err == nil {
		err = s.Refresh(ctx, tok)
	}
	if err == nil || s.ctx.Err() != nil {
		return
	}
	s.log.Info("token refresh failed", "err", err)
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if left := time.Until(s.exp); left > 0 && s.ctx.Err() == nil {
		s.schedule(max(left/4, 100*time.Millisecond))
	}
}

// run is the session's read loop. It closes done once the session has ended
// and the reader has read the last it will: the server's close message, or
// nothing within the linger after the session ended. Whatever ended the
// session (Close, a failed write, the server's close), the close code is
// known by then.
func (s *Session) run() {
	err := s.mux.Run()
	s.conn.WS.Close()
	if s.cancel != nil {
		s.cancel()
	}
	s.refreshMu.Lock()
	if s.refresher != nil {
		s.refresher.Stop()
	}
	s.refreshMu.Unlock()
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
