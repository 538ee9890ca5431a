package auth

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The three kinds of credential failure of PROTOCOL.md section 6 (close code
// 4401). Every error returned by Verifier.Verify, Verifier.VerifyRequest and
// FromRequest is an *Error whose Kind is one of them, so
// errors.Is(err, auth.ErrExpired) tells them apart.
var (
	// ErrMissing means the request carried no token.
	ErrMissing = errors.New("auth: missing credentials")
	// ErrInvalid means a token was presented but cannot be accepted:
	// malformed, wrong algorithm, bad signature, not valid yet, a required
	// claim missing or of the wrong type.
	ErrInvalid = errors.New("auth: invalid token")
	// ErrExpired means the token was genuine but its exp has passed.
	ErrExpired = errors.New("auth: token expired")
)

// Errors of configuration, key loading and minting.
var (
	// ErrNoKey is returned by Config.Validate when neither Secret nor
	// PublicKey is set, and when both are.
	ErrNoKey = errors.New("auth: configure exactly one key: an HS256 secret or an Ed25519 public key")
	// ErrSecretTooShort is returned for an HS256 secret shorter than
	// MinSecretBytes.
	ErrSecretTooShort = errors.New("auth: HS256 secret too short")
	// ErrBadKey is returned for a key or key file that cannot be used:
	// not PEM, the wrong PEM block, not Ed25519, the wrong size.
	ErrBadKey = errors.New("auth: unusable key")
	// ErrBadPattern is returned by ParsePattern, and wrapped in the
	// rejection of a token whose allow claim holds such an entry.
	ErrBadPattern = errors.New("auth: bad allow pattern")
	// ErrBadGrant is returned by Mint for a Grant it will not sign.
	ErrBadGrant = errors.New("auth: bad grant")
)

// MaxReasonBytes is the longest reason a WebSocket close frame can carry
// (125 bytes of payload less the 2-byte code). CloseReason never returns a
// longer one.
const MaxReasonBytes = 123

// Error is a credential failure. Kind is ErrMissing, ErrInvalid or
// ErrExpired; Reason is the text for the client, for the 4401 close frame:
// "missing credentials", "invalid token: signature", "token expired". The
// Reason never holds key material or Go error strings; the underlying cause,
// for server logs, is reachable with errors.Unwrap / errors.As.
type Error struct {
	Kind   error
	Reason string
	cause  error
}

func (e *Error) Error() string { return "auth: " + e.Reason }

// Unwrap returns Kind and, when there is one, the underlying cause.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.cause}
}

// Cause returns the underlying error (from the JWT library, JSON, ...), or
// nil. It is for server logs, never for clients.
func (e *Error) Cause() error { return e.cause }

func missing() *Error {
	return &Error{Kind: ErrMissing, Reason: "missing credentials"}
}

func invalid(detail string, cause error) *Error {
	return &Error{Kind: ErrInvalid, Reason: "invalid token: " + detail, cause: cause}
}

func expired(cause error) *Error {
	return &Error{Kind: ErrExpired, Reason: "token expired", cause: cause}
}

// CloseReason returns the reason to send with close code 4401 for err: the
// Reason of an *Error, cut to MaxReasonBytes on a UTF-8 boundary, or
// "invalid token" for any other error.
func CloseReason(err error) string {
	var e *Error
	if !errors.As(err, &e) || e.Reason == "" {
		return "invalid token"
	}
	return truncate(e.Reason, MaxReasonBytes)
}

// truncate cuts s to at most n bytes without splitting a rune, replacing
// invalid UTF-8 so the result is always valid.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// quote returns s as a Go-quoted string of at most about n bytes, for
// messages that echo a value from a token.
func quote(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}
