package channel_test

import (
	"bufio"
	"bytes"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// hashicorp/yamux is the independent partner of the project's multiplexer:
// the project's client runs against a hashicorp/yamux server session here,
// and a hashicorp/yamux client runs against the project's server below.

// msgConn carries a hashicorp/yamux session over a WebSocket: each Write
// (yamux writes a frame's header and body separately) is one message, or,
// with rng, several small ones, so frames cross message boundaries as other
// clients may send them; reads run across messages.
type msgConn struct {
	ws  *websocket.Conn
	rng *rand.Rand // cuts writes into messages of 1 to 17 bytes

	wmu sync.Mutex
	r   io.Reader

	pings atomic.Int64 // ping requests read: whole frames, as the project's client sends them
}

func (c *msgConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for buf := p; len(buf) > 0; {
		n := len(buf)
		if c.rng != nil {
			n = min(n, 1+c.rng.IntN(17))
		}
		if err := c.ws.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
			return 0, err
		}
		buf = buf[n:]
	}
	return len(p), nil
}

func (c *msgConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, m, err := c.ws.ReadMessage()
			if err != nil {
				return 0, err
			}
			if len(m) == 12 && m[1] == 2 && m[3]&1 != 0 {
				c.pings.Add(1)
			}
			c.r = bytes.NewReader(m)
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *msgConn) Close() error { return c.ws.Close() }

// hashiServer serves the project's client with a hashicorp/yamux server
// session per WebSocket. Each stream it accepts reads a header line, replies
// `{"ok":true}` and echoes what follows until the client half-closes.
type hashiServer struct {
	URL      string
	sessions chan *yamux.Session
	conns    chan *msgConn
	// closeAfter, if set, makes a stream half-close after echoing that
	// many bytes, without waiting for the client.
	closeAfter int
}

func newHashiServer(t *testing.T, cfg *yamux.Config, closeAfter int) *hashiServer {
	t.Helper()
	hs := &hashiServer{sessions: make(chan *yamux.Session, 16), conns: make(chan *msgConn, 16), closeAfter: closeAfter}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []*yamux.Session
	up := websocket.Upgrader{Subprotocols: []string{channel.Subprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &msgConn{ws: ws}
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

func (hs *hashiServer) session(t *testing.T) (*yamux.Session, *msgConn) {
	t.Helper()
	select {
	case ys := <-hs.sessions:
		return ys, <-hs.conns
	case <-time.After(10 * time.Second):
		t.Fatal("no session at the hashicorp/yamux server")
		return nil, nil
	}
}

func hashiConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	return cfg
}

// TestClientAgainstHashicorpServer: many streams at once, each sending
// more than a window both ways, so that window updates flow both ways; then
// half-close both ways.
func TestClientAgainstHashicorpServer(t *testing.T) {
	hs := newHashiServer(t, hashiConfig(), 0)
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
func echoThrough(ctx context.Context, s *channel.Session, size int, seed uint64) error {
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
	cfg := hashiConfig()
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
	hs := newHashiServer(t, hashiConfig(), 0)
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
func echoRoundTripRaw(t *testing.T, s *channel.Session) {
	t.Helper()
	if err := echoThrough(ctxT(t), s, 1000, 1); err != nil {
		t.Fatal(err)
	}
}

// TestClientKeepaliveWithHashicorpServer: the client pings and answers the
// server's pings, both ways over many rounds.
func TestClientKeepaliveWithHashicorpServer(t *testing.T) {
	hs := newHashiServer(t, hashiConfig(), 0)
	s, err := channel.Dial(ctxT(t), hs.URL, channel.DialOptions{KeepAliveInterval: 20 * time.Millisecond})
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
		if n := conn.pings.Load(); n < 5 {
			return errorf("%d keepalive pings from the client", n)
		}
		return nil
	})
	echoRoundTripRaw(t, s)
}

// TestClientSeesHashicorpGoAway: after the server's go-away the client opens
// no more streams (ErrGoAway); the streams it has go on.
func TestClientSeesHashicorpGoAway(t *testing.T) {
	hs := newHashiServer(t, hashiConfig(), 0)
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
	hs := newHashiServer(t, hashiConfig(), 0)
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
func hashiDial(t *testing.T, url string) *yamux.Session {
	t.Helper()
	ws := rawDial(t, url, nil, channel.Subprotocol)
	cfg := hashiConfig()
	ys, err := yamux.Client(&msgConn{ws: ws}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ys.Close() })
	return ys
}

// hashiOpen opens a stream with header and reads the reply line.
func hashiOpen(t *testing.T, ys *yamux.Session, header string) (*yamux.Stream, *bufio.Reader) {
	t.Helper()
	st, err := ys.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte(header + "\n")); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(st)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, `{"ok":true`) {
		t.Fatalf("reply %q, %v", line, err)
	}
	st.SetReadDeadline(time.Time{})
	return st, br
}

// TestHashicorpClientAgainstServer: hashicorp/yamux clients and the
// project's client share an echo namespace on the project's server; every
// member gets every frame.
func TestHashicorpClientAgainstServer(t *testing.T) {
	ts := newTestServer(t, channel.Config{})
	const frames = 200
	var readers []*bufio.Reader
	var streams []*yamux.Stream
	for range 3 {
		st, br := hashiOpen(t, hashiDial(t, ts.URL), `{"endpoint":"echo","namespace":"partners"}`)
		streams, readers = append(streams, st), append(readers, br)
	}
	own, err := dial(t, ts.URL).Echo(ctxT(t), "partners")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := ts.Echo.Stats().Members; n != 4 {
			return errorf("%d members", n)
		}
		return nil
	})
	for i := range frames {
		f := bytes.Repeat([]byte{byte(i)}, 1+i*37)
		var err error
		if i%2 == 0 {
			_, err = streams[i%3].Write(channel.AppendFrame(nil, f))
		} else {
			err = own.Send(f)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The hub orders frames from different sessions as they arrive: every
	// member sees every frame, all in the same order.
	var first []int
	check := func(who string, recv func() ([]byte, error)) {
		var lens []int
		seen := map[int]bool{}
		for range frames {
			got, err := recv()
			if err != nil {
				t.Fatalf("%s, frame %d: %v", who, len(lens), err)
			}
			lens = append(lens, len(got))
			seen[len(got)] = true
		}
		for i := range frames {
			if !seen[1+i*37] {
				t.Fatalf("%s never got frame %d", who, i)
			}
		}
		if first == nil {
			first = lens
		} else if fmt.Sprint(lens) != fmt.Sprint(first) {
			t.Fatalf("%s got the frames in another order", who)
		}
	}
	for k, br := range readers {
		streams[k].SetReadDeadline(time.Now().Add(30 * time.Second))
		check(fmt.Sprintf("hashicorp member %d", k), func() ([]byte, error) { return channel.ReadFrame(br, channel.DefaultMaxFrame) })
	}
	check("own member", own.Recv)
}
