package sctest

import (
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/server"
)

// TestSecret is the HMAC key of NewAuthServer's tokens.
var TestSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// NewAuthServer starts a server that requires tokens signed with
// TestSecret, with no clock leeway.
func NewAuthServer(t *testing.T) *Server {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: TestSecret, Leeway: -1})
	if err != nil {
		t.Fatal(err)
	}
	return NewServer(t, Options{Channel: server.Config{Verifier: v}})
}

// Mint returns a token for "alice" signed with key, valid for ttl (expired
// ttl ago when ttl is negative), that allows the patterns allow.
func Mint(t *testing.T, key any, ttl time.Duration, allow ...string) string {
	t.Helper()
	g := auth.Grant{Subject: "alice", Allow: allow, TTL: ttl}
	if ttl < 0 { // expired already
		g.TTL, g.IssuedAt = time.Minute, time.Now().Add(ttl-time.Minute)
	}
	tok, err := auth.Mint(key, g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
