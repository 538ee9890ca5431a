package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/relay"
)

// Pairer pairs relay streams by key: Pair blocks until the stream with
// key.Mirror() arrives and returns the *relay.Link both sides share, or an
// error of package relay (ErrConflict, ErrTimeout, ErrLimit, ErrBadKey,
// ErrReset, ErrCanceled, ErrClosed). It must neither read nor write s. The
// in-process implementation is *relay.Pairer; one that pairs across servers
// implements the same method.
type Pairer interface {
	Pair(ctx context.Context, key relay.Key, s relay.Stream) (*relay.Link, error)
}

var _ Pairer = (*relay.Pairer)(nil)

var _ relay.Stream = (*server.Stream)(nil)

// RelayConfig tunes the relay endpoint. Zero fields mean the default;
// Validate reports a value that cannot be used.
type RelayConfig struct {
	// PairTimeout is how long a stream waits for its partner before it gets
	// `timeout`. Default 30s.
	PairTimeout time.Duration
	// MaxWaiting caps the streams waiting for a partner on this server; one
	// more gets `limit`. Default 10 000.
	MaxWaiting int
	// MaxPairs caps the pairs open at once on this server; the stream that
	// would open one more gets `limit` and its partner keeps waiting.
	// Default 10 000.
	MaxPairs int
	// Limits caps every pair: Bytes per direction, Lifetime from pairing,
	// Idle time and BytesPerSecond per direction. Default: no caps (every
	// field 0). The open reply announces Bytes and Lifetime; since it counts
	// in seconds, Lifetime must be a whole number of seconds.
	Limits relay.Limits
	// Pairer pairs the streams. Default: a *relay.Pairer built from the
	// fields above, which Relay.Close stops. A Pairer given here (one that
	// pairs across servers, say) is owned by the caller, which applies its
	// own timeout, caps and limits; the fields above then only shape the
	// messages of error replies.
	Pairer Pairer
	// Logger receives debug logs. Default slog.Default().
	Logger *slog.Logger
}

// Relay defaults.
const (
	DefaultRelayPairTimeout = relay.DefaultPairTimeout
	DefaultRelayMaxWaiting  = relay.DefaultMaxWaiting
	DefaultRelayMaxPairs    = relay.DefaultMaxPairs
)

// DefaultRelayConfig returns the configuration the zero RelayConfig stands
// for (without a Logger).
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{
		PairTimeout: DefaultRelayPairTimeout,
		MaxWaiting:  DefaultRelayMaxWaiting,
		MaxPairs:    DefaultRelayMaxPairs,
	}
}

// Validate reports the first field that cannot be used: a negative value,
// or a Lifetime that is not a whole number of seconds.
func (c RelayConfig) Validate() error {
	if err := c.relayConfig().Validate(); err != nil {
		return err
	}
	if c.Limits.Lifetime%time.Second != 0 {
		return fmt.Errorf("endpoints: relay Limits.Lifetime (%v) must be a whole number of seconds: the open reply announces it in seconds", c.Limits.Lifetime)
	}
	return nil
}

func (c RelayConfig) relayConfig() relay.Config {
	return relay.Config{
		PairTimeout: c.PairTimeout,
		MaxWaiting:  c.MaxWaiting,
		MaxPairs:    c.MaxPairs,
		Limits:      c.Limits,
	}
}

// Relay is the relay endpoint (PROTOCOL.md section 5): it pairs a stream
// with (namespace, local=A, remote=B) with the one with (namespace,
// local=B, remote=A) and pipes bytes between them. Nothing is written to a
// stream before it is paired; then both get the open reply and the pipe
// starts. Relay namespaces are its own: echo or scuttlebutt namespaces of
// the same name never meet them.
//
// ServeStream blocks, in the stream's goroutine, for as long as the stream
// waits and then for as long as the pair is open; the copy into the stream
// runs in that goroutine too. Stats and Close may be called from any
// goroutine.
type Relay struct {
	pairer  Pairer
	own     *relay.Pairer // nil when RelayConfig.Pairer was given
	timeout time.Duration // for the message of a `timeout` reply
	log     *slog.Logger
}

var _ server.Endpoint = (*Relay)(nil)

// NewRelay validates cfg and returns the relay endpoint. Unless cfg.Pairer
// is set it starts a *relay.Pairer (and its sweeper goroutine), which Close
// stops.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Relay{pairer: cfg.Pairer, timeout: cfg.PairTimeout, log: cfg.Logger}
	if r.timeout == 0 {
		r.timeout = DefaultRelayPairTimeout
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.pairer == nil {
		p, err := relay.NewPairer(cfg.relayConfig())
		if err != nil {
			return nil, err
		}
		r.own, r.pairer = p, p
	}
	return r, nil
}

// Close stops the pairer NewRelay started: waiting streams and open pairs
// are reset, and later streams are reset at once. It blocks until that is
// done. A Pairer from RelayConfig is left to its owner. Close may be called
// twice. A server calls it after its server.Handler has shut down, so that
// clients see the session close (1001) rather than resets.
func (r *Relay) Close() {
	if r.own != nil {
		r.own.Close()
	}
}

// Stats returns the pairer's counters. With a Pairer from RelayConfig it
// returns zeros unless that Pairer has a Stats method like relay.Pairer's.
func (r *Relay) Stats() relay.Stats {
	if s, ok := r.pairer.(interface{ Stats() relay.Stats }); ok {
		return s.Stats()
	}
	return relay.Stats{}
}

// relayReply is the open reply's fields after "ok":true.
type relayReply struct {
	Open  bool               `json:"open"`
	Limit channel.RelayLimit `json:"limit"`
	Peer  *channel.PeerInfo  `json:"peer,omitempty"`
}

// ServeStream implements server.Endpoint. It waits for the partner, sends
// the open reply, then copies this stream to the partner until the pair
// ends.
func (r *Relay) ServeStream(ctx context.Context, s *server.Stream, req *server.Request) {
	h := req.Header
	key := relay.Key{Namespace: h.Namespace, Local: h.Local, Remote: h.Remote}
	link, err := r.pairer.Pair(ctx, key, s)
	if err != nil {
		if abandoned(ctx, s) {
			// The client reset the stream or left before a partner came:
			// no one to answer, and nothing went wrong here.
			r.log.Debug("relay stream abandoned before pairing", "session", req.SessionID, "stream", s.ID(), "err", err)
			s.Reset()
			return
		}
		if perr := r.replyFor(err); perr != nil {
			r.log.Debug("relay refused", "session", req.SessionID, "stream", s.ID(), "code", perr.Code, "err", err)
			s.Reject(perr)
			return
		}
		// The stream was reset, its session ended or the server is
		// stopping: there is no one to answer. Reset it so that nothing
		// else is sent on it.
		r.log.Debug("relay stream gone while waiting", "session", req.SessionID, "stream", s.ID(), "err", err)
		s.Reset()
		return
	}
	lim := link.Limits()
	reply := relayReply{Open: true, Limit: channel.RelayLimit{Bytes: lim.Bytes, Seconds: announcedSeconds(lim.Lifetime)}}
	if id, meta := relay.IdentityOf(link.Partner(s)); id != "" && h.Peer {
		reply.Peer = &channel.PeerInfo{ID: id, Meta: meta}
	}
	if err := s.Accept(reply); err != nil {
		link.Reset() // the partner's Run returns ErrReset
		return
	}
	// The session's context ends with the session, but a stream whose
	// client half-closed before hanging up still has bytes to deliver: the
	// link follows each stream's Done and PeerClosed instead, and a server
	// shutdown ends links by closing their sessions.
	err = link.Run(context.WithoutCancel(ctx), s)
	r.log.Debug("relay pair ended", "session", req.SessionID, "stream", s.ID(), "err", err)
}

// abandoned reports whether the client gave the stream up: reset it, or
// ended its session.
func abandoned(ctx context.Context, s *server.Stream) bool {
	select {
	case <-s.Done():
		return true
	default:
		return ctx.Err() != nil
	}
}

// replyFor returns the failure reply for a Pair error, or nil when the
// stream is gone and gets no reply.
func (r *Relay) replyFor(err error) *channel.Error {
	var le *relay.LimitError
	switch {
	case errors.Is(err, relay.ErrReset), errors.Is(err, relay.ErrCanceled), errors.Is(err, relay.ErrClosed):
		return nil
	case errors.Is(err, relay.ErrConflict):
		return channel.Errorf(channel.CodeConflict, "a relay stream with this namespace and these tokens is already waiting or open")
	case errors.Is(err, relay.ErrTimeout):
		return channel.Errorf(channel.CodeTimeout, "no partner arrived within the pairing timeout (%s)", r.timeout)
	case errors.As(err, &le):
		return channel.Errorf(channel.CodeLimit, "relay %s limit (%d) reached", le.Limit, le.Value)
	case errors.Is(err, relay.ErrLimit):
		return channel.Errorf(channel.CodeLimit, "a relay limit was reached")
	case errors.Is(err, relay.ErrBadKey):
		return channel.Errorf(channel.CodeBadToken, "relay tokens \"local\" and \"remote\" must differ")
	}
	r.log.Error("relay pairing failed", "err", err)
	return channel.Errorf(channel.CodeInternal, "the relay could not pair this stream")
}

// announcedSeconds is the lifetime cap as the open reply gives it: whole
// seconds, 0 for no cap. RelayConfig.Validate keeps the built-in pairer's
// lifetime whole; a fractional one from another Pairer is rounded down, and
// up to 1 s when shorter, so that a cap is never announced as 0 (none).
func announcedSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(int64(d/time.Second), 1)
}
