package channel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/mux"
)

// Subprotocol is the WebSocket subprotocol the server selects when offered.
const Subprotocol = "signalchannel.v1"

// Endpoint serves the streams whose header names it. ServeStream runs in the
// stream's own goroutine; it must call s.Accept or s.Reject before writing
// anything else, and return when it is done with the stream (the handler
// then half-closes it). ctx ends when the session ends or the server shuts
// down.
type Endpoint interface {
	ServeStream(ctx context.Context, s *Stream, req *Request)
}

// EndpointFunc adapts a function to Endpoint.
type EndpointFunc func(ctx context.Context, s *Stream, req *Request)

// ServeStream calls f.
func (f EndpointFunc) ServeStream(ctx context.Context, s *Stream, req *Request) { f(ctx, s, req) }

// Request describes a stream to its endpoint.
type Request struct {
	// Header is the validated header line.
	Header Header
	// SessionID identifies the stream's session in logs.
	SessionID string
	// RemoteAddr is the client's address.
	RemoteAddr string
}

// Authorizer decides whether a session may open a stream with header h. It
// returns nil to allow, or the error to send (normally `forbidden`).
type Authorizer func(ctx context.Context, h *Header) *Error

// Handler is the server side: an http.Handler that upgrades each request to
// a WebSocket, runs the server's yamux multiplexer on it, reads each stream's
// header and hands the stream to the endpoint it names.
//
// Register endpoints with Handle before serving. Shutdown closes every
// session with 1001.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	endpoints map[string]Endpoint
	upgrader  websocket.Upgrader
	ctx       context.Context
	cancel    context.CancelFunc

	mu       sync.Mutex
	sessions map[*session]struct{}
	closed   bool
	wg       sync.WaitGroup

	authorize Authorizer
	perIP     map[string]int // sessions by client address, under mu
	admitted  int            // sessions admitted, under mu

	nSessions      atomic.Int64
	nSessionsTotal atomic.Int64
	nOriginRefused atomic.Int64
	nStreams       atomic.Int64
	byEndpoint     map[string]*atomic.Int64 // fixed once serving starts
	rejected       map[Code]*atomic.Int64
	closesMu       sync.Mutex
	closes         map[int]int64
}

// serverReadBuffer is the size of a session's WebSocket read buffer.
const serverReadBuffer = 1024

// serverWriteBuffers holds the WebSocket write buffers of every Handler.
var serverWriteBuffers = &sync.Pool{}

// NewHandler returns a Handler for cfg, which must be valid.
func NewHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		cfg:        cfg,
		log:        cfg.Logger,
		endpoints:  make(map[string]Endpoint),
		ctx:        ctx,
		cancel:     cancel,
		sessions:   make(map[*session]struct{}),
		perIP:      make(map[string]int),
		byEndpoint: map[string]*atomic.Int64{},
		rejected:   map[Code]*atomic.Int64{},
		closes:     map[int]int64{},
	}
	for _, c := range []Code{CodeBadHeader, CodeUnknownEndpoint, CodeBadNamespace, CodeBadToken,
		CodeForbidden, CodeLimit, CodeTimeout, CodeConflict, CodeInternal} {
		h.rejected[c] = new(atomic.Int64)
	}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HeaderTimeout,
		// Every session holds its read buffer while idle: 1 KiB rather
		// than the HTTP server's 4 KiB. It bounds only how many small
		// messages one read takes in; a large message is read straight
		// into the frame buffer.
		ReadBufferSize:  serverReadBuffer,
		WriteBufferSize: 4096,
		// Idle sessions hold no write buffer: it is taken from the pool
		// for each message.
		WriteBufferPool: serverWriteBuffers,
		Subprotocols:    []string{Subprotocol},
		CheckOrigin: func(r *http.Request) bool {
			if cfg.checkOrigin(r) {
				return true
			}
			h.nOriginRefused.Add(1)
			return false
		},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return h, nil
}

// Handle registers ep for the endpoint name. Call it before serving.
func (h *Handler) Handle(name string, ep Endpoint) {
	h.endpoints[name] = ep
	h.byEndpoint[name] = new(atomic.Int64)
}

// SetAuthorizer sets a, asked about every stream after its header is valid.
func (h *Handler) SetAuthorizer(a Authorizer) { h.authorize = a }

// Stats is a snapshot of the handler's counters.
type Stats struct {
	Sessions      int64            // open sessions
	SessionsTotal int64            // sessions opened since start
	Streams       int64            // streams being served, header phase included
	ByEndpoint    map[string]int64 // streams being served by each endpoint
	Rejected      map[Code]int64   // failure replies sent, by code
	Closes        map[int]int64    // sessions ended, by the close code sent
	OriginRefused int64            // handshakes refused for their Origin (403)
}

// Stats returns the current counters.
func (h *Handler) Stats() Stats {
	st := Stats{
		Sessions:      h.nSessions.Load(),
		SessionsTotal: h.nSessionsTotal.Load(),
		Streams:       h.nStreams.Load(),
		OriginRefused: h.nOriginRefused.Load(),
		ByEndpoint:    make(map[string]int64, len(h.byEndpoint)),
		Rejected:      make(map[Code]int64, len(h.rejected)),
		Closes:        map[int]int64{},
	}
	for name, n := range h.byEndpoint {
		st.ByEndpoint[name] = n.Load()
	}
	for code, n := range h.rejected {
		st.Rejected[code] = n.Load()
	}
	h.closesMu.Lock()
	for code, n := range h.closes {
		st.Closes[code] = n
	}
	h.closesMu.Unlock()
	return st
}

func (h *Handler) countReject(code Code) {
	n, ok := h.rejected[code]
	if !ok {
		n = h.rejected[CodeInternal]
	}
	n.Add(1)
}

// ServeHTTP upgrades the request and serves the session until it ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "this endpoint speaks WebSocket: connect with a WebSocket client (PROTOCOL.md section 1)", http.StatusUpgradeRequired)
		return
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if closed {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	// Until the session's own goroutine takes them over.
	wgDone := true
	defer func() {
		if wgDone {
			h.wg.Done()
		}
	}()

	// Credentials and limits are told with a close code and a reason
	// (PROTOCOL.md section 6): a browser cannot read an HTTP status, so a
	// refused client is upgraded, then closed. A session is counted before
	// the handshake completes, so a client that has its WebSocket counts.
	var (
		claims     *auth.Claims
		refuseCode int
		refused    string
	)
	if h.cfg.Verifier != nil {
		var err error
		if claims, err = h.cfg.Verifier.VerifyRequest(r); err != nil {
			refuseCode, refused = CloseUnauthorized, auth.CloseReason(err)
			h.log.Info("credentials refused", "remote", r.RemoteAddr, "err", err)
		}
	}
	ip := clientIP(r)
	admitted := false
	if refused == "" {
		if refused = h.admit(ip); refused != "" {
			refuseCode = CloseLimit
			h.log.Warn("connection refused", "remote", r.RemoteAddr, "reason", refused)
		} else {
			admitted = true
			defer func() {
				if admitted {
					h.leave(ip)
				}
			}()
		}
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	if refused != "" {
		h.countClose(refuseCode)
		newWSConn(ws, h.cfg.WriteTimeout).refuse(refuseCode, refused)
		return
	}
	ws.SetReadLimit(h.cfg.MaxMessageBytes)
	sess := h.newSession(ws, r, claims)
	if sess == nil {
		return
	}
	// The session runs in a goroutine of its own, so that what the HTTP
	// server kept for the request (its goroutine's grown stack, the
	// request and response) is freed: that is most of an idle session.
	wgDone, admitted = false, false
	go func() {
		defer h.wg.Done()
		defer h.leave(ip)
		sess.serve()
	}()
}

// admit counts a session from ip, or returns why it may not open.
func (h *Handler) admit(ip string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.admitted >= h.cfg.MaxSessions {
		return fmt.Sprintf("sessions limit (%d) reached", h.cfg.MaxSessions)
	}
	if h.perIP[ip] >= h.cfg.MaxSessionsPerIP {
		return fmt.Sprintf("sessions per address limit (%d) reached", h.cfg.MaxSessionsPerIP)
	}
	h.perIP[ip]++
	h.admitted++
	return ""
}

func (h *Handler) leave(ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitted--
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

func (h *Handler) countClose(code int) {
	h.closesMu.Lock()
	h.closes[code]++
	h.closesMu.Unlock()
}

// clientIP is the address part of the request's remote address.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// stopAccepting refuses new sessions from now on and returns the open ones.
func (h *Handler) stopAccepting() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	sessions := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	return sessions
}

// Drain stops accepting sessions, tells every session to open no more
// streams (a yamux go-away; new streams are reset) and waits until no stream
// is being served, or ctx ends. Call Shutdown after it to close the sessions.
func (h *Handler) Drain(ctx context.Context) error {
	for _, s := range h.stopAccepting() {
		s.mux.GoAway()
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for h.nStreams.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Shutdown stops accepting sessions, closes every session with 1001 and waits
// for them to end, or for ctx.
func (h *Handler) Shutdown(ctx context.Context) error {
	// In parallel: each close waits a moment for its client's close message.
	var wg sync.WaitGroup
	for _, s := range h.stopAccepting() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.close(CloseGoingAway, "server is shutting down")
		}()
	}
	wg.Wait()
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// session is one WebSocket and its yamux session.
type session struct {
	h      *Handler
	id     string
	remote string
	log    *slog.Logger
	conn   *wsConn
	mux    *mux.Session
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // stream goroutines
	local  net.Addr
	peer   net.Addr

	active       atomic.Int64 // streams counted against MaxStreams
	rejecting    atomic.Int64 // over-limit streams being answered
	pings        rateMeter
	opens        rateMeter
	headerErrors atomic.Int64
	claims       *auth.Claims // nil on an open server
	expiry       *time.Timer  // closes the session when the token expires
}

func (h *Handler) newSession(ws *websocket.Conn, r *http.Request, claims *auth.Claims) *session {
	id := uuid.NewString()
	log := h.log.With("session", id)
	conn := newWSConn(ws, h.cfg.WriteTimeout)
	s := &session{h: h, id: id, remote: r.RemoteAddr, log: log, conn: conn, local: ws.LocalAddr(), peer: ws.RemoteAddr()}
	s.pings.limit = h.cfg.MaxPingsPerSecond
	s.opens.limit = h.cfg.MaxStreamOpensPerSecond
	ws.SetPingHandler(s.wsPing)
	s.ctx, s.cancel = context.WithCancel(h.ctx)
	if claims != nil {
		s.claims = claims
		s.ctx = auth.NewContext(s.ctx, claims)
		log = log.With("sub", claims.Subject)
		s.log = log
	}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.SetCloseStatus(CloseGoingAway, "server is shutting down")
		conn.Close()
		s.cancel()
		return nil
	}
	// The session is registered before its multiplexer starts, so that
	// Shutdown and Drain see every session that may open streams.
	s.mux = mux.New(conn, mux.Config{
		KeepAlive:   h.cfg.KeepAliveInterval,
		PingTimeout: h.cfg.WriteTimeout,
		OnPing:      s.pings.allow,
		OnStream:    s.accept,
	})
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
	if claims != nil { // stopped by serve when the session ends
		s.expiry = time.AfterFunc(time.Until(claims.ValidUntil), func() {
			s.log.Info("closing session: token expired")
			s.close(CloseUnauthorized, "token expired")
		})
	}
	h.nSessions.Add(1)
	h.nSessionsTotal.Add(1)
	log.Info("session open", "remote", r.RemoteAddr, "subprotocol", ws.Subprotocol())
	return s
}

// wsPing answers a WebSocket ping with a pong, as gorilla's default
// handler does, within the session's budget of pings, which yamux pings
// share: past it the session is closed with 4400, as for yamux pings. It
// runs in the read loop; the loop goes on reading (pings go unanswered)
// until the client's close message or the close linger.
func (s *session) wsPing(data string) error {
	if s.mux.Closed() {
		return nil
	}
	if !s.pings.allow() {
		s.log.Info("closing session: WebSocket ping flood")
		s.close(CloseProtocolError, "too many pings (WebSocket and yamux)")
		return nil
	}
	err := s.conn.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(s.h.cfg.WriteTimeout))
	var ne net.Error
	if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

func (s *session) close(code int, reason string) {
	s.conn.SetCloseStatus(code, reason)
	s.mux.Close()
}

// serve runs the session's read loop until the session ends, then waits for
// its streams.
func (s *session) serve() {
	defer func() {
		if s.expiry != nil {
			s.expiry.Stop()
		}
		s.mux.Close()
		s.cancel()
		s.wg.Wait()
		s.h.mu.Lock()
		delete(s.h.sessions, s)
		s.h.mu.Unlock()
		s.h.nSessions.Add(-1)
		code, reason := s.conn.closeStatus()
		s.h.countClose(code)
		s.log.Info("session closed", "code", code, "reason", reason)
	}()
	s.mux.Run()
}

// accept starts serving a stream the client opened; it runs in the read
// loop, so it never blocks for long.
func (s *session) accept(ms *mux.Stream) {
	st := newStream(ms, s.local, s.peer, s.h.cfg.StreamCloseTimeout)
	st.onReject = s.h.countReject
	var refuse *Error
	switch {
	case s.active.Load() >= int64(s.h.cfg.MaxStreams):
		refuse = Errorf(CodeLimit, "streams per session limit (%d) reached", s.h.cfg.MaxStreams)
	case !s.opens.allow():
		refuse = Errorf(CodeLimit, "stream opens per second limit (%d) reached", s.h.cfg.MaxStreamOpensPerSecond)
	}
	if refuse != nil {
		if s.rejecting.Load() >= int64(s.h.cfg.MaxStreams) {
			// A client that keeps opening streams while as many
			// refusals are still in flight is flooding.
			st.Reset()
			s.log.Warn("closing session: stream flood", "refusing", s.rejecting.Load())
			s.close(CloseLimit, fmt.Sprintf("stream flood: more than %d streams refused at once", s.h.cfg.MaxStreams))
			return
		}
		s.rejecting.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.rejecting.Add(-1)
			s.finish(st, refuse)
		}()
		return
	}
	s.active.Add(1)
	s.wg.Add(1)
	go s.serveStream(st)
}

// serveStream reads the header, validates it and runs the endpoint.
func (s *session) serveStream(st *Stream) {
	s.h.nStreams.Add(1)
	inline := false
	defer func() {
		if !inline { // else the endpoint's done does it
			s.streamEnded()
		}
	}()

	st.SetReadDeadline(time.Now().Add(s.h.cfg.HeaderTimeout))
	line, err := st.readLine(MaxHeaderBytes)
	switch {
	case err == nil:
	case errors.Is(err, errLineTooLong):
		s.finish(st, Errorf(CodeBadHeader, "header longer than %d bytes including the newline", MaxHeaderBytes))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.finish(st, Errorf(CodeTimeout, "no header line within %s of opening the stream", s.h.cfg.HeaderTimeout))
		return
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.finish(st, Errorf(CodeBadHeader, "stream closed before the header line's newline"))
		return
	default: // reset or session gone
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})

	hdr, perr := ParseHeader(line, func(name string) bool { _, ok := s.h.endpoints[name]; return ok })
	if perr != nil {
		s.finish(st, perr)
		return
	}
	if c := s.claims; c != nil && !c.Allows(hdr.Endpoint, hdr.Namespace) {
		s.finish(st, Errorf(CodeForbidden, "the token of %q does not allow %s:%s", clip(c.Subject), hdr.Endpoint, clip(hdr.Namespace)))
		return
	}
	if s.h.authorize != nil {
		if aerr := s.h.authorize(s.ctx, &hdr); aerr != nil {
			s.finish(st, aerr)
			return
		}
	}
	req := &Request{Header: hdr, SessionID: s.id, RemoteAddr: s.remote}
	n := s.h.byEndpoint[hdr.Endpoint]
	n.Add(1)
	st.detached = func() {
		st.Close()
		n.Add(-1)
		s.streamEnded()
	}
	s.h.endpoints[hdr.Endpoint].ServeStream(s.ctx, st, req)
	if st.inline.Load() {
		inline = true // the stream lives on, read by the session
		return
	}
	n.Add(-1)
	if !st.replied.Load() {
		s.finish(st, Errorf(CodeInternal, "the endpoint ended the stream without an answer"))
		return
	}
	if st.rejected.Load() {
		s.finish(st, nil)
		return
	}
	st.Close()
}

// streamEnded accounts for a stream the session no longer serves.
func (s *session) streamEnded() {
	s.h.nStreams.Add(-1)
	s.active.Add(-1)
	s.wg.Done()
}

// finish answers st with e (unless nil: already answered), half-closes it
// and discards what the client still sends, until its FIN or the stream
// close timeout.
func (s *session) finish(st *Stream, e *Error) {
	if e != nil {
		s.log.Debug("stream rejected", "stream", st.ID(), "code", e.Code, "message", e.Message)
		st.Reject(e)
		switch e.Code {
		case CodeBadHeader, CodeUnknownEndpoint, CodeBadNamespace, CodeBadToken:
			if n := s.headerErrors.Add(1); n > int64(s.h.cfg.MaxHeaderErrors) {
				s.log.Warn("closing session: too many malformed headers", "count", n)
				s.close(CloseProtocolError, fmt.Sprintf("more than %d malformed stream headers", s.h.cfg.MaxHeaderErrors))
				st.Close()
				return
			}
		}
	}
	st.CloseWrite()
	st.SetReadDeadline(time.Now().Add(s.h.cfg.StreamCloseTimeout))
	io.Copy(io.Discard, st)
	st.Close()
}

// rateMeter counts events in the current second against a limit.
type rateMeter struct {
	mu     sync.Mutex
	limit  int
	second int64
	count  int
}

// allow counts one event and reports whether it is within the limit.
func (p *rateMeter) allow() bool {
	now := time.Now().Unix()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now != p.second {
		p.second, p.count = now, 0
	}
	p.count++
	return p.count <= p.limit
}
