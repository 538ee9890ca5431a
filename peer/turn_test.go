package peer_test

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/peer"
	"github.com/signalchannel/signalchannel/turnserver"
)

var turnSecret = []byte("the secret of the embedded turn server, 32+ bytes")

// turnServer starts the embedded TURN server on loopback and a channel
// server that hands out its URL with credentials of lifetime ttl.
func turnServer(t *testing.T, ttl time.Duration) (*sctest.Server, *turnserver.Server) {
	t.Helper()
	ts, err := turnserver.Start(turnserver.Config{UDP: "127.0.0.1:0", Secret: turnSecret, Logger: sctest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	iss, err := ice.NewIssuer(ice.Config{TURN: ts.URLs(), Secret: turnSecret, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return sctest.NewServer(t, sctest.Options{Channel: server.Config{ICE: iss}}), ts
}

// relayOnly is a connection's options that keep ICE to TURN candidates,
// the ICE servers being the server's (the default).
func relayOnly() peer.ConnOptions {
	return peer.ConnOptions{SettingEngine: loopback(false), ICETransportPolicy: webrtc.ICETransportPolicyRelay, DirectTimeout: time.Minute}
}

// Two Go peers that may use TURN candidates only connect through the
// embedded TURN server, with the credentials the server hands them, and
// their data crosses intact.
func TestConnThroughTURN(t *testing.T) {
	ts, turn := turnServer(t, time.Hour)
	ac, bc := callPair(t, ts.URL)
	a, b := connectPair(t, ac, bc, relayOnly)
	if a.Path() != peer.PathTURN || b.Path() != peer.PathTURN {
		t.Fatalf("paths %q and %q, want turn", a.Path(), b.Path())
	}
	transfer(t, a, b, 1<<20)
	if n := turn.Stats().BytesRelayed.Load(); n < 2<<20 {
		t.Fatalf("the TURN server relayed %d bytes", n)
	}
	if n := turn.Stats().AllocationsTotal.Load(); n < 2 {
		t.Fatalf("%d allocations", n)
	}
}

// With credentials that live 10 s: a connection made at second 0 still
// carries data at second 60, and one made at second 15 (with credentials
// the session renewed) works.
func TestTURNCredentialsOutliveTheirLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long")
	}
	start := time.Now()
	ts, _ := turnServer(t, ice.MinTTL)
	a, am := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	b, bm := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	c, cm := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	waitMember(t, a, b.ID())
	waitMember(t, a, c.ID())
	_, _ = am, cm
	ab, ba := acceptedCall(t, a, b, bm)
	first, firstB := connectPair(t, ab, ba, relayOnly)
	if first.Path() != peer.PathTURN {
		t.Fatalf("path %q", first.Path())
	}
	transfer(t, first, firstB, 64<<10)
	sleepUntil(start.Add(15 * time.Second))
	ac, ca := acceptedCall(t, a, c, cm)
	second, secondC := connectPair(t, ac, ca, relayOnly)
	if second.Path() != peer.PathTURN {
		t.Fatalf("path %q", second.Path())
	}
	transfer(t, second, secondC, 64<<10)
	sleepUntil(start.Add(60 * time.Second))
	transfer(t, first, firstB, 64<<10)
	transfer(t, second, secondC, 64<<10)
	if first.Path() != peer.PathTURN || second.Path() != peer.PathTURN {
		t.Fatalf("paths %q and %q at second 60", first.Path(), second.Path())
	}
}

// sleepUntil waits for the wall clock to reach at: the credentials' expiry
// is wall-clock time, at the TURN server as at the issuer.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }
