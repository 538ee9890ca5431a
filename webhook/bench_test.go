package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/webhook"
)

// BenchmarkDelivery measures events per second from Send to a local
// receiver that reads each post and answers 200, batches of 100, against
// a baseline in the same run: the same batches posted by a plain loop (no
// queue, no signature).
//
//	go test ./webhook -run XXX -bench Delivery -benchtime 200000x -count 3
func BenchmarkDelivery(b *testing.B) {
	b.Run("plain", benchPlain)
	b.Run("sender", benchSender)
}

// benchPlain posts batches of 100 encoded events in a loop.
func benchPlain(b *testing.B) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer hs.Close()
	ev := server.Event{Type: server.EventNamespaceJoined, SessionID: "0c3e6b7e-8a7e-4c1f-9d0e-6a3b5f2c1d4e", PeerID: "alice", Endpoint: "echo", Namespace: "room-1", Time: time.Now()}
	batch := make([]server.Event, 100)
	for i := range batch {
		batch[i] = ev
	}
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; sent += len(batch) {
		body, _ := json.Marshal(struct {
			Events []server.Event `json:"events"`
		}{batch})
		resp, err := http.Post(hs.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

func benchSender(b *testing.B) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer hs.Close()
	wh := start(b, webhook.Config{URL: hs.URL, Queue: b.N + 1, Interval: time.Millisecond})
	ev := server.Event{Type: server.EventNamespaceJoined, SessionID: "0c3e6b7e-8a7e-4c1f-9d0e-6a3b5f2c1d4e", PeerID: "alice", Endpoint: "echo", Namespace: "room-1", Time: time.Now()}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		wh.Send(ev)
	}
	for wh.Stats().Sent.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
