package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// Algorithm names, as in a token's "alg" header.
const (
	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
)

// Limits and defaults.
const (
	// MinSecretBytes is the shortest HS256 secret accepted: 32 bytes, the
	// size of the SHA-256 output (RFC 7518 section 3.2).
	MinSecretBytes = 32
	// DefaultLeeway is the clock skew tolerated when checking exp, nbf and
	// iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Leeway Validate accepts.
	MaxLeeway = 5 * time.Minute
	// MaxTokenBytes is the longest token Verify looks at; a longer one is
	// invalid without being parsed.
	MaxTokenBytes = 8192
)

// Config configures a Verifier. Exactly one of Secret and PublicKey is set;
// the Verifier then accepts tokens of that algorithm only. The zero value of
// any other field means its default; DefaultConfig spells them out.
type Config struct {
	// Secret is the HS256 shared secret, at least MinSecretBytes bytes.
	// LoadSecretFile reads one from a file.
	Secret []byte
	// PublicKey verifies EdDSA (Ed25519) tokens. LoadPublicKeyFile reads
	// one from a PEM file.
	PublicKey ed25519.PublicKey
	// Leeway is the clock skew tolerated on exp, nbf and iat: a token is
	// accepted from nbf-Leeway (and iat-Leeway) until exp+Leeway. Default
	// DefaultLeeway (30s); a negative value means none; at most MaxLeeway.
	Leeway time.Duration
	// Now returns the current time. Default time.Now; tests set it.
	Now func() time.Time
}

// DefaultConfig returns a Config with the defaults filled in and no key;
// set Secret or PublicKey before use.
func DefaultConfig() Config {
	return Config{Leeway: DefaultLeeway, Now: time.Now}
}

// withDefaults returns c with zero fields set to their defaults and a
// negative Leeway turned into zero.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	switch {
	case c.Leeway == 0:
		c.Leeway = d.Leeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports every impossible value: no key or two keys, a short
// secret, a public key of the wrong size, a leeway above MaxLeeway.
func (c Config) Validate() error {
	var errs []error
	switch {
	case len(c.Secret) == 0 && len(c.PublicKey) == 0, len(c.Secret) > 0 && len(c.PublicKey) > 0:
		errs = append(errs, ErrNoKey)
	case len(c.Secret) > 0 && len(c.Secret) < MinSecretBytes:
		errs = append(errs, fmt.Errorf("%w: %d bytes, need at least %d", ErrSecretTooShort, len(c.Secret), MinSecretBytes))
	case len(c.PublicKey) > 0 && len(c.PublicKey) != ed25519.PublicKeySize:
		errs = append(errs, fmt.Errorf("%w: Ed25519 public key of %d bytes, want %d", ErrBadKey, len(c.PublicKey), ed25519.PublicKeySize))
	}
	if c.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("auth: Leeway %s is above the maximum %s", c.Leeway, MaxLeeway))
	}
	return errors.Join(errs...)
}
