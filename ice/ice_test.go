package ice_test

import (
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/ice"
)

// The credential of a known username under a known secret, as
// `printf %s 1700000000:alice | openssl dgst -sha1 -hmac north-wind-shared-secret -binary | base64`
// computes it, and as coturn's use-auth-secret expects it.
func TestCredentialVector(t *testing.T) {
	const secret, user = "north-wind-shared-secret", "1700000000:alice"
	if got := ice.Credential([]byte(secret), user); got != "DrNmkUpVI9rDvpilEEGPXznrgJA=" {
		t.Fatalf("credential %q", got)
	}
	if got := ice.Username(time.Unix(1700000000, 0), "alice"); got != user {
		t.Fatalf("username %q", got)
	}
}

func TestIssue(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	iss, err := ice.NewIssuer(ice.Config{
		STUN: []string{"stun:stun.example.org:3478"}, TURN: []string{"turn:turn.example.org:3478?transport=udp"},
		Secret: []byte("s3cret"), TTL: time.Minute, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	got := iss.Issue("bob")
	if len(got.ICEServers) != 2 || got.TTL != 60 || got.Expires != now.Unix()+60 {
		t.Fatalf("%+v", got)
	}
	turn := got.ICEServers[1]
	if turn.Username != "1800000060:bob" || turn.Credential != ice.Credential([]byte("s3cret"), turn.Username) {
		t.Fatalf("%+v", turn)
	}
	// Valid until the expiry, refused from it on unless expired ones are
	// allowed; altered or foreign credentials never.
	for _, c := range []struct {
		name       string
		user, cred string
		at         time.Time
		expired    bool
		ok         bool
	}{
		{"fresh", turn.Username, turn.Credential, now, false, true},
		{"last second", turn.Username, turn.Credential, now.Add(59 * time.Second), false, true},
		{"expired", turn.Username, turn.Credential, now.Add(60 * time.Second), false, false},
		{"expired, allowed", turn.Username, turn.Credential, now.Add(time.Hour), true, true},
		{"altered user", "1800000060:mallory", turn.Credential, now, false, false},
		{"extended expiry", "1900000060:bob", turn.Credential, now, false, false},
		{"foreign secret", turn.Username, ice.Credential([]byte("other"), turn.Username), now, false, false},
	} {
		id, err := ice.Check([]byte("s3cret"), c.user, c.cred, c.at, c.expired)
		if (err == nil) != c.ok || (c.ok && id != "bob") {
			t.Errorf("%s: %q, %v", c.name, id, err)
		}
	}
}

func TestIssuerConfig(t *testing.T) {
	if iss, err := ice.NewIssuer(ice.Config{}); iss != nil || err != nil {
		t.Fatalf("nothing to hand out: %v, %v", iss, err)
	}
	for _, c := range []ice.Config{
		{STUN: []string{"http://x"}},
		{TURN: []string{"turn:x"}},                                        // no secret
		{TURN: []string{"x:3478"}, Secret: []byte("s")},                   // no scheme
		{TURN: []string{"turn:x"}, Secret: []byte("s"), TTL: time.Second}, // too short
	} {
		if _, err := ice.NewIssuer(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	iss, err := ice.NewIssuer(ice.Config{STUN: []string{"stun:x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := iss.Issue("a"); len(got.ICEServers) != 1 || got.Expires != 0 || got.ICEServers[0].Username != "" {
		t.Fatalf("STUN only: %+v", got)
	}
}

func TestParseUsername(t *testing.T) {
	exp, id, err := ice.ParseUsername("1700000000:room:alice")
	if err != nil || exp.Unix() != 1700000000 || id != "room:alice" {
		t.Fatalf("%v %q %v", exp, id, err)
	}
	if _, id, err := ice.ParseUsername("1700000000"); err != nil || id != "" {
		t.Fatalf("bare timestamp: %q %v", id, err)
	}
	for _, bad := range []string{"", ":alice", "-1:alice", "17e8:alice", "99999999999999999999:a", strings.Repeat("1", 10) + ":" + strings.Repeat("a", ice.MaxUsernameBytes)} {
		if _, _, err := ice.ParseUsername(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// At the length limit and one past it.
	atLimit := "1700000000:" + strings.Repeat("a", ice.MaxUsernameBytes-11)
	if _, _, err := ice.ParseUsername(atLimit); err != nil {
		t.Errorf("%d bytes: %v", len(atLimit), err)
	}
	if _, _, err := ice.ParseUsername(atLimit + "a"); err == nil {
		t.Errorf("%d bytes accepted", len(atLimit)+1)
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1:", "", ":", "00:a:b", "9223372036854775807:x", "18446744073709551616:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, id, err := ice.ParseUsername(s)
		if err != nil {
			return
		}
		// What parses writes back to a username that parses the same.
		exp2, id2, err := ice.ParseUsername(ice.Username(exp, id))
		if err != nil || !exp2.Equal(exp) || id2 != id {
			t.Fatalf("%q parsed as %v %q, which does not round-trip: %v %q %v", s, exp.Unix(), id, exp2.Unix(), id2, err)
		}
		if !strings.HasSuffix(s, id) || exp.Unix() < 0 {
			t.Fatalf("%q parsed as %v %q", s, exp.Unix(), id)
		}
		if len(s) > ice.MaxUsernameBytes {
			t.Fatalf("%d bytes accepted", len(s))
		}
	})
}
