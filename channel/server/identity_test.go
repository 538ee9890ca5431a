package server_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// mint returns a token for sub signed with sctest.TestSecret.
func mint(t testing.TB, g auth.Grant) string {
	t.Helper()
	if g.TTL == 0 {
		g.TTL = time.Hour
	}
	if g.Allow == nil {
		g.Allow = []string{"*:*"}
	}
	tok, err := auth.Mint(sctest.TestSecret, g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dialToken(t testing.TB, url, token string) *client.Session {
	t.Helper()
	s, err := client.Dial(ctxT(t), url, client.DialOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A server without credentials assigns each session an id of its own,
// different for every session, with no metadata and no expiry.
func TestSessionIDAssigned(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	a, b := sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
	if a.ID() == "" || b.ID() == "" || a.ID() == b.ID() {
		t.Fatalf("ids %q and %q: want two different ids", a.ID(), b.ID())
	}
	if strings.Contains(a.ID(), channel.IDSeparator) || len(a.ID()) < 32 {
		t.Fatalf("id %q: want a random id of at least 128 bits without %q", a.ID(), channel.IDSeparator)
	}
	if a.Meta() != nil || !a.Expires().IsZero() {
		t.Fatalf("meta %s, expires %v: want none on a server without credentials", a.Meta(), a.Expires())
	}
	// The reply is one line, as PROTOCOL.md section 9 writes it.
	st, reply, err := a.Open(ctxT(t), []byte(`{"endpoint":"session"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if string(reply.Raw) != `{"ok":true,"id":"`+a.ID()+`"}` {
		t.Fatalf("reply %s", reply.Raw)
	}
	sctest.ExpectEOF(t, st)
}

// With credentials the id is the token's sub, and the reply carries the
// token's meta claim and its exp.
func TestSessionIDFromToken(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	s := dialToken(t, ts.URL, mint(t, auth.Grant{Subject: "alice", Meta: map[string]string{"name": "Alice <A>"}, TTL: time.Until(exp) + time.Second/2}))
	if s.ID() != "alice" {
		t.Fatalf("id %q, want alice", s.ID())
	}
	var meta map[string]string
	if err := json.Unmarshal(s.Meta(), &meta); err != nil || len(meta) != 1 || meta["name"] != "Alice <A>" {
		t.Fatalf("meta %s, %v", s.Meta(), err)
	}
	if d := s.Expires().Sub(exp); d < -time.Second || d > time.Second {
		t.Fatalf("expires %v, want about %v", s.Expires(), exp)
	}
}

// The session endpoint's header and token faults.
func TestSessionEndpointErrors(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	s := dialToken(t, ts.URL, mint(t, auth.Grant{Subject: "alice"}))
	for _, c := range []struct {
		header string
		code   channel.Code
		msg    string
	}{
		{`{"endpoint":"session","token":5}`, channel.CodeBadHeader, `"token" must be a JSON string`},
		{`{"endpoint":"session","token":""}`, channel.CodeBadHeader, `"token" is empty`},
		{`{"endpoint":"session","token":null}`, channel.CodeBadHeader, `"token" must be a JSON string`},
		{`{"endpoint":"session","token":"not.a.token"}`, channel.CodeForbidden, "invalid token: malformed"},
		{`{"endpoint":"session","token":"` + sctest.Mint(t, sctest.TestSecret, -time.Minute, "echo:*") + `"}`, channel.CodeForbidden, "token expired: the session keeps its current token"},
		{`{"endpoint":"session","token":"` + sctest.Mint(t, []byte("another-secret-another-secret-another-secret"), time.Hour, "echo:*") + `"}`, channel.CodeForbidden, "invalid token: signature"},
	} {
		_, _, err := s.Open(ctxT(t), []byte(c.header))
		if e := sctest.WantCode(t, err, c.code); !strings.Contains(e.Message, c.msg) {
			t.Errorf("%s: message %q, want it to say %q", c.header, e.Message, c.msg)
		}
	}
	// The session goes on, with its id.
	sctest.EchoRoundTrip(t, s)
	if err := s.Refresh(ctxT(t), mint(t, auth.Grant{Subject: "alice"})); err != nil {
		t.Fatal(err)
	}

	// A server without credentials has no token to refresh.
	open := sctest.Dial(t, newTestServer(t, server.Config{}).URL)
	err := open.Refresh(ctxT(t), mint(t, auth.Grant{Subject: "alice"}))
	if e := sctest.WantCode(t, err, channel.CodeForbidden); !strings.Contains(e.Message, "takes no credentials") {
		t.Fatalf("message %q", e.Message)
	}
}

// A refresh moves the session's expiry and replaces its allow claim for
// the streams opened after it; streams already open go on.
func TestRefreshReplacesClaims(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	s := dialToken(t, ts.URL, mint(t, auth.Grant{Subject: "alice", Allow: []string{"echo:a"}, TTL: 3 * time.Second}))
	a, err := s.Echo(ctxT(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	first := s.Expires()
	if err := s.Refresh(ctxT(t), mint(t, auth.Grant{Subject: "alice", Allow: []string{"echo:b"}, TTL: time.Hour})); err != nil {
		t.Fatal(err)
	}
	if !s.Expires().After(first.Add(time.Minute)) {
		t.Fatalf("expires %v after the refresh, was %v", s.Expires(), first)
	}
	if _, err := s.Echo(ctxT(t), "b"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Echo(ctxT(t), "a")
	sctest.WantCode(t, err, channel.CodeForbidden)
	// Past the first token's expiry (no leeway here), the session and its
	// first stream are still open.
	time.Sleep(time.Until(first.Add(time.Second))) // the instant awaited
	if err := a.Send([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if f, err := a.Recv(); err != nil || string(f) != "still" {
		t.Fatalf("Recv %q, %v", f, err)
	}
	if n := ts.Stats().Closes[channel.CloseUnauthorized]; n != 0 {
		t.Fatalf("%d sessions closed with 4401", n)
	}
}

// A session endpoint stream does not hold a place under the streams
// limit: with a limit of one, Dial's question and then a stream both go.
func TestSessionStreamFreesItsPlace(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxStreams: 1})
	for range 20 {
		s := sctest.Dial(t, ts.URL)
		e, err := s.Echo(ctxT(t), "room")
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		s.Close()
	}
}

// Ownership on relay streams: with credentials by default, on an open
// server by flag; the refusal names the rule. With it off, any token goes.
func TestRelayOwnership(t *testing.T) {
	verifier, err := auth.NewVerifier(auth.Config{Secret: sctest.TestSecret})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		cfg     server.Config
		enforce bool
	}{
		{"credentials", server.Config{Verifier: verifier}, true},
		{"credentials, ownership off", server.Config{Verifier: verifier, Ownership: server.OwnershipOff}, false},
		{"open", server.Config{}, false},
		{"open, ownership on", server.Config{Ownership: server.OwnershipOn}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t, c.cfg)
			var s, other *client.Session
			if c.cfg.Verifier != nil {
				s = dialToken(t, ts.URL, mint(t, auth.Grant{Subject: "alice"}))
				other = dialToken(t, ts.URL, mint(t, auth.Grant{Subject: "bob"}))
			} else {
				s, other = sctest.Dial(t, ts.URL), sctest.Dial(t, ts.URL)
			}
			id := s.ID()
			for _, local := range []string{"carol", id + "x", "x" + id, id + "\\x"} {
				if !c.enforce {
					pairs(t, s, other, local)
					continue
				}
				_, _, err := s.Open(ctxT(t), relayHeader(local, "peer"))
				e := sctest.WantCode(t, err, channel.CodeForbidden)
				want := `a relay stream pairs only as its own peer: "local" must be "` + id + `" or begin with "` + id + `/"`
				if e.Message != want {
					t.Fatalf("local %q: message %q, want %q", local, e.Message, want)
				}
			}
			// Its own id, and its id with more after "/", wait to pair.
			for _, local := range []string{id, id + "/", id + "/video/2"} {
				pairs(t, s, other, local)
			}
		})
	}
}

// pairs opens a relay stream of s as local with other's id as remote, and
// the mirror stream of other, and checks that they pair.
func pairs(t *testing.T, s, other *client.Session, local string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		c, err := other.Relay(ctxT(t), "calls", other.ID(), local)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	c, err := s.Relay(ctxT(t), "calls", local, other.ID())
	if err != nil {
		t.Fatalf("local %q: %v", local, err)
	}
	c.Close()
	if err := <-got; err != nil {
		t.Fatalf("the partner of %q: %v", local, err)
	}
}

func relayHeader(local, remote string) []byte {
	b, _ := json.Marshal(channel.Header{Endpoint: channel.EndpointRelay, Namespace: "calls", Local: local, Remote: remote})
	return b
}

// Tokens whose sub could not be a peer id are refused at connect.
func TestSubjectRules(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	for _, c := range []struct {
		sub string
		ok  bool
	}{
		{strings.Repeat("a", auth.MaxSubjectBytes), true},
		{strings.Repeat("a", auth.MaxSubjectBytes+1), false},
		{"alice/bob", false},
		{"alice\x01", false},
		{"alice@example.com|42:x", true},
	} {
		tok, err := signHS256(map[string]any{"sub": c.sub, "allow": []string{"*:*"}, "exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{Token: tok})
		if c.ok {
			if err != nil {
				t.Fatalf("sub %q: %v", c.sub, err)
			}
			if s.ID() != c.sub {
				t.Fatalf("sub %q: id %q", c.sub, s.ID())
			}
			s.Close()
			continue
		}
		var ce *channel.CloseError
		if !errors.As(err, &ce) || ce.Code != channel.CloseUnauthorized || !strings.HasPrefix(ce.Reason, `invalid token: claim "sub"`) {
			t.Fatalf("sub %q: %v, want 4401 naming the sub claim", c.sub, err)
		}
	}
}

// signHS256 signs claims as they are, which auth.Mint would check first.
func signHS256(claims map[string]any) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(sctest.TestSecret)
}
