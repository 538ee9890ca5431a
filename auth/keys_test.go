package auth_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSecretFile(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name, content string
		want          string
		err           error
	}{
		{"hex text", hex64 + "\n", hex64, nil},
		{"white space trimmed", "\n  \t" + hex64 + " \r\n\n", hex64, nil},
		{"exactly 32 bytes", strings.Repeat("s", 32), strings.Repeat("s", 32), nil},
		{"inner spaces kept", "correct horse battery staple, twice over", "correct horse battery staple, twice over", nil},
		{"31 bytes", strings.Repeat("s", 31) + "\n", "", auth.ErrSecretTooShort},
		{"empty", "", "", auth.ErrSecretTooShort},
		{"only white space", strings.Repeat(" \n", 40), "", auth.ErrSecretTooShort},
		{"a PEM key", string(readFile(t, "ed25519.pub")), "", auth.ErrBadKey},
		{"too large", strings.Repeat("s", 70<<10), "", auth.ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.LoadSecretFile(writeFile(t, tc.content))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
	if _, err := auth.LoadSecretFile(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	_, err := auth.LoadSecretFile(writeFile(t, "short"))
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret error does not say what is needed: %v", err)
	}
}

func TestLoadKeyFiles(t *testing.T) {
	td := func(name string) string { return filepath.Join("testdata", name) }

	// The openssl-made pair signs and verifies.
	pub, err := auth.LoadPublicKeyFile(td("ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := auth.LoadPrivateKeyFile(td("ed25519.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("testdata keys are not a pair")
	}

	for _, tc := range []struct {
		name string
		load func(string) error
		path string
		msg  string
	}{
		{"public from private", loadPub, td("ed25519.key"), "holds a private key"},
		{"public from RSA", loadPub, td("rsa.pub"), "RSA public key, want Ed25519"},
		{"public from ECDSA", loadPub, td("ec.pub"), "ECDSA public key, want Ed25519"},
		{"private from public", loadPriv, td("ed25519.pub"), `"PUBLIC KEY" PEM block, want "PRIVATE KEY"`},
		{"private from RSA", loadPriv, td("rsa.key"), "RSA private key, want Ed25519"},
		{"private from ECDSA", loadPriv, td("ec.key"), "ECDSA private key, want Ed25519"},
		{"public from text", loadPub, writeFile(t, "not a key\n"), "not a PEM file"},
		{"private from empty", loadPriv, writeFile(t, ""), "not a PEM file"},
		{"public with a bad body", loadPub, writeFile(t, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "not a PKIX public key"},
		{"private with a bad body", loadPriv, writeFile(t, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "not a PKCS #8 private key"},
		{"public from a certificate", loadPub, writeFile(t, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), `"CERTIFICATE" PEM block`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load(tc.path)
			if !errors.Is(err, auth.ErrBadKey) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrBadKey saying %q", err, tc.msg)
			}
		})
	}
	if err := loadPub(filepath.Join(t.TempDir(), "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
}

func loadPub(p string) error  { _, err := auth.LoadPublicKeyFile(p); return err }
func loadPriv(p string) error { _, err := auth.LoadPrivateKeyFile(p); return err }

// TestGeneratedKeysRoundTrip writes a generated pair with the encoders,
// loads it back, and mints and verifies with it.
func TestGeneratedKeysRoundTrip(t *testing.T) {
	pub, priv, err := auth.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := auth.EncodePublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := auth.EncodePrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")) || !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("PEM blocks:\n%s%s", pubPEM, privPEM)
	}
	pub2, err := auth.LoadPublicKeyFile(writeFile(t, string(pubPEM)))
	if err != nil {
		t.Fatal(err)
	}
	priv2, err := auth.LoadPrivateKeyFile(writeFile(t, string(privPEM)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{PublicKey: pub2, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(mint(t, priv2, grant)); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.EncodePublicKeyPEM(pub[:5]); !errors.Is(err, auth.ErrBadKey) {
		t.Errorf("short public key: %v", err)
	}
	if _, err := auth.EncodePrivateKeyPEM(priv[:5]); !errors.Is(err, auth.ErrBadKey) {
		t.Errorf("short private key: %v", err)
	}
}

func TestMint(t *testing.T) {
	pub, priv := testKeys(t)
	for _, tc := range []struct {
		name string
		key  any
		g    auth.Grant
		want error
	}{
		{"short secret", secret[:31], grant, auth.ErrSecretTooShort},
		{"secret as string", string(secret), grant, auth.ErrBadKey},
		{"public key", pub, grant, auth.ErrBadKey},
		{"truncated private key", priv[:32], grant, auth.ErrBadKey},
		{"nil key", nil, grant, auth.ErrBadKey},
		{"no subject", secret, auth.Grant{Allow: []string{"echo:*"}, TTL: time.Hour}, auth.ErrBadGrant},
		{"no TTL", secret, auth.Grant{Subject: "a", Allow: []string{"echo:*"}}, auth.ErrBadGrant},
		{"negative TTL", secret, auth.Grant{Subject: "a", Allow: []string{"echo:*"}, TTL: -time.Hour}, auth.ErrBadGrant},
		{"bad pattern", secret, auth.Grant{Subject: "a", Allow: []string{"echo:*", "echo"}, TTL: time.Hour}, auth.ErrBadPattern},
		{"subject with a slash", secret, auth.Grant{Subject: "a/b", TTL: time.Hour}, auth.ErrBadGrant},
		{"bad own pattern", secret, auth.Grant{Subject: "a", Own: []string{"presence"}, TTL: time.Hour}, auth.ErrBadPattern},
		{"meta not an object", secret, auth.Grant{Subject: "a", Meta: []string{"x"}, TTL: time.Hour}, auth.ErrBadGrant},
		{"meta too large", secret, auth.Grant{Subject: "a", Meta: map[string]string{"n": strings.Repeat("x", auth.MaxMetaBytes)}, TTL: time.Hour}, auth.ErrBadGrant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := auth.Mint(tc.key, tc.g)
			if !errors.Is(err, tc.want) || tok != "" {
				t.Fatalf("Mint = %q, %v; want %v", tok, err, tc.want)
			}
		})
	}

	// Own and Meta travel in the token.
	c, err := hsVerifier(t).Verify(mint(t, secret, auth.Grant{Subject: "a", Own: []string{"scuttlebutt:p-*"}, Meta: map[string]any{"name": "A", "n": 1}, TTL: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Owns("scuttlebutt", "p-1") || string(c.Meta) != `{"n":1,"name":"A"}` {
		t.Fatalf("own %v, meta %s", c.Own, c.Meta)
	}

	// No Allow mints "allow":[], which verifies and allows nothing.
	c, err = edVerifier(t).Verify(mint(t, priv, auth.Grant{Subject: "a", TTL: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Allows("echo", "x") {
		t.Error("a token without allow entries allows a stream")
	}

	// Without IssuedAt, Mint uses the real clock.
	tok, err := auth.Mint(secret, auth.Grant{Subject: "a", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	live, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	c, err = live.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("exp in %v, want about 1h", d)
	}
}
