package auth

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant describes a token for Mint.
type Grant struct {
	// Subject becomes sub: who the token is for. Required.
	Subject string
	// Allow becomes allow: "endpoint:namespace-pattern" entries (see
	// Pattern). Each must parse; an empty list mints a token that opens no
	// stream.
	Allow []string
	// Own becomes own: "endpoint:namespace-pattern" entries naming where
	// the peer may write only its own keys (PROTOCOL.md section 9). Each
	// must parse. Default: no own claim.
	Own []string
	// Meta becomes meta: public peer metadata the server hands to others
	// with the peer id, such as a display name. It must marshal to a JSON
	// object of at most MaxMetaBytes. Default: no meta claim.
	Meta any
	// TTL is how long the token lives: exp is IssuedAt+TTL, cut to whole
	// seconds. Required, positive.
	TTL time.Duration
	// IssuedAt becomes iat. Default: now.
	IssuedAt time.Time
	// NotBefore becomes nbf when set. Default: no nbf.
	NotBefore time.Time
}

// Mint signs a token for g with key: an HS256 secret ([]byte, at least
// MinSecretBytes) or an Ed25519 private key (ed25519.PrivateKey, signing
// EdDSA). The token carries sub, allow, iat, exp and, when set, nbf. It
// refuses a Grant that a Verifier would reject.
func Mint(key any, g Grant) (string, error) {
	var method jwt.SigningMethod
	switch k := key.(type) {
	case []byte:
		if len(k) < MinSecretBytes {
			return "", fmt.Errorf("%w: %d bytes, need at least %d", ErrSecretTooShort, len(k), MinSecretBytes)
		}
		method = jwt.SigningMethodHS256
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return "", fmt.Errorf("%w: Ed25519 private key of %d bytes, want %d", ErrBadKey, len(k), ed25519.PrivateKeySize)
		}
		method = jwt.SigningMethodEdDSA
	default:
		return "", fmt.Errorf("%w: Mint takes an HS256 secret ([]byte) or an ed25519.PrivateKey, not %T", ErrBadKey, key)
	}
	if g.Subject == "" {
		return "", fmt.Errorf("%w: no Subject", ErrBadGrant)
	}
	if g.TTL <= 0 {
		return "", fmt.Errorf("%w: TTL must be positive", ErrBadGrant)
	}
	for _, s := range g.Allow {
		if _, err := ParsePattern(s); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadGrant, err)
		}
	}
	if msg := CheckSubject(g.Subject); msg != "" {
		return "", fmt.Errorf("%w: Subject %s", ErrBadGrant, msg)
	}
	for _, s := range g.Own {
		if _, err := ParsePattern(s); err != nil {
			return "", fmt.Errorf("%w: own: %w", ErrBadGrant, err)
		}
	}
	var meta json.RawMessage
	if g.Meta != nil {
		b, err := json.Marshal(g.Meta)
		if err != nil || len(b) == 0 || b[0] != '{' {
			return "", fmt.Errorf("%w: Meta must marshal to a JSON object", ErrBadGrant)
		}
		if len(b) > MaxMetaBytes {
			return "", fmt.Errorf("%w: Meta longer than %d bytes as JSON", ErrBadGrant, MaxMetaBytes)
		}
		meta = b
	}
	iat := g.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	c := mintClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   g.Subject,
			IssuedAt:  &jwt.NumericDate{Time: iat.Truncate(time.Second)},
			ExpiresAt: &jwt.NumericDate{Time: iat.Add(g.TTL).Truncate(time.Second)},
		},
		Allow: append([]string{}, g.Allow...), // [] rather than null
		Own:   g.Own,
		Meta:  meta,
	}
	if !g.NotBefore.IsZero() {
		c.NotBefore = &jwt.NumericDate{Time: g.NotBefore.Truncate(time.Second)}
	}
	tok, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: signing: %w", err)
	}
	return tok, nil
}

// mintClaims is the payload Mint signs.
type mintClaims struct {
	jwt.RegisteredClaims
	Allow []string        `json:"allow"`
	Own   []string        `json:"own,omitempty"`
	Meta  json.RawMessage `json:"meta,omitempty"`
}
