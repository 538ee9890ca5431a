package peer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/peer"
)

// callPair joins two members to a room of ts and returns an accepted call
// from each side.
func callPair(t *testing.T, url string) (*peer.Call, *peer.Call) {
	t.Helper()
	a, _ := join(t, url, "r", nil, peer.RoomOptions{})
	b, bm := join(t, url, "r", nil, peer.RoomOptions{})
	waitMember(t, a, b.ID())
	return acceptedCall(t, a, b, bm)
}

// acceptedCall has a call b, which accepts the request it gets.
func acceptedCall(t testing.TB, a, b *peer.Room, bm *members) (*peer.Call, *peer.Call) {
	t.Helper()
	got := make(chan *peer.Call, 1)
	go func() {
		c, err := (<-bm.reqs).Accept()
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	ac, err := a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bc := <-got
	if bc == nil {
		t.FailNow()
	}
	return ac, bc
}

// loopback returns a SettingEngine whose ICE uses only the loopback
// interface, or, with none, no interface at all: no candidate, no path.
func loopback(none bool) *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return !none && name == "lo" })
	return se
}

// connectPair connects both sides of a call with options o(side).
func connectPair(t testing.TB, ac, bc *peer.Call, o func() peer.ConnOptions) (*peer.Conn, *peer.Conn) {
	t.Helper()
	type res struct {
		c   *peer.Conn
		err error
	}
	got := make(chan res, 1)
	go func() {
		c, err := peer.Connect(sctest.Ctx(t), bc, o())
		got <- res{c, err}
	}()
	a, err := peer.Connect(sctest.Ctx(t), ac, o())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return a, r.c
}

// transfer sends n random bytes each way at once and checks that each side
// reads exactly what the other wrote.
func transfer(t *testing.T, a, b io.ReadWriter, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type sum struct {
		h   [32]byte
		err error
	}
	send := func(w io.Writer, seed uint64) [32]byte {
		data := make([]byte, n)
		r := rand.New(rand.NewPCG(seed, seed))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		go func() {
			if _, err := w.Write(data); err != nil && ctx.Err() == nil {
				t.Errorf("write: %v", err)
			}
		}()
		return sha256.Sum256(data)
	}
	recv := func(r io.Reader, out chan<- sum) {
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(n))
		var s sum
		copy(s.h[:], h.Sum(nil))
		s.err = err
		out <- s
	}
	ab, ba := make(chan sum, 1), make(chan sum, 1)
	go recv(b, ab)
	go recv(a, ba)
	wantAB, wantBA := send(a, 1), send(b, 2)
	for _, c := range []struct {
		got  chan sum
		want [32]byte
		name string
	}{{ab, wantAB, "a to b"}, {ba, wantBA, "b to a"}} {
		select {
		case s := <-c.got:
			if s.err != nil || !bytes.Equal(s.h[:], c.want[:]) {
				t.Fatalf("%s: %v, digest %x want %x", c.name, s.err, s.h[:4], c.want[:4])
			}
		case <-ctx.Done():
			t.Fatalf("%s: not done in time", c.name)
		}
	}
}

// Two Go peers over loopback ICE: the data channel opens and 10 MiB cross
// each way intact.
func TestConnDirect(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	ac, bc := callPair(t, ts.URL)
	a, b := connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: loopback(false), DirectTimeout: time.Minute}
	})
	if a.Path() != peer.PathDirect || b.Path() != peer.PathDirect {
		t.Fatalf("paths %q and %q, want direct", a.Path(), b.Path())
	}
	transfer(t, a, b, 10<<20)
}

// When no ICE path can form, the data takes the relay after the direct
// timeout, with the same API, and 10 MiB cross each way intact.
func TestConnRelayFallback(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	ac, bc := callPair(t, ts.URL)
	var (
		mu    sync.Mutex
		paths []peer.Path
	)
	a, b := connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: loopback(true), DirectTimeout: time.Second, OnPath: func(p peer.Path) {
			mu.Lock()
			paths = append(paths, p)
			mu.Unlock()
		}}
	})
	if a.Path() != peer.PathRelay || b.Path() != peer.PathRelay {
		t.Fatalf("paths %q and %q, want relay", a.Path(), b.Path())
	}
	mu.Lock()
	if len(paths) != 2 || paths[0] != peer.PathRelay || paths[1] != peer.PathRelay {
		t.Errorf("OnPath told %q, want relay on each side", paths)
	}
	mu.Unlock()
	transfer(t, a, b, 10<<20)
}

// network is a virtual network of pion's between two peers, whose link
// the test can cut: the peers' ICE, DTLS and SCTP are real, only the
// wire between them is simulated.
type network struct {
	wan *vnet.Router
	cut atomic.Bool
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	n := &network{}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.9.0.0/24", LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatal(err)
	}
	wan.AddChunkFilter(func(vnet.Chunk) bool { return !n.cut.Load() })
	n.wan = wan
	return n
}

// engine returns the SettingEngine of a peer at ip on the network, whose
// ICE takes a second to call a silent path disconnected and two to call it
// failed.
func (n *network) engine(t *testing.T, ip string) *webrtc.SettingEngine {
	t.Helper()
	vn, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.wan.AddNet(vn); err != nil {
		t.Fatal(err)
	}
	se := &webrtc.SettingEngine{}
	se.SetNet(vn)
	se.SetICETimeouts(time.Second, 2*time.Second, 200*time.Millisecond)
	return se
}

func (n *network) start(t *testing.T) {
	t.Helper()
	if err := n.wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.wan.Stop() })
}

// The direct path is cut in the middle of a transfer: the connection sees
// ICE fail, tries a restart, takes the relay, and each side reads exactly
// the bytes the other wrote, none lost, none twice.
func TestConnHealsOverRelay(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	ac, bc := callPair(t, ts.URL)
	nw := newNetwork(t)
	seA, seB := nw.engine(t, "10.9.0.2"), nw.engine(t, "10.9.0.3")
	nw.start(t)
	engines := make(chan *webrtc.SettingEngine, 2)
	engines <- seA
	engines <- seB
	a, b := connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: <-engines, DirectTimeout: 2 * time.Second, DisconnectGrace: time.Second}
	})
	if a.Path() != peer.PathDirect || b.Path() != peer.PathDirect {
		t.Fatalf("paths %q and %q before the cut, want direct", a.Path(), b.Path())
	}
	// Cut the link once b has read a third of what a sends.
	const n = 6 << 20
	cutAfter := &cutReader{r: b, at: n / 3, cut: func() { nw.cut.Store(true) }}
	transfer(t, a, struct {
		io.Reader
		io.Writer
	}{cutAfter, b}, n)
	if !nw.cut.Load() {
		t.Fatal("the link was never cut")
	}
	if a.Path() != peer.PathRelay || b.Path() != peer.PathRelay {
		t.Fatalf("paths %q and %q after the cut, want relay", a.Path(), b.Path())
	}
}

// cutReader calls cut once at bytes have been read through it.
type cutReader struct {
	r    io.Reader
	n    int
	at   int
	cut  func()
	once sync.Once
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.at {
		c.once.Do(c.cut)
	}
	return n, err
}

// Close sends what was written before it: the other side reads every byte,
// then io.EOF; CloseWrite leaves the other direction open.
func TestConnCloseDeliversAll(t *testing.T) {
	for _, relay := range []bool{false, true} {
		t.Run(fmt.Sprintf("relay=%v", relay), func(t *testing.T) {
			ts := sctest.NewServer(t, sctest.Options{})
			ac, bc := callPair(t, ts.URL)
			a, b := connectPair(t, ac, bc, func() peer.ConnOptions {
				return peer.ConnOptions{SettingEngine: loopback(false), DirectTimeout: time.Minute, ForceRelay: relay}
			})
			data := make([]byte, 1<<20+17)
			for i := range data {
				data[i] = byte(i * 7)
			}
			// b half-closes: a reads EOF, and b still reads what a sends.
			if err := b.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := a.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("a read %d, %v after b's CloseWrite; want io.EOF", n, err)
			}
			if _, err := b.Write([]byte("x")); err == nil {
				t.Fatal("b wrote after CloseWrite")
			}
			got := make(chan []byte, 1)
			go func() {
				all, err := io.ReadAll(b)
				if err != nil {
					t.Errorf("b's read ended with %v, want io.EOF", err)
				}
				got <- all
			}()
			if _, err := a.Write(data); err != nil {
				t.Fatal(err)
			}
			a.Close()
			if all := <-got; !bytes.Equal(all, data) {
				t.Fatalf("b read %d bytes, want %d", len(all), len(data))
			}
		})
	}
}

// Media tracks added after the connection opened reach the other side, from
// the polite side (which asks the impolite one for an offer with a place
// for them) and from the impolite side (which offers), over the call's
// signalling.
func TestConnMediaAfterOpen(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	ac, bc := callPair(t, ts.URL)
	a, b := connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: loopback(false), DirectTimeout: time.Minute}
	})
	polite, impolite := a, b
	if !a.Call().Polite() {
		polite, impolite = b, a
	}
	// Each side counts the RTP packets of each kind it receives.
	type counts struct{ video, audio atomic.Int64 }
	count := func(c *peer.Conn) *counts {
		n := &counts{}
		c.PeerConnection().OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					n.video.Add(1)
				} else {
					n.audio.Add(1)
				}
			}
		})
		return n
	}
	atImpolite, atPolite := count(impolite), count(polite)
	// send adds a track of kind to c and writes packets to it until stop.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	send := func(c *peer.Conn, kind webrtc.RTPCodecType) {
		mime := webrtc.MimeTypeVP8
		if kind == webrtc.RTPCodecTypeAudio {
			mime = webrtc.MimeTypeOpus
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000}, kind.String(), "sc")
		if kind == webrtc.RTPCodecTypeAudio {
			tr, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 48000, Channels: 2}, kind.String(), "sc")
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PeerConnection().AddTrack(tr); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for seq := uint16(0); ; seq++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 900}, Payload: []byte{0x10, 0, 0, 0}})
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	send(polite, webrtc.RTPCodecTypeVideo)
	sctest.WaitFor(t, 20*time.Second, func() error {
		if n := atImpolite.video.Load(); n < 20 {
			return fmt.Errorf("the impolite side received %d video packets from the polite one", n)
		}
		return nil
	})
	send(impolite, webrtc.RTPCodecTypeAudio)
	sctest.WaitFor(t, 20*time.Second, func() error {
		if n := atPolite.audio.Load(); n < 20 {
			return fmt.Errorf("the polite side received %d audio packets from the impolite one", n)
		}
		return nil
	})
	// The data channel carried on through both renegotiations.
	transfer(t, a, b, 64<<10)
}
