package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/mux"
	"github.com/signalchannel/signalchannel/ice"
)

// Config tunes a Handler. The zero value of a field means its default;
// DefaultConfig returns them all. Validate reports a bad value.
type Config struct {
	// MaxStreams is how many streams one session may have open at once;
	// one more gets a `limit` reply. Default 64.
	MaxStreams int
	// HeaderTimeout is how long a new stream has to send its header line;
	// a late one gets a `timeout` reply. Default 10s.
	HeaderTimeout time.Duration
	// MaxMessageBytes is the WebSocket read limit: the longest binary
	// message a client may send. Default 1 MiB.
	MaxMessageBytes int64
	// KeepAliveInterval is how often the server pings each session; a
	// session that does not answer within WriteTimeout is closed.
	// Default 30s.
	KeepAliveInterval time.Duration
	// WriteTimeout bounds every write to a client. Default 10s.
	WriteTimeout time.Duration
	// StreamCloseTimeout is how long a stream the server is done with waits
	// for the peer's FIN before it is reset; it also bounds how long a
	// rejected stream is drained. A stream half-closed by a relay whose other
	// direction still flows has no such limit. Default 30s.
	StreamCloseTimeout time.Duration
	// AllowedOrigins lists the Origin values a browser may connect from:
	// exact origins ("https://app.example.com") or patterns with one "*"
	// ("https://*.example.com"). Empty allows every origin (credentials
	// are tokens, not cookies). Requests without Origin are always allowed.
	AllowedOrigins []string
	// MaxPingsPerSecond is how many pings a session may send per second
	// before it is closed with 4400. Default 10.
	MaxPingsPerSecond int
	// MaxSessions caps the sessions of the server; a connection past it is
	// closed with 4429. Default 50 000.
	MaxSessions int
	// MaxSessionsPerIP caps the sessions from one client address; a
	// connection past it is closed with 4429. Default 1000 (users behind
	// one NAT share an address).
	MaxSessionsPerIP int
	// MaxStreamOpensPerSecond is how many streams a session may open per
	// second; a stream past it gets `limit`. Default 100.
	MaxStreamOpensPerSecond int
	// MaxHeaderErrors is how many malformed stream headers (bad_header,
	// unknown_endpoint, bad_namespace, bad_token) a session may send; the
	// next one closes the session with 4400. Default 16.
	MaxHeaderErrors int
	// Verifier checks every connection's token (PROTOCOL.md section 7):
	// without a valid one a connection is closed with 4401, a stream its
	// allow list does not cover gets `forbidden`, and a session is closed
	// with 4401 when its token expires. Default nil: the server is open.
	Verifier *auth.Verifier
	// Hooks decide on sessions and streams and hear what happens, for a
	// program that embeds the server. Default none.
	Hooks Hooks
	// ICE, if set, issues the ICE servers the session endpoint's reply and
	// ICEHandler hand out (PROTOCOL.md section 11), with TURN credentials
	// for the peer's id. Default nil: none.
	ICE *ice.Issuer
	// Ownership says whether a session may act only as itself
	// (PROTOCOL.md section 9): a relay stream pairs only with a local token
	// its peer id owns, and in the namespaces Owned or the token's own
	// claim name, a scuttlebutt stream writes only keys its peer id owns.
	// Default OwnershipAuto: on with a Verifier, off without.
	Ownership Ownership
	// Owned lists endpoint:namespace patterns (as in a token's allow
	// claim) where ownership applies to every session, in addition to the
	// patterns of its token's own claim. Only scuttlebutt namespaces have
	// keys to own; relay ownership needs no pattern. Default none.
	Owned []string
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
}

// Ownership is Config.Ownership.
type Ownership int

// The values of Ownership.
const (
	// OwnershipAuto enforces ownership when the server takes credentials.
	OwnershipAuto Ownership = iota
	// OwnershipOn enforces it on every server, also one without
	// credentials, where peer ids are assigned by the server.
	OwnershipOn
	// OwnershipOff never enforces it: clients pick any relay token and
	// write any key, as in version 1 of the protocol.
	OwnershipOff
)

// String returns "auto", "on" or "off".
func (o Ownership) String() string {
	switch o {
	case OwnershipAuto:
		return "auto"
	case OwnershipOn:
		return "on"
	case OwnershipOff:
		return "off"
	}
	return fmt.Sprintf("Ownership(%d)", int(o))
}

// ParseOwnership parses "auto", "on" or "off".
func ParseOwnership(s string) (Ownership, error) {
	for _, o := range []Ownership{OwnershipAuto, OwnershipOn, OwnershipOff} {
		if s == o.String() {
			return o, nil
		}
	}
	return 0, fmt.Errorf("channel: ownership %q: want auto, on or off", s)
}

// enforces reports whether ownership applies on a server with or without
// credentials.
func (o Ownership) enforces(credentials bool) bool {
	return o == OwnershipOn || o == OwnershipAuto && credentials
}

// Defaults of Config.
const (
	DefaultMaxStreams         = 64
	DefaultHeaderTimeout      = 10 * time.Second
	DefaultMaxMessageBytes    = 1 << 20
	DefaultKeepAliveInterval  = 30 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultStreamCloseTimeout = 30 * time.Second
	DefaultMaxPingsPerSecond  = 10
	DefaultMaxSessions        = 50000
	DefaultMaxSessionsPerIP   = 1000
	DefaultMaxStreamOpens     = 100
	DefaultMaxHeaderErrors    = 16
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		MaxStreams:              DefaultMaxStreams,
		HeaderTimeout:           DefaultHeaderTimeout,
		MaxMessageBytes:         DefaultMaxMessageBytes,
		KeepAliveInterval:       DefaultKeepAliveInterval,
		WriteTimeout:            DefaultWriteTimeout,
		StreamCloseTimeout:      DefaultStreamCloseTimeout,
		MaxPingsPerSecond:       DefaultMaxPingsPerSecond,
		MaxSessions:             DefaultMaxSessions,
		MaxSessionsPerIP:        DefaultMaxSessionsPerIP,
		MaxHeaderErrors:         DefaultMaxHeaderErrors,
		Logger:                  slog.Default(),
		MaxStreamOpensPerSecond: DefaultMaxStreamOpens,
	}
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.MaxStreams, d.MaxStreams)
	setDefault(&c.HeaderTimeout, d.HeaderTimeout)
	setDefault(&c.MaxMessageBytes, d.MaxMessageBytes)
	setDefault(&c.KeepAliveInterval, d.KeepAliveInterval)
	setDefault(&c.WriteTimeout, d.WriteTimeout)
	setDefault(&c.StreamCloseTimeout, d.StreamCloseTimeout)
	setDefault(&c.MaxPingsPerSecond, d.MaxPingsPerSecond)
	setDefault(&c.MaxSessions, d.MaxSessions)
	setDefault(&c.MaxSessionsPerIP, d.MaxSessionsPerIP)
	setDefault(&c.MaxStreamOpensPerSecond, d.MaxStreamOpensPerSecond)
	setDefault(&c.MaxHeaderErrors, d.MaxHeaderErrors)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate reports the first field with an impossible value.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	positive := func(name string, ok bool) {
		if !ok {
			errs = append(errs, fmt.Errorf("channel: %s must be positive", name))
		}
	}
	positive("MaxStreams", c.MaxStreams > 0)
	positive("HeaderTimeout", c.HeaderTimeout > 0)
	positive("KeepAliveInterval", c.KeepAliveInterval > 0)
	positive("WriteTimeout", c.WriteTimeout > 0)
	positive("StreamCloseTimeout", c.StreamCloseTimeout > 0)
	positive("MaxPingsPerSecond", c.MaxPingsPerSecond > 0)
	positive("MaxSessions", c.MaxSessions > 0)
	positive("MaxSessionsPerIP", c.MaxSessionsPerIP > 0)
	positive("MaxStreamOpensPerSecond", c.MaxStreamOpensPerSecond > 0)
	positive("MaxHeaderErrors", c.MaxHeaderErrors > 0)
	if c.MaxMessageBytes < mux.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("channel: MaxMessageBytes must be at least %d (one whole yamux frame)", mux.MaxFrameBytes))
	}
	if c.Ownership < OwnershipAuto || c.Ownership > OwnershipOff {
		errs = append(errs, fmt.Errorf("channel: unknown %v", c.Ownership))
	}
	for _, o := range c.Owned {
		if _, err := auth.ParsePattern(o); err != nil {
			errs = append(errs, fmt.Errorf("channel: Owned: %w", err))
		}
	}
	for _, o := range c.AllowedOrigins {
		if strings.Count(o, "*") > 1 || o == "" {
			errs = append(errs, fmt.Errorf("channel: allowed origin %q: want an origin with at most one \"*\"", o))
		}
	}
	return errors.Join(errs...)
}

// checkOrigin implements AllowedOrigins.
func (c Config) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(c.AllowedOrigins) == 0 {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	origin = strings.ToLower(u.Scheme + "://" + u.Host)
	for _, pat := range c.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(pat), origin); ok || strings.EqualFold(pat, origin) {
			return true
		}
	}
	return false
}
