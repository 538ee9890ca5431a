package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger is quiet unless SIGNALCHANNEL_TEST_LOG is set, then it logs
// at debug level to stderr.
func testLogger() *slog.Logger {
	if os.Getenv("SIGNALCHANNEL_TEST_LOG") == "" {
		return sctest.QuietLogger()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNATS starts n embedded NATS servers routed to each other and waits
// until each sees the others. They are shut down when the test ends.
func startNATS(t testing.TB, n int) []*Server {
	t.Helper()
	var servers []*Server
	var routes []string
	for i := 0; i < n; i++ {
		cfg := ServerConfig{Listen: "127.0.0.1:0", Name: fmt.Sprintf("nats-%d", i)}
		if n > 1 {
			cfg.ClusterListen = "127.0.0.1:0"
			cfg.Routes = routes
		}
		s, err := StartServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
		if n > 1 {
			routes = append(routes, s.ClusterURL())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.WaitRoutes(ctx, n-1); err != nil {
			t.Fatal(err)
		}
	}
	return servers
}

// testNode is one signalchannel server of a test cluster, with its NATS
// node and seams.
type testNode struct {
	node   *Node
	broker *Broker
	link   *ReplicaLink
	pairer *Pairer
	sb     *endpoints.Scuttlebutt
	srv    *sctest.Server
}

// clusterOptions shape newCluster.
type clusterOptions struct {
	node  Config // URL and Logger are filled in
	sb    endpoints.ScuttlebuttConfig
	relay PairerConfig
}

// newCluster starts one signalchannel server per URL, each with its own
// Node connected to that URL and the three endpoints wired to the node's
// Broker, ReplicaLink and Pairer. Everything stops when the test ends, the
// servers first.
func newCluster(t testing.TB, urls []string, o clusterOptions) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i, url := range urls {
		cfg := o.node
		cfg.URL = url
		cfg.Name = fmt.Sprintf("node-%d", i)
		cfg.Logger = testLogger()
		nodes = append(nodes, newTestNode(t, cfg, o))
	}
	waitPeers(t, nodes)
	return nodes
}

func newTestNode(t testing.TB, cfg Config, o clusterOptions) *testNode {
	t.Helper()
	n, err := Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{node: n}
	// Cleanups run last-registered first: the server (registered by
	// sctest.NewServer below) stops before the seams and the node.
	t.Cleanup(func() { n.Close() })
	tn.broker = NewBroker(n, BrokerConfig{})
	t.Cleanup(func() { tn.broker.Close() })
	tn.link = NewReplicaLink(n, ReplicaLinkConfig{})
	t.Cleanup(func() { tn.link.Close() })
	tn.pairer, err = NewPairer(n, o.relay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.pairer.Close)
	sbcfg := o.sb
	sbcfg.Link = tn.link
	sbcfg.Logger = sctest.QuietLogger()
	tn.sb, err = endpoints.NewScuttlebutt(sbcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.sb.Close() })
	rel, err := endpoints.NewRelay(endpoints.RelayConfig{Pairer: tn.pairer, PairTimeout: o.relay.PairTimeout, Logger: sctest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rel.Close)
	tn.srv = sctest.NewServer(t, sctest.Options{
		Echo: endpoints.EchoConfig{Broker: tn.broker},
		Register: func(h *server.Handler) {
			h.Handle(channel.EndpointScuttlebutt, tn.sb)
			h.Handle(channel.EndpointRelay, rel)
		},
	})
	return tn
}

// waitPeers waits until every node sees every other.
func waitPeers(t testing.TB, nodes []*testNode) {
	t.Helper()
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, a := range nodes {
			if got := len(a.node.Peers()); got != len(nodes)-1 {
				return fmt.Errorf("%s sees %d peers, want %d", a.node.Name(), got, len(nodes)-1)
			}
		}
		return nil
	})
}

func urlsOf(servers []*Server) []string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	return urls
}

func TestToken(t *testing.T) {
	for _, ns := range []string{"a", "room-1", "a.b", "*", ">", "a b", "é√∂ 🎉", strings.Repeat("x", 256), strings.Repeat("\U0010FFFF", 64), "\x7e/\\"} {
		tok := token(ns)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("token(%q) = %q: not one subject token", ns, tok)
		}
		if back, err := untoken(tok); err != nil || back != ns {
			t.Fatalf("untoken(token(%q)) = %q, %v", ns, back, err)
		}
	}
	if token("a") == token("b") || token("ab") == token("a") {
		t.Fatal("distinct namespaces share a token")
	}
	s := subjects{p: DefaultPrefix}
	if got, err := s.syncNamespace(s.sbSync("x.y")); err != nil || got != "x.y" {
		t.Fatalf("syncNamespace: %q, %v", got, err)
	}
	if s.rendezvous("g", "A", "B") != s.rendezvous("g", "B", "A") {
		t.Fatal("rendezvous depends on token order")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{URL: "nats://x"}, true},
		{Config{}, false},
		{Config{URL: "nats://x", Prefix: "a.*"}, false},
		{Config{URL: "nats://x", Prefix: "a..b"}, false},
		{Config{URL: "nats://x", HeartbeatInterval: time.Second, DeadAfter: time.Second}, false},
		{Config{URL: "nats://x", RequestTimeout: -1}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v", c.cfg, err)
		}
	}
}

// relayLimits keeps the relay import for helpers in other test files.
var _ = relay.Limits{}
