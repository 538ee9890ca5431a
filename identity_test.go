package signalchannel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/cluster"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

// identityServers is a set of servers the forgery scenario runs against:
// their URLs, their assembled servers, and how a named peer dials one.
type identityServers struct {
	urls []string
	srvs []*signalchannel.Server
	dial func(t *testing.T, url, name string) *client.Session
}

// presence is the scuttlebutt namespace where ownership applies.
const presence = "presence"

// startIdentityServers starts n servers, clustered over one in-process
// NATS server when n > 1. With credentials, peers dial with tokens whose
// sub is their name and whose own claim names presence; without, the
// servers enforce ownership by flag and assign the ids.
func startIdentityServers(t *testing.T, n int, credentials bool) identityServers {
	t.Helper()
	cfg := server.Config{Logger: sctest.QuietLogger()}
	if credentials {
		v, err := auth.NewVerifier(auth.Config{Secret: sctest.TestSecret})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Verifier = v
	} else {
		cfg.Ownership = server.OwnershipOn
		cfg.Owned = []string{"scuttlebutt:" + presence}
	}
	var nats *cluster.Server
	if n > 1 {
		var err error
		if nats, err = cluster.StartServer(cluster.ServerConfig{Listen: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nats.Shutdown)
	}
	var ids identityServers
	for i := range n {
		sc := signalchannel.Config{Channel: cfg, Logger: sctest.QuietLogger()}
		var node *cluster.Node
		if nats != nil {
			var err error
			node, err = cluster.Connect(cluster.Config{URL: nats.ClientURL(), Name: fmt.Sprintf("node-%d", i), Logger: sctest.QuietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			sc.Cluster = node
		}
		srv, err := signalchannel.New(sc)
		if err != nil {
			t.Fatal(err)
		}
		ids.urls = append(ids.urls, start(t, srv))
		ids.srvs = append(ids.srvs, srv)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Error(err)
			}
			if node != nil {
				node.Close()
			}
		})
	}
	ids.dial = func(t *testing.T, url, name string) *client.Session {
		t.Helper()
		var opts client.DialOptions
		if credentials {
			tok, err := auth.Mint(sctest.TestSecret, auth.Grant{Subject: name, Allow: []string{"*:*"}, Own: []string{"scuttlebutt:" + presence},
				Meta: map[string]string{"name": strings.ToUpper(name[:1]) + name[1:]}, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			opts.Token = tok
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := client.Dial(ctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if credentials && s.ID() != name {
			t.Fatalf("%s dialled with a token for %q and got id %q", name, name, s.ID())
		}
		if !credentials && s.ID() == "" {
			t.Fatalf("%s got no id from a server without credentials", name)
		}
		return s
	}
	return ids
}

// rawPeer is a scuttlebutt stream driven line by line.
type rawPeer struct {
	st *client.Stream
	br *bufio.Reader
}

func openRaw(t *testing.T, s *client.Session, ephemeral bool) *rawPeer {
	t.Helper()
	st, _, err := s.Open(sctest.Ctx(t), channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: presence, Ephemeral: ephemeral})
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	return &rawPeer{st: st, br: bufio.NewReader(st)}
}

func (p *rawPeer) send(t *testing.T, lines ...string) {
	t.Helper()
	if _, err := io.WriteString(p.st, strings.Join(lines, "\n")+"\n"); err != nil {
		t.Fatal(err)
	}
}

// wantForbidden reads lines until an error object, which must be
// forbidden, and then the end of the stream.
func (p *rawPeer) wantForbidden(t *testing.T, about string) {
	t.Helper()
	for {
		line, err := p.br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: stream ended (%v) without an error object", about, err)
		}
		msg, err := model.ParseLine([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			t.Fatalf("%s: line %q: %v", about, line, err)
		}
		if msg.Kind != model.KindError {
			continue
		}
		if msg.Err.Code != "forbidden" || msg.Err.Message == "" {
			t.Fatalf("%s: error %+v, want forbidden with a message", about, msg.Err)
		}
		if rest, err := io.ReadAll(p.br); err != nil || len(rest) > 0 {
			t.Fatalf("%s: after the error object: %q, %v; want EOF", about, rest, err)
		}
		return
	}
}

func digestLine(id string) string {
	return strings.TrimSuffix(string(model.AppendDigest(nil, model.Digest{ID: id, Clock: map[string]float64{}})), "\n")
}

func updateLine(key string, value any, ts float64, source string) string {
	b, _ := json.Marshal([]any{[]any{key, value}, ts, source})
	return string(b)
}

// waitValue waits until every server's replica of presence holds key with
// value (compact JSON), or lacks key when value is "".
func waitValue(t *testing.T, ids identityServers, key, value string) {
	t.Helper()
	sctest.WaitFor(t, 10*time.Second, func() error {
		for i, srv := range ids.srvs {
			snap, _ := srv.Scuttlebutt().Snapshot(presence)
			if got := string(snap[key]); got != value {
				return fmt.Errorf("server %d: %s = %q, want %q", i, key, got, value)
			}
		}
		return nil
	})
}

// forgery is the scenario of a peer that tries to act as others: mallory
// writes and deletes alice's presence key, advances the clock of alice's
// replica id, ends an ephemeral stream that names alice's replica id, and
// pairs a relay stream as bob. Each is refused with forbidden and changes
// nothing; bob then pairs with alice.
func forgery(t *testing.T, ids identityServers) {
	at := func(i int) string { return ids.urls[i%len(ids.urls)] }
	alice := ids.dial(t, at(0), "alice")
	bob := ids.dial(t, at(1), "bob")
	mallory := ids.dial(t, at(2), "mallory")
	a, b, m := alice.ID(), bob.ID(), mallory.ID()

	// Bob and mallory watch presence, so that each server holds the
	// namespace's replica.
	for _, s := range []*client.Session{bob, mallory} {
		wm := model.New(model.Options{})
		t.Cleanup(func() { wm.Close() })
		r, err := s.Replicate(sctest.Ctx(t), presence, wm, client.ReplicateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	// Alice's presence, through the Go client's replica.
	am := model.New(model.Options{})
	t.Cleanup(func() { am.Close() })
	rep, err := alice.Replicate(sctest.Ctx(t), presence, am, client.ReplicateOptions{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	if err := am.Set(a, map[string]string{"name": "Alice"}); err != nil {
		t.Fatal(err)
	}
	if err := am.Set(a+"/status", "online"); err != nil {
		t.Fatal(err)
	}
	const aliceValue = `{"name":"Alice"}`
	waitValue(t, ids, a, aliceValue)
	aliceSource := am.ID()
	now := float64(time.Now().UnixMilli())

	for _, c := range []struct {
		about string
		lines []string
	}{
		{"a write to alice's key", []string{digestLine("M1"), updateLine(a, "pwned", now, "M1")}},
		{"a deletion of alice's key", []string{digestLine("M2"), updateLine(a, nil, now+1, "M2")}},
		{"a key alice owns by prefix", []string{digestLine("M3"), updateLine(a+"/status", "away", now+2, "M3")}},
		{"a key that merely begins with alice's id", []string{digestLine("M4"), updateLine(a+"x", 1, now, "M4")}},
		{"mallory's own key with alice's source, 20 s ahead", []string{digestLine("M5"), updateLine(m, 1, now+20000, aliceSource)}},
		{"an update before the digest", []string{updateLine(a, "pwned", now+3, "M6")}},
	} {
		p := openRaw(t, mallory, false)
		p.send(t, c.lines...)
		p.wantForbidden(t, c.about)
		p.st.Close()
	}
	// An ephemeral stream of mallory's that names alice's replica id in
	// its digest, and ends.
	// Once the server's FIN arrives, the stream's end was handled there.
	p := openRaw(t, mallory, true)
	p.send(t, digestLine(aliceSource))
	p.st.CloseWrite()
	if _, err := io.Copy(io.Discard, p.br); err != nil {
		t.Fatal(err)
	}
	p.st.Close()

	// A write of mallory's own key with her own source is accepted: once
	// it has reached every server, nothing refused before it was applied
	// anywhere.
	p = openRaw(t, mallory, false)
	p.send(t, digestLine("M8"), updateLine(m+"/status", "done", float64(time.Now().UnixMilli()), "M8"))
	waitValue(t, ids, m+"/status", `"done"`)
	p.st.Close()
	waitValue(t, ids, a, aliceValue)
	waitValue(t, ids, a+"/status", `"online"`)

	// Alice's later writes still go through: her source's clock was not
	// advanced.
	if err := am.Set(a+"/status", "busy"); err != nil {
		t.Fatal(err)
	}
	waitValue(t, ids, a+"/status", `"busy"`)
	if err := rep.Err(); err != nil {
		t.Fatalf("alice's replica ended: %v", err)
	}

	// The relay: mallory may not pair as bob, then bob pairs with alice.
	_, err = mallory.Relay(sctest.Ctx(t), "call", b, a)
	if perr := sctest.WantCode(t, err, channel.CodeForbidden); !strings.Contains(perr.Message, `"local" must be`) {
		t.Fatalf("the refusal does not name the rule: %q", perr.Message)
	}
	got := make(chan *client.RelayConn, 1)
	go func() {
		c, err := bob.Relay(sctest.Ctx(t), "call", b, a)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	ac, err := alice.Relay(sctest.Ctx(t), "call", a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	bc := <-got
	if bc == nil {
		t.FailNow()
	}
	defer bc.Close()
	if _, err := io.WriteString(ac, "hello bob"); err != nil {
		t.Fatal(err)
	}
	sctest.ExpectRead(t, bc, "hello bob")
	// Each side learns who is at the other end, as the servers vouch.
	for _, c := range []struct {
		conn *client.RelayConn
		want *client.Session
	}{{ac, bob}, {bc, alice}} {
		if p := c.conn.Peer(); p.ID != c.want.ID() || string(p.Meta) != string(c.want.Meta()) {
			t.Fatalf("partner %q %s, want %q %s", p.ID, p.Meta, c.want.ID(), c.want.Meta())
		}
	}
	// A pipe of its own: local may be the id and more after "/".
	go func() {
		c, err := bob.Relay(sctest.Ctx(t), "call", b+"/video", a+"/video")
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	ac2, err := alice.Relay(sctest.Ctx(t), "call", a+"/video", b+"/video")
	if err != nil {
		t.Fatal(err)
	}
	defer ac2.Close()
	if bc2 := <-got; bc2 != nil {
		bc2.Close()
	}
}

// A peer cannot act as another, on one server and on three clustered
// servers, with tokens and with ids the server assigns.
func TestForgeryRefused(t *testing.T) {
	for _, c := range []struct {
		name        string
		servers     int
		credentials bool
	}{
		{"one server, tokens", 1, true},
		{"three servers, tokens", 3, true},
		{"one server, assigned ids", 1, false},
		{"three servers, assigned ids", 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			forgery(t, startIdentityServers(t, c.servers, c.credentials))
		})
	}
}

// A session whose 2 s token is refreshed in band about every second stays
// open for 10 s, with an echo stream and a relay pipe flowing that lose
// nothing; a refresh for another sub then closes it with 4401.
func TestTokenRefreshKeepsSessionOpen(t *testing.T) {
	ts := sctest.NewAuthServer(t) // no clock leeway: a token is dead at exp
	var refreshes atomic.Int64
	tokens := func(sub string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			refreshes.Add(1)
			return auth.Mint(sctest.TestSecret, auth.Grant{Subject: sub, Allow: []string{"*:*"}, TTL: 2 * time.Second})
		}
	}
	dial := func(sub string) *client.Session {
		s, err := client.Dial(sctest.Ctx(t), ts.URL, client.DialOptions{TokenFunc: tokens(sub)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	alice, bob := dial("alice"), dial("bob")
	first := alice.Expires()
	echo, err := alice.Echo(sctest.Ctx(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *client.RelayConn, 1)
	go func() {
		c, err := bob.Relay(sctest.Ctx(t), "pipe", "bob", "alice")
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	ac, err := alice.Relay(sctest.Ctx(t), "pipe", "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	bc := <-got
	if bc == nil {
		t.FailNow()
	}

	// Frames and bytes flow for 10 s, one every 20 ms; every one arrives.
	const (
		span  = 10 * time.Second
		every = 20 * time.Millisecond
		count = int(span / every)
	)
	relayed := make(chan error, 1)
	go func() {
		buf := make([]byte, 8)
		for i := range count {
			if _, err := io.ReadFull(bc, buf); err != nil {
				relayed <- fmt.Errorf("relay byte block %d: %w", i, err)
				return
			}
			if want := fmt.Sprintf("%08d", i); string(buf) != want {
				relayed <- fmt.Errorf("relay block %q, want %q", buf, want)
				return
			}
		}
		relayed <- nil
	}()
	echoed := make(chan error, 1)
	go func() {
		for i := range count {
			f, err := echo.Recv()
			if err != nil {
				echoed <- fmt.Errorf("echo frame %d: %w", i, err)
				return
			}
			if want := fmt.Sprint(i); string(f) != want {
				echoed <- fmt.Errorf("echo frame %q, want %q", f, want)
				return
			}
		}
		echoed <- nil
	}()
	tick := time.NewTicker(every)
	for i := range count {
		<-tick.C
		if err := echo.Send([]byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("echo send %d: %v", i, err)
		}
		if _, err := fmt.Fprintf(ac, "%08d", i); err != nil {
			t.Fatalf("relay write %d: %v", i, err)
		}
	}
	tick.Stop()
	for _, c := range []chan error{echoed, relayed} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if !alice.Expires().After(first) {
		t.Fatalf("expiry %v did not move from %v", alice.Expires(), first)
	}
	if n := refreshes.Load(); n < 10 {
		t.Fatalf("%d tokens minted in %v, want a refresh about every second", n, span)
	}
	if n := ts.Stats().Closes[channel.CloseUnauthorized]; n != 0 {
		t.Fatalf("%d sessions closed with 4401", n)
	}

	// A token for another sub closes the session.
	other, err := auth.Mint(sctest.TestSecret, auth.Grant{Subject: "mallory", Allow: []string{"*:*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	err = alice.Refresh(sctest.Ctx(t), other)
	var ce *channel.CloseError
	if !errors.As(err, &ce) || ce.Code != channel.CloseUnauthorized {
		t.Fatalf("refresh for another sub: %v, want close 4401", err)
	}
}
