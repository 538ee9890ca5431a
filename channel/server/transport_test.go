package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

func rawDial(t testing.TB, url string, hdr http.Header, subprotocols ...string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(url, hdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// readClose reads until the server closes and returns its close code.
func readClose(t testing.TB, ws *websocket.Conn) (int, string) {
	t.Helper()
	code, reason, err := sctest.ReadCloseErr(ws)
	if err != nil {
		t.Fatal(err)
	}
	return code, reason
}

func yamuxFrame(version, typ byte, flags uint16, id, length uint32) []byte {
	b := make([]byte, 12)
	b[0], b[1] = version, typ
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint32(b[4:], id)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

func TestSubprotocol(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	s := dial(t, ts.URL)
	if s.Subprotocol != channel.Subprotocol {
		t.Fatalf("subprotocol %q", s.Subprotocol)
	}
	ws := rawDial(t, ts.URL, nil)
	if ws.Subprotocol() != "" {
		t.Fatalf("selected %q though none was offered", ws.Subprotocol())
	}
}

func TestNotWebSocket(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	resp, err := http.Get(ts.HTTPURL + "/v1/channel")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestTextMessageCloses1003(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	other := dial(t, ts.URL)
	ws := rawDial(t, ts.URL, nil)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code, _ := readClose(t, ws); code != 1003 {
		t.Fatalf("close code %d, want 1003", code)
	}
	echoRoundTrip(t, other)
}

func TestYamuxViolationsClose4400(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxPingsPerSecond: 5})
	other := dial(t, ts.URL)
	cases := map[string][][]byte{
		"version 1":            {yamuxFrame(1, 0, 1, 1, 0)},
		"type 4":               {yamuxFrame(0, 4, 0, 1, 0)},
		"data past the window": {yamuxFrame(0, 0, 1, 1, 256<<10+1)},
		"header split, bad":    {{0}, {9, 0, 1}, {0, 0, 0, 1, 0, 0, 0, 0}},
		"ping flood": func() [][]byte {
			var msgs [][]byte
			for i := 0; i < 50; i++ {
				msgs = append(msgs, yamuxFrame(0, 2, 1, 0, uint32(i)))
			}
			return msgs
		}(),
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			ws := rawDial(t, ts.URL, nil)
			for _, m := range msgs {
				if err := ws.WriteMessage(websocket.BinaryMessage, m); err != nil {
					break // the server may already have closed
				}
			}
			code, reason := readClose(t, ws)
			if code != channel.CloseProtocolError || reason == "" {
				t.Fatalf("close %d %q, want 4400 with a reason", code, reason)
			}
		})
	}
	echoRoundTrip(t, other)
}

// TestSilentClientDropped: a client that never answers pings loses its
// session after the keepalive interval and the write timeout.
func TestSilentClientDropped(t *testing.T) {
	ts := newTestServer(t, server.Config{KeepAliveInterval: 100 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	ws := rawDial(t, ts.URL, nil)
	waitFor(t, 5*time.Second, func() error {
		if n := ts.Stats().Sessions; n != 1 {
			return errorf("%d sessions", n)
		}
		return nil
	})
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
				t.Fatalf("silent client still connected: %v", err)
			}
			break
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if n := ts.Stats().Sessions; n != 0 {
			return errorf("%d sessions", n)
		}
		return nil
	})
}

func TestShutdownCloses1001(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	s := dial(t, ts.URL)
	e, err := s.Echo(ctxT(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Recv(); err == nil {
		t.Fatal("stream still open after shutdown")
	}
	<-s.Done()
	waitFor(t, 5*time.Second, func() error {
		if code, reason := s.CloseReason(); code != 1001 || reason == "" {
			return errorf("close %d %q, want 1001", code, reason)
		}
		return nil
	})
	if _, err := client.Dial(ctx, ts.URL, client.DialOptions{}); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}

func TestOriginCheck(t *testing.T) {
	ts := newTestServer(t, server.Config{AllowedOrigins: []string{"https://*.example.com", "http://localhost:3000"}})
	for origin, ok := range map[string]bool{
		"":                        true,
		"https://app.example.com": true,
		"http://localhost:3000":   true,
		"https://example.org":     false,
		"http://app.example.com":  false,
		"https://evil.com":        false,
	} {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(ts.URL, hdr)
		if ok != (err == nil) {
			t.Errorf("origin %q: allowed=%v, want %v", origin, err == nil, ok)
		}
		if err == nil {
			ws.Close()
		} else if resp != nil && resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: status %d, want 403", origin, resp.StatusCode)
		}
	}
	if n := ts.Stats().OriginRefused; n != 3 {
		t.Errorf("%d origins counted as refused, want 3", n)
	}
}

// TestDoneOnPeerReset: a server stream that is not reading learns of the
// client's RST and of its session's end through Done.
func TestDoneOnPeerReset(t *testing.T) {
	seen := make(chan string, 4)
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) {
		h.Handle("relay", server.EndpointFunc(func(ctx context.Context, s *server.Stream, r *server.Request) {
			<-s.Done()
			seen <- r.Header.Local
			s.Reject(channel.Errorf(channel.CodeTimeout, "gone"))
		}))
	})
	s := dial(t, ts.URL)
	st := openRaw(t, s, `{"endpoint":"relay","namespace":"g","local":"a","remote":"b"}`+"\n")
	waitFor(t, 5*time.Second, func() error {
		if ts.Stats().ByEndpoint["relay"] != 1 { // past the header, in the endpoint
			return errorf("stream not served yet")
		}
		return nil
	})
	st.Reset()
	select {
	case got := <-seen:
		if got != "a" {
			t.Fatal(got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server stream did not see the reset")
	}

	s2 := dial(t, ts.URL)
	openRaw(t, s2, `{"endpoint":"relay","namespace":"g","local":"c","remote":"d"}`+"\n")
	waitFor(t, 5*time.Second, func() error {
		if ts.Stats().ByEndpoint["relay"] != 1 { // past the header, in the endpoint
			return errorf("stream not served yet")
		}
		return nil
	})
	s2.Close()
	select {
	case got := <-seen:
		if got != "c" {
			t.Fatal(got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server stream did not see the session end")
	}
	echoRoundTrip(t, s)
}

func TestFramesSplitAcrossMessages(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	ws := rawDial(t, ts.URL, nil)
	ys, err := yamux.Client(sctest.NewMsgConn(ws, rand.New(rand.NewPCG(1, 2))), sctest.HashicorpConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ys.Close()
	st, err := ys.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte(`{"endpoint":"echo","namespace":"split"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, len(`{"ok":true,"maxFrame":65536}`+"\n"))
	if _, err := io.ReadFull(st, reply); err != nil || !bytes.HasPrefix(reply, []byte(`{"ok":true`)) {
		t.Fatalf("reply %q %v", reply, err)
	}
	var want [][]byte
	for i, size := range []int{0, 1, 11, 12, 13, 1000, 65536} {
		f := bytes.Repeat([]byte{byte(i + 1)}, size)
		want = append(want, f)
		if _, err := st.Write(channel.AppendFrame(nil, f)); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range want {
		got, err := channel.ReadFrame(st, channel.DefaultMaxFrame)
		if err != nil || !bytes.Equal(got, w) {
			t.Fatalf("frame %d: %d bytes, want %d (%v)", i, len(got), len(w), err)
		}
	}
}

// TestSeveralFramesInOneMessage: a client may pack frames into one message;
// the server answers with one whole frame per message.
func TestSeveralFramesInOneMessage(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	ws := rawDial(t, ts.URL, nil)
	header := []byte(`{"endpoint":"echo","namespace":"packed"}` + "\n")
	echoFrame := channel.AppendFrame(nil, []byte("hello"))
	var msg []byte
	msg = append(msg, yamuxFrame(0, 1, 1, 1, 0)...) // SYN
	msg = append(msg, yamuxFrame(0, 0, 0, 1, uint32(len(header)))...)
	msg = append(msg, header...)
	msg = append(msg, yamuxFrame(0, 0, 0, 1, uint32(len(echoFrame)))...)
	msg = append(msg, echoFrame...)
	if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	var data []byte
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !bytes.Contains(data, []byte("hello")) {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %q: %v", data, err)
		}
		if len(m) < 12 {
			t.Fatalf("message of %d bytes is not a whole frame", len(m))
		}
		length := binary.BigEndian.Uint32(m[8:12])
		switch m[1] {
		case 0:
			if len(m) != 12+int(length) {
				t.Fatalf("data message of %d bytes holds a frame of %d", len(m), 12+length)
			}
			data = append(data, m[12:]...)
		case 1, 2:
			if len(m) != 12 {
				t.Fatalf("control message of %d bytes", len(m))
			}
		}
	}
	want := `{"ok":true,"maxFrame":65536}` + "\n" + string(echoFrame)
	if string(data) != want {
		t.Fatalf("got %q, want %q", data, want)
	}
}

// A message over the read limit closes the connection with 1009.
func TestMessageTooBig(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxMessageBytes: 512 << 10})
	ws := rawDial(t, ts.URL, nil)
	ws.WriteMessage(websocket.BinaryMessage, make([]byte, 512<<10+1))
	if code, _ := readClose(t, ws); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}
