package auth_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signalchannel/signalchannel/auth"
)

// FuzzVerify feeds arbitrary strings to an HS256 and an EdDSA verifier. No
// input panics; every failure is an *auth.Error with a short, valid UTF-8
// close reason; and the only strings that verify are the tokens minted with
// the verifiers' own keys, byte for byte: no change to a genuine token, and
// no token made without the key, is accepted.
func FuzzVerify(f *testing.F) {
	_, priv := testKeys(f)
	_, otherPriv, err := auth.GenerateEd25519()
	if err != nil {
		f.Fatal(err)
	}
	hs, ed := hsVerifier(f), edVerifier(f)
	withClaims := grant
	withClaims.Own = []string{"scuttlebutt:presence", "scuttlebutt:room-*"}
	withClaims.Meta = map[string]any{"name": "Alice", "tags": []string{"a"}}
	genuine := map[string]bool{
		mint(f, secret, grant):      true,
		mint(f, priv, grant):        true,
		mint(f, secret, withClaims): true,
	}
	for tok := range genuine {
		f.Add(tok)
	}
	exp := now.Add(time.Hour).Unix()
	payload := fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":["*:*"]}`, exp)
	for _, s := range []string{
		mint(f, otherSecret, grant),
		mint(f, otherPriv, grant),
		unsigned(`{"alg":"none"}`, payload),
		unsigned(hsHeader, payload),
		rawToken(f, jwt.SigningMethodHS256, secret, hsHeader, `{"sub":"alice","exp":"x","allow":7}`),
		rawToken(f, jwt.SigningMethodHS256, secret, `{"alg":"HS256","crit":["b64"]}`, payload),
		rawToken(f, jwt.SigningMethodHS512, secret, `{"alg":"HS512"}`, payload),
		rawToken(f, jwt.SigningMethodHS256, otherSecret, hsHeader, fmt.Sprintf(`{"sub":"a/b","exp":%d,"allow":[],"own":["x"],"meta":[1]}`, exp)),
		"", ".", "..", "a.b.c", "eyJ.eyJ.", "Bearer x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*auth.Verifier{hs, ed} {
			c, err := v.Verify(token)
			if err == nil {
				if !genuine[token] || c == nil {
					t.Fatalf("%s verifier accepted a token it did not sign: %q", v.Algorithm(), token)
				}
				continue
			}
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not an *auth.Error", err, err)
			}
			if !errors.Is(err, auth.ErrMissing) && !errors.Is(err, auth.ErrInvalid) && !errors.Is(err, auth.ErrExpired) {
				t.Fatalf("error %v of no known kind", err)
			}
			r := auth.CloseReason(err)
			if len(r) > auth.MaxReasonBytes || !utf8.ValidString(r) || r == "" {
				t.Fatalf("close reason %q", r)
			}
		}
	})
}

// FuzzPattern checks that parsing and matching never panic, that a pattern
// without '*' matches only its own endpoint and namespace, that a named
// endpoint matches only itself, and that a pattern matches what it names.
func FuzzPattern(f *testing.F) {
	for _, s := range [][3]string{
		{"echo:room-*", "echo", "room-1"},
		{"echo:room-*", "echo", "room-"},
		{"echo:room-*", "scuttlebutt", "room-1"},
		{"*:x", "relay", "x"},
		{"relay:*", "relay", ""},
		{"echo:a*b", "echo", "axb"},
		{"echo:a:b", "echo:a", "b"},
		{"echo", "echo", ""},
		{"", "", ""},
		{"*:*", "", ""},
		{"echo:é*", "echo", "\xc3"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, endpoint, namespace string) {
		p, err := auth.ParsePattern(pattern)
		if err != nil {
			if p.Match(endpoint, namespace) {
				t.Fatalf("malformed %q matches %q %q", pattern, endpoint, namespace)
			}
			return
		}
		ep, ns, ok := strings.Cut(pattern, ":")
		if !ok || ep == "" || ns == "" || p.String() != pattern {
			t.Fatalf("ParsePattern accepted %q", pattern)
		}
		match := p.Match(endpoint, namespace)
		if !strings.Contains(pattern, "*") {
			if match != (endpoint == ep && namespace == ns) {
				t.Fatalf("%q: Match(%q, %q) = %v", pattern, endpoint, namespace, match)
			}
		}
		if match && ep != "*" && endpoint != ep {
			t.Fatalf("%q matches endpoint %q", pattern, endpoint)
		}
		if match && !strings.HasSuffix(ns, "*") && namespace != ns {
			t.Fatalf("%q matches namespace %q", pattern, namespace)
		}
		if match && !strings.HasPrefix(namespace, strings.TrimSuffix(ns, "*")) {
			t.Fatalf("%q matches namespace %q without its prefix", pattern, namespace)
		}
		// A pattern always matches the stream it spells out, a trailing '*'
		// standing for the empty suffix and a leading "*" for any endpoint.
		spelled := strings.TrimSuffix(ns, "*")
		if !p.Match(ep, spelled) || (ep == "*" && !p.Match(endpoint, spelled)) {
			t.Fatalf("%q does not match %q %q", pattern, ep, spelled)
		}
		if strings.HasSuffix(ns, "*") && !p.Match(ep, spelled+namespace) {
			t.Fatalf("%q does not match the suffix %q", pattern, namespace)
		}
	})
}
