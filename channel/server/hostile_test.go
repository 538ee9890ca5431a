package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// steadyClient is a well-behaved Client: it sends numbered frames on an echo
// namespace and a second member checks that every one arrives, in order,
// for as long as an attack lasts.
type steadyClient struct {
	stop chan struct{}
	done chan error
	sent int
}

func startSteady(t *testing.T, url string) *steadyClient {
	t.Helper()
	ns := fmt.Sprint("steady-", time.Now().UnixNano())
	tx, err := sctest.Dial(t, url).Echo(sctest.Ctx(t), ns)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := sctest.Dial(t, url).Echo(sctest.Ctx(t), ns)
	if err != nil {
		t.Fatal(err)
	}
	c := &steadyClient{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var n uint64
		for {
			select {
			case <-c.stop:
				c.sent = int(n)
				// The last frame tells the receiver how many there were.
				tx.Send(binary.BigEndian.AppendUint64([]byte("end"), n))
				return
			case <-t.C:
			}
			if err := tx.Send(binary.BigEndian.AppendUint64(nil, n)); err != nil {
				c.done <- fmt.Errorf("steady sender: %w", err)
				return
			}
			n++
		}
	}()
	go func() {
		rx.Stream().SetReadDeadline(time.Now().Add(60 * time.Second))
		var want uint64
		for {
			f, err := rx.Recv()
			if err != nil {
				c.done <- fmt.Errorf("steady receiver after %d frames: %w", want, err)
				return
			}
			if bytes.HasPrefix(f, []byte("end")) {
				if total := binary.BigEndian.Uint64(f[3:]); total != want {
					c.done <- fmt.Errorf("steady receiver got %d of %d frames", want, total)
					return
				}
				c.done <- nil
				return
			}
			if got := binary.BigEndian.Uint64(f); got != want {
				c.done <- fmt.Errorf("steady receiver: frame %d arrived, want %d", got, want)
				return
			}
			want++
		}
	}()
	return c
}

// finish stops the client and reports whether it lost anything.
func (c *steadyClient) finish(t *testing.T) {
	t.Helper()
	close(c.stop)
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("steady client did not finish")
	}
	if c.sent == 0 {
		t.Fatal("steady client sent nothing during the attack")
	}
}

// attack is a hostile Client: it does its worst on its own connection and
// returns the close code and reason the server answered with.
type attack struct {
	name string
	cfg  server.Config
	// code is the close code the attacker must get (0: it is not closed;
	// check says what it gets instead).
	code  int
	run   func(t *testing.T, url string) (code int, reason string)
	check func(t *testing.T, reason string)
}

func rawFrames(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func TestHostileClients(t *testing.T) {
	attacks := []attack{
		{name: "ping flood", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			var msg []byte
			for i := range 1000 {
				msg = append(msg, yamuxFrame(0, 2, 1, 0, uint32(i))...)
			}
			ws.WriteMessage(websocket.BinaryMessage, msg)
			return readClose(t, ws)
		}},
		{name: "stream flood", code: channel.CloseLimit, run: func(t *testing.T, url string) (int, string) {
			// The flooder reads what it is sent: one that does not fills
			// both sockets and is cut off by the write timeout instead,
			// with no room left for a close message.
			ws := rawDial(t, url, nil)
			closed := make(chan [2]any, 1)
			go func() {
				code, reason, err := sctest.ReadCloseErr(ws)
				if err != nil {
					reason = err.Error()
				}
				closed <- [2]any{code, reason}
			}()
			for batch := 0; batch < 20; batch++ {
				var msg []byte
				for i := 0; i < 100; i++ {
					id := uint32(2*(batch*100+i) + 1)
					msg = append(msg, yamuxFrame(0, 1, 1, id, 0)...)
				}
				if ws.WriteMessage(websocket.BinaryMessage, msg) != nil {
					break
				}
			}
			r := <-closed
			return r[0].(int), r[1].(string)
		}},
		{name: "receive window overrun", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			// A stream the server does not read (a relay waiting for its
			// partner) gets 5 x 64 KiB in one go: past its 256 KiB window.
			ws := rawDial(t, url, nil)
			header := []byte(`{"endpoint":"relay","namespace":"g","local":"a","remote":"b"}` + "\n")
			msg := rawFrames(yamuxFrame(0, 1, 1, 1, 0), yamuxFrame(0, 0, 0, 1, uint32(len(header))), header)
			for range 5 {
				msg = append(msg, yamuxFrame(0, 0, 0, 1, 64<<10)...)
				msg = append(msg, make([]byte, 64<<10)...)
			}
			ws.WriteMessage(websocket.BinaryMessage, msg)
			return readClose(t, ws)
		}},
		{name: "bad version", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			ws.WriteMessage(websocket.BinaryMessage, yamuxFrame(7, 0, 1, 1, 0))
			return readClose(t, ws)
		}},
		{name: "bad type", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			ws.WriteMessage(websocket.BinaryMessage, yamuxFrame(0, 9, 0, 1, 0))
			return readClose(t, ws)
		}},
		{name: "even stream id", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			ws.WriteMessage(websocket.BinaryMessage, yamuxFrame(0, 1, 1, 2, 0))
			return readClose(t, ws)
		}},
		{name: "stream opened twice", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			ws.WriteMessage(websocket.BinaryMessage, rawFrames(yamuxFrame(0, 1, 1, 1, 0), yamuxFrame(0, 1, 1, 1, 0)))
			return readClose(t, ws)
		}},
		{name: "one-byte frames", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			// A stream no one reads (a relay waiting for its partner)
			// gets its whole window in one-byte frames, then one more.
			ws := rawDial(t, url, nil)
			header := []byte(`{"endpoint":"relay","namespace":"g","local":"c","remote":"d"}` + "\n")
			msg := rawFrames(yamuxFrame(0, 1, 1, 1, 0), yamuxFrame(0, 0, 0, 1, uint32(len(header))), header)
			ws.WriteMessage(websocket.BinaryMessage, msg)
			for sent := len(header); sent <= 256<<10; {
				msg = msg[:0]
				for i := 0; i < 8192 && sent <= 256<<10; i++ {
					msg = append(msg, yamuxFrame(0, 0, 0, 1, 1)...)
					msg = append(msg, 'x')
					sent++
				}
				if ws.WriteMessage(websocket.BinaryMessage, msg) != nil {
					break
				}
			}
			return readClose(t, ws)
		}},
		{name: "text message", code: channel.CloseUnsupported, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			ws.WriteMessage(websocket.TextMessage, []byte(`{"endpoint":"echo"}`))
			return readClose(t, ws)
		}},
		{name: "header garbage", code: channel.CloseProtocolError, run: func(t *testing.T, url string) (int, string) {
			ws := rawDial(t, url, nil)
			garbage := []byte("\x00\x01garbage\n")
			var msg []byte
			for i := range 40 {
				id := uint32(2*i + 1)
				msg = append(msg, rawFrames(yamuxFrame(0, 1, 1, id, 0), yamuxFrame(0, 0, 0, id, uint32(len(garbage))), garbage)...)
			}
			ws.WriteMessage(websocket.BinaryMessage, msg)
			return readClose(t, ws)
		}},
		{name: "sessions from one address", cfg: server.Config{MaxSessionsPerIP: 4}, code: channel.CloseLimit,
			run: func(t *testing.T, url string) (int, string) {
				// The steady client holds two sessions; two more fit.
				rawDial(t, url, nil)
				rawDial(t, url, nil)
				return readClose(t, rawDial(t, url, nil))
			}},
		{name: "header drip", cfg: server.Config{HeaderTimeout: 300 * time.Millisecond}, code: 0,
			run: func(t *testing.T, url string) (int, string) {
				// One header byte every 50 ms never completes in time: the
				// stream is answered `timeout`, the session stays.
				s := sctest.Dial(t, url)
				st, err := s.OpenStream()
				if err != nil {
					t.Fatal(err)
				}
				st.SetReadDeadline(time.Now().Add(10 * time.Second))
				var reply []byte
				go func() {
					for _, b := range []byte(`{"endpoint":"echo","namespace":"drip"}`) {
						if _, err := st.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond) // the attack is the pacing
					}
				}()
				reply, _ = bufio.NewReader(st).ReadBytes('\n')
				return 0, string(reply)
			},
			check: func(t *testing.T, reply string) {
				if !strings.Contains(reply, `"code":"timeout"`) {
					t.Fatalf("dripped header answered %q, want timeout", reply)
				}
			}},
		{name: "slow HTTP request", code: 0, run: func(t *testing.T, url string) (int, string) {
			// Half an HTTP request, never finished: the connection is cut
			// when the request header deadline passes.
			addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/v1/channel")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /v1/channel HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n", addr)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := make([]byte, 512)
			for {
				if _, err := c.Read(b); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("slow request still connected after 10 s")
					}
					return 0, "cut"
				}
			}
		}, check: func(t *testing.T, reason string) {}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			o := sctest.Options{Channel: a.cfg, ReadHeaderTimeout: 500 * time.Millisecond}
			o.Channel.MaxPingsPerSecond = 50
			o.Register = func(h *server.Handler) {
				h.Handle("relay", server.EndpointFunc(func(ctx context.Context, s *server.Stream, r *server.Request) {
					<-s.Done() // waits without reading, like a relay stream without partner
					s.Reject(channel.Errorf(channel.CodeTimeout, "gone"))
				}))
			}
			ts := sctest.NewServer(t, o)
			steady := startSteady(t, ts.URL)
			time.Sleep(20 * time.Millisecond) // let some frames flow first (the steady client paces itself)
			baseG := goroutines()
			baseHeap := heapInUse()

			code, reason := a.run(t, ts.URL)
			if a.check != nil {
				a.check(t, reason)
			} else if code != a.code || reason == "" {
				t.Fatalf("attacker closed with %d %q, want %d with a reason", code, reason, a.code)
			}
			steady.finish(t)

			// The attacker's goroutines and memory go away.
			sctest.WaitFor(t, 20*time.Second, func() error {
				if g := goroutines(); g > baseG+8 {
					return fmt.Errorf("%d goroutines, %d before the attack", g, baseG)
				}
				return nil
			})
			if h := heapInUse(); h > baseHeap+32<<20 {
				t.Fatalf("heap in use %d MiB, %d MiB before the attack", h>>20, baseHeap>>20)
			}
		})
	}
}

var gcMu sync.Mutex

func goroutines() int { return runtime.NumGoroutine() }

func heapInUse() uint64 {
	gcMu.Lock()
	defer gcMu.Unlock()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
