package client_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// hashicorp/yamux is the independent partner of the project's multiplexer:
// the project's client runs against a hashicorp/yamux server session here,
// and a hashicorp/yamux client runs against the project's server below.

// hashiServer serves the project's client with a hashicorp/yamux server
// session per WebSocket. Each stream it accepts reads a header line, replies
// `{"ok":true}` and echoes what follows until the client half-closes.
type hashiServer struct {
	URL      string
	sessions chan *yamux.Session
	conns    chan *sctest.MsgConn
	// closeAfter, if set, makes a stream half-close after echoing that
	// many bytes, without waiting for the client.
	closeAfter int
}

func newHashiServer(t *testing.T, cfg *yamux.Config, closeAfter int) *hashiServer {
	t.Helper()
	hs := &hashiServer{sessions: make(chan *yamux.Session, 16), conns: make(chan *sctest.MsgConn, 16), closeAfter: closeAfter}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []*yamux.Session
	up := websocket.Upgrader{Subprotocols: []string{channel.Subprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := sctest.NewMsgConn(ws, nil)
		ys, err := yamux.Server(c, cfg)
		if err != nil {
			ws.Close()
			return
		}
		mu.Lock()
		open = append(open, ys)
		mu.Unlock()
		hs.sessions <- ys
		hs.conns <- c
		for {
			st, err := ys.AcceptStream()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				hs.serveStream(st)
			}()
		}
	}))
	hs.URL = "ws" + strings.TrimPrefix(srv.URL, "http")
	t.Cleanup(func() {
		mu.Lock()
		for _, ys := range open {
			ys.Close()
		}
		mu.Unlock()
		srv.Close()
		wg.Wait()
	})
	return hs
}

func (hs *hashiServer) serveStream(st *yamux.Stream) {
	defer st.Close()
	br := bufio.NewReader(st)
	if _, err := br.ReadString('\n'); err != nil {
		return
	}
	if _, err := st.Write([]byte(`{"ok":true}` + "\n")); err != nil {
		return
	}
	var r io.Reader = br
	if hs.closeAfter > 0 {
		r = io.LimitReader(br, int64(hs.closeAfter))
	}
	io.Copy(st, r)
}

func (hs *hashiServer) session(t *testing.T) (*yamux.Session, *sctest.MsgConn) {
	t.Helper()
	select {
	case ys := <-hs.sessions:
		return ys, <-hs.conns
	case <-time.After(10 * time.Second):
		t.Fatal("no session at the hashicorp/yamux server")
		return nil, nil
	}
}

// TestClientAgainstHashicorpServer: many streams at once, each sending
// more than a window both ways, so that window updates flow both ways; then
// half-close both ways.
func TestClientAgainstHashicorpServer(t *testing.T) {
	hs := newHashiServer(t, sctest.HashicorpConfig(), 0)
	s := dial(t, hs.URL)
	const streams, size = 8, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoThrough(ctxT(t), s, size, uint64(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// echoThrough sends size random bytes through a stream that echoes them,
// half-closes, and checks what comes back and the EOF after it.
func echoThrough(ctx context.Context, s *client.Session, size int, seed uint64) error {
	st, _, err := s.Open(ctx, []byte(`{"endpoint":"echo","namespace":"x"}`))
	if err != nil {
		return err
	}
	defer st.Close()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 1+rng.IntN(100<<10))
			if _, err := st.Write(p[:n]); err != nil {
				werr <- err
				return
			}
			p = p[n:]
		}
		werr <- st.CloseWrite()
	}()
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return fmt.Errorf("echo of %d bytes came back as %d other bytes", len(data), len(got))
	}
	return nil
}

// TestClientResetByHashicorpServer: a stream the server gives up (it
// half-closes, and resets after its close timeout as the client does not)
// ends the client's stream.
func TestClientResetByHashicorpServer(t *testing.T) {
	cfg := sctest.HashicorpConfig()
	cfg.StreamCloseTimeout = 50 * time.Millisecond
	hs := newHashiServer(t, cfg, 5)
	s := dial(t, hs.URL)
	st, _, err := s.Open(ctxT(t), []byte(`{"endpoint":"echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("hello, and more")); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}
	select {
	case <-st.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server's reset did not end the stream")
	}
	if _, err := st.Write([]byte("x")); !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("write after the reset: %v", err)
	}
}

// TestClientResetsHashicorpStream: the client's reset reaches a hashicorp
// stream blocked in a read, and a stream the server opens is refused.
func TestClientResetsHashicorpStream(t *testing.T) {
	hs := newHashiServer(t, sctest.HashicorpConfig(), 0)
	s := dial(t, hs.URL)
	ys, _ := hs.session(t)

	served, err := ys.OpenStream() // the client takes no streams
	if err != nil {
		t.Fatal(err)
	}
	served.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := served.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrConnectionReset) {
		t.Fatalf("a stream opened by the server: %v, want a reset", err)
	}

	st, _, err := s.Open(ctxT(t), []byte(`{"endpoint":"echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	sctest.ExpectRead(t, st, "abc")
	if err := st.Reset(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := ys.NumStreams(); n != 0 {
			return errorf("%d streams still open at the server", n)
		}
		return nil
	})
	echoRoundTripRaw(t, s)
}

// echoRoundTripRaw proves the session still serves, through the
// hashicorp/yamux server's echo.
func echoRoundTripRaw(t *testing.T, s *client.Session) {
	t.Helper()
	if err := echoThrough(ctxT(t), s, 1000, 1); err != nil {
		t.Fatal(err)
	}
}

// TestClientKeepaliveWithHashicorpServer: the client pings and answers the
// server's pings, both ways over many rounds.
func TestClientKeepaliveWithHashicorpServer(t *testing.T) {
	hs := newHashiServer(t, sctest.HashicorpConfig(), 0)
	s, err := client.Dial(ctxT(t), hs.URL, client.DialOptions{KeepAliveInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ys, conn := hs.session(t)
	for range 20 {
		if _, err := ys.Ping(); err != nil {
			t.Fatalf("server's ping: %v", err)
		}
	}
	waitFor(t, 30*time.Second, func() error {
		if n := conn.Pings(); n < 5 {
			return errorf("%d keepalive pings from the client", n)
		}
		return nil
	})
	echoRoundTripRaw(t, s)
}

// TestClientSeesHashicorpGoAway: after the server's go-away the client opens
// no more streams (ErrGoAway); the streams it has go on.
func TestClientSeesHashicorpGoAway(t *testing.T) {
	hs := newHashiServer(t, sctest.HashicorpConfig(), 0)
	s := dial(t, hs.URL)
	ys, _ := hs.session(t)
	st, _, err := s.Open(ctxT(t), []byte(`{"endpoint":"echo"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := ys.GoAway(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := s.OpenStream()
		if !errors.Is(err, channel.ErrGoAway) {
			return errorf("OpenStream after go-away: %v", err)
		}
		return nil
	})
	if _, err := st.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	sctest.ExpectRead(t, st, "still here")
}

// TestClientCloseEndsHashicorpSession: the client's Close ends the server's
// session, and Close returns once the client's reader is done.
func TestClientCloseEndsHashicorpSession(t *testing.T) {
	hs := newHashiServer(t, sctest.HashicorpConfig(), 0)
	s := dial(t, hs.URL)
	ys, _ := hs.session(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Close returned before Done")
	}
	select {
	case <-ys.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the server's session did not end")
	}
}

// hashiDial connects a hashicorp/yamux client session to the project's
// server.
