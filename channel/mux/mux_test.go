package mux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/internal/chunkio"
)

// fakeConn feeds a Session messages from a channel and records what it
// writes, with no network in between.
type fakeConn struct {
	in    chan []byte
	sizes []byte // read chunk sizes, cycled

	mu     sync.Mutex
	out    [][]byte
	code   int
	reason string
	closed bool
	wrote  chan struct{} // a token per frame written
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 64), wrote: make(chan struct{}, 1)}
}

func (c *fakeConn) NextMessage() (io.Reader, error) {
	m, ok := <-c.in
	if !ok {
		return nil, io.ErrUnexpectedEOF
	}
	return &chunkio.Reader{Data: m, Sizes: c.sizes}, nil
}

func (c *fakeConn) ReadFailed(err error) error { return err }

func (c *fakeConn) WriteFrame(f []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.out = append(c.out, append([]byte(nil), f...))
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return nil
}

func (c *fakeConn) SetCloseStatus(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.code == 0 {
		c.code, c.reason = code, reason
	}
}

func (c *fakeConn) Fail(err error) error { c.Close(); return err }

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) status() (int, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reason, c.closed
}

// frames returns the frames written so far.
func (c *fakeConn) frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.out...)
}

func frameOf(typ byte, flags uint16, id, length uint32, body []byte) []byte {
	f := make([]byte, headerSize, headerSize+len(body))
	putHeader(f, typ, flags, id, length)
	return append(f, body...)
}

type header struct {
	typ    byte
	flags  uint16
	id     uint32
	length uint32
}

func parseOut(f []byte) header {
	return header{f[1], binary.BigEndian.Uint16(f[2:4]), binary.BigEndian.Uint32(f[4:8]), binary.BigEndian.Uint32(f[8:12])}
}

// muxHarness runs a Session's read loop over a fakeConn.
type muxHarness struct {
	t       *testing.T
	c       *fakeConn
	m       *Session
	streams chan *Stream
	ended   chan error
}

func startMux(t *testing.T, cfg Config) *muxHarness {
	h := &muxHarness{t: t, c: newFakeConn(), streams: make(chan *Stream, 64), ended: make(chan error, 1)}
	if cfg.OnStream == nil {
		cfg.OnStream = func(s *Stream) { h.streams <- s }
	}
	h.m = New(h.c, cfg)
	go func() { h.ended <- h.m.Run() }()
	t.Cleanup(func() {
		h.m.Close()
		close(h.c.in)
		<-h.ended
	})
	return h
}

func (h *muxHarness) send(frames ...[]byte) { h.c.in <- bytes.Join(frames, nil) }

func (h *muxHarness) open(id uint32) *Stream {
	h.send(frameOf(typeWindowUpdate, flagSYN, id, 0, nil))
	select {
	case s := <-h.streams:
		return s
	case <-time.After(10 * time.Second):
		h.t.Fatal("stream not opened")
		return nil
	}
}

// waitFrame waits until a written frame satisfies ok.
func (h *muxHarness) waitFrame(what string, ok func(header) bool) header {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, f := range h.c.frames() {
			if hd := parseOut(f); ok(hd) {
				return hd
			}
		}
		select {
		case <-h.c.wrote:
		case <-deadline:
			h.t.Fatalf("no %s written", what)
		}
	}
}

func (h *muxHarness) waitEnd() error {
	h.t.Helper()
	select {
	case err := <-h.ended:
		h.ended <- err
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("session did not end")
		return nil
	}
}

func TestMuxAcksAndReadsWithWindowUpdates(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	h.waitFrame("ACK", func(f header) bool { return f.typ == typeWindowUpdate && f.flags == flagACK && f.id == 1 })
	body := bytes.Repeat([]byte("x"), 200<<10)
	h.send(frameOf(typeData, 0, 1, uint32(len(body)), body))
	got := make([]byte, len(body))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %v", err)
	}
	// Read past half the window: the credit comes back in one update.
	up := h.waitFrame("window update", func(f header) bool { return f.typ == typeWindowUpdate && f.flags == 0 && f.id == 1 })
	if up.length != 200<<10 {
		t.Fatalf("window update of %d, want %d", up.length, 200<<10)
	}
	// The whole window again is accepted...
	full := make([]byte, StreamWindow)
	h.send(frameOf(typeData, 0, 1, StreamWindow, full))
	if _, err := io.ReadFull(s, make([]byte, StreamWindow)); err != nil {
		t.Fatal(err)
	}
	// ...and FIN ends reads with EOF.
	h.send(frameOf(typeWindowUpdate, flagFIN, 1, 0, nil))
	if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after FIN: %d, %v", n, err)
	}
}

func TestMuxReceiveWindowEdge(t *testing.T) {
	h := startMux(t, Config{})
	h.open(1)
	// Exactly the window is fine; one byte more is a violation.
	h.send(frameOf(typeData, 0, 1, StreamWindow-1, make([]byte, StreamWindow-1)))
	h.send(frameOf(typeData, 0, 1, 1, []byte{1}))
	h.send(frameOf(typeData, 0, 1, 1, []byte{2}))
	err := h.waitEnd()
	code, reason, _ := h.c.status()
	if !errors.Is(err, ErrProtocol) || code != CloseProtocolError || !strings.Contains(reason, "receive window") {
		t.Fatalf("err %v, close %d %q", err, code, reason)
	}
}

func TestMuxViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames [][]byte
		reason string
	}{
		{"even stream id", [][]byte{frameOf(typeWindowUpdate, flagSYN, 2, 0, nil)}, "even"},
		{"stream opened twice", [][]byte{frameOf(typeWindowUpdate, flagSYN, 1, 0, nil), frameOf(typeData, flagSYN, 1, 0, nil)}, "twice"},
		{"bad version", [][]byte{{1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}}, "version"},
		{"bad type", [][]byte{frameOf(4, 0, 1, 0, nil)}, "type"},
		{"data frame past the window", [][]byte{frameOf(typeData, flagSYN, 1, StreamWindow+1, nil)}, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startMux(t, Config{})
			h.send(tc.frames...)
			err := h.waitEnd()
			code, reason, closed := h.c.status()
			if !errors.Is(err, ErrProtocol) || code != CloseProtocolError || !strings.Contains(reason, tc.reason) || !closed {
				t.Fatalf("err %v, close %d %q (closed %v)", err, code, reason, closed)
			}
		})
	}
}

func TestMuxWriteWaitsForWindow(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("y"), StreamWindow+100<<10)
	wrote := make(chan error, 1)
	go func() { _, err := s.Write(msg); wrote <- err }()
	sent := func() int {
		n := 0
		for _, f := range h.c.frames() {
			if hd := parseOut(f); hd.typ == typeData && hd.id == 1 {
				n += int(hd.length)
			}
		}
		return n
	}
	h.waitFrame("data", func(f header) bool { return f.typ == typeData })
	for sent() < StreamWindow {
		<-h.c.wrote
	}
	select {
	case err := <-wrote:
		t.Fatalf("write past the peer's window returned %v", err)
	default:
	}
	if n := sent(); n != StreamWindow {
		t.Fatalf("sent %d bytes on a %d byte window", n, StreamWindow)
	}
	h.send(frameOf(typeWindowUpdate, 0, 1, 100<<10, nil))
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if n := sent(); n != len(msg) {
		t.Fatalf("sent %d, want %d", n, len(msg))
	}
	// A deadline ends a write blocked on the window.
	s.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Write([]byte("z")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked write: %v", err)
	}
}

func TestMuxResetStopsData(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	if _, err := s.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if _, err := s.Write([]byte("after")); err != ErrStreamReset {
		t.Fatalf("write after reset: %v", err)
	}
	if _, err := s.Read(make([]byte, 1)); err != ErrStreamReset {
		t.Fatalf("read after reset: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed by a reset")
	}
	frames := h.c.frames()
	last := parseOut(frames[len(frames)-1])
	if last.flags != flagRST || last.id != 1 {
		t.Fatalf("last frame %+v, want the RST", last)
	}
	// Late data for the reset stream is dropped; the session goes on.
	h.send(frameOf(typeData, 0, 1, 3, []byte("abc")))
	h.open(3)
}

func TestMuxPeerResetWakesReader(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	read := make(chan error, 1)
	go func() { _, err := s.Read(make([]byte, 1)); read <- err }()
	h.send(frameOf(typeWindowUpdate, flagRST, 1, 0, nil))
	if err := <-read; err != ErrStreamReset {
		t.Fatalf("read: %v", err)
	}
}

func TestMuxSessionEnd(t *testing.T) {
	h := startMux(t, Config{})
	finished := h.open(1)
	cut := h.open(3)
	h.send(frameOf(typeData, flagFIN, 1, 2, []byte("ok")), frameOf(typeData, 0, 3, 4, []byte("part")))
	// Both bodies are in before the session ends.
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range []*Stream{finished, cut} {
		for !s.hasBuffered() {
			if time.Now().After(deadline) {
				t.Fatal("data not received")
			}
			<-time.After(time.Millisecond)
		}
	}
	h.m.Close()
	for _, s := range []*Stream{finished, cut} {
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("Done not closed at session end")
		}
	}
	// What arrived is still read: then EOF after a FIN, an error without.
	if b, err := io.ReadAll(finished); string(b) != "ok" || err != nil {
		t.Fatalf("finished stream: %q, %v", b, err)
	}
	if b, err := io.ReadAll(cut); string(b) != "part" || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("cut stream: %q, %v", b, err)
	}
	if _, err := cut.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after session end: %v", err)
	}
}

func TestMuxGoAwayResetsNewStreams(t *testing.T) {
	h := startMux(t, Config{})
	h.open(1)
	h.m.GoAway()
	h.send(frameOf(typeWindowUpdate, flagSYN, 3, 0, nil))
	h.waitFrame("RST", func(f header) bool { return f.id == 3 && f.flags == flagRST })
	select {
	case s := <-h.streams:
		t.Fatalf("stream %d handed over after go-away", s.id)
	default:
	}
}

func TestMuxPings(t *testing.T) {
	allowed := 2
	h := startMux(t, Config{OnPing: func() bool { allowed--; return allowed >= 0 }})
	h.send(frameOf(typePing, flagSYN, 0, 77, nil))
	h.waitFrame("ping answer", func(f header) bool { return f.typ == typePing && f.flags == flagACK && f.length == 77 })
	h.send(frameOf(typePing, flagSYN, 0, 1, nil), frameOf(typePing, flagSYN, 0, 2, nil))
	h.waitEnd()
	if code, reason, _ := h.c.status(); code != CloseProtocolError || !strings.Contains(reason, "ping") {
		t.Fatalf("close %d %q", code, reason)
	}
}

func TestMuxKeepalive(t *testing.T) {
	h := startMux(t, Config{KeepAlive: 5 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	// Answered pings keep the session: three of them.
	answered := map[uint32]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(answered) < 3 && time.Now().Before(deadline) {
		for _, f := range h.c.frames() {
			if hd := parseOut(f); hd.typ == typePing && hd.flags == flagSYN && !answered[hd.length] {
				answered[hd.length] = true
				h.send(frameOf(typePing, flagACK, 0, hd.length, nil))
			}
		}
		select {
		case <-h.c.wrote:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if h.m.Closed() {
		t.Fatal("session with answered pings ended")
	}
	if len(answered) < 3 {
		t.Fatalf("%d pings answered", len(answered))
	}
	// Unanswered, the session ends.
	deadline = time.Now().Add(10 * time.Second)
	for !h.m.Closed() {
		if time.Now().After(deadline) {
			t.Fatal("unanswered keepalive kept the session")
		}
		<-time.After(time.Millisecond)
	}
}

// FuzzMux feeds a server session arbitrary frames, split over messages and
// read in chunks. It must never panic or hang, must answer every stream it
// opens with an ACK and every ping with its opaque value, and must refuse
// exactly what a reference reading of the frames says is a violation.
func FuzzMux(f *testing.F) {
	var good []byte
	good = append(good, frameOf(typeWindowUpdate, flagSYN, 1, 0, nil)...)
	good = append(good, frameOf(typeData, 0, 1, 5, []byte("hello"))...)
	good = append(good, frameOf(typePing, flagSYN, 0, 9, nil)...)
	good = append(good, frameOf(typeData, flagSYN|flagFIN, 3, 2, []byte("hi"))...)
	good = append(good, frameOf(typeWindowUpdate, flagRST, 1, 0, nil)...)
	good = append(good, frameOf(typeWindowUpdate, flagSYN, 1, 0, nil)...)
	f.Add(good, []byte{0, 11, 2}, []byte{30, 200})
	f.Add(frameOf(typeWindowUpdate, flagSYN, 2, 0, nil), []byte{5}, []byte{})
	f.Add(frameOf(9, 0, 1, 0, nil), []byte{}, []byte{1})
	f.Add(frameOf(typeData, flagSYN, 1, StreamWindow+1, nil), []byte{1}, []byte{3})
	f.Fuzz(func(t *testing.T, data, sizes, cuts []byte) {
		c := fuzzConn(data, sizes, cuts)
		var opened []uint32
		m := New(c, Config{OnStream: func(s *Stream) { opened = append(opened, s.id) }})
		err := runToEnd(t, m)

		ref := referenceRead(data, false, map[uint32]int64{})
		violation, wantOpen, pings := ref.violation, ref.syns, ref.pings
		checkViolation(t, c, err, violation)
		if !violation {
			if len(opened) != len(wantOpen) {
				t.Fatalf("opened %v, want %v", opened, wantOpen)
			}
			var acks, pongs []uint32
			for _, fr := range c.frames() {
				switch hd := parseOut(fr); {
				case hd.typ == typeWindowUpdate && hd.flags == flagACK:
					acks = append(acks, hd.id)
				case hd.typ == typePing && hd.flags == flagACK:
					pongs = append(pongs, hd.length)
				}
			}
			if !equalIDs(acks, wantOpen) || !equalIDs(pongs, pings) {
				t.Fatalf("acks %v for %v, pongs %v for %v", acks, wantOpen, pongs, pings)
			}
		}
		if !m.Closed() {
			t.Fatal("session not ended")
		}
	})
}

// FuzzMuxClient feeds a client session, with streams 1, 3 and 5 open,
// arbitrary frames from the server. It must never panic or hang, must reset
// every stream the server opens and answer every ping, and must refuse
// exactly what a reference reading of the frames says is a violation.
func FuzzMuxClient(f *testing.F) {
	var good []byte
	good = append(good, frameOf(typeWindowUpdate, flagACK, 1, 0, nil)...)
	good = append(good, frameOf(typeData, 0, 1, 5, []byte("hello"))...)
	good = append(good, frameOf(typePing, flagSYN, 0, 9, nil)...)
	good = append(good, frameOf(typeWindowUpdate, flagSYN, 2, 0, nil)...)
	good = append(good, frameOf(typeData, flagFIN, 3, 2, []byte("hi"))...)
	good = append(good, frameOf(typeWindowUpdate, flagRST, 5, 0, nil)...)
	good = append(good, frameOf(typeGoAway, 0, 0, 0, nil)...)
	f.Add(good, []byte{0, 11, 2}, []byte{30, 200})
	f.Add(frameOf(typeWindowUpdate, flagSYN, 7, 0, nil), []byte{5}, []byte{})
	f.Add(frameOf(typeData, 0, 3, StreamWindow, make([]byte, 100)), []byte{}, []byte{1})
	f.Add(frameOf(typeData, 0, 1, StreamWindow+1, nil), []byte{1}, []byte{3})
	f.Fuzz(func(t *testing.T, data, sizes, cuts []byte) {
		c := fuzzConn(data, sizes, cuts)
		m := New(c, Config{Client: true})
		credit := map[uint32]int64{} // open streams and their receive credit
		for _, want := range []uint32{1, 3, 5} {
			st, err := m.OpenStream()
			if err != nil || st.id != want {
				t.Fatalf("OpenStream: stream %v, %v; want %d", st, err, want)
			}
			credit[want] = StreamWindow
		}
		err := runToEnd(t, m)

		ref := referenceRead(data, true, credit)
		violation, refused, pings, goAway := ref.violation, ref.syns, ref.pings, ref.goAway
		checkViolation(t, c, err, violation)
		if !violation {
			var syns, rsts, pongs []uint32
			for _, fr := range c.frames() {
				switch hd := parseOut(fr); {
				case hd.typ == typeWindowUpdate && hd.flags == flagSYN:
					syns = append(syns, hd.id)
				case hd.typ == typeWindowUpdate && hd.flags == flagRST:
					rsts = append(rsts, hd.id)
				case hd.typ == typePing && hd.flags == flagACK:
					pongs = append(pongs, hd.length)
				}
			}
			if !equalIDs(syns, []uint32{1, 3, 5}) || !equalIDs(rsts, refused) || !equalIDs(pongs, pings) {
				t.Fatalf("SYNs %v, RSTs %v for %v, pongs %v for %v", syns, rsts, refused, pongs, pings)
			}
			m.mu.Lock()
			sawGoAway := m.peerGoAway
			m.mu.Unlock()
			if sawGoAway != goAway {
				t.Fatalf("go-away seen %v, want %v", sawGoAway, goAway)
			}
		}
		if !m.Closed() {
			t.Fatal("session not ended")
		}
		if _, err := m.OpenStream(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("OpenStream after the end: %v", err)
		}
	})
}

// reference is what a reading of frames by the spec expects of a session.
type reference struct {
	violation bool
	syns      []uint32 // streams the peer opened: accepted (server) or refused (client)
	pings     []uint32 // the opaque values of the peer's pings
	goAway    bool
}

// referenceRead reads the frames in data as the spec says, for a session of
// the given role whose open streams have the receive credit in credit.
func referenceRead(data []byte, client bool, credit map[uint32]int64) (r reference) {
	for p := 0; p+headerSize <= len(data); {
		hd := parseOut(data[p:])
		if !validHeader(data[p:]) {
			r.violation = true
			return r
		}
		p += headerSize
		switch hd.typ {
		case typePing:
			if hd.flags&flagSYN != 0 {
				r.pings = append(r.pings, hd.length)
			}
			continue
		case typeGoAway:
			r.goAway = true
			continue
		}
		if hd.flags&flagSYN != 0 {
			if _, dup := credit[hd.id]; dup || hd.id%2 == 1 == client {
				r.violation = true
				return r
			}
			if !client {
				credit[hd.id] = StreamWindow
			}
			r.syns = append(r.syns, hd.id)
		}
		if hd.typ == typeData {
			// The header alone tells a frame past the window.
			if c, ok := credit[hd.id]; ok && hd.length > 0 {
				if int64(hd.length) > c {
					r.violation = true
					return r
				}
				credit[hd.id] = c - int64(hd.length)
			}
			if p+int(hd.length) > len(data) {
				return r // cut short: the connection just ends
			}
			p += int(hd.length)
		}
		if hd.flags&flagRST != 0 {
			delete(credit, hd.id)
		}
	}
	return r
}

// fuzzConn is a fakeConn that delivers data cut into messages at cuts and
// read in chunks of sizes.
func fuzzConn(data, sizes, cuts []byte) *fakeConn {
	c := newFakeConn()
	c.sizes = sizes
	c.in = make(chan []byte, len(data)+1)
	for rest, i := data, 0; len(rest) > 0; i++ {
		n := len(rest)
		if len(cuts) > 0 {
			n = min(n, int(cuts[i%len(cuts)])*64+1)
		}
		c.in <- rest[:n]
		rest = rest[n:]
	}
	close(c.in)
	return c
}

// runToEnd runs m's read loop over a fuzzConn, which ends, and fails the
// test if it hangs.
func runToEnd(t *testing.T, m *Session) error {
	ran := make(chan error, 1)
	go func() { ran <- m.Run() }()
	select {
	case err := <-ran:
		return err
	case <-time.After(5 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("session hangs:\n%s", buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// validHeader is the reference check of a frame header on its own.
func validHeader(h []byte) bool {
	hd := parseOut(h)
	return h[0] == protoVersion && hd.typ <= typeGoAway && (hd.typ != typeData || hd.length <= StreamWindow)
}

// checkViolation compares how the session ended with the reference reading.
func checkViolation(t *testing.T, c *fakeConn, err error, violation bool) {
	t.Helper()
	code, reason, _ := c.status()
	if violation != errors.Is(err, ErrProtocol) || violation != (code == CloseProtocolError) {
		t.Fatalf("violation %v, want %v (close %d %q)", err, violation, code, reason)
	}
	if violation && reason == "" {
		t.Fatal("violation without a reason")
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s *Stream) hasBuffered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buffered > 0
}

// TestMuxReadInlineDrainsFirst: what was buffered before ReadInline goes
// to f first, then what arrives after, then end once; credit comes back.
func TestMuxReadInlineDrainsFirst(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	first := bytes.Repeat([]byte("a"), 150<<10)
	h.send(frameOf(typeData, 0, 1, uint32(len(first)), first))
	deadline := time.Now().Add(10 * time.Second)
	for !s.hasBuffered() {
		if time.Now().After(deadline) {
			t.Fatal("data not received")
		}
		<-time.After(time.Millisecond)
	}
	var mu sync.Mutex
	var got []byte
	var ends []error
	ended := make(chan struct{})
	s.ReadInline(func(p []byte) {
		mu.Lock()
		got = append(got, p...)
		mu.Unlock()
	}, func(err error) {
		mu.Lock()
		ends = append(ends, err)
		mu.Unlock()
		close(ended)
	})
	// The drained 150 KiB was credited back in one update.
	h.waitFrame("window update", func(f header) bool { return f.typ == typeWindowUpdate && f.flags == 0 && f.length == 150<<10 })
	second := bytes.Repeat([]byte("b"), 200<<10)
	h.send(frameOf(typeData, 0, 1, uint32(len(second)), second), frameOf(typeWindowUpdate, flagFIN, 1, 0, nil))
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("end not called")
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got, append(first, second...)) {
		t.Fatalf("got %d bytes, out of order or short", len(got))
	}
	if len(ends) != 1 || ends[0] != io.EOF {
		t.Fatalf("ends %v", ends)
	}
}

// TestMuxReadInlineAfterFIN: a stream that had ended before ReadInline is
// drained, then ended by the call itself.
func TestMuxReadInlineAfterFIN(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	h.send(frameOf(typeData, flagFIN, 1, 3, []byte("end")))
	deadline := time.Now().Add(10 * time.Second)
	for !s.PeerClosed() {
		if time.Now().After(deadline) {
			t.Fatal("FIN not received")
		}
		<-time.After(time.Millisecond)
	}
	var got []byte
	var ends []error
	s.ReadInline(func(p []byte) { got = append(got, p...) }, func(err error) { ends = append(ends, err) })
	if string(got) != "end" || len(ends) != 1 || ends[0] != io.EOF {
		t.Fatalf("got %q, ends %v", got, ends)
	}
}

// TestMuxReadInlineAfterClose: a Close from another goroutine (shutdown,
// token expiry, keepalive) never loses an inline reader's end, whether the
// reader starts before or after the read loop has ended.
func TestMuxReadInlineAfterClose(t *testing.T) {
	const n = 20000
	h := startMux(t, Config{})
	go func() {
		for i := range n {
			h.send(frameOf(typeWindowUpdate, flagSYN, uint32(2*i+1), 0, nil))
		}
	}()
	streams := make([]*Stream, 0, n)
	for len(streams) < n {
		streams = append(streams, <-h.streams)
	}
	var ends atomic.Int64
	for _, s := range streams[:n/4] { // before the close
		s.ReadInline(func([]byte) {}, func(error) { ends.Add(1) })
	}
	go h.m.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !h.m.Closed() {
		if time.Now().After(deadline) {
			t.Fatal("not closed")
		}
		runtime.Gosched()
	}
	// The read loop ends while Close may still be at work on the streams;
	// readers start after it, the last opened first.
	h.send(frameOf(typePing, flagSYN, 0, 1, nil))
	h.waitEnd()
	for i := n - 1; i >= n/4; i-- {
		streams[i].ReadInline(func([]byte) {}, func(error) { ends.Add(1) })
	}
	if got := ends.Load(); got != n {
		t.Fatalf("end called for %d of %d inline streams", got, n)
	}
}

// TestMuxInlineNoDataAfterEnd: a body the read loop was in the middle of
// when the session closed does not reach an inline reader after its end.
func TestMuxInlineNoDataAfterEnd(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	body := make([]byte, 100)
	f := frameOf(typeData, 0, 1, uint32(len(body)), body)
	h.send(f[:50]) // the header and part of the body
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		reading := s.inflight > 0
		s.mu.Unlock()
		if reading {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read loop did not start the body")
		}
		<-time.After(time.Millisecond)
	}
	h.m.Close()
	var ended atomic.Bool
	var after atomic.Int64
	s.ReadInline(func(p []byte) {
		if ended.Load() {
			after.Add(int64(len(p)))
		}
	}, func(error) { ended.Store(true) })
	h.send(f[50:], frameOf(typePing, flagSYN, 0, 1, nil))
	h.waitEnd()
	if !ended.Load() || after.Load() > 0 {
		t.Fatalf("ended %v, %d bytes passed on after end", ended.Load(), after.Load())
	}
}

// TestMuxTinyFramesShareBuffers: a window's worth of one-byte frames is
// held in buffers of 8 KiB, not a buffer per frame.
func TestMuxTinyFramesShareBuffers(t *testing.T) {
	h := startMux(t, Config{})
	s := h.open(1)
	const per = 4096 // frames per message
	for sent := 0; sent < StreamWindow; sent += per {
		var msg []byte
		for range per {
			msg = append(msg, frameOf(typeData, 0, 1, 1, []byte{'x'})...)
		}
		h.send(msg)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		buffered, chunks := s.buffered, len(s.recv)
		s.mu.Unlock()
		if buffered == StreamWindow {
			if max := StreamWindow/tailBuf + 1; chunks > max {
				t.Fatalf("%d buffers hold %d bytes, want at most %d", chunks, buffered, max)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes buffered", buffered)
		}
		<-time.After(time.Millisecond)
	}
	got, err := io.ReadAll(io.LimitReader(s, StreamWindow))
	if err != nil || len(got) != StreamWindow || bytes.Count(got, []byte{'x'}) != StreamWindow {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
}

// A stream given up with Close whose peer never half-closes is reset once
// CloseTimeout has passed.
func TestMuxCloseResetsSilentPeer(t *testing.T) {
	h := startMux(t, Config{CloseTimeout: 20 * time.Millisecond})
	s := h.open(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitFrame("FIN", func(hd header) bool { return hd.id == 1 && hd.flags&flagFIN != 0 })
	h.waitFrame("RST", func(hd header) bool { return hd.id == 1 && hd.flags&flagRST != 0 })
}

// After Close the stream still reads what the peer sends until its FIN;
// the FIN, or the session's end, stops the timer: nothing is left that
// would reset the stream later.
func TestMuxCloseReadsUntilFIN(t *testing.T) {
	h := startMux(t, Config{CloseTimeout: time.Hour})
	s := h.open(1)
	s.Close()
	h.send(frameOf(typeData, flagFIN, 1, 3, []byte("abc")))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "abc" {
		t.Fatalf("read %q, %v", got, err)
	}
	if s.closeTimer.Stop() {
		t.Fatal("the close timer still ran after the peer's FIN")
	}

	s = h.open(3)
	s.Close()
	h.m.Close()
	if s.closeTimer.Stop() {
		t.Fatal("the close timer still ran after the session ended")
	}
}

// The stream set keeps its first streams in place and the rest in a map:
// every stream is found, deleted ones are not, wherever they sit.
func TestStreamSet(t *testing.T) {
	var set streamSet
	for id := uint32(1); id <= 21; id += 2 {
		set.put(&Stream{id: id})
	}
	for _, id := range []uint32{3, 15} { // one in place, one in the map
		set.del(id)
	}
	set.put(&Stream{id: 101}) // takes the freed place
	for id := uint32(1); id <= 21; id += 2 {
		if got := set.get(id); (got == nil) != (id == 3 || id == 15) || got != nil && got.id != id {
			t.Fatalf("get(%d) = %v", id, got)
		}
	}
	n := 0
	set.each(func(*Stream) { n++ })
	if n != 10 || set.get(101) == nil || set.get(2) != nil {
		t.Fatalf("%d streams, 101 found: %v", n, set.get(101) != nil)
	}
	for id := uint32(1); id <= 21; id += 2 {
		set.del(id)
	}
	set.del(101)
	if set.many != nil || set.few != [4]*Stream{} {
		t.Fatal("an emptied set holds something")
	}
}
