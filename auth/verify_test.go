package auth_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signalchannel/signalchannel/auth"
)

const (
	hsHeader = `{"alg":"HS256","typ":"JWT"}`
	edHeader = `{"alg":"EdDSA","typ":"JWT"}`
)

var grant = auth.Grant{Subject: "alice", Allow: []string{"echo:room-*", "scuttlebutt:presence", "relay:*"}, TTL: time.Hour}

func TestVerifyValid(t *testing.T) {
	_, priv := testKeys(t)
	for _, tc := range []struct {
		name string
		v    *auth.Verifier
		key  any
		alg  string
	}{
		{"HS256", hsVerifier(t), secret, auth.AlgHS256},
		{"EdDSA", edVerifier(t), priv, auth.AlgEdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.Algorithm(); got != tc.alg {
				t.Errorf("Algorithm() = %q, want %q", got, tc.alg)
			}
			c, err := tc.v.Verify(mint(t, tc.key, grant))
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "alice" {
				t.Errorf("Subject = %q", c.Subject)
			}
			if strings.Join(c.Allow, " ") != "echo:room-* scuttlebutt:presence relay:*" {
				t.Errorf("Allow = %q", c.Allow)
			}
			if !c.ExpiresAt.Equal(now.Add(time.Hour)) || !c.IssuedAt.Equal(now) || !c.NotBefore.IsZero() {
				t.Errorf("times: exp %v iat %v nbf %v", c.ExpiresAt, c.IssuedAt, c.NotBefore)
			}
			if want := now.Add(time.Hour + auth.DefaultLeeway); !c.ValidUntil.Equal(want) {
				t.Errorf("ValidUntil = %v, want %v", c.ValidUntil, want)
			}
			if !c.Allows("echo", "room-1") || !c.Allows("relay", "x") || c.Allows("scuttlebutt", "room-1") {
				t.Error("Allows disagrees with the allow claim")
			}
			if len(c.Patterns()) != 3 {
				t.Errorf("Patterns() = %v", c.Patterns())
			}
		})
	}
}

// TestVerifyProtocolExample verifies the token of PROTOCOL.md section 7.
func TestVerifyProtocolExample(t *testing.T) {
	tok := rawToken(t, jwt.SigningMethodHS256, secret, hsHeader,
		`{"sub":"alice","exp":1790000000,"allow":["echo:room-*","scuttlebutt:presence","relay:*"]}`)
	c, err := hsVerifier(t).Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExpiresAt.Unix() != 1790000000 || !c.IssuedAt.IsZero() {
		t.Errorf("exp %v iat %v", c.ExpiresAt, c.IssuedAt)
	}
	if !c.Allows("scuttlebutt", "presence") || c.Allows("scuttlebutt", "presence2") {
		t.Error("Allows disagrees with the allow claim")
	}
}

func TestVerifyTimes(t *testing.T) {
	v := hsVerifier(t)
	for _, tc := range []struct {
		name   string
		g      auth.Grant
		kind   error
		reason string
	}{
		{"expired", auth.Grant{IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour}, auth.ErrExpired, "token expired"},
		{"expired just past leeway", auth.Grant{IssuedAt: now.Add(-time.Hour - auth.DefaultLeeway), TTL: time.Hour}, auth.ErrExpired, "token expired"},
		{"expired within leeway", auth.Grant{IssuedAt: now.Add(-time.Hour - 10*time.Second), TTL: time.Hour}, nil, ""},
		{"not yet valid", auth.Grant{NotBefore: now.Add(time.Hour), TTL: 2 * time.Hour}, auth.ErrInvalid, "invalid token: not valid yet"},
		{"nbf within leeway", auth.Grant{NotBefore: now.Add(10 * time.Second), TTL: time.Hour}, nil, ""},
		{"issued in the future", auth.Grant{IssuedAt: now.Add(time.Hour), TTL: time.Hour}, auth.ErrInvalid, "invalid token: issued in the future"},
		{"iat within leeway", auth.Grant{IssuedAt: now.Add(10 * time.Second), TTL: time.Hour}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			g.Subject, g.Allow = "alice", []string{"echo:*"}
			_, err := v.Verify(mint(t, secret, g))
			if tc.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.kind, tc.reason)
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	tok := mint(t, secret, auth.Grant{Subject: "a", Allow: []string{}, IssuedAt: now.Add(-time.Hour - time.Second), TTL: time.Hour})
	if _, err := hsVerifier(t).Verify(tok); err != nil {
		t.Fatalf("default leeway: %v", err)
	}
	strict, err := auth.NewVerifier(auth.Config{Secret: secret, Leeway: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if strict.Leeway() != 0 {
		t.Errorf("Leeway() = %v, want 0", strict.Leeway())
	}
	_, err = strict.Verify(tok)
	wantErr(t, err, auth.ErrExpired, "token expired")

	// ValidUntil is the first instant the verifier refuses the token.
	c, err := hsVerifier(t).Verify(mint(t, secret, grant))
	if err != nil {
		t.Fatal(err)
	}
	at := func(ts time.Time) *auth.Verifier {
		v, err := auth.NewVerifier(auth.Config{Secret: secret, Now: func() time.Time { return ts }})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tok = mint(t, secret, grant)
	if _, err := at(c.ValidUntil.Add(-time.Nanosecond)).Verify(tok); err != nil {
		t.Errorf("just before ValidUntil: %v", err)
	}
	_, err = at(c.ValidUntil).Verify(tok)
	wantErr(t, err, auth.ErrExpired, "token expired")
}

func TestVerifyWrongKey(t *testing.T) {
	_, priv := testKeys(t)
	_, otherPriv, err := auth.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	_, err = hsVerifier(t).Verify(mint(t, otherSecret, grant))
	wantErr(t, err, auth.ErrInvalid, "invalid token: signature")
	_, err = edVerifier(t).Verify(mint(t, otherPriv, grant))
	wantErr(t, err, auth.ErrInvalid, "invalid token: signature")

	// A genuine token with one byte of its payload changed.
	tok := mint(t, priv, grant)
	parts := strings.Split(tok, ".")
	p := []byte(parts[1])
	p[5] ^= 1
	_, err = edVerifier(t).Verify(parts[0] + "." + string(p) + "." + parts[2])
	if !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("tampered payload: %v", err)
	}

	// A forged token says only "signature", whatever else is wrong with it.
	for _, payload := range []string{
		`{"sub":"a","exp":1,"allow":[]}`,          // expired
		`{"sub":"a","exp":"soon","allow":[]}`,     // exp of the wrong type
		`{"sub":"a","exp":9999999999,"allow":7}`,  // allow of the wrong type
		`{"sub":"a","exp":9999999999,"nbf":1e10}`, // not valid yet
	} {
		_, err := hsVerifier(t).Verify(rawToken(t, jwt.SigningMethodHS256, otherSecret, hsHeader, payload))
		wantErr(t, err, auth.ErrInvalid, "invalid token: signature")
	}
}

func TestVerifyWrongAlgorithm(t *testing.T) {
	pub, priv := testKeys(t)
	rsaKey := loadRSA(t)
	payload := fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":["*:*"]}`, now.Add(time.Hour).Unix())
	hs, ed := hsVerifier(t), edVerifier(t)
	for _, tc := range []struct {
		name   string
		v      *auth.Verifier
		token  string
		reason string
	}{
		{"none to HS256", hs, unsigned(`{"alg":"none","typ":"JWT"}`, payload), `invalid token: algorithm "none" not accepted (want HS256)`},
		{"none to EdDSA", ed, unsigned(`{"alg":"none"}`, payload), `invalid token: algorithm "none" not accepted (want EdDSA)`},
		{"None", ed, unsigned(`{"alg":"None"}`, payload), `invalid token: algorithm "None" not accepted`},
		{"none via library", hs, rawToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, `{"alg":"none"}`, payload), `invalid token: algorithm "none"`},
		{"HS256 keyed with the public key", ed, rawToken(t, jwt.SigningMethodHS256, []byte(pub), hsHeader, payload), `invalid token: algorithm "HS256" not accepted (want EdDSA)`},
		{"HS256 keyed with the public key PEM", ed, rawToken(t, jwt.SigningMethodHS256, readFile(t, "ed25519.pub"), hsHeader, payload), `invalid token: algorithm "HS256"`},
		{"RS256", hs, rawToken(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256"}`, payload), `invalid token: algorithm "RS256" not accepted`},
		{"RS256 to EdDSA", ed, rawToken(t, jwt.SigningMethodRS256, rsaKey, `{"alg":"RS256"}`, payload), `invalid token: algorithm "RS256" not accepted`},
		{"HS512 with the right secret", hs, rawToken(t, jwt.SigningMethodHS512, secret, `{"alg":"HS512"}`, payload), `invalid token: algorithm "HS512" not accepted`},
		{"HS384 with the right secret", hs, rawToken(t, jwt.SigningMethodHS384, secret, `{"alg":"HS384"}`, payload), `invalid token: algorithm "HS384" not accepted`},
		{"EdDSA to HS256", hs, rawToken(t, jwt.SigningMethodEdDSA, priv, edHeader, payload), `invalid token: algorithm "EdDSA" not accepted (want HS256)`},
		{"HS256 to EdDSA", ed, rawToken(t, jwt.SigningMethodHS256, secret, hsHeader, payload), `invalid token: algorithm "HS256" not accepted (want EdDSA)`},
		{"unknown algorithm", hs, rawToken(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256X"}`, payload), `invalid token: algorithm "HS256X" not accepted`},
		{"no alg", hs, rawToken(t, jwt.SigningMethodHS256, secret, `{"typ":"JWT"}`, payload), `invalid token: no "alg" in the header`},
		{"alg not a string", hs, rawToken(t, jwt.SigningMethodHS256, secret, `{"alg":256}`, payload), `invalid token: no "alg" in the header`},
		{"crit header", hs, rawToken(t, jwt.SigningMethodHS256, secret, `{"alg":"HS256","crit":["exp"]}`, payload), `invalid token: header "crit"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.token)
			wantErr(t, err, auth.ErrInvalid, tc.reason)
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	exp := now.Add(time.Hour).Unix()
	for _, tc := range []struct {
		name, payload, reason string
	}{
		{"no exp", `{"sub":"alice","allow":["echo:*"]}`, `invalid token: no "exp" claim`},
		{"EXP is not exp", `{"sub":"alice","EXP":9999999999,"allow":["echo:*"]}`, `invalid token: no "exp" claim`},
		{"exp a string", `{"sub":"alice","exp":"9999999999","allow":["echo:*"]}`, `invalid token: claim "exp" must be a number`},
		{"exp null", `{"sub":"alice","exp":null,"allow":["echo:*"]}`, `invalid token: claim "exp" must be a number`},
		{"exp huge", `{"sub":"alice","exp":1e300,"allow":["echo:*"]}`, `invalid token: claim "exp" is out of range`},
		{"exp negative", `{"sub":"alice","exp":-1,"allow":["echo:*"]}`, `invalid token: claim "exp" is out of range`},
		{"nbf a string", fmt.Sprintf(`{"sub":"alice","exp":%d,"nbf":"x","allow":["echo:*"]}`, exp), `invalid token: claim "nbf" must be a number`},
		{"iat a bool", fmt.Sprintf(`{"sub":"alice","exp":%d,"iat":true,"allow":["echo:*"]}`, exp), `invalid token: claim "iat" must be a number`},
		{"no sub", fmt.Sprintf(`{"exp":%d,"allow":["echo:*"]}`, exp), `invalid token: no "sub" claim`},
		{"sub a number", fmt.Sprintf(`{"sub":7,"exp":%d,"allow":["echo:*"]}`, exp), `invalid token: claim "sub" must be a non-empty string`},
		{"sub empty", fmt.Sprintf(`{"sub":"","exp":%d,"allow":["echo:*"]}`, exp), `invalid token: claim "sub" must be a non-empty string`},
		{"sub null", fmt.Sprintf(`{"sub":null,"exp":%d,"allow":["echo:*"]}`, exp), `invalid token: claim "sub" must be a non-empty string`},
		{"no allow", fmt.Sprintf(`{"sub":"alice","exp":%d}`, exp), `invalid token: no "allow" claim`},
		{"allow a string", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":"echo:*"}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow null", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":null}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow an object", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":{"echo":"*"}}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow of numbers", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[1,2]}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow with a null", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":["echo:*",null]}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow nested", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[["echo:*"]]}`, exp), `invalid token: claim "allow" must be an array of strings`},
		{"allow entry without colon", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":["echo:*","echo"]}`, exp), `invalid token: allow entry "echo": want endpoint:namespace-pattern`},
		{"allow entry with empty namespace", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":["echo:"]}`, exp), `invalid token: allow entry "echo:"`},
		{"allow entry with empty endpoint", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[":room"]}`, exp), `invalid token: allow entry ":room"`},
		{"payload an array", `["sub","alice"]`, `invalid token: malformed`},
		{"sub with a slash", fmt.Sprintf(`{"sub":"alice/x","exp":%d,"allow":[]}`, exp), `invalid token: claim "sub" must not contain "/"`},
		{"sub with a control character", fmt.Sprintf(`{"sub":"alice\u0000","exp":%d,"allow":[]}`, exp), `invalid token: claim "sub" has control character U+0000 at byte 5`},
		{"sub too long", fmt.Sprintf(`{"sub":%q,"exp":%d,"allow":[]}`, strings.Repeat("a", auth.MaxSubjectBytes+1), exp), `invalid token: claim "sub" longer than 128 bytes`},
		{"own a string", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"own":"scuttlebutt:*"}`, exp), `invalid token: claim "own" must be an array of endpoint:namespace-pattern strings`},
		{"own null", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"own":null}`, exp), `invalid token: claim "own" must be an array`},
		{"own entry without colon", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"own":["presence"]}`, exp), `invalid token: claim "own" must be an array`},
		{"own of numbers", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"own":[1]}`, exp), `invalid token: claim "own" must be an array`},
		{"meta a string", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"meta":"Alice"}`, exp), `invalid token: claim "meta" must be a JSON object`},
		{"meta an array", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"meta":[1]}`, exp), `invalid token: claim "meta" must be a JSON object`},
		{"meta null", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"meta":null}`, exp), `invalid token: claim "meta" must be a JSON object`},
		{"meta too large", fmt.Sprintf(`{"sub":"alice","exp":%d,"allow":[],"meta":{"n":%q}}`, exp, strings.Repeat("x", auth.MaxMetaBytes-7)), `invalid token: claim "meta" longer than 1024 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hsVerifier(t).Verify(rawToken(t, jwt.SigningMethodHS256, secret, hsHeader, tc.payload))
			wantErr(t, err, auth.ErrInvalid, tc.reason)
		})
	}

	// sub at its longest; own and meta as the token has them, meta at its
	// largest (1024 bytes once compact).
	meta := fmt.Sprintf(`{ "n" : %q }`, strings.Repeat("x", auth.MaxMetaBytes-8))
	c, err := hsVerifier(t).Verify(rawToken(t, jwt.SigningMethodHS256, secret, hsHeader,
		fmt.Sprintf(`{"sub":%q,"exp":%d,"allow":[],"own":["scuttlebutt:presence","scuttlebutt:room-*"],"meta":%s}`, strings.Repeat("a", auth.MaxSubjectBytes), exp, meta)))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Meta) != auth.MaxMetaBytes || c.Meta[1] != '"' {
		t.Errorf("meta of %d bytes, want %d compact: %.20s...", len(c.Meta), auth.MaxMetaBytes, c.Meta)
	}
	if !c.Owns("scuttlebutt", "presence") || !c.Owns("scuttlebutt", "room-1") || c.Owns("scuttlebutt", "presence-2") || c.Owns("echo", "presence") {
		t.Errorf("Owns disagrees with the own claim %q", c.Own)
	}

	// Unknown claims are ignored; an empty allow list is valid and allows nothing.
	c, err = hsVerifier(t).Verify(rawToken(t, jwt.SigningMethodHS256, secret, hsHeader,
		fmt.Sprintf(`{"sub":"bob","exp":%d.5,"allow":[],"iss":"x","aud":["y"],"extra":{"a":1}}`, exp)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Allows("echo", "x") || len(c.Allow) != 0 {
		t.Errorf("empty allow grants %v", c.Allow)
	}
	if c.Owns("scuttlebutt", "presence") || c.Meta != nil || c.Own != nil {
		t.Errorf("no own or meta claim, but Own %v, Meta %s", c.Own, c.Meta)
	}
	if c.ExpiresAt.UnixMilli() != exp*1000+500 {
		t.Errorf("fractional exp read as %v", c.ExpiresAt)
	}
}

func TestVerifyMalformed(t *testing.T) {
	v := hsVerifier(t)
	good := mint(t, secret, grant)
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"one part", "abc", "invalid token: malformed"},
		{"two parts", "abc.def", "invalid token: malformed"},
		{"four parts", good + ".x", "invalid token: malformed"},
		{"not base64", "a!.b!.c!", "invalid token: malformed"},
		{"header not JSON", unsigned("hello", "{}"), "invalid token: malformed"},
		{"payload not JSON", unsigned(hsHeader, "hello"), "invalid token: malformed"},
		{"padded base64", strings.Replace(good, ".", "=.", 1), "invalid token: malformed"},
		{"trailing space", good + " ", "invalid token: malformed"},
		{"too long", strings.Repeat("a", auth.MaxTokenBytes+1), "invalid token: longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token)
			wantErr(t, err, auth.ErrInvalid, tc.reason)
		})
	}
	_, err := v.Verify("")
	wantErr(t, err, auth.ErrMissing, "missing credentials")
}

func TestVerifyConcurrent(t *testing.T) {
	v := edVerifier(t)
	_, priv := testKeys(t)
	tok := mint(t, priv, grant)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				c, err := v.Verify(tok)
				if err != nil || !c.Allows("echo", "room-9") {
					t.Errorf("Verify: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestConfigValidate(t *testing.T) {
	pub, _ := testKeys(t)
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		want error
	}{
		{"no key", auth.Config{}, auth.ErrNoKey},
		{"defaults but no key", auth.DefaultConfig(), auth.ErrNoKey},
		{"two keys", auth.Config{Secret: secret, PublicKey: pub}, auth.ErrNoKey},
		{"short secret", auth.Config{Secret: []byte("short")}, auth.ErrSecretTooShort},
		{"31-byte secret", auth.Config{Secret: secret[:31]}, auth.ErrSecretTooShort},
		{"public key too short", auth.Config{PublicKey: ed25519.PublicKey(pub[:31])}, auth.ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
			if _, err := auth.NewVerifier(tc.cfg); !errors.Is(err, tc.want) {
				t.Fatalf("NewVerifier: %v, want %v", err, tc.want)
			}
		})
	}
	if err := (auth.Config{Secret: secret, Leeway: auth.MaxLeeway + time.Second}).Validate(); err == nil {
		t.Error("Validate accepts a leeway above MaxLeeway")
	}
	for _, cfg := range []auth.Config{
		{Secret: secret[:32]},
		{PublicKey: pub, Leeway: auth.MaxLeeway},
		{Secret: secret, Leeway: -1},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", cfg, err)
		}
	}
	if d := auth.DefaultConfig(); d.Leeway != 30*time.Second || d.Now == nil {
		t.Errorf("DefaultConfig() = %+v", d)
	}
}

// TestVerifierCopiesKey checks that changing the caller's key slice later
// does not change what the Verifier accepts.
func TestVerifierCopiesKey(t *testing.T) {
	s := append([]byte(nil), secret...)
	v, err := auth.NewVerifier(auth.Config{Secret: s, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, secret, grant)
	clear(s)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

func TestCloseReason(t *testing.T) {
	if r := auth.CloseReason(errors.New("boom: /etc/secret")); r != "invalid token" {
		t.Errorf("foreign error gives %q", r)
	}
	long := &auth.Error{Kind: auth.ErrInvalid, Reason: strings.Repeat("é", 100)}
	r := auth.CloseReason(long)
	if len(r) > auth.MaxReasonBytes || !strings.HasPrefix(long.Reason, r) || len(r) < auth.MaxReasonBytes-1 {
		t.Errorf("CloseReason cut %d bytes to %d: %q", len(long.Reason), len(r), r)
	}
	// An allow entry as long as the token allows still yields a short reason.
	entry := strings.Repeat("x", 4000)
	_, err := hsVerifier(t).Verify(rawToken(t, jwt.SigningMethodHS256, secret, hsHeader,
		fmt.Sprintf(`{"sub":"a","exp":%d,"allow":[%q]}`, now.Add(time.Hour).Unix(), entry)))
	wantErr(t, err, auth.ErrInvalid, `invalid token: allow entry "xxx`)
	if !errors.Is(err, auth.ErrBadPattern) {
		t.Errorf("%v does not wrap ErrBadPattern", err)
	}
}

func loadRSA(t testing.TB) any {
	t.Helper()
	block, _ := pem.Decode(readFile(t, "rsa.key"))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
