package channel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
)

// A session the server refuses after the upgrade (4429, 4401) reports the
// close code and reason every time, even when the client opens a stream at
// once and its frames cross the server's close message: the server must not
// reset the connection over unread frames, and the client must read the
// close message after its own write failed.
func TestRefusedSessionKeepsCloseCode(t *testing.T) {
	const dials = 200
	limited := newTestServer(t, channel.Config{MaxSessionsPerIP: 1})
	dial(t, limited.URL) // holds the one session the address may have
	authed := newAuthServer(t)
	other := []byte("another-secret-another-secret-another-secret")

	for name, c := range map[string]struct {
		url, token string
		code       int
		reason     string
	}{
		"sessions limit":      {limited.URL, "", channel.CloseLimit, "sessions per address limit (1) reached"},
		"missing credentials": {authed.URL, "", channel.CloseUnauthorized, "missing credentials"},
		"bad signature":       {authed.URL, mint(t, other, time.Hour, "echo:*"), channel.CloseUnauthorized, "invalid token: signature"},
	} {
		t.Run(name, func(t *testing.T) {
			lost := 0
			for i := 0; i < dials; i++ {
				ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
				s, err := channel.Dial(ctx, c.url, channel.DialOptions{Token: c.token})
				if err != nil {
					cancel()
					t.Fatalf("dial %d: %v", i, err)
				}
				if _, err := s.Echo(ctx, "room-1"); err == nil {
					t.Fatalf("dial %d: stream opened on a refused session", i)
				}
				select {
				case <-s.Done():
				case <-ctx.Done():
					t.Fatalf("dial %d: session still open", i)
				}
				cancel()
				if code, reason := s.CloseReason(); code != c.code || reason != c.reason {
					lost++
					t.Logf("dial %d: close %d %q", i, code, reason)
				}
				s.Close()
			}
			if lost > 0 {
				t.Fatalf("%d of %d refused sessions lost close %d %q", lost, dials, c.code, c.reason)
			}
		})
	}
}

// The server reads and discards what a refused client sends after its
// close message, until the client's close message: a client whose frames
// cross the close message has writes that succeed, not a connection reset
// that may lose the close message.
func TestRefusedSessionLingers(t *testing.T) {
	ts := newTestServer(t, channel.Config{MaxSessionsPerIP: 1})
	dial(t, ts.URL)
	const dials = 20
	for i := 0; i < dials; i++ {
		ws, _, err := websocket.DefaultDialer.Dial(ts.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.SetCloseHandler(func(int, string) error { return nil }) // no answer yet
		code, reason, err := readCloseErr(ws)
		if err != nil || code != channel.CloseLimit {
			t.Fatalf("dial %d: close %d %q %v, want 4429", i, code, reason, err)
		}
		// Frames that crossed the close message.
		open := append(yamuxFrame(0, 0, 1, 1, 41), []byte(`{"endpoint":"echo","namespace":"room-1"}`+"\n")...)
		for j := 0; j < 3; j++ {
			if err := ws.WriteMessage(websocket.BinaryMessage, open); err != nil {
				t.Fatalf("dial %d: write %d after the close message: %v", i, j, err)
			}
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(channel.CloseNormal, ""), time.Now().Add(time.Second))
		ws.Close()
	}
}

// The client reads the close message that waits for it even when its own
// writes failed first: here against a server that closes its socket at once
// after the close message, over the client's unread frames.
func TestClientReadsCloseAfterFailedWrite(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{channel.Subprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(channel.CloseLimit, "go away"), time.Now().Add(time.Second))
		ws.Close()
	}))
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	const dials = 500
	lost := 0
	for i := 0; i < dials; i++ {
		ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
		s, err := channel.Dial(ctx, url, channel.DialOptions{})
		if err != nil {
			cancel()
			t.Fatalf("dial %d: %v", i, err)
		}
		s.Echo(ctx, "room-1")
		select {
		case <-s.Done():
		case <-ctx.Done():
			t.Fatalf("dial %d: session still open", i)
		}
		cancel()
		if code, reason := s.CloseReason(); code != channel.CloseLimit || reason != "go away" {
			lost++
		}
		s.Close()
	}
	if lost > 0 {
		t.Fatalf("%d of %d sessions lost the close message", lost, dials)
	}
}
