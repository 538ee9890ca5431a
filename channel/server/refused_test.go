package server_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// The server reads and discards what a refused client sends after its
// close message, until the client's close message: a client whose frames
// cross the close message has writes that succeed, not a connection reset
// that may lose the close message.
func TestRefusedSessionLingers(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxSessionsPerIP: 1})
	dial(t, ts.URL)
	const dials = 20
	for i := 0; i < dials; i++ {
		ws, _, err := websocket.DefaultDialer.Dial(ts.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.SetCloseHandler(func(int, string) error { return nil }) // no answer yet
		code, reason, err := sctest.ReadCloseErr(ws)
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
