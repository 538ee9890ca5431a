package server

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

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/internal/wsraw"
	"github.com/signalchannel/signalchannel/channel/mux"
)

// session is one WebSocket and its yamux session.
type session struct {
	h      *Handler
	id     string
	remote string
	conn   *wsraw.Conn
	mux    *mux.Session
	// The session's context (sessionCtx): cancelled when it ends.
	ctxMu    sync.Mutex
	ctxDone  chan struct{} // made when first asked for
	ctxErr   error
	ctxAfter []*func()      // AfterFunc's functions, run on cancel
	wg       sync.WaitGroup // stream goroutines
	local    net.Addr
	peer     net.Addr

	active       atomic.Int64 // streams counted against MaxStreams
	rejecting    atomic.Int64 // over-limit streams being answered
	pings        rateMeter
	opens        rateMeter
	headerErrors atomic.Int64
	claims       atomic.Pointer[auth.Claims]      // nil on an open server; replaced by a refresh
	who          atomic.Pointer[channel.PeerInfo] // who the session is; replaced by a refresh
	refreshMu    sync.Mutex                       // serialises refreshes
	expiry       *time.Timer                      // closes the session when the token expires
	opened       time.Time
	ip           string // counted against MaxSessionsPerIP until the session ends
}

func (h *Handler) newSession(id string, ws *websocket.Conn, r *http.Request, claims *auth.Claims, ip string) *session {
	s := &session{h: h, id: id, remote: r.RemoteAddr, local: ws.LocalAddr(), peer: ws.RemoteAddr(), opened: time.Now(), ip: ip}
	// gorilla's conn did the handshake; the session reads and writes the
	// socket through wsraw, which holds nothing while the session is idle.
	conn := wsraw.New(ws.UnderlyingConn(), wsraw.Options{
		WriteTimeout: h.cfg.WriteTimeout,
		ReadLimit:    h.cfg.MaxMessageBytes,
		OnPing:       s.wsPing,
		Resume:       s.run,
	})
	s.conn = conn
	s.pings.limit = h.cfg.MaxPingsPerSecond
	s.opens.limit = h.cfg.MaxStreamOpensPerSecond
	if claims != nil {
		s.claims.Store(claims)
	}
	s.who.Store(s.identity(claims))

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		s.cancel()
		conn.Refuse(channel.CloseGoingAway, "server is shutting down")
		return nil
	}
	// The session is registered before its multiplexer starts, so that
	// Shutdown and Drain see every session that may open streams.
	s.mux = mux.New(conn, mux.Config{
		KeepAlive:    h.cfg.KeepAliveInterval,
		PingTimeout:  h.cfg.WriteTimeout,
		CloseTimeout: h.cfg.StreamCloseTimeout,
		OnPing:       s.pings.allow,
		OnStream:     s.accept,
	})
	h.sessions[s] = struct{}{}
	h.mu.Unlock()
	if claims != nil { // stopped by serve when the session ends
		s.expiry = time.AfterFunc(time.Until(claims.ValidUntil), func() {
			s.logger().Info("closing session: token expired")
			s.close(channel.CloseUnauthorized, "token expired")
		})
	}
	h.nSessions.Add(1)
	h.nSessionsTotal.Add(1)
	s.logger().Info("session open", "remote", r.RemoteAddr, "subprotocol", ws.Subprotocol())
	h.event(Event{Type: EventSessionOpened, SessionID: id, PeerID: s.who.Load().ID})
	return s
}

// wsPing answers a WebSocket ping with a pong, as gorilla's default
// handler does, within the session's budget of pings, which yamux pings
// share: past it the session is closed with 4400, as for yamux pings. It
// runs in the read loop; the loop goes on reading (pings go unanswered)
// until the client's close message or the close linger.
func (s *session) wsPing(data []byte) error {
	if s.mux.Closed() {
		return nil
	}
	if !s.pings.allow() {
		s.logger().Info("closing session: WebSocket ping flood")
		s.close(channel.CloseProtocolError, "too many pings (WebSocket and yamux)")
		return nil
	}
	err := s.conn.WritePong(data, time.Now().Add(s.h.cfg.WriteTimeout))
	var ne net.Error
	if errors.Is(err, wsraw.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// logger is the Handler's logger with the session's id and sub, made for
// the line being logged: an idle session holds none.
func (s *session) logger() *slog.Logger {
	if c := s.claims.Load(); c != nil {
		return s.h.log.With("session", s.id, "sub", c.Subject)
	}
	return s.h.log.With("session", s.id)
}

func (s *session) close(code int, reason string) {
	s.conn.SetCloseStatus(code, reason)
	s.mux.Close()
}

// run runs the session's read loop until the session parks (it runs again
// when input comes: wsraw.Options.Resume) or ends; at the end it waits for
// the session's streams and lets the session go.
func (s *session) run() {
	err := s.mux.Run()
	if errors.Is(err, mux.ErrParked) {
		return
	}
	// Reading is over, whatever ended it (a failed write in the read
	// loop, say, which the conn did not see): the conn lets go of the
	// socket and of its place in the epoll set.
	s.conn.ReadFailed(err)
	s.end()
}

// end lets an ended session go: its streams ended, it is counted and
// logged, and the Handler no longer waits for it.
func (s *session) end() {
	defer s.h.wg.Done()
	defer s.h.leave(s.ip)
	func() {
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
		code, reason := s.conn.CloseStatus()
		s.h.countClose(code)
		// Who ended it: the server (its code and reason), the client (the
		// code and reason of its close message), or neither (the
		// connection dropped).
		by := "server"
		switch peer := s.conn.PeerCloseError(); {
		case code != 0:
		case peer != nil && peer.Code != websocket.CloseAbnormalClosure: // 1006: no close message came
			by, code, reason = "client", peer.Code, peer.Text
		default:
			by = "connection lost"
		}
		s.logger().Info("session closed", "by", by, "code", code, "reason", reason, "duration", time.Since(s.opened).Round(time.Millisecond))
		s.h.event(Event{Type: EventSessionClosed, SessionID: s.id, PeerID: s.who.Load().ID, Code: code, Reason: reason, By: by})
	}()
}

// accept starts serving a stream the client opened; it runs in the read
// loop, so it never blocks for long.
func (s *session) accept(ms *mux.Stream) {
	st := newStream(ms, s.local, s.peer)
	st.onReject = s.h.countReject
	var refuse *channel.Error
	switch {
	case s.active.Load() >= int64(s.h.cfg.MaxStreams):
		refuse = channel.Errorf(channel.CodeLimit, "streams per session limit (%d) reached", s.h.cfg.MaxStreams)
	case !s.opens.allow():
		refuse = channel.Errorf(channel.CodeLimit, "stream opens per second limit (%d) reached", s.h.cfg.MaxStreamOpensPerSecond)
	}
	if refuse != nil {
		if s.rejecting.Load() >= int64(s.h.cfg.MaxStreams) {
			// A client that keeps opening streams while as many
			// refusals are still in flight is flooding.
			st.Reset()
			s.logger().Warn("closing session: stream flood", "refusing", s.rejecting.Load())
			s.close(channel.CloseLimit, fmt.Sprintf("stream flood: more than %d streams refused at once", s.h.cfg.MaxStreams))
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
	inline, released := false, false
	defer func() {
		switch {
		case inline: // the endpoint's done accounts for it
		case released:
			s.h.nStreams.Add(-1)
			s.wg.Done()
		default:
			s.streamEnded()
		}
	}()

	st.SetReadDeadline(time.Now().Add(s.h.cfg.HeaderTimeout))
	line, err := st.readLine(channel.MaxHeaderBytes)
	switch {
	case err == nil:
	case errors.Is(err, channel.ErrLineTooLong):
		s.finish(st, channel.Errorf(channel.CodeBadHeader, "header longer than %d bytes including the newline", channel.MaxHeaderBytes))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.finish(st, channel.Errorf(channel.CodeTimeout, "no header line within %s of opening the stream", s.h.cfg.HeaderTimeout))
		return
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.finish(st, channel.Errorf(channel.CodeBadHeader, "stream closed before the header line's newline"))
		return
	default: // reset or session gone
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})

	hdr, perr := channel.ParseHeader(line, func(name string) bool { _, ok := s.h.endpoints[name]; return ok })
	if perr != nil {
		s.finish(st, perr)
		return
	}
	if hdr.Endpoint == channel.EndpointSession {
		s.serveSession(st, &hdr, func() {
			s.active.Add(-1)
			released = true
		})
		return
	}
	c := s.claims.Load()
	if c != nil && !c.Allows(hdr.Endpoint, hdr.Namespace) {
		s.finish(st, channel.Errorf(channel.CodeForbidden, "the token of %q does not allow %s:%s", channel.Clip(c.Subject), hdr.Endpoint, channel.Clip(hdr.Namespace)))
		return
	}
	peer := s.who.Load()
	req := &Request{Header: hdr, SessionID: s.id, RemoteAddr: s.remote, Peer: peer.ID, Meta: peer.Meta}
	if s.h.enforce && (hdr.Endpoint == channel.EndpointRelay || auth.MatchAny(s.h.owned, hdr.Endpoint, hdr.Namespace) || c.Owns(hdr.Endpoint, hdr.Namespace)) {
		req.Owner = req.Peer
	}
	if req.Owner != "" && hdr.Local != "" && !channel.Owns(req.Owner, hdr.Local) {
		s.finish(st, channel.Errorf(channel.CodeForbidden, "a relay stream pairs only as its own peer: \"local\" must be %q or begin with %q", channel.Clip(req.Owner), channel.Clip(req.Owner)+channel.IDSeparator))
		return
	}
	if s.h.authorize != nil {
		ctx := s.context()
		if c != nil {
			ctx = auth.NewContext(ctx, c)
		}
		if aerr := s.h.authorize(ctx, &hdr); aerr != nil {
			s.finish(st, aerr)
			return
		}
	}
	if hook := s.h.cfg.Hooks.Stream; hook != nil {
		if herr := hook(s.context(), StreamInfo{SessionID: s.id, PeerID: peer.ID, Meta: peer.Meta, Endpoint: hdr.Endpoint, Namespace: hdr.Namespace, Header: &hdr}); herr != nil {
			s.logger().Info("stream refused by a hook", "endpoint", hdr.Endpoint, "namespace", channel.Clip(hdr.Namespace), "code", herr.Code, "message", herr.Message)
			s.finish(st, herr)
			return
		}
	}
	st.peer = peer
	st.sess, st.endpoint, st.namespace = s, hdr.Endpoint, hdr.Namespace
	n := s.h.byEndpoint[hdr.Endpoint]
	n.Add(1)
	if s.h.log.Enabled(context.Background(), slog.LevelDebug) {
		st.opened = time.Now()
		s.logger().Debug("stream open", "stream", st.ID(), "endpoint", hdr.Endpoint, "namespace", channel.Clip(hdr.Namespace), "peer", channel.Clip(peer.ID))
	}
	if s.h.cfg.Hooks.Event != nil {
		opens, _ := streamEvents(hdr.Endpoint)
		st.onAccept = func() {
			s.h.event(Event{Type: opens, SessionID: s.id, PeerID: peer.ID, Endpoint: hdr.Endpoint, Namespace: hdr.Namespace})
		}
	}
	defer func() {
		if !inline {
			st.served()
		}
	}()
	s.h.endpoints[hdr.Endpoint].ServeStream(s.context(), st, req)
	if st.inline.Load() {
		inline = true // the stream lives on, read by the session
		return
	}
	n.Add(-1)
	if !st.replied.Load() {
		s.finish(st, channel.Errorf(channel.CodeInternal, "the endpoint ended the stream without an answer"))
		return
	}
	if st.rejected.Load() {
		s.finish(st, nil)
		return
	}
	st.Close()
}

// served tells of the end of a stream's service: its event, and its debug
// line if the stream's opening was logged.
func (st *Stream) served() {
	s := st.sess
	if s.h.cfg.Hooks.Event != nil && st.replied.Load() && !st.rejected.Load() {
		_, closes := streamEvents(st.endpoint)
		s.h.event(Event{Type: closes, SessionID: s.id, PeerID: st.peer.ID, Endpoint: st.endpoint, Namespace: st.namespace})
	}
	if !st.opened.IsZero() {
		s.logger().Debug("stream closed", "stream", st.ID(), "endpoint", st.endpoint, "namespace", channel.Clip(st.namespace), "peer", channel.Clip(st.peer.ID),
			"duration", time.Since(st.opened).Round(time.Millisecond), "bytes_in", st.in.Load(), "bytes_out", st.out.Load())
	}
}

// detach ends the service of a stream its endpoint read inline, when the
// endpoint is done with it.
func (st *Stream) detach() {
	st.Close()
	st.sess.h.byEndpoint[st.endpoint].Add(-1)
	st.served()
	st.sess.streamEnded()
}

// identity returns who the session is under claims c: the sub and meta of
// c, or, on a server without credentials, the session id the server drew
// (a random UUID) and no meta.
func (s *session) identity(c *auth.Claims) *channel.PeerInfo {
	if c != nil {
		return &channel.PeerInfo{ID: c.Subject, Meta: c.Meta}
	}
	return &channel.PeerInfo{ID: s.id}
}

// serveSession answers a stream of the session endpoint: it takes the
// header's fresh token, if any, then replies with who the session is. It
// calls release, which frees the stream's place under the streams limit,
// after the reply and before its FIN, so that a client that waits for the
// FIN (as the clients of this module do) finds the place free when it opens
// its next stream. The stream is then left to close by itself: nothing
// waits for the client's FIN.
func (s *session) serveSession(st *Stream, hdr *channel.Header, release func()) {
	var reply *channel.Error
	if hdr.Token != "" {
		e, closed := s.refresh(hdr.Token)
		if closed {
			st.Reset()
			return
		}
		reply = e
	}
	if reply != nil {
		st.Reject(reply)
	} else {
		c := s.claims.Load()
		who := s.who.Load()
		info := channel.SessionInfo{ID: who.ID, Meta: who.Meta}
		if c != nil {
			info.Exp = c.ExpiresAt.Unix()
		}
		if iss := s.h.cfg.ICE; iss != nil {
			servers := iss.Issue(who.ID)
			info.ICE = &servers
		}
		if st.Accept(info) != nil {
			st.Reset()
			return
		}
	}
	release()
	st.Close()
}

// refresh replaces the session's claims with those of token, which must be
// valid and for the same sub, and moves the expiry deadline. A token that
// does not verify gets `forbidden` and changes nothing; a token for another
// sub closes the session with 4401 (closed is then true).
func (s *session) refresh(token string) (e *channel.Error, closed bool) {
	v := s.h.cfg.Verifier
	if v == nil {
		return channel.Errorf(channel.CodeForbidden, "this server takes no credentials: there is no token to refresh"), false
	}
	c, err := v.Verify(token)
	if err != nil {
		s.logger().Info("token refresh refused", "err", err)
		return channel.Errorf(channel.CodeForbidden, "%s: the session keeps its current token", auth.CloseReason(err)), false
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if old := s.claims.Load(); c.Subject != old.Subject {
		s.logger().Warn("closing session: refresh token for another sub", "new_sub", channel.Clip(c.Subject))
		s.close(channel.CloseUnauthorized, "token refresh for another sub")
		return nil, true
	}
	s.claims.Store(c)
	s.who.Store(s.identity(c))
	s.expiry.Reset(time.Until(c.ValidUntil))
	s.logger().Debug("token refreshed", "exp", c.ExpiresAt)
	return nil, false
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
func (s *session) finish(st *Stream, e *channel.Error) {
	if e != nil {
		s.logger().Debug("stream rejected", "stream", st.ID(), "code", e.Code, "message", e.Message)
		st.Reject(e)
		switch e.Code {
		case channel.CodeBadHeader, channel.CodeUnknownEndpoint, channel.CodeBadNamespace, channel.CodeBadToken:
			if n := s.headerErrors.Add(1); n > int64(s.h.cfg.MaxHeaderErrors) {
				s.logger().Warn("closing session: too many malformed headers", "count", n)
				s.close(channel.CloseProtocolError, fmt.Sprintf("more than %d malformed stream headers", s.h.cfg.MaxHeaderErrors))
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
