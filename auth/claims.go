package auth

import (
	"context"
	"encoding/json"
	"time"
)

// Claims is what a verified token grants. Verify returns it; it is
// read-only afterwards and safe to share between goroutines.
type Claims struct {
	// Subject is the token's sub: the session's peer id, which the server
	// vouches for (PROTOCOL.md section 9).
	Subject string
	// Allow is the token's allow claim as written.
	Allow []string
	// Own is the token's own claim as written: the endpoint:namespace
	// patterns where the session may write only keys it owns. Nil when
	// absent.
	Own []string
	// Meta is the token's meta claim, public peer metadata: a JSON object
	// in compact form, at most MaxMetaBytes. Nil when absent.
	Meta json.RawMessage
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
	// NotBefore and IssuedAt are the token's nbf and iat; zero when absent.
	NotBefore time.Time
	IssuedAt  time.Time
	// ValidUntil is ExpiresAt plus the Verifier's leeway: the instant from
	// which the Verifier refuses the token as expired. A server closes a
	// connection with 4401 "token expired" at ValidUntil, not at ExpiresAt,
	// so that a client is never closed for a token the server would accept
	// again on reconnect.
	ValidUntil time.Time

	patterns []Pattern
	own      []Pattern
}

// Allows reports whether the claims allow a stream of endpoint and
// namespace: whether any allow entry matches (see Pattern). A nil *Claims
// allows nothing. The entries were parsed when the token was verified, so
// Allows does no parsing and no allocation.
func (c *Claims) Allows(endpoint, namespace string) bool {
	return c != nil && MatchAny(c.patterns, endpoint, namespace)
}

// Owns reports whether the token's own claim names endpoint and namespace:
// whether any entry matches, by the rules of Pattern. A nil *Claims owns
// nothing.
func (c *Claims) Owns(endpoint, namespace string) bool {
	return c != nil && MatchAny(c.own, endpoint, namespace)
}

// MatchAny reports whether any of ps matches endpoint and namespace.
func MatchAny(ps []Pattern, endpoint, namespace string) bool {
	for _, p := range ps {
		if p.Match(endpoint, namespace) {
			return true
		}
	}
	return false
}

// Patterns returns the parsed allow entries.
func (c *Claims) Patterns() []Pattern {
	if c == nil {
		return nil
	}
	return append([]Pattern(nil), c.patterns...)
}

type claimsKey struct{}

// NewContext returns a copy of ctx carrying c, so that a per-stream check
// running under the session's context can find the session's claims.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the claims NewContext stored in ctx, if any.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}
