package auth_test

import (
	"fmt"
	"testing"

	"github.com/signalchannel/signalchannel/auth"
)

func BenchmarkVerify(b *testing.B) {
	_, priv := testKeys(b)
	for _, bc := range []struct {
		name string
		v    *auth.Verifier
		key  any
	}{
		{"HS256", hsVerifier(b), secret},
		{"EdDSA", edVerifier(b), priv},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tok := mint(b, bc.key, grant)
			b.ReportAllocs()
			b.SetBytes(int64(len(tok)))
			for b.Loop() {
				if _, err := bc.v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllows matches one stream against a token with 20 allow entries;
// "last" matches the last entry and "none" matches nothing, the worst case.
func BenchmarkAllows(b *testing.B) {
	allow := make([]string, 20)
	for i := range allow {
		allow[i] = fmt.Sprintf("echo:team-%02d-room-*", i)
	}
	g := grant
	g.Allow = allow
	c, err := hsVerifier(b).Verify(mint(b, secret, g))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, namespace string
		want            bool
	}{
		{"last", "team-19-room-42", true},
		{"none", "team-20-room-42", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.namespace)))
			for b.Loop() {
				if c.Allows("echo", bc.namespace) != bc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
