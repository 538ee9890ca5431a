// Package turnserver is the TURN server signalchannel embeds (pion/turn):
// it takes the credentials package ice issues (the use-auth-secret scheme
// coturn speaks), holds per-peer quotas, and counts what it does for
// Prometheus.
//
// Credentials are checked for their expiry when an allocation is made
// only: the refreshes, permissions and channel bindings of an allocation
// made in time go on with the same credentials, authenticated by their
// HMAC, so that a relayed call outlives the lifetime of the credentials it
// was made with (a new allocation needs fresh ones). MaxLifetime bounds an
// allocation's whole life instead.
package turnserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"

	"github.com/signalchannel/signalchannel/ice"
)

// Defaults of Config.
const (
	DefaultRealm                 = "signalchannel"
	DefaultMaxAllocationsPerPeer = 16
	DefaultMaxLifetime           = 24 * time.Hour
)

// Config configures a Server.
type Config struct {
	// UDP and TCP are the listen addresses (":3478"); at least one.
	UDP, TCP string
	// PublicIP is the address clients and peers reach this server at: the
	// relay addresses it hands out, and the URLs it announces. Default the
	// listen address's IP, when it is not unspecified.
	PublicIP net.IP
	// Realm is the TURN realm. Default DefaultRealm.
	Realm string
	// MinPort and MaxPort bound the relay ports. Default the whole
	// ephemeral range (49152-65535).
	MinPort, MaxPort uint16
	// Secret is the secret ice issues credentials under.
	Secret []byte
	// MaxAllocationsPerPeer bounds the allocations of one peer id at once;
	// one more is refused (486, Allocation Quota Reached). Default 16.
	MaxAllocationsPerPeer int
	// Bandwidth bounds the bytes per second of one allocation, each way:
	// packets past it are dropped (and counted). 0: no cap.
	Bandwidth int
	// MaxLifetime bounds the whole life of an allocation: past it the
	// allocation relays nothing more. Default 24h.
	MaxLifetime time.Duration
	// Now is the clock of the credentials' expiry and of MaxLifetime.
	// Default time.Now.
	Now func() time.Time
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Server is a running TURN server.
type Server struct {
	cfg    Config
	turn   *turn.Server
	udp    net.PacketConn
	tcp    net.Listener
	public net.IP
	log    *slog.Logger

	mu    sync.Mutex
	peers map[string]int // allocations by peer id

	stats Stats
}

// Stats are a Server's counters (all since its start, but Allocations).
type Stats struct {
	Allocations      atomic.Int64 // open now
	AllocationsTotal atomic.Int64
	BytesRelayed     atomic.Int64 // through relays, both ways
	PacketsDropped   atomic.Int64 // past the bandwidth cap
	Malformed        atomic.Int64 // datagrams that are neither STUN nor ChannelData
	AuthRefused      atomic.Int64 // requests with missing, expired, altered or foreign credentials
	QuotaRefused     atomic.Int64 // allocations past MaxAllocationsPerPeer
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.UDP == "" && cfg.TCP == "" {
		return nil, errors.New("turnserver: no listen address (UDP or TCP)")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("turnserver: no secret to check credentials with")
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.MaxAllocationsPerPeer <= 0 {
		cfg.MaxAllocationsPerPeer = DefaultMaxAllocationsPerPeer
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MinPort == 0 && cfg.MaxPort == 0 {
		cfg.MinPort, cfg.MaxPort = 49152, 65535
	}
	if cfg.MinPort == 0 || cfg.MaxPort < cfg.MinPort {
		return nil, fmt.Errorf("turnserver: relay ports %d-%d: want MIN-MAX, MIN at least 1", cfg.MinPort, cfg.MaxPort)
	}
	if cfg.Bandwidth < 0 {
		return nil, fmt.Errorf("turnserver: bandwidth %d: want 0 (no cap) or more", cfg.Bandwidth)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, peers: map[string]int{}, log: cfg.Logger.With("part", "turn")}
	var err error
	if cfg.UDP != "" {
		if s.udp, err = net.ListenPacket("udp", cfg.UDP); err != nil {
			return nil, fmt.Errorf("turnserver: %w", err)
		}
	}
	if cfg.TCP != "" {
		if s.tcp, err = net.Listen("tcp", cfg.TCP); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("turnserver: %w", err)
		}
	}
	s.public = cfg.PublicIP
	if s.public == nil {
		s.public = s.listenIP()
	}
	if s.public == nil || s.public.IsUnspecified() {
		s.closeListeners()
		return nil, errors.New("turnserver: the public IP is unknown: give it (-turn-public-ip), or listen on a specific address")
	}
	relays := &relays{s: s, gen: &turn.RelayAddressGeneratorPortRange{
		RelayAddress: s.public, Address: s.relayListenIP(), MinPort: cfg.MinPort, MaxPort: cfg.MaxPort,
	}}
	tc := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.auth,
		QuotaHandler:  s.quota,
		LoggerFactory: quietLogs{},
		EventHandler: turn.EventHandler{
			// Credentials this server would issue under that username, but
			// not these: altered or foreign.
			OnAuth: func(_, _ net.Addr, _, _, _, _ string, ok bool) {
				if !ok {
					s.stats.AuthRefused.Add(1)
				}
			},
			OnAllocationCreated: func(_, _ net.Addr, _, userID, _ string, _ net.Addr, _ int) { s.allocated(userID) },
			OnAllocationDeleted: func(_, _ net.Addr, _, userID, _ string) { s.released(userID) },
		},
	}
	if s.udp != nil {
		tc.PacketConnConfigs = []turn.PacketConnConfig{{PacketConn: &counting{PacketConn: s.udp, s: s}, RelayAddressGenerator: relays}}
	}
	if s.tcp != nil {
		tc.ListenerConfigs = []turn.ListenerConfig{{Listener: s.tcp, RelayAddressGenerator: relays}}
	}
	if s.turn, err = turn.NewServer(tc); err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	return s, nil
}

func (s *Server) listenIP() net.IP {
	for _, a := range []net.Addr{s.udpAddr(), s.tcpAddr()} {
		switch a := a.(type) {
		case *net.UDPAddr:
			return a.IP
		case *net.TCPAddr:
			return a.IP
		}
	}
	return nil
}

// relayListenIP is the address relay sockets bind: the listen address's
// IP, or all addresses.
func (s *Server) relayListenIP() string {
	if ip := s.listenIP(); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	return "0.0.0.0"
}

func (s *Server) udpAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

func (s *Server) tcpAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// URLs returns the TURN URLs clients reach this server at.
func (s *Server) URLs() []string {
	var out []string
	if a, ok := s.udpAddr().(*net.UDPAddr); ok {
		out = append(out, "turn:"+net.JoinHostPort(s.public.String(), strconv.Itoa(a.Port))+"?transport=udp")
	}
	if a, ok := s.tcpAddr().(*net.TCPAddr); ok {
		out = append(out, "turn:"+net.JoinHostPort(s.public.String(), strconv.Itoa(a.Port))+"?transport=tcp")
	}
	return out
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Close stops the server and its allocations.
func (s *Server) Close() error {
	err := s.turn.Close()
	s.closeListeners()
	return err
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// auth checks a request's credentials: an allocation needs unexpired
// ones; the other requests of an allocation, authentic ones.
func (s *Server) auth(ra *turn.RequestAttributes) (string, []byte, bool) {
	exp, id, err := ice.ParseUsername(ra.Username)
	if err == nil && ra.Method == stun.MethodAllocate && !s.cfg.Now().Before(exp) {
		err = fmt.Errorf("credentials expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if err != nil {
		s.stats.AuthRefused.Add(1)
		s.log.Debug("TURN credentials refused", "remote", ra.SrcAddr, "method", ra.Method.String(), "err", err)
		return "", nil, false
	}
	// The key of the credential this server would have issued: altered or
	// foreign credentials fail the message's integrity check with it.
	return id, turn.GenerateAuthKey(ra.Username, ra.Realm, ice.Credential(s.cfg.Secret, ra.Username)), true
}

// quota admits an allocation while the peer id has fewer than the
// maximum.
func (s *Server) quota(id, _ string, _ net.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers[id] >= s.cfg.MaxAllocationsPerPeer {
		s.stats.QuotaRefused.Add(1)
		s.log.Info("TURN allocation refused: quota", "peer", id, "allocations", s.peers[id])
		return false
	}
	// Counted once made (allocated), so that an allocation that fails
	// after this check takes no place for good: requests of one peer that
	// race past the check at once may hold a few more for as long.
	return true
}

func (s *Server) allocated(id string) {
	s.stats.Allocations.Add(1)
	s.stats.AllocationsTotal.Add(1)
	s.mu.Lock()
	s.peers[id]++
	s.mu.Unlock()
}

func (s *Server) released(id string) {
	s.stats.Allocations.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers[id]--; s.peers[id] <= 0 {
		delete(s.peers, id)
	}
}

// counting counts the datagrams of the listener that are neither STUN nor
// ChannelData: pion drops them, and this says how many.
type counting struct {
	net.PacketConn
	s *Server
}

func (c *counting) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || stun.IsMessage(b[:n]) || isChannelData(b[:n]) {
			return n, addr, err
		}
		c.s.stats.Malformed.Add(1)
	}
}

// isChannelData reports whether b is a TURN ChannelData message: a channel
// number in 0x4000-0x7FFF and a length that fits.
func isChannelData(b []byte) bool {
	if len(b) < 4 || b[0] < 0x40 || b[0] > 0x7F {
		return false
	}
	return int(b[2])<<8|int(b[3]) <= len(b)-4
}

// relays makes the relay sockets of allocations: those of pion's port
// range, capped in bandwidth and life, and counted.
type relays struct {
	s   *Server
	gen *turn.RelayAddressGeneratorPortRange
}

func (r *relays) Validate() error { return r.gen.Validate() }

func (r *relays) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	conn, addr, err := r.gen.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return r.s.wrapRelay(conn), addr, nil
}

func (r *relays) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return r.gen.AllocateListener(c)
}

func (r *relays) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	return r.gen.AllocateConn(c)
}

// relay is an allocation's relay socket.
type relay struct {
	net.PacketConn
	s        *Server
	in, out  *rate.Limiter // nil: no cap
	deadline time.Time
}

func (s *Server) wrapRelay(conn net.PacketConn) net.PacketConn {
	r := &relay{PacketConn: conn, s: s, deadline: s.cfg.Now().Add(s.cfg.MaxLifetime)}
	if bw := s.cfg.Bandwidth; bw > 0 {
		// A burst of one second, and at least one full datagram.
		r.in = rate.NewLimiter(rate.Limit(bw), max(bw, 65536))
		r.out = rate.NewLimiter(rate.Limit(bw), max(bw, 65536))
	}
	return r
}

// ReadFrom reads what peers send to the allocation, for the client.
func (r *relay) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := r.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if r.pass(r.in, n) {
			return n, addr, nil
		}
	}
}

// WriteTo sends what the client sends, to a peer.
func (r *relay) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !r.pass(r.out, len(b)) {
		return len(b), nil // dropped, as the network may
	}
	return r.PacketConn.WriteTo(b, addr)
}

// pass reports whether a datagram of n bytes may go: within the
// allocation's life and its bandwidth. It counts what goes and what not.
func (r *relay) pass(l *rate.Limiter, n int) bool {
	if !r.s.cfg.Now().Before(r.deadline) || (l != nil && !l.AllowN(time.Now(), n)) {
		r.s.stats.PacketsDropped.Add(1)
		return false
	}
	r.s.stats.BytesRelayed.Add(int64(n))
	return true
}

// quietLogs keeps pion's own logs out of the server's.
type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, nil)
}
