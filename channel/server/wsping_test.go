package server_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
)

// WebSocket pings are answered within the session's ping budget, which
// yamux pings share; past it the session is closed with 4400, as a flood of
// yamux pings is.
func TestWebSocketPingBudget(t *testing.T) {
	const limit = 5
	ts := newTestServer(t, server.Config{MaxPingsPerSecond: limit})
	other := dial(t, ts.URL)
	wsPing := func(ws *websocket.Conn, i int) error {
		return ws.WriteControl(websocket.PingMessage, []byte{byte(i)}, time.Now().Add(5*time.Second))
	}

	t.Run("at the budget", func(t *testing.T) {
		ws := rawDial(t, ts.URL, nil)
		var pongs atomic.Int32
		ws.SetPongHandler(func(string) error { pongs.Add(1); return nil })
		for i := range limit {
			if err := wsPing(ws, i); err != nil {
				t.Fatal(err)
			}
		}
		// The pongs arrive through the reader; a yamux ping's answer
		// after them shows that the session is still served.
		if err := ws.WriteMessage(websocket.BinaryMessage, yamuxFrame(0, 0, 1, 1, 0)); err != nil {
			t.Fatal(err)
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("session ended after %d pongs: %v", pongs.Load(), err)
			}
			if bytes.Equal(msg[:2], []byte{0, 1}) { // the window update opening stream 1
				break
			}
		}
		if n := pongs.Load(); n != limit {
			t.Fatalf("%d pongs, want %d", n, limit)
		}
	})

	for name, yamuxPings := range map[string]int{"WebSocket pings alone": 0, "with yamux pings": limit} {
		t.Run(name, func(t *testing.T) {
			ws := rawDial(t, ts.URL, nil)
			// 2*limit+1 pings sent at once span at most two seconds, so
			// one of them holds more than the budget. yamux pings alone
			// stay within it: only counting both closes the session.
			var msg []byte
			for i := range yamuxPings {
				msg = append(msg, yamuxFrame(0, 2, 1, 0, uint32(i))...)
			}
			if len(msg) > 0 {
				if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2*limit + 1 - yamuxPings {
				if err := wsPing(ws, i); err != nil {
					break // the server may already have closed
				}
			}
			code, reason := readClose(t, ws)
			if code != channel.CloseProtocolError || reason != "too many pings (WebSocket and yamux)" {
				t.Fatalf("close %d %q, want 4400 naming the pings", code, reason)
			}
		})
	}
	echoRoundTrip(t, other)
}
