package auth_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signalchannel/signalchannel/auth"
)

// now is the fixed clock of the tests.
var now = time.Unix(1_780_000_000, 0)

func clock() time.Time { return now }

var (
	secret      = []byte("0123456789abcdef0123456789abcdef-test-secret")
	otherSecret = []byte("another-secret-another-secret-another-secret")
)

// testKeys returns the Ed25519 key pair of testdata (made with openssl).
func testKeys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, err := auth.LoadPublicKeyFile(filepath.Join("testdata", "ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := auth.LoadPrivateKeyFile(filepath.Join("testdata", "ed25519.key"))
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func hsVerifier(t testing.TB) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func edVerifier(t testing.TB) *auth.Verifier {
	t.Helper()
	pub, _ := testKeys(t)
	v, err := auth.NewVerifier(auth.Config{PublicKey: pub, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mint signs g with key at the test clock, failing the test on error.
func mint(t testing.TB, key any, g auth.Grant) string {
	t.Helper()
	if g.IssuedAt.IsZero() {
		g.IssuedAt = now
	}
	tok, err := auth.Mint(key, g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken signs a hand-written header and payload with method and key, so
// tests can build tokens Mint refuses to make.
func rawToken(t testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := method.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// unsigned returns header.payload. with an empty signature.
func unsigned(header, payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "."
}

// wantErr checks that err is an *auth.Error of kind and reason.
func wantErr(t testing.TB, err error, kind error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %q", kind, reason)
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("got %T %v, want *auth.Error", err, err)
	}
	if !errors.Is(err, kind) {
		t.Errorf("got kind %v, want %v (%v)", ae.Kind, kind, err)
	}
	if !strings.HasPrefix(ae.Reason, reason) {
		t.Errorf("got reason %q, want it to start with %q", ae.Reason, reason)
	}
	if r := auth.CloseReason(err); len(r) > auth.MaxReasonBytes {
		t.Errorf("close reason of %d bytes: %q", len(r), r)
	}
}
