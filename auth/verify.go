package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks tokens against one key. It accepts only the algorithm of
// that key (HS256 for a secret, EdDSA for an Ed25519 public key): "none",
// HS256 signed with the bytes of a public key, RS256, HS512 and every other
// algorithm are refused. A token must carry exp, sub and allow; nbf and iat
// are checked when present. A Verifier is safe for concurrent use.
type Verifier struct {
	alg    string
	key    any
	leeway time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for cfg, or the error of cfg.Validate.
func NewVerifier(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Verifier{leeway: cfg.Leeway, now: cfg.Now}
	if len(cfg.Secret) > 0 {
		v.alg, v.key = AlgHS256, bytes.Clone(cfg.Secret)
	} else {
		v.alg, v.key = AlgEdDSA, ed25519Clone(cfg.PublicKey)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Algorithm returns the one algorithm the Verifier accepts: AlgHS256 or
// AlgEdDSA.
func (v *Verifier) Algorithm() string { return v.alg }

// Leeway returns the clock skew the Verifier tolerates.
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// VerifyRequest extracts the token from r (see FromRequest) and verifies it.
func (v *Verifier) VerifyRequest(r *http.Request) (*Claims, error) {
	tok, err := FromRequest(r)
	if err != nil {
		return nil, err
	}
	return v.Verify(tok)
}

// Verify checks token's algorithm, signature and times, then its claims,
// and returns what it grants. Every error is an *Error: Kind ErrMissing for
// an empty token, ErrExpired for a genuine token past exp (plus leeway), and
// ErrInvalid for anything else, with a Reason naming the fault ("invalid
// token: signature"). Claims are judged only once the signature holds: a
// forged token is told about its form, its algorithm or its signature,
// never about its claims. Verify does not block.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, missing()
	}
	if len(token) > MaxTokenBytes {
		return nil, invalid(fmt.Sprintf("longer than %d bytes", MaxTokenBytes), nil)
	}
	var wc wireClaims
	tok, err := v.parser.ParseWithClaims(token, &wc, v.keyFunc)
	if err != nil {
		return nil, v.classify(tok, err)
	}
	if _, ok := tok.Header["crit"]; ok {
		return nil, invalid(`header "crit" names extensions this server does not support`, nil)
	}
	return v.claims(&wc)
}

func (v *Verifier) keyFunc(*jwt.Token) (any, error) { return v.key, nil }

// classify turns an error of the JWT parser into an *Error.
func (v *Verifier) classify(tok *jwt.Token, err error) *Error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return invalid("malformed (want a JWT: three base64url parts joined by '.')", err)
	}
	if tok != nil {
		alg, ok := tok.Header["alg"].(string)
		if !ok {
			return invalid(`no "alg" in the header`, err)
		}
		if alg != v.alg {
			return invalid(fmt.Sprintf("algorithm %s not accepted (want %s)", quote(alg, 16), v.alg), err)
		}
	}
	var ce *claimError
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("signature", err)
	case errors.As(err, &ce):
		return invalid(ce.Error(), err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid(`no "exp" claim (an expiry is required)`, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return expired(err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("not valid yet (nbf is in the future)", err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("issued in the future (iat); check the clocks", err)
	}
	return invalid("unverifiable", err)
}

// claims builds Claims from a token whose signature and times were checked.
func (v *Verifier) claims(wc *wireClaims) (*Claims, error) {
	c := &Claims{}
	raw, ok := wc.m["sub"]
	if !ok {
		return nil, invalid(`no "sub" claim`, nil)
	}
	if err := json.Unmarshal(raw, &c.Subject); err != nil || raw[0] != '"' || c.Subject == "" {
		return nil, invalid(`claim "sub" must be a non-empty string`, err)
	}
	if msg := CheckSubject(c.Subject); msg != "" {
		return nil, invalid(`claim "sub" `+msg, nil)
	}
	raw, ok = wc.m["allow"]
	if !ok {
		return nil, invalid(`no "allow" claim`, nil)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil || raw[0] != '[' {
		return nil, invalid(`claim "allow" must be an array of strings`, err)
	}
	c.Allow = make([]string, len(entries))
	c.patterns = make([]Pattern, len(entries))
	for i, e := range entries {
		if err := json.Unmarshal(e, &c.Allow[i]); err != nil || e[0] != '"' {
			return nil, invalid(`claim "allow" must be an array of strings`, err)
		}
		s := c.Allow[i]
		p, err := ParsePattern(s)
		if err != nil {
			return nil, invalid(fmt.Sprintf(`allow entry %s: want endpoint:namespace-pattern`, quote(s, 32)), err)
		}
		c.patterns[i] = p
	}
	if raw, ok = wc.m["own"]; ok {
		if c.Own, c.own, ok = patterns(raw); !ok {
			return nil, invalid(`claim "own" must be an array of endpoint:namespace-pattern strings`, nil)
		}
	}
	if raw, ok = wc.m["meta"]; ok {
		if len(raw) == 0 || raw[0] != '{' {
			return nil, invalid(`claim "meta" must be a JSON object`, nil)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, invalid(`claim "meta" must be a JSON object`, err)
		}
		if b.Len() > MaxMetaBytes {
			return nil, invalid(fmt.Sprintf(`claim "meta" longer than %d bytes as compact JSON`, MaxMetaBytes), nil)
		}
		c.Meta = b.Bytes()
	}
	// The parser already decoded and checked these; errors are impossible.
	exp, _ := wc.GetExpirationTime()
	c.ExpiresAt = exp.Time
	c.ValidUntil = exp.Add(v.leeway)
	if nbf, _ := wc.GetNotBefore(); nbf != nil {
		c.NotBefore = nbf.Time
	}
	if iat, _ := wc.GetIssuedAt(); iat != nil {
		c.IssuedAt = iat.Time
	}
	return c, nil
}

// patterns parses a claim that is an array of endpoint:namespace-pattern
// strings.
func patterns(raw json.RawMessage) ([]string, []Pattern, bool) {
	var entries []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &entries) != nil {
		return nil, nil, false
	}
	ps := make([]Pattern, len(entries))
	for i, e := range entries {
		p, err := ParsePattern(e)
		if err != nil {
			return nil, nil, false
		}
		ps[i] = p
	}
	return entries, ps, true
}

// MaxSubjectBytes is the longest sub a token may carry: a peer id must fit
// a relay token (PROTOCOL.md section 2).
const MaxSubjectBytes = 128

// MaxMetaBytes is the largest meta claim, as compact JSON.
const MaxMetaBytes = 1024

// CheckSubject applies the rules of a peer id to a token's sub: at most
// MaxSubjectBytes, no control characters, no "/" (the separator between a
// peer id and the rest of a key or relay token it owns, so that no id is a
// prefix of another's keys). It returns what is wrong, or "".
func CheckSubject(sub string) string {
	if len(sub) > MaxSubjectBytes {
		return fmt.Sprintf("longer than %d bytes", MaxSubjectBytes)
	}
	for i := 0; i < len(sub); i++ {
		switch c := sub[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("has control character U+%04X at byte %d", c, i)
		case c == '/':
			return `must not contain "/" (it separates a peer id from the rest of the keys the peer owns)`
		}
	}
	return ""
}

// claimError is a registered claim of the wrong type or range.
type claimError struct{ claim, want string }

func (e *claimError) Error() string { return fmt.Sprintf("claim %q %s", e.claim, e.want) }

// maxNumericDate bounds exp, nbf and iat (year 5138): enough for any real
// token, and far from the edges of time.Time arithmetic.
const maxNumericDate = 1e11

// wireClaims holds a token's payload as raw JSON values keyed exactly (not
// case-insensitively, as encoding/json matches struct fields), so that claim
// types are judged after the signature is checked. It implements
// jwt.Claims for the parser's time checks.
type wireClaims struct {
	m map[string]json.RawMessage
}

func (w *wireClaims) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &w.m) }

func (w *wireClaims) date(name string) (*jwt.NumericDate, error) {
	raw, ok := w.m[name]
	if !ok {
		return nil, nil
	}
	var f float64
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &f) != nil {
		return nil, &claimError{name, "must be a number (seconds since the Unix epoch)"}
	}
	if f < 0 || f > maxNumericDate {
		return nil, &claimError{name, "is out of range"}
	}
	sec, frac := math.Modf(f)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}, nil
}

func (w *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return w.date("exp") }
func (w *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return w.date("nbf") }
func (w *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return w.date("iat") }
func (w *wireClaims) GetIssuer() (string, error)                   { return "", nil }
func (w *wireClaims) GetSubject() (string, error)                  { return "", nil }
func (w *wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

var _ jwt.Claims = (*wireClaims)(nil)
