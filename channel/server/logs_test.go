package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// logSink collects a server's JSON log records.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records whose msg is msg.
func (l *logSink) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func logServer(t *testing.T, cfg server.Config) (*sctest.Server, *logSink) {
	t.Helper()
	sink := &logSink{}
	cfg.Logger = slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return sctest.NewServer(t, sctest.Options{Channel: cfg}), sink
}

// A session's end is logged with who ended it: the client and the code it
// sent, the server and its code, or the connection dropping.
func TestSessionCloseLogged(t *testing.T) {
	ts, sink := logServer(t, server.Config{})
	// The client closes with 1000.
	s, err := client.Dial(ctxT(t), ts.URL, client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The connection drops, no close message.
	ws, _, err := websocket.DefaultDialer.Dial(ts.URL, http.Header{"Sec-WebSocket-Protocol": {channel.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	ws.UnderlyingConn().Close()
	sctest.WaitFor(t, 10*time.Second, func() error {
		got := map[string]bool{}
		for _, r := range sink.records("session closed") {
			got[fmt.Sprintf("%v %v", r["by"], r["code"])] = true
		}
		if !got["client 1000"] || !got["connection lost 0"] {
			return fmt.Errorf("session closes logged: %v", got)
		}
		return nil
	})
}

// A stream's open and close are logged at debug with its endpoint,
// namespace, peer, duration and bytes.
func TestStreamLogged(t *testing.T) {
	ts, sink := logServer(t, server.Config{})
	s := sctest.Dial(t, ts.URL)
	e, err := s.Echo(ctxT(t), "logged-room")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Send([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Recv(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, r := range sink.records("stream closed") {
			if r["endpoint"] == "echo" && r["namespace"] == "logged-room" && r["peer"] == s.ID() && r["bytes_in"].(float64) >= 9 && r["duration"] != nil {
				return nil
			}
		}
		return fmt.Errorf("no stream closed record for the echo stream: %v", sink.records("stream closed"))
	})
	if len(sink.records("stream open")) == 0 {
		t.Fatal("no stream open record")
	}
}

// Origin refusals are logged at info, the first at once and then at most
// one every 10 s, however many come.
func TestOriginRefusalLogged(t *testing.T) {
	ts, sink := logServer(t, server.Config{AllowedOrigins: []string{"https://app.example"}})
	for range 5 {
		_, resp, err := websocket.DefaultDialer.Dial(ts.URL, http.Header{"Origin": {"https://evil.example"}, "Sec-WebSocket-Protocol": {channel.Subprotocol}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%v %v", resp, err)
		}
	}
	recs := sink.records("browser origin refused (see -allowed-origins)")
	if len(recs) != 1 || recs[0]["level"] != "INFO" || recs[0]["origin"] != "https://evil.example" {
		t.Fatalf("%v", recs)
	}
}
