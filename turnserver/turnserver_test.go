package turnserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/turnserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("a secret shared with the turn server, 32+ bytes")

// clock is a settable clock, for credentials that expire without waiting.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func start(t testing.TB, cfg turnserver.Config) *turnserver.Server {
	t.Helper()
	if cfg.UDP == "" {
		cfg.UDP = "127.0.0.1:0"
	}
	cfg.Secret = secret
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := turnserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// creds issues credentials for peer at now, valid for ttl.
func creds(peer string, now time.Time, ttl time.Duration) (string, string) {
	user := ice.Username(now.Add(ttl), peer)
	return user, ice.Credential(secret, user)
}

// client is a pion TURN client of s with the given credentials.
func client(t testing.TB, s *turnserver.Server, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.URLs()[0][len("turn:"):]
	addr = addr[:len(addr)-len("?transport=udp")]
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: addr, STUNServerAddr: addr, Username: user, Password: pass, Realm: turnserver.DefaultRealm, Conn: conn, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}

// allocate allocates within a bounded time.
func allocate(t testing.TB, c *turn.Client) (net.PacketConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

// peer is a plain UDP socket on loopback that echoes what it receives.
func peer(t testing.TB) net.PacketConn {
	t.Helper()
	p, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			p.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		p.Close()
		wg.Wait()
	})
	return p
}

// roundTrip sends msg through relay to the echoing peer and reads it back,
// sending again until it comes (UDP), within a bounded time.
func roundTrip(relay net.PacketConn, to net.Addr, msg []byte) error {
	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := relay.WriteTo(msg, to); err != nil {
			return err
		}
		relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := relay.ReadFrom(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return nil
		}
	}
	return errors.New("nothing came back through the relay")
}

// A client allocates with issued credentials and relays packets both
// ways; the allocation and its bytes are counted.
func TestRelayBothWays(t *testing.T) {
	s := start(t, turnserver.Config{})
	u, p := creds("alice", time.Now(), time.Minute)
	relay, err := allocate(t, client(t, s, u, p))
	if err != nil {
		t.Fatal(err)
	}
	echo := peer(t)
	for i := range 10 {
		if err := roundTrip(relay, echo.LocalAddr(), []byte(fmt.Sprintf("packet %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Allocations.Load() != 1 || st.AllocationsTotal.Load() != 1 || st.BytesRelayed.Load() < int64(2*10*len("packet 0")) {
		t.Fatalf("allocations %d (total %d), bytes %d", st.Allocations.Load(), st.AllocationsTotal.Load(), st.BytesRelayed.Load())
	}
	relay.Close()
	sctest.WaitFor(t, 10*time.Second, func() error {
		if n := st.Allocations.Load(); n != 0 {
			return fmt.Errorf("%d allocations after the client released its own", n)
		}
		return nil
	})
}

// Expired, altered and foreign credentials are refused, and counted.
func TestCredentialsRefused(t *testing.T) {
	s := start(t, turnserver.Config{})
	now := time.Now()
	good, pass := creds("bob", now, time.Minute)
	expired, expiredPass := creds("bob", now, -time.Second)
	for _, c := range []struct{ name, user, pass string }{
		{"expired", expired, expiredPass},
		{"altered user", "9999999999:bob", pass},
		{"altered password", good, pass[:len(pass)-2] + "x="},
		{"foreign secret", good, ice.Credential([]byte("another secret"), good)},
		{"no expiry", "bob", pass},
	} {
		before := s.Stats().AuthRefused.Load()
		if _, err := allocate(t, client(t, s, c.user, c.pass)); err == nil {
			t.Errorf("%s: allocated", c.name)
		}
		if s.Stats().AuthRefused.Load() == before {
			t.Errorf("%s: not counted", c.name)
		}
	}
	if s.Stats().Allocations.Load() != 0 {
		t.Fatalf("%d allocations", s.Stats().Allocations.Load())
	}
}

// Credentials expire for new allocations only: an allocation made with
// them goes on relaying, and opens permissions to new peers, once they
// have expired; a new allocation with them is refused, one with fresh
// credentials is not.
func TestAllocationOutlivesCredentials(t *testing.T) {
	clk := newClock()
	s := start(t, turnserver.Config{Now: clk.now})
	u, p := creds("carol", clk.now(), 10*time.Second)
	c := client(t, s, u, p)
	relay, err := allocate(t, c)
	if err != nil {
		t.Fatal(err)
	}
	first := peer(t)
	if err := roundTrip(relay, first.LocalAddr(), []byte("at second 0")); err != nil {
		t.Fatal(err)
	}
	clk.advance(60 * time.Second)
	if err := roundTrip(relay, first.LocalAddr(), []byte("at second 60")); err != nil {
		t.Fatal(err)
	}
	// A permission for a new peer is a request authenticated with the
	// expired credentials.
	second := peer(t)
	if err := roundTrip(relay, second.LocalAddr(), []byte("a new peer at second 60")); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(t, client(t, s, u, p)); err == nil {
		t.Fatal("a new allocation with expired credentials")
	}
	u2, p2 := creds("carol", clk.now().Add(-45*time.Second), 10*time.Second) // issued at second 15: expired too
	if _, err := allocate(t, client(t, s, u2, p2)); err == nil {
		t.Fatal("a new allocation with credentials of second 15 at second 60")
	}
	u3, p3 := creds("carol", clk.now(), 10*time.Second)
	relay3, err := allocate(t, client(t, s, u3, p3))
	if err != nil {
		t.Fatalf("fresh credentials: %v", err)
	}
	if err := roundTrip(relay3, first.LocalAddr(), []byte("fresh")); err != nil {
		t.Fatal(err)
	}
}

// A peer holds at most MaxAllocationsPerPeer allocations: at the limit one
// more is refused, another peer is not, and one released frees a place.
func TestAllocationQuota(t *testing.T) {
	s := start(t, turnserver.Config{MaxAllocationsPerPeer: 2})
	now := time.Now()
	u, p := creds("dave", now, time.Minute)
	var relays []net.PacketConn
	for i := range 2 {
		r, err := allocate(t, client(t, s, u, p))
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, r)
	}
	if _, err := allocate(t, client(t, s, u, p)); err == nil {
		t.Fatal("a third allocation for dave")
	}
	if s.Stats().QuotaRefused.Load() != 1 {
		t.Fatalf("quota refusals %d", s.Stats().QuotaRefused.Load())
	}
	ue, pe := creds("erin", now, time.Minute)
	if _, err := allocate(t, client(t, s, ue, pe)); err != nil {
		t.Fatalf("another peer: %v", err)
	}
	relays[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := allocate(t, client(t, s, u, p))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a release: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Past its bandwidth an allocation drops packets (counted); within it,
// nothing is dropped.
func TestBandwidth(t *testing.T) {
	const bw = 100_000 // bytes per second, each way; a burst of as much
	s := start(t, turnserver.Config{Bandwidth: bw})
	u, p := creds("frank", time.Now(), time.Minute)
	relay, err := allocate(t, client(t, s, u, p))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := roundTrip(relay, peer(t).LocalAddr(), []byte("permission")); err != nil {
		t.Fatal(err)
	}
	// Within the burst: nothing dropped.
	msg := make([]byte, 1000)
	for range 50 {
		relay.WriteTo(msg, sink.LocalAddr())
	}
	if d := s.Stats().PacketsDropped.Load(); d != 0 {
		// The permission for the sink may not be there yet: pion sends
		// the first packets once it is. Dropped ones are the cap's only.
		t.Fatalf("%d packets dropped within the burst", d)
	}
	// Ten times the burst at once: what reaches the sink is at most the
	// burst and the rate over the time it took; the rest is dropped.
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(int64(n))
		}
	}()
	start := time.Now()
	for range 1000 {
		relay.WriteTo(msg, sink.LocalAddr())
	}
	// Whatever still comes arrives within this quiet second.
	time.Sleep(time.Second)
	elapsed := time.Since(start)
	sink.Close()
	<-done
	limit := int64(bw + bw*elapsed.Seconds() + 1000)
	if got.Load() > limit || s.Stats().PacketsDropped.Load() == 0 {
		t.Fatalf("%d bytes reached the sink in %v (cap %d), %d packets dropped", got.Load(), elapsed, limit, s.Stats().PacketsDropped.Load())
	}
	t.Logf("%d bytes passed in %v, %d packets dropped", got.Load(), elapsed, s.Stats().PacketsDropped.Load())
}

// Garbage sent to the server's port is dropped and counted, and the server
// goes on relaying for others.
func TestMalformedPackets(t *testing.T) {
	s := start(t, turnserver.Config{})
	addr := s.URLs()[0][len("turn:"):]
	addr = addr[:len(addr)-len("?transport=udp")]
	hostile, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hostile.Close()
	u, p := creds("grace", time.Now(), time.Minute)
	relay, err := allocate(t, client(t, s, u, p))
	if err != nil {
		t.Fatal(err)
	}
	echo := peer(t)
	garbage := [][]byte{{}, {0xff}, []byte("GET / HTTP/1.1\r\n\r\n"), {0x00, 0x01, 0x00, 0x00}, {0x40, 0x00, 0xff, 0xff, 1}, bytes.Repeat([]byte{0xAB}, 1400)}
	for round := range 20 {
		for _, g := range garbage {
			hostile.Write(g)
		}
		if err := roundTrip(relay, echo.LocalAddr(), []byte(fmt.Sprintf("still relaying %d", round))); err != nil {
			t.Fatal(err)
		}
	}
	// The empty datagram and the STUN-looking header may be taken by
	// pion's own checks; the other four of each round are counted here.
	sctest.WaitFor(t, 10*time.Second, func() error {
		if m := s.Stats().Malformed.Load(); m < 20*4 {
			return fmt.Errorf("%d malformed datagrams counted", m)
		}
		return nil
	})
}

func TestConfig(t *testing.T) {
	for _, c := range []turnserver.Config{
		{Secret: secret},                   // no listener
		{UDP: "127.0.0.1:0"},               // no secret
		{UDP: "0.0.0.0:0", Secret: secret}, // public IP unknown
		{UDP: "127.0.0.1:0", Secret: secret, MinPort: 50000, MaxPort: 40000},
		{UDP: "127.0.0.1:0", Secret: secret, Bandwidth: -1},
	} {
		if s, err := turnserver.Start(c); err == nil {
			s.Close()
			t.Errorf("%+v started", c)
		}
	}
	s := start(t, turnserver.Config{TCP: "127.0.0.1:0"})
	if urls := s.URLs(); len(urls) != 2 {
		t.Fatalf("URLs %v", urls)
	}
}

// An allocation relays until MaxLifetime has passed since it was made, and
// nothing after (counted as dropped).
func TestMaxLifetime(t *testing.T) {
	clk := newClock()
	s := start(t, turnserver.Config{Now: clk.now, MaxLifetime: time.Hour})
	u, p := creds("heidi", clk.now(), 2*time.Hour)
	relay, err := allocate(t, client(t, s, u, p))
	if err != nil {
		t.Fatal(err)
	}
	echo := peer(t)
	clk.advance(time.Hour - time.Second)
	if err := roundTrip(relay, echo.LocalAddr(), []byte("a second before the end")); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)
	before := s.Stats().PacketsDropped.Load()
	relay.WriteTo([]byte("at the end"), echo.LocalAddr())
	sctest.WaitFor(t, 10*time.Second, func() error {
		if s.Stats().PacketsDropped.Load() == before {
			return errors.New("the packet past the lifetime is not counted as dropped")
		}
		return nil
	})
	relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := relay.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatal("relayed past the allocation's lifetime")
	}
}
