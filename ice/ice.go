// Package ice hands out the ICE servers a WebRTC client should use: STUN
// URLs, and TURN URLs with short-lived credentials in the scheme coturn
// calls use-auth-secret (the "TURN REST API"): the username is
// "<expiry unix time>:<peer id>" and the credential the base64 of the
// HMAC-SHA1 of the username under a secret shared with the TURN server, so
// that coturn, or the embedded TURN server (package turnserver), accepts
// them unchanged (PROTOCOL.md section 11).
package ice

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTTL is how long issued TURN credentials are valid by default.
const DefaultTTL = time.Hour

// MinTTL is the shortest lifetime of issued credentials.
const MinTTL = 10 * time.Second

// MaxUsernameBytes bounds a username that ParseUsername accepts: the
// expiry, the colon and a peer id of at most 128 bytes.
const MaxUsernameBytes = 20 + 1 + 128

// Server is one ICE server in the shape of the WebRTC RTCIceServer.
type Server struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Servers is what a client gets: its ICE servers and, when they carry
// credentials, when those expire.
type Servers struct {
	ICEServers []Server `json:"iceServers"`
	// TTL is the credentials' lifetime in seconds, 0 when none carry any.
	TTL int64 `json:"ttl,omitempty"`
	// Expires is when the credentials expire, in seconds since the Unix
	// epoch; 0 when none carry any.
	Expires int64 `json:"expires,omitempty"`
}

// Config is what an Issuer hands out.
type Config struct {
	// STUN are STUN URLs ("stun:host:port").
	STUN []string
	// TURN are TURN URLs ("turn:host:port?transport=udp", "turns:...");
	// with them, Secret is needed.
	TURN []string
	// Secret is the secret shared with the TURN servers (coturn's
	// static-auth-secret).
	Secret []byte
	// TTL is the lifetime of issued credentials. Default DefaultTTL; at
	// least MinTTL.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Issuer issues ICE servers. Its methods may be called from any goroutine.
type Issuer struct {
	cfg Config
}

// NewIssuer checks cfg and returns its Issuer; with neither STUN nor TURN
// URLs it returns nil and no error: there is nothing to hand out.
func NewIssuer(cfg Config) (*Issuer, error) {
	if len(cfg.STUN) == 0 && len(cfg.TURN) == 0 {
		return nil, nil
	}
	for _, u := range cfg.STUN {
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") {
			return nil, fmt.Errorf("ice: STUN URL %q: want stun:host[:port] or stuns:host[:port]", u)
		}
	}
	for _, u := range cfg.TURN {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			return nil, fmt.Errorf("ice: TURN URL %q: want turn:host[:port][?transport=udp|tcp] or turns:...", u)
		}
	}
	if len(cfg.TURN) > 0 && len(cfg.Secret) == 0 {
		return nil, errors.New("ice: TURN URLs need the secret shared with the TURN server")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("ice: credential lifetime %v: at least %v", cfg.TTL, MinTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Issuer{cfg: cfg}, nil
}

// TTL returns the lifetime of issued credentials.
func (i *Issuer) TTL() time.Duration { return i.cfg.TTL }

// Issue returns the ICE servers of peerID: the STUN URLs, and the TURN URLs
// with credentials for peerID valid for the configured lifetime.
func (i *Issuer) Issue(peerID string) Servers {
	var out Servers
	if len(i.cfg.STUN) > 0 {
		out.ICEServers = append(out.ICEServers, Server{URLs: i.cfg.STUN})
	}
	if len(i.cfg.TURN) > 0 {
		exp := i.cfg.Now().Add(i.cfg.TTL)
		user := Username(exp, peerID)
		out.ICEServers = append(out.ICEServers, Server{URLs: i.cfg.TURN, Username: user, Credential: Credential(i.cfg.Secret, user)})
		out.TTL = int64(i.cfg.TTL / time.Second)
		out.Expires = exp.Unix()
	}
	return out
}

// Username returns the username of credentials for peerID that expire at
// exp: "<exp unix seconds>:<peerID>".
func Username(exp time.Time, peerID string) string {
	return strconv.FormatInt(exp.Unix(), 10) + ":" + peerID
}

// Credential returns the credential (the TURN password) of username under
// secret: base64 of HMAC-SHA1(secret, username).
func Credential(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a username into its expiry and peer id. The peer id
// may be empty (coturn takes a bare timestamp); it may contain colons.
func ParseUsername(username string) (exp time.Time, peerID string, err error) {
	if len(username) > MaxUsernameBytes {
		return time.Time{}, "", fmt.Errorf("ice: a username of %d bytes, at most %d", len(username), MaxUsernameBytes)
	}
	ts, id, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > 19 || strings.TrimLeft(ts, "0123456789") != "" {
		return time.Time{}, "", fmt.Errorf("ice: username %q does not begin with an expiry in Unix seconds", username)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("ice: username %q: expiry: %w", username, err)
	}
	return time.Unix(n, 0), id, nil
}

// Check reports whether credential is the one of username under secret,
// and, unless expired is allowed, that the username has not expired at
// now.
func Check(secret []byte, username, credential string, now time.Time, expired bool) (peerID string, err error) {
	exp, id, err := ParseUsername(username)
	if err != nil {
		return "", err
	}
	want := Credential(secret, username)
	if !hmac.Equal([]byte(want), []byte(credential)) {
		return "", errors.New("ice: the credential does not match the username")
	}
	if !expired && !now.Before(exp) {
		return "", fmt.Errorf("ice: credentials expired at %s", exp.UTC().Format(time.RFC3339))
	}
	return id, nil
}
