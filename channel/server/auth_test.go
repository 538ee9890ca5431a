package server_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// Connections without valid credentials are closed with 4401 and a reason
// that says which; the server goes on serving others.
func TestCredentialsRefused(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	good := sctest.Mint(t, sctest.TestSecret, time.Hour, "echo:*")
	ok, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{Token: good})
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()

	other := []byte("another-secret-another-secret-another-secret")
	for name, c := range map[string]struct {
		hdr    http.Header
		query  string
		reason string
	}{
		"none":                    {reason: "missing credentials"},
		"wrong key":               {hdr: bearer(sctest.Mint(t, other, time.Hour, "echo:*")), reason: "invalid token"},
		"garbage":                 {hdr: bearer("not.a.token"), reason: "invalid token"},
		"expired":                 {hdr: bearer(sctest.Mint(t, sctest.TestSecret, -time.Minute, "echo:*")), reason: "token expired"},
		"query and header differ": {hdr: bearer(good), query: sctest.Mint(t, sctest.TestSecret, 2*time.Hour, "echo:*"), reason: "invalid token"},
	} {
		t.Run(name, func(t *testing.T) {
			u := ts.URL
			if c.query != "" {
				u += "?access_token=" + url.QueryEscape(c.query)
			}
			ws, _, err := websocket.DefaultDialer.Dial(u, c.hdr)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			code, reason := readClose(t, ws)
			if code != channel.CloseUnauthorized || !strings.HasPrefix(reason, c.reason) {
				t.Fatalf("close %d %q, want 4401 %q", code, reason, c.reason)
			}
		})
	}
	echoRoundTrip(t, ok)
}

// The allow list decides per stream: `forbidden` for what it does not cover;
// the token may come as the access_token query parameter.
func TestAllowPatterns(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	tok := sctest.Mint(t, sctest.TestSecret, time.Hour, "echo:room-*", "scuttlebutt:presence")
	s, err := client.Dial(ctxT(t), ts.URL+"?access_token="+url.QueryEscape(tok), client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for ns, allowed := range map[string]bool{"room-1": true, "room-": true, "room": false, "lobby": false} {
		e, err := s.Echo(ctxT(t), ns)
		if allowed {
			if err != nil {
				t.Fatalf("echo:%s: %v", ns, err)
			}
			e.Close()
			continue
		}
		perr := wantCode(t, err, channel.CodeForbidden)
		if !strings.Contains(perr.Message, "echo:"+ns) {
			t.Fatalf("message %q does not name the stream", perr.Message)
		}
	}
	_, _, err = s.Open(ctxT(t), channel.Header{Endpoint: "relay", Namespace: "calls", Local: "a", Remote: "b"})
	wantCode(t, err, channel.CodeForbidden)
	_, _, err = s.Open(ctxT(t), channel.Header{Endpoint: "custom", Namespace: "calls"})
	wantCode(t, err, channel.CodeUnknownEndpoint) // checks run in order: not served here
	if e, err := s.Echo(ctxT(t), "room-2"); err != nil {
		t.Fatal(err)
	} else {
		e.Close()
	}
}

// A session whose token expires while open is closed with 4401.
func TestTokenExpiresWhileOpen(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	s, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{Token: sctest.Mint(t, sctest.TestSecret, 1500*time.Millisecond, "echo:*")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{Token: sctest.Mint(t, sctest.TestSecret, time.Hour, "echo:*")})
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	e, err := s.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session outlived its token")
	}
	if _, err := e.Recv(); err == nil {
		t.Fatal("stream open after expiry")
	}
	waitFor(t, 5*time.Second, func() error {
		if code, reason := s.CloseReason(); code != channel.CloseUnauthorized || reason != "token expired" {
			return errorf("close %d %q", code, reason)
		}
		return nil
	})
	echoRoundTrip(t, long)
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// Dial to a server that refuses the session returns the refusal: a
// *channel.CloseError with 4401 and the server's reason, not a later
// "session shutdown".
func TestDialRefusedCarries4401(t *testing.T) {
	ts := sctest.NewAuthServer(t)
	other := []byte("another-secret-another-secret-another-secret")
	for _, c := range []struct{ token, reason string }{
		{"", "missing credentials"},
		{sctest.Mint(t, other, time.Hour, "echo:*"), "invalid token: signature"},
		{sctest.Mint(t, sctest.TestSecret, -time.Minute, "echo:*"), "token expired"},
	} {
		s, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{Token: c.token})
		var ce *channel.CloseError
		if !errors.As(err, &ce) || ce.Code != channel.CloseUnauthorized || !strings.HasPrefix(ce.Reason, c.reason) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("token %.12q: %v, want 4401 %q", c.token, err, c.reason)
		}
		if !strings.Contains(err.Error(), "4401") || !strings.Contains(err.Error(), c.reason) {
			t.Fatalf("the error says %q", err)
		}
	}
}
