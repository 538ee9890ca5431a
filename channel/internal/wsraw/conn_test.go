package wsraw

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clientFrame builds a frame as a client sends it: masked, unless told not.
func clientFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b[1] = byte(n)
	case n <= 0xffff:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	b[1] |= 0x80
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client net.Conn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// serverFrame reads one frame the server sent.
func serverFrame(t *testing.T, c net.Conn) (op byte, payload []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("reading the server's frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		t.Fatalf("server frame header % x: want fin set and no mask", h)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(c, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(c, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		t.Fatalf("reading the server's frame: %v", err)
	}
	return h[0] & 0x0f, payload
}

func closeCode(t *testing.T, payload []byte) (int, string) {
	t.Helper()
	if len(payload) < 2 {
		return websocket.CloseNoStatusReceived, ""
	}
	return int(binary.BigEndian.Uint16(payload)), string(payload[2:])
}

// readMessage reads a whole message from c as the multiplexer does.
func readMessage(c *Conn) ([]byte, error) {
	r, err := c.NextMessage()
	if err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, 7) // small reads: frames and reads do not line up
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestMessagesAcrossFramesAndControls(t *testing.T) {
	cl, sv := tcpPair(t)
	c := New(sv, Options{WriteTimeout: 5 * time.Second})
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80 000 bytes: a 64-bit length
	var in []byte
	in = append(in, clientFrame(true, opBinary, []byte("one"), true)...)
	in = append(in, clientFrame(false, opBinary, []byte("tw"), true)...)
	in = append(in, clientFrame(true, opPing, []byte("p1"), true)...)
	in = append(in, clientFrame(false, opContinuation, nil, true)...)
	in = append(in, clientFrame(true, opContinuation, []byte("o"), true)...)
	in = append(in, clientFrame(true, opBinary, nil, true)...)
	in = append(in, clientFrame(true, opBinary, big, true)...)
	in = append(in, clientFrame(true, opPong, []byte("ignored"), true)...)
	in = append(in, clientFrame(true, opBinary, bytes.Repeat([]byte{7}, 300), true)...)
	go func() {
		// Byte by byte at first, so every header and payload is split.
		for i := 0; i < 40; i++ {
			cl.Write(in[i : i+1])
		}
		cl.Write(in[40:])
	}()
	for _, want := range [][]byte{[]byte("one"), []byte("two"), {}, big, bytes.Repeat([]byte{7}, 300)} {
		got, err := readMessage(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message of %d bytes, want %d", len(got), len(want))
		}
	}
	if op, p := serverFrame(t, cl); op != opPong || string(p) != "p1" {
		t.Fatalf("answer to the ping: op %d %q", op, p)
	}
}

func TestWritesAndTheirSizes(t *testing.T) {
	cl, sv := tcpPair(t)
	c := New(sv, Options{WriteTimeout: 5 * time.Second})
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000, smallWrite, smallWrite + 1} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		go c.WriteFrame(p)
		op, got := serverFrame(t, cl)
		if op != opBinary || !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: op %d, %d bytes back", n, op, len(got))
		}
	}
	// A header and a body as one message, on both sides of the copy's edge
	// and with a header too long to share the WebSocket header's array.
	for _, hn := range []int{12, 40} {
		head := bytes.Repeat([]byte{0xee}, hn)
		for _, n := range []int{0, 100, smallWrite - hn, smallWrite - hn + 1, 0x10000} {
			p := bytes.Repeat([]byte{byte(n)}, n)
			go c.WriteFrameParts(head, p)
			op, got := serverFrame(t, cl)
			if op != opBinary || !bytes.Equal(got, append(bytes.Clone(head), p...)) {
				t.Fatalf("header %d, body %d: op %d, %d bytes back", hn, n, op, len(got))
			}
		}
	}
}

// Each frame no client may send closes with 1002 and a reason a person can
// act on; a text message with 1003.
func TestBadFramesClose(t *testing.T) {
	long := clientFrame(true, opPing, make([]byte, 126), true)
	cases := []struct {
		name string
		in   []byte
		code int
		why  string
	}{
		{"unmasked", clientFrame(true, opBinary, []byte("x"), false), 1002, "not masked"},
		{"reserved bit", func() []byte { b := clientFrame(true, opBinary, []byte("x"), true); b[0] |= 0x40; return b }(), 1002, "reserved bits"},
		{"reserved opcode", clientFrame(true, 3, []byte("x"), true), 1002, "reserved opcode"},
		{"continuation first", clientFrame(true, opContinuation, []byte("x"), true), 1002, "continuation"},
		{"interleaved message", append(clientFrame(false, opBinary, []byte("x"), true), clientFrame(true, opBinary, []byte("y"), true)...), 1002, "before the last one ended"},
		{"fragmented ping", clientFrame(false, opPing, []byte("x"), true), 1002, "fragmented control"},
		{"long ping", long, 1002, "control frame of 126 bytes"},
		{"close of one byte", clientFrame(true, opClose, []byte{3}, true), 1002, "one byte"},
		{"close code 1005", clientFrame(true, opClose, []byte{0x03, 0xed}, true), 1002, "invalid close code 1005"},
		{"close reason not UTF-8", clientFrame(true, opClose, []byte{0x03, 0xe8, 0xff}, true), 1002, "UTF-8"},
		{"text", clientFrame(true, opText, []byte("hi"), true), 1003, "binary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, sv := tcpPair(t)
			c := New(sv, Options{WriteTimeout: 5 * time.Second})
			cl.Write(tc.in)
			done := make(chan error, 1)
			go func() {
				_, err := readMessage(c)
				if err == nil {
					_, err = readMessage(c)
				}
				if err != nil {
					c.Fail(err) // as the multiplexer does on a read error
				}
				done <- err
			}()
			op, p := serverFrame(t, cl)
			code, reason := c.CloseStatus()
			if op != opClose {
				t.Fatalf("op %d, want close", op)
			}
			if got, why := closeCode(t, p); got != tc.code || !strings.Contains(why, tc.why) || code != tc.code || !strings.Contains(reason, tc.why) {
				t.Fatalf("closed with %d %q (status %d %q), want %d and %q", got, why, code, reason, tc.code, tc.why)
			}
			cl.Write(clientFrame(true, opClose, []byte{0x03, 0xe8}, true))
			if err := <-done; err == nil {
				t.Fatal("the read did not fail")
			}
		})
	}
}

// The read limit holds across fragments: a message of exactly the limit is
// read, one byte more closes with 1009.
func TestReadLimitAtTheEdge(t *testing.T) {
	const limit = 1000
	cl, sv := tcpPair(t)
	c := New(sv, Options{WriteTimeout: 5 * time.Second, ReadLimit: limit})
	go func() {
		cl.Write(clientFrame(false, opBinary, make([]byte, 600), true))
		cl.Write(clientFrame(true, opContinuation, make([]byte, 400), true))
		cl.Write(clientFrame(false, opBinary, make([]byte, 600), true))
		cl.Write(clientFrame(true, opContinuation, make([]byte, 401), true))
	}()
	if got, err := readMessage(c); err != nil || len(got) != limit {
		t.Fatalf("message at the limit: %d bytes, %v", len(got), err)
	}
	if _, err := readMessage(c); !errors.Is(err, ErrReadLimit) {
		t.Fatalf("past the limit: %v", err)
	}
	c.Close()
	op, p := serverFrame(t, cl)
	if code, reason := closeCode(t, p); op != opClose || code != websocket.CloseMessageTooBig || !strings.Contains(reason, "1000 bytes") {
		t.Fatalf("op %d, close %d %q", op, code, reason)
	}
}

// A peer's close message is echoed with its code and returned as a
// CloseError; a later write fails with ErrCloseSent.
func TestPeerClose(t *testing.T) {
	cl, sv := tcpPair(t)
	c := New(sv, Options{WriteTimeout: 5 * time.Second})
	cl.Write(clientFrame(true, opClose, append([]byte{0x0f, 0xa0}, "bye"...), true)) // 4000
	_, err := readMessage(c)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "bye" {
		t.Fatalf("read: %v", err)
	}
	c.ReadFailed(err)
	if pc := c.PeerCloseError(); pc == nil || pc.Code != 4000 {
		t.Fatalf("peer close %v", pc)
	}
	if op, p := serverFrame(t, cl); op != opClose || !bytes.Equal(p, []byte{0x0f, 0xa0}) {
		t.Fatalf("echo: op %d % x", op, p)
	}
	if err := c.WriteFrame([]byte("late")); !errors.Is(err, ErrCloseSent) {
		t.Fatalf("write after close: %v", err)
	}
	c.Close()
}

// A long close reason is cut to 120 bytes on a character boundary.
func TestCloseReasonCut(t *testing.T) {
	cl, sv := tcpPair(t)
	c := New(sv, Options{WriteTimeout: 5 * time.Second})
	c.SetCloseStatus(4000, "x"+strings.Repeat("é", 100))
	c.readerGone.Store(true) // no lingering: no reader here
	c.Close()
	_, p := serverFrame(t, cl)
	code, reason := closeCode(t, p)
	if code != 4000 || len(reason) > 120 || len(reason) < 118 || !strings.HasPrefix(reason, "xé") || !utf8Valid(reason) {
		t.Fatalf("close %d %q (%d bytes)", code, reason, len(reason))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func TestMaskBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		key := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		pos := r.IntN(4)
		b := make([]byte, r.IntN(200))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := bytes.Clone(b)
		for i := range want {
			want[i] ^= key[(pos+i)%4]
		}
		end := maskBytes(key, pos, b)
		if !bytes.Equal(b, want) || end != (pos+len(b))%4 {
			t.Fatalf("pos %d len %d: wrong", pos, len(b))
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(clientFrame(true, opBinary, []byte("hello"), true))
	f.Add(clientFrame(false, opBinary, make([]byte, 300), true)[:8])
	f.Add(clientFrame(true, opBinary, make([]byte, 70000), true)[:14])
	f.Add([]byte{0x88, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseHeader(b)
		if err != nil {
			if n != 0 {
				t.Fatal("size with an error")
			}
			return
		}
		if n == 0 {
			return
		}
		if n > len(b) || n > maxHeader || h.length < 0 {
			t.Fatalf("size %d of %d bytes, length %d", n, len(b), h.length)
		}
		if h.op >= opClose && (!h.fin || h.length > maxControlPayload) {
			t.Fatalf("control frame accepted: %+v", h)
		}
		// A parsed header parses the same from any longer input.
		h2, n2, err := parseHeader(append(bytes.Clone(b[:n]), 0xff, 0xff))
		if err != nil || n2 != n || h2 != h {
			t.Fatalf("reparse: %+v %d %v", h2, n2, err)
		}
	})
}

// FuzzConn feeds arbitrary client bytes to a Conn read as the multiplexer
// reads it: it never panics, and reading ends.
func FuzzConn(f *testing.F) {
	f.Add(append(clientFrame(false, opBinary, []byte("ab"), true), clientFrame(true, opContinuation, []byte("c"), true)...))
	f.Add(clientFrame(true, opClose, []byte{0x03, 0xe8, 'o', 'k'}, true))
	f.Add(clientFrame(true, opText, []byte("t"), true))
	f.Fuzz(func(t *testing.T, in []byte) {
		cl, sv := net.Pipe()
		defer cl.Close()
		go io.Copy(io.Discard, cl) // the server's frames
		go func() { cl.Write(in); cl.Close() }()
		c := New(sv, Options{WriteTimeout: time.Second, ReadLimit: 4096})
		for range 1000 {
			if _, err := readMessage(c); err != nil {
				break
			}
		}
		c.readerGone.Store(true)
		c.Close()
	})
}

// An idle Conn parks: Park returns true, no goroutine reads it, and input
// or a close calls Resume.
func TestParkWakesOnInputAndClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux's epoll")
	}
	cl, sv := tcpPair(t)
	resumed := make(chan struct{}, 4)
	c := New(sv, Options{WriteTimeout: 5 * time.Second, Resume: func() { resumed <- struct{}{} }})
	if !c.Parkable() {
		t.Fatal("a TCP conn does not park")
	}
	if !c.Park() {
		t.Fatal("an idle conn did not park")
	}
	if c.buf != nil {
		t.Fatal("a parked conn holds its read buffer")
	}
	cl.Write(clientFrame(true, opBinary, []byte("wake"), true))
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("input did not resume the conn")
	}
	if c.Park() {
		t.Fatal("parked with input at hand")
	}
	if got, err := readMessage(c); err != nil || string(got) != "wake" {
		t.Fatalf("%q %v", got, err)
	}
	// Several messages in one read: no park between them.
	cl.Write(append(clientFrame(true, opBinary, []byte("a"), true), clientFrame(true, opBinary, []byte("b"), true)...))
	waitReadable(t, c)
	for _, want := range []string{"a", "b"} {
		if c.Park() {
			t.Fatal("parked with a message buffered")
		}
		if got, err := readMessage(c); err != nil || string(got) != want {
			t.Fatalf("%q %v", got, err)
		}
	}
	if !c.Park() {
		t.Fatal("did not park again")
	}
	// A close wakes it, to read the peer's close message.
	c.SetCloseStatus(4000, "done")
	go c.Close()
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not resume the conn")
	}
	if op, _ := serverFrame(t, cl); op != opClose {
		t.Fatalf("op %d", op)
	}
	if c.Park() {
		t.Fatal("a closing conn parked")
	}
	cl.Write(clientFrame(true, opClose, []byte{0x0f, 0xa0}, true))
	if _, err := readMessage(c); err == nil {
		t.Fatal("read after close")
	}
	c.ReadFailed(errors.New("done"))
	checkPollerGone(t)
}

// waitReadable waits until input is at hand, which c then holds.
func waitReadable(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.buf == nil || c.r == c.w {
		if time.Now().After(deadline) {
			t.Fatal("input did not come")
		}
		b := readBufs.Get().(*[]byte)
		n, err := c.park.tryRead(*b)
		if n > 0 {
			c.buf, c.r, c.w = b, 0, n
			continue
		}
		readBufs.Put(b)
		if !errors.Is(err, syscall.EAGAIN) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkPollerGone checks that the shared epoll set stopped with its last
// Conn (forget stops it before it returns).
func checkPollerGone(t *testing.T) {
	t.Helper()
	pollers.mu.Lock()
	cur := pollers.cur
	pollers.mu.Unlock()
	if cur != nil {
		t.Fatal("the epoll set outlived its last conn")
	}
}

// Many parked conns: none holds a goroutine, all wake.
func TestManyParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux's epoll")
	}
	const n = 200
	before := runtime.NumGoroutine()
	var woke atomic.Int64
	var wg sync.WaitGroup
	clients := make([]net.Conn, n)
	conns := make([]*Conn, n)
	for i := range n {
		cl, sv := tcpPair(t)
		clients[i] = cl
		var c *Conn
		c = New(sv, Options{WriteTimeout: 5 * time.Second, Resume: func() {
			defer wg.Done()
			if got, err := readMessage(c); err == nil && string(got) == "x" {
				woke.Add(1)
			}
			c.ReadFailed(errors.New("test over"))
		}})
		conns[i] = c
		if !c.Park() {
			t.Fatalf("conn %d did not park", i)
		}
	}
	// The epoll set's goroutine, and none per conn (the accepting
	// goroutines of tcpPair may take a moment to end).
	wg.Add(n)
	deadline := time.Now().Add(10 * time.Second)
	for g := runtime.NumGoroutine(); g > before+1; g = runtime.NumGoroutine() {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines with %d parked conns, %d before", g, n, before)
			break
		}
		time.Sleep(time.Millisecond)
	}
	for _, cl := range clients {
		cl.Write(clientFrame(true, opBinary, []byte("x"), true))
	}
	wg.Wait()
	if woke.Load() != n {
		t.Fatalf("%d of %d woke with their message", woke.Load(), n)
	}
	checkPollerGone(t)
}

func BenchmarkMaskBytes(b *testing.B) {
	buf := make([]byte, 32<<10)
	key := [4]byte{1, 2, 3, 4}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		maskBytes(key, 1, buf)
	}
}

// A session whose input comes right after each park, streamingWakes times
// in a row, waits for the next message in its goroutine; once a message is
// slow to come, it parks again.
func TestStreamingWaitsInItsGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is Linux's epoll")
	}
	var now atomic.Int64
	now.Store(1)
	defer func(f func() int64) { nanotime = f }(nanotime)
	nanotime = now.Load
	cl, sv := tcpPair(t)
	resumed := make(chan struct{}, 1)
	c := New(sv, Options{WriteTimeout: 5 * time.Second, Resume: func() { resumed <- struct{}{} }})
	send := func() {
		t.Helper()
		if _, err := cl.Write(clientFrame(true, opBinary, []byte("x"), true)); err != nil {
			t.Fatal(err)
		}
	}
	waitResumed := func() {
		t.Helper()
		select {
		case <-resumed:
		case <-time.After(10 * time.Second):
			t.Fatal("not resumed")
		}
	}
	if !c.Park() {
		t.Fatal("did not park")
	}
	for i := range streamingWakes {
		now.Add(int64(quickWake / 2)) // input soon after the park
		send()
		waitResumed()
		waitReadable(t, c)
		if c.Park() {
			t.Fatalf("wake %d: parked with input", i)
		}
		if _, err := readMessage(c); err != nil {
			t.Fatal(err)
		}
		parked := c.Park()
		if i < streamingWakes-1 && !parked {
			t.Fatalf("wake %d: did not park", i)
		}
		if i == streamingWakes-1 && parked {
			t.Fatal("streaming, yet parked")
		}
	}
	// Streaming: the read waits here; a message slow to come ends it.
	got := make(chan error, 1)
	go func() {
		_, err := readMessage(c)
		got <- err
	}()
	now.Add(int64(2 * quickWake))
	send()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !c.Park() {
		t.Fatal("did not park after the stream paused")
	}
	c.SetCloseStatus(4000, "done")
	go c.Close()
	waitResumed()
	cl.Write(clientFrame(true, opClose, []byte{0x0f, 0xa0}, true))
	for {
		if _, err := readMessage(c); err != nil {
			break
		}
	}
	c.ReadFailed(errors.New("done"))
}
