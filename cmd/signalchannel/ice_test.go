package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/webhook"
)

// serve -turn-listen-udp runs the embedded TURN server and hands out its
// URL with credentials that it accepts; /metrics counts its allocations.
func TestServeEmbeddedTURN(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "turn-secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _, logs := startServer(t, "-turn-secret-file", secretFile, "-turn-listen-udp", "127.0.0.1:0", "-stun", "stun:127.0.0.1:3478", "-turn-ttl", "2m")
	resp, err := http.Get("http://" + addr + "/v1/ice-servers")
	if err != nil {
		t.Fatal(err)
	}
	var got ice.Servers
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || len(got.ICEServers) != 2 || got.TTL != 120 {
		t.Fatalf("%+v, %v\n%s", got, err, logs)
	}
	tr := got.ICEServers[1]
	if len(tr.URLs) != 1 || !strings.HasPrefix(tr.URLs[0], "turn:127.0.0.1:") || !strings.HasSuffix(tr.URLs[0], "?transport=udp") {
		t.Fatalf("announced %v", tr.URLs)
	}
	// A pion TURN client allocates with them.
	server := strings.TrimSuffix(strings.TrimPrefix(tr.URLs[0], "turn:"), "?transport=udp")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: server, STUNServerAddr: server, Username: tr.Username, Password: tr.Credential, Realm: "signalchannel", Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if m := scrape(t, addr); !strings.Contains(m, "signalchannel_turn_allocations 1") || !strings.Contains(m, "signalchannel_turn_allocations_total 1") {
		t.Fatalf("metrics:\n%s", grep(m, "signalchannel_turn"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TURN without its secret, a bad port range or a bad public IP stop the
// server with a message naming the flag.
func TestTURNFlags(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "turn-secret")
	os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-turn-listen-udp", "127.0.0.1:0"}, "-turn-secret-file"},
		{[]string{"-turn", "turn:x:3478"}, "-turn-secret-file"},
		{[]string{"-turn-secret-file", secretFile, "-turn-listen-udp", "127.0.0.1:0", "-turn-relay-ports", "9-1"}, "-turn-relay-ports"},
		{[]string{"-turn-secret-file", secretFile, "-turn-listen-udp", "127.0.0.1:0", "-turn-public-ip", "nope"}, "-turn-public-ip"},
		{[]string{"-turn-secret-file", secretFile, "-turn", "http://x"}, "TURN URL"},
		{[]string{"-turn-secret-file", secretFile, "-turn", "turn:x", "-turn-ttl", "1s"}, "lifetime"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, append([]string{"serve", "-addr", "127.0.0.1:0"}, c.args...), io.Discard, io.Discard, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}

// serve -webhook-url posts a session's events, signed, to the receiver.
func TestServeWebhook(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	secret := []byte(strings.Repeat("w", 40))
	os.WriteFile(secretFile, secret, 0o600)
	got := make(chan string, 16)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			got <- "bad: " + err.Error()
			return
		}
		var b struct{ Events []struct{ Type string } }
		json.Unmarshal(body, &b)
		for _, e := range b.Events {
			got <- e.Type
		}
	}))
	defer rcv.Close()
	addr, stop, logs := startServer(t, "-webhook-url", rcv.URL, "-webhook-secret-file", secretFile, "-webhook-events", "session.opened,session.closed")
	s, err := client.Dial(context.Background(), "ws://"+addr+"/v1/channel", client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, want := range []string{"session.opened", "session.closed"} {
		select {
		case e := <-got:
			if e != want {
				t.Fatalf("got %q, want %q", e, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s posted\n%s", want, logs)
		}
	}
	// Counted once the post has returned, a moment after the receiver
	// has the events.
	deadline := time.Now().Add(10 * time.Second)
	for m := scrape(t, addr); !strings.Contains(m, "signalchannel_webhook_events_sent_total 2"); m = scrape(t, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", grep(m, "webhook"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	for _, args := range [][]string{{"-webhook-url", rcv.URL}, {"-webhook-url", rcv.URL, "-webhook-secret-file", secretFile, "-webhook-events", "session.bogus"}} {
		if err := run(context.Background(), append([]string{"serve", "-addr", "127.0.0.1:0"}, args...), io.Discard, io.Discard, nil); err == nil {
			t.Errorf("%v: started", args)
		}
	}
}

// serve -api-key-file turns the HTTP API on, for requests with the key.
func TestServeAPI(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "api-key")
	key := strings.Repeat("k", 40)
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	addr, _, _ := startServer(t, "-api-key-file", keyFile)
	for _, c := range []struct {
		key    string
		status int
	}{{key, 200}, {"", 401}, {key + "x", 401}} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/api/namespaces", nil)
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("key %.4q: %d, want %d", c.key, resp.StatusCode, c.status)
		}
	}
	// Off without the flag.
	addr, _, _ = startServer(t)
	resp, err := http.Get("http://" + addr + "/v1/api/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("API off: %d", resp.StatusCode)
	}
}
