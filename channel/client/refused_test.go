package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// A session the server refuses after the upgrade (4429, 4401) fails Dial
// with the close code and reason every time, although the client opens a
// stream at once (Dial asks who the session is) and its frames cross the
// server's close message: the server must not
// reset the connection over unread frames, and the client must read the
// close message after its own write failed.
func TestRefusedSessionKeepsCloseCode(t *testing.T) {
	const dials = 200
	limited := newTestServer(t, server.Config{MaxSessionsPerIP: 1})
	dial(t, limited.URL) // holds the one session the address may have
	authed := sctest.NewAuthServer(t)
	other := []byte("another-secret-another-secret-another-secret")

	for name, c := range map[string]struct {
		url, token string
		code       int
		reason     string
	}{
		"sessions limit":      {limited.URL, "", channel.CloseLimit, "sessions per address limit (1) reached"},
		"missing credentials": {authed.URL, "", channel.CloseUnauthorized, "missing credentials"},
		"bad signature":       {authed.URL, sctest.Mint(t, other, time.Hour, "echo:*"), channel.CloseUnauthorized, "invalid token: signature"},
	} {
		t.Run(name, func(t *testing.T) {
			lost := 0
			for i := 0; i < dials; i++ {
				ctx, cancel := context.WithTimeout(ctxT(t), 10*time.Second)
				s, err := client.Dial(ctx, c.url, client.DialOptions{Token: c.token})
				cancel()
				if err == nil {
					s.Close()
					t.Fatalf("dial %d: a refused session was returned", i)
				}
				if !isClose(err, c.code, c.reason) {
					lost++
					t.Logf("dial %d: %v", i, err)
				}
			}
			if lost > 0 {
				t.Fatalf("%d of %d refused sessions lost close %d %q", lost, dials, c.code, c.reason)
			}
		})
	}
}

// isClose reports whether err is the *channel.CloseError code, reason.
func isClose(err error, code int, reason string) bool {
	var ce *channel.CloseError
	return errors.As(err, &ce) && ce.Code == code && ce.Reason == reason
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
		s, err := client.Dial(ctx, url, client.DialOptions{})
		cancel()
		if err == nil {
			s.Close()
			t.Fatalf("dial %d: a refused session was returned", i)
		}
		if !isClose(err, channel.CloseLimit, "go away") {
			lost++
			t.Logf("dial %d: %v", i, err)
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d sessions lost the close message", lost, dials)
	}
}
