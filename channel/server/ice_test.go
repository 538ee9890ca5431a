package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

var iceSecret = []byte("the turn secret, long enough for any check 0123")

func issuer(t *testing.T, ttl time.Duration) *ice.Issuer {
	t.Helper()
	iss, err := ice.NewIssuer(ice.Config{STUN: []string{"stun:127.0.0.1:3478"}, TURN: []string{"turn:127.0.0.1:3478?transport=udp"}, Secret: iceSecret, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// get requests the ICE route of h with the token (none when empty) and
// origin, and decodes the JSON it answers.
func get(t *testing.T, url, method, token, origin string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("%s: %q: %v", method, body, err)
		}
	}
	return resp.StatusCode, resp.Header, out
}

// The ICE route hands the caller's credentials, for its token's sub, in
// RTCIceServer's shape; without a valid token it refuses with JSON.
func TestICERoute(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{Secret: sctest.TestSecret})
	if err != nil {
		t.Fatal(err)
	}
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Verifier: v, ICE: issuer(t, time.Hour), AllowedOrigins: []string{"https://app.example"}}})
	route := httptest.NewServer(ts.Handler.ICEHandler())
	defer route.Close()

	tok, err := auth.Mint(sctest.TestSecret, auth.Grant{Subject: "alice", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	code, hdr, body := get(t, route.URL, "GET", tok, "https://app.example")
	if code != 200 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v %v", code, hdr, body)
	}
	servers := body["iceServers"].([]any)
	turn := servers[1].(map[string]any)
	user := turn["username"].(string)
	if !strings.HasSuffix(user, ":alice") || turn["credential"] != ice.Credential(iceSecret, user) || body["ttl"] != float64(3600) {
		t.Fatalf("%v", body)
	}
	if _, err := ice.Check(iceSecret, user, turn["credential"].(string), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token, origin, method string
		status                      int
		code                        string
	}{
		{"no token", "", "", "GET", 401, "forbidden"},
		{"bad token", tok + "x", "", "GET", 401, "bad_token"},
		{"expired token", sctest.Mint(t, sctest.TestSecret, -time.Minute), "", "GET", 401, "bad_token"},
		{"foreign origin", tok, "https://evil.example", "GET", 403, "forbidden"},
		{"POST", tok, "", "POST", 405, "bad_header"},
	} {
		status, _, body := get(t, route.URL, c.method, c.token, c.origin)
		e, _ := body["error"].(map[string]any)
		if status != c.status || e["code"] != c.code || e["message"] == "" {
			t.Errorf("%s: %d %v", c.name, status, body)
		}
	}
	// A browser's preflight for the Authorization header.
	status, hdr, _ := get(t, route.URL, "OPTIONS", "", "https://app.example")
	if status != 204 || !strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", status, hdr)
	}
}

// A server without ICE servers says so; an open server issues for a new
// id each time.
func TestICERouteOpenAndOff(t *testing.T) {
	off := httptest.NewServer(sctest.NewServer(t, sctest.Options{}).Handler.ICEHandler())
	defer off.Close()
	if status, _, body := get(t, off.URL, "GET", "", ""); status != 404 || body["error"].(map[string]any)["code"] != "unknown_endpoint" {
		t.Fatalf("%d %v", status, body)
	}
	open := httptest.NewServer(sctest.NewServer(t, sctest.Options{Channel: server.Config{ICE: issuer(t, time.Hour)}}).Handler.ICEHandler())
	defer open.Close()
	_, _, a := get(t, open.URL, "GET", "", "")
	_, _, b := get(t, open.URL, "GET", "", "")
	ua := a["iceServers"].([]any)[1].(map[string]any)["username"]
	ub := b["iceServers"].([]any)[1].(map[string]any)["username"]
	if ua == ub {
		t.Fatalf("two requests, one id: %v", ua)
	}
}

// The session reply carries the ICE servers for the session's id, and the
// client renews them in band once less than half their lifetime is left.
func TestSessionICE(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{ICE: issuer(t, 12*time.Second)}})
	s := sctest.Dial(t, ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := s.ICEServers(ctx)
	if err != nil || first == nil || len(first.ICEServers) != 2 {
		t.Fatalf("%+v, %v", first, err)
	}
	if user := first.ICEServers[1].Username; !strings.HasSuffix(user, ":"+s.ID()) {
		t.Fatalf("username %q for session %q", user, s.ID())
	}
	// Within the first half of the lifetime: the same credentials.
	if again, _ := s.ICEServers(ctx); again.Expires != first.Expires {
		t.Fatalf("renewed at once: %d then %d", first.Expires, again.Expires)
	}
	// Past half of it (6 s of 12; expiries count whole seconds): renewed.
	sctest.WaitFor(t, 20*time.Second, func() error {
		cur, err := s.ICEServers(ctx)
		if err != nil {
			return err
		}
		if cur.Expires <= first.Expires {
			return io.ErrNoProgress
		}
		return nil
	})
	// A server that hands out none: nil, no error.
	none, err := sctest.Dial(t, sctest.NewServer(t, sctest.Options{}).URL).ICEServers(ctx)
	if none != nil || err != nil {
		t.Fatalf("%+v, %v", none, err)
	}
}
