package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/internal/wsraw"
)

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
	Header channel.Header
	// SessionID identifies the stream's session in logs.
	SessionID string
	// RemoteAddr is the client's address.
	RemoteAddr string
	// Peer is the session's peer id, which the server vouches for: its
	// token's sub, or an id the server assigned (PROTOCOL.md section 9).
	Peer string
	// Meta is the public metadata of the session's token, nil when none.
	Meta json.RawMessage
	// Owner is Peer when ownership applies to this stream, "" otherwise.
	// The handler has already checked a relay header's local token; an
	// endpoint with keys lets the stream write only those Owner owns
	// (channel.Owns).
	Owner string
}

// Authorizer decides whether a session may open a stream with header h. It
// returns nil to allow, or the error to send (normally `forbidden`).
type Authorizer func(ctx context.Context, h *channel.Header) *channel.Error

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
	enforce   bool           // ownership applies (Config.Ownership)
	owned     []auth.Pattern // Config.Owned, parsed
	perIP     map[string]int // sessions by client address, under mu
	admitted  int            // sessions admitted, under mu

	nSessions      atomic.Int64
	nSessionsTotal atomic.Int64
	nOriginRefused atomic.Int64
	originLog      rate.Sometimes // origin refusals are logged at most every 10 s
	nStreams       atomic.Int64
	byEndpoint     map[string]*atomic.Int64 // fixed once serving starts
	rejected       map[channel.Code]*atomic.Int64
	closesMu       sync.Mutex
	closes         map[int]int64
}

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
		rejected:   map[channel.Code]*atomic.Int64{},
		originLog:  rate.Sometimes{First: 1, Interval: 10 * time.Second},
		closes:     map[int]int64{},
	}
	h.enforce = cfg.Ownership.enforces(cfg.Verifier != nil)
	for _, o := range cfg.Owned {
		p, _ := auth.ParsePattern(o) // Validate checked it
		h.owned = append(h.owned, p)
	}
	for _, c := range []channel.Code{channel.CodeBadHeader, channel.CodeUnknownEndpoint, channel.CodeBadNamespace, channel.CodeBadToken,
		channel.CodeForbidden, channel.CodeLimit, channel.CodeTimeout, channel.CodeConflict, channel.CodeInternal} {
		h.rejected[c] = new(atomic.Int64)
	}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HeaderTimeout,
		// gorilla does the handshake only (then wsraw reads and writes
		// the socket): no buffers of its own, the HTTP server's do.
		Subprotocols: []string{channel.Subprotocol},
		CheckOrigin: func(r *http.Request) bool {
			if cfg.checkOrigin(r) {
				return true
			}
			h.originRefused(r)
			return false
		},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return h, nil
}

// originRefused counts a request refused for its Origin, and logs it at
// info, the first and then at most one every 10 s, so that a
// misconfigured -allowed-origins shows in the logs without flooding them.
func (h *Handler) originRefused(r *http.Request) {
	n := h.nOriginRefused.Add(1)
	h.originLog.Do(func() {
		h.log.Info("browser origin refused (see -allowed-origins)", "origin", channel.Clip(r.Header.Get("Origin")), "remote", r.RemoteAddr, "path", r.URL.Path, "refused_total", n)
	})
}

// Handle registers ep for the endpoint name. Call it before serving.
func (h *Handler) Handle(name string, ep Endpoint) {
	h.endpoints[name] = ep
	h.byEndpoint[name] = new(atomic.Int64)
}

// Disconnect closes every session of peerID on this server with code and
// reason, and returns how many it closed.
func (h *Handler) Disconnect(peerID string, code int, reason string) int {
	h.mu.Lock()
	var them []*session
	for s := range h.sessions {
		if s.who.Load().ID == peerID {
			them = append(them, s)
		}
	}
	h.mu.Unlock()
	for _, s := range them {
		s.logger().Info("closing session: disconnected by the API", "code", code, "reason", reason)
		s.close(code, reason)
	}
	return len(them)
}

// SetAuthorizer sets a, asked about every stream after its header is valid.
// Its context carries the session's current claims (auth.FromContext) on a
// server with credentials.
func (h *Handler) SetAuthorizer(a Authorizer) { h.authorize = a }

// Stats is a snapshot of the handler's counters.
type Stats struct {
	Sessions      int64                  // open sessions
	SessionsTotal int64                  // sessions opened since start
	Streams       int64                  // streams being served, header phase included
	ByEndpoint    map[string]int64       // streams being served by each endpoint
	Rejected      map[channel.Code]int64 // failure replies sent, by code
	Closes        map[int]int64          // sessions ended, by the close code sent
	OriginRefused int64                  // handshakes refused for their Origin (403)
}

// Stats returns the current counters.
func (h *Handler) Stats() Stats {
	st := Stats{
		Sessions:      h.nSessions.Load(),
		SessionsTotal: h.nSessionsTotal.Load(),
		Streams:       h.nStreams.Load(),
		OriginRefused: h.nOriginRefused.Load(),
		ByEndpoint:    make(map[string]int64, len(h.byEndpoint)),
		Rejected:      make(map[channel.Code]int64, len(h.rejected)),
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

func (h *Handler) countReject(code channel.Code) {
	n, ok := h.rejected[code]
	if !ok {
		n = h.rejected[channel.CodeInternal]
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
			refuseCode, refused = channel.CloseUnauthorized, auth.CloseReason(err)
			h.log.Info("credentials refused", "remote", r.RemoteAddr, "err", err)
		}
	}
	id := uuid.NewString()
	if refused == "" && h.cfg.Hooks.Session != nil {
		info := SessionInfo{PeerID: id, Remote: r.RemoteAddr, Claims: claims}
		if claims != nil {
			info.PeerID, info.Meta = claims.Subject, claims.Meta
		}
		if rf := h.cfg.Hooks.Session(r.Context(), info); rf != nil {
			refuseCode, refused = rf.Code, rf.Reason
			if refuseCode < 4000 || refuseCode > 4999 {
				refuseCode = channel.CloseForbidden
			}
			if refused == "" {
				refused = "refused by the server's application"
			}
			h.log.Info("session refused by a hook", "remote", r.RemoteAddr, "code", refuseCode, "reason", refused)
		}
	}
	ip := clientIP(r)
	admitted := false
	if refused == "" {
		if refused = h.admit(ip); refused != "" {
			refuseCode = channel.CloseLimit
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
		wsraw.New(ws.UnderlyingConn(), wsraw.Options{WriteTimeout: h.cfg.WriteTimeout}).Refuse(refuseCode, refused)
		return
	}
	sess := h.newSession(id, ws, r, claims, ip)
	if sess == nil {
		return
	}
	// The session runs in a goroutine of its own, so that what the HTTP
	// server kept for the request (its goroutine's grown stack, the
	// request and response) is freed: that is most of an idle session.
	wgDone, admitted = false, false
	go sess.run()
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
	sessions := h.stopAccepting()
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.close(channel.CloseGoingAway, "server is shutting down")
		}()
	}
	wg.Wait()
	h.cancel()
	for _, s := range sessions {
		s.cancel() // the contexts of sessions still lingering
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
