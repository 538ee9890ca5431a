package auth_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
)

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, endpoint, namespace string
		want                         bool
	}{
		// A trailing '*' matches any suffix, the empty one included.
		{"echo:room-*", "echo", "room-1", true},
		{"echo:room-*", "echo", "room-", true},
		{"echo:room-*", "echo", "room-1/sub", true},
		{"echo:room-*", "echo", "roo", false},
		{"echo:room-*", "echo", "room", false},
		{"echo:room-*", "echo", "Room-1", false},
		{"echo:room-*", "scuttlebutt", "room-1", false},
		{"echo:room-*", "relay", "room-1", false},
		// "*" alone for the endpoint matches every endpoint.
		{"*:x", "echo", "x", true},
		{"*:x", "scuttlebutt", "x", true},
		{"*:x", "relay", "x", true},
		{"*:x", "anything", "x", true},
		{"*:x", "echo", "xy", false},
		{"*:x", "echo", "", false},
		{"*:*", "relay", "anything", true},
		{"*:room-*", "scuttlebutt", "room-7", true},
		{"*:room-*", "scuttlebutt", "lobby", false},
		// "*" alone for the namespace matches every namespace.
		{"relay:*", "relay", "g", true},
		{"relay:*", "relay", "a:b*c", true},
		{"relay:*", "echo", "g", false},
		// Exact names, case-sensitive.
		{"scuttlebutt:presence", "scuttlebutt", "presence", true},
		{"scuttlebutt:presence", "scuttlebutt", "presence2", false},
		{"scuttlebutt:presence", "scuttlebutt", "presenc", false},
		{"scuttlebutt:presence", "Scuttlebutt", "presence", false},
		{"scuttlebutt:presence", "echo", "presence", false},
		{"echo:room-1", "echo", "room-1", true},
		{"echo:room-1", "echo", "room-10", false},
		// A '*' anywhere but at the end of the namespace is literal.
		{"echo:a*b", "echo", "a*b", true},
		{"echo:a*b", "echo", "axb", false},
		{"echo:a*b", "echo", "ab", false},
		{"echo:*b", "echo", "*b", true},
		{"echo:*b", "echo", "xb", false},
		{"echo:a**", "echo", "a*", true},
		{"echo:a**", "echo", "a*xyz", true},
		{"echo:a**", "echo", "a", false},
		{"echo:a**", "echo", "ab", false},
		{"ech*:x", "echo", "x", false},
		{"ech*:x", "ech*", "x", true},
		{"**:x", "echo", "x", false},
		// The first ':' splits; later ones belong to the namespace.
		{"echo:a:b", "echo", "a:b", true},
		{"echo:a:b", "echo:a", "b", false},
		{"echo:a:*", "echo", "a:", true},
		// Unicode namespaces are compared byte for byte.
		{"echo:salle-é*", "echo", "salle-été", true},
		{"echo:salle-é*", "echo", "salle-e", false},
	} {
		t.Run(fmt.Sprintf("%s/%s:%s", tc.pattern, tc.endpoint, tc.namespace), func(t *testing.T) {
			p, err := auth.ParsePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tc.pattern {
				t.Errorf("String() = %q", p.String())
			}
			if got := p.Match(tc.endpoint, tc.namespace); got != tc.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tc.endpoint, tc.namespace, got, tc.want)
			}
		})
	}
}

func TestPatternMalformed(t *testing.T) {
	for _, s := range []string{"", "echo", "*", "room-*", ":", "echo:", ":room", "*:"} {
		p, err := auth.ParsePattern(s)
		if !errors.Is(err, auth.ErrBadPattern) {
			t.Errorf("ParsePattern(%q) = %v, want ErrBadPattern", s, err)
		}
		if p.Match("echo", "room") || p.Match("", "") {
			t.Errorf("the Pattern of malformed %q matches", s)
		}
	}
	var zero auth.Pattern
	if zero.Match("", "") || zero.Match("echo", "x") {
		t.Error("the zero Pattern matches")
	}
}

// TestClaimsAllows checks Allows on verified claims: any entry may match.
func TestClaimsAllows(t *testing.T) {
	tok := mint(t, secret, auth.Grant{
		Subject: "alice",
		Allow:   []string{"echo:room-*", "scuttlebutt:presence", "*:lobby", "relay:*"},
		TTL:     time.Hour,
	})
	c, err := hsVerifier(t).Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		endpoint, namespace string
		want                bool
	}{
		{"echo", "room-1", true},
		{"echo", "lobby", true},
		{"scuttlebutt", "lobby", true},
		{"scuttlebutt", "presence", true},
		{"scuttlebutt", "room-1", false},
		{"relay", "calls", true},
		{"echo", "calls", false},
		{"unknown", "room-1", false},
	} {
		if got := c.Allows(tc.endpoint, tc.namespace); got != tc.want {
			t.Errorf("Allows(%q, %q) = %v, want %v", tc.endpoint, tc.namespace, got, tc.want)
		}
	}
	var none *auth.Claims
	if none.Allows("echo", "room-1") || none.Patterns() != nil {
		t.Error("nil Claims allow something")
	}
}
