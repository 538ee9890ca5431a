package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// ephemeralReplica joins ns as an ephemeral member and waits until the
// node's link has learnt its replica id from the scuttlebutt endpoint
// (ReplicaLink.EphemeralOpen).
func ephemeralReplica(t testing.TB, n *testNode, ns string) *client.Replica {
	t.Helper()
	r := replica(t, n.srv.URL, ns, true)
	id := r.Model().ID()
	sctest.WaitFor(t, 5*time.Second, func() error {
		lk := n.link.get(ns)
		lk.mu.Lock()
		defer lk.mu.Unlock()
		if lk.localEph[ephKey(id, "")] == 0 {
			return fmt.Errorf("the endpoint has not announced ephemeral id %q", id)
		}
		return nil
	})
	return r
}

// snapshotKeys returns the sorted keys of n's replica of ns.
func snapshotKeys(n *testNode, ns string) []string {
	snap, _ := n.sb.Snapshot(ns)
	return slices.Sorted(maps.Keys(snap))
}

// Killing a node (no goodbye, its NATS server gone with it): members on the
// others lose no frame, their relay pairs go on, the dead node's relay
// pairs are reset and its ephemeral keys deleted on every survivor within
// DeadAfter + HeartbeatInterval/4 (3.25 s with the defaults), while its
// members' other keys stay until they expire.
func TestNodeLoss(t *testing.T) {
	servers := startNATS(t, 3)
	nodes := newCluster(t, urlsOf(servers), clusterOptions{})
	const ns = "presence"
	hb := nodes[0].node.cfg.HeartbeatInterval
	bound := nodes[0].node.cfg.DeadAfter + hb/4

	// Presence: an ephemeral and a lasting member on every node.
	for i, n := range nodes {
		e := ephemeralReplica(t, n, ns)
		if err := e.Model().Set(fmt.Sprintf("eph-%d", i), i); err != nil {
			t.Fatal(err)
		}
		l := replica(t, n.srv.URL, ns, false)
		if err := l.Model().Set(fmt.Sprintf("kept-%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	all := []string{"eph-0", "eph-1", "eph-2", "kept-0", "kept-1", "kept-2"}
	sctest.WaitFor(t, 5*time.Second, func() error {
		for _, n := range nodes {
			if got := snapshotKeys(n, ns); !slices.Equal(got, all) {
				return fmt.Errorf("%s: %v", n.node.Name(), got)
			}
		}
		return nil
	})
	waitRemoteEph(t, nodes[0], ns, nodes[2].node.ID(), plainIDs(nodes[2].link.get(ns).localEphIDs())...)

	// Echo: two members on each node.
	var members, survivors []*echoMember
	where := map[*echoMember]int{}
	for i, n := range nodes {
		for j := 0; j < 2; j++ {
			m := joinEcho(t, n.srv.URL, "room", fmt.Sprintf("n%dm%d", i, j))
			members = append(members, m)
			where[m] = i
			if i < 2 {
				survivors = append(survivors, m)
			}
		}
	}
	warmUp(t, members)

	// Relay: a pair between the survivors, one with the node to die.
	ch := relayGo(t, nodes[0].srv.URL, "calls", "A", "B")
	waitWaiting(t, nodes[0], 1)
	keepB := mustPair(t, relayGo(t, nodes[1].srv.URL, "calls", "B", "A"))
	keepA := mustPair(t, ch)
	ch = relayGo(t, nodes[0].srv.URL, "calls", "C", "D")
	waitWaiting(t, nodes[0], 1)
	mustPair(t, relayGo(t, nodes[2].srv.URL, "calls", "D", "C"))
	lostC := mustPair(t, ch)

	// Survivors' writers keep writing while node 2 dies.
	const perWriter = 400
	var wg sync.WaitGroup
	var writers []string
	for _, m := range survivors {
		writers = append(writers, m.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perWriter; k++ {
				if err := m.e.Send([]byte(fmt.Sprintf("%s %d", m.name, k))); err != nil {
					t.Error(err)
					return
				}
				if k%50 == 0 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	// A client of node 2 that knows the other servers: when node 2 goes it
	// moves to one of them and rejoins its namespace there.
	roamer, err := client.Reconnect(sctest.Ctx(t), client.ReconnectOptions{
		URLs:       []string{nodes[2].srv.URL, nodes[0].srv.URL},
		MinBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { roamer.Close() })
	lobby, err := roamer.Echo(sctest.Ctx(t), "lobby")
	if err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	nodes[2].node.kill()
	servers[2].Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	nodes[2].srv.Shutdown(sctx) // its sessions end with 1001
	cancel()
	wg.Wait()

	// Ephemeral keys of node 2's members are gone on both survivors in time.
	want := []string{"eph-0", "eph-1", "kept-0", "kept-1", "kept-2"}
	sctest.WaitFor(t, bound+2*time.Second, func() error {
		for _, n := range nodes[:2] {
			if got := snapshotKeys(n, ns); !slices.Equal(got, want) {
				return fmt.Errorf("%s: %v", n.node.Name(), got)
			}
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("ephemeral keys of the dead node deleted %v after it died (bound %v)", took.Round(time.Millisecond), bound)
	if took > bound+500*time.Millisecond {
		t.Fatalf("deletion took %v, bound %v", took, bound)
	}
	if took < nodes[0].node.cfg.DeadAfter-hb {
		t.Fatalf("deleted after %v, before the node could be declared gone", took)
	}

	// Members on the survivors lost nothing.
	checkEcho(t, survivors, writers, perWriter, func(m *echoMember) int { return where[m] })

	// The pair with the dead node is reset; the survivors' pair goes on.
	expectReset(t, lostC)
	write(t, keepA, "still here")
	expectRead(t, keepB, "still here")
	for _, n := range nodes[:2] {
		if got := n.node.Peers(); len(got) != 1 {
			t.Fatalf("%s sees peers %v", n.node.Name(), got)
		}
	}

	// The roamer is back, on node 0, and hears a member of node 1.
	caller := joinEcho(t, nodes[1].srv.URL, "lobby", "caller")
	heard := make(chan []byte, 1)
	go func() {
		if f, err := lobby.Recv(); err == nil {
			heard <- f
		}
	}()
	sctest.WaitFor(t, 15*time.Second, func() error {
		caller.e.Send([]byte("found you"))
		select {
		case f := <-heard:
			if string(f) != "found you" {
				t.Fatalf("roamer heard %q", f)
			}
			return nil
		default:
			return fmt.Errorf("the roamer has not rejoined yet")
		}
	})
}

// A node that stops cleanly says goodbye: the others act at once, without
// waiting for DeadAfter.
func TestNodeGoodbye(t *testing.T) {
	url := startNATS(t, 1)[0].ClientURL()
	nodes := newCluster(t, []string{url, url}, clusterOptions{})
	const ns = "presence"
	r := ephemeralReplica(t, nodes[1], ns)
	if err := r.Model().Set("bye", 1); err != nil {
		t.Fatal(err)
	}
	replica(t, nodes[0].srv.URL, ns, false)
	waitRemoteEph(t, nodes[0], ns, nodes[1].node.ID(), r.Model().ID())
	sctest.WaitFor(t, 5*time.Second, func() error {
		if got := snapshotKeys(nodes[0], ns); !slices.Equal(got, []string{"bye"}) {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	start := time.Now()
	// The node's link goes first, as when a server stops after its
	// sessions: its ephemeral streams are still open.
	nodes[1].pairer.Close()
	nodes[1].link.Close()
	nodes[1].node.Close()
	sctest.WaitFor(t, 5*time.Second, func() error {
		if got := snapshotKeys(nodes[0], ns); len(got) != 0 {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("goodbye took %v", d)
	}
}

// The NATS server restarts: every node reconnects, declares no one gone,
// and echo, presence and relay work across nodes again; what a node
// published while disconnected reaches the others.
func TestNATSRestart(t *testing.T) {
	servers := startNATS(t, 1)
	url := servers[0].ClientURL()
	nodes := newCluster(t, []string{url, url, url}, clusterOptions{})
	const ns = "presence"
	var clients []*echoMember
	for i, n := range nodes {
		e := ephemeralReplica(t, n, ns)
		if err := e.Model().Set(fmt.Sprintf("eph-%d", i), i); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, joinEcho(t, n.srv.URL, "room", fmt.Sprintf("n%d", i)))
	}
	before := []string{"eph-0", "eph-1", "eph-2"}
	sctest.WaitFor(t, 5*time.Second, func() error {
		for _, n := range nodes {
			if got := snapshotKeys(n, ns); !slices.Equal(got, before) {
				return fmt.Errorf("%s: %v", n.node.Name(), got)
			}
		}
		return nil
	})
	warmUp(t, clients)

	servers[0].Shutdown()
	sctest.WaitFor(t, 5*time.Second, func() error {
		for _, n := range nodes {
			if n.node.Connected() {
				return fmt.Errorf("%s still connected", n.node.Name())
			}
		}
		return nil
	})
	// Written during the outage, on node 0 only.
	lone := replica(t, nodes[0].srv.URL, ns, false)
	if err := lone.Model().Set("during-outage", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	s, err := StartServer(ServerConfig{Listen: url[len("nats://"):]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if !n.node.Connected() || len(n.node.Peers()) != 2 {
				return fmt.Errorf("%s: connected %v, peers %v", n.node.Name(), n.node.Connected(), n.node.Peers())
			}
		}
		return nil
	})

	after := []string{"during-outage", "eph-0", "eph-1", "eph-2"}
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if got := snapshotKeys(n, ns); !slices.Equal(got, after) {
				return fmt.Errorf("%s: %v", n.node.Name(), got)
			}
		}
		return nil
	})
	// Nobody was taken for gone: the ephemeral keys stay, a while later too.
	time.Sleep(nodes[0].node.cfg.DeadAfter + time.Second)
	for _, n := range nodes {
		if got := snapshotKeys(n, ns); !slices.Equal(got, after) {
			t.Fatalf("%s after the restart: %v", n.node.Name(), got)
		}
	}

	// Echo across nodes again: after a warm-up, exactly once and in order.
	for _, c := range clients {
		c.mu.Lock()
		clear(c.pings)
		c.data = nil
		c.mu.Unlock()
	}
	warmUp(t, clients)
	var writers []string
	for _, c := range clients {
		writers = append(writers, c.name)
		for k := 0; k < 100; k++ {
			if err := c.e.Send([]byte(fmt.Sprintf("%s %d", c.name, k))); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkEcho(t, clients, writers, 100, func(m *echoMember) int { return int(m.name[1] - '0') })

	// Relay across nodes again.
	ch := relayGo(t, nodes[1].srv.URL, "calls", "A", "B")
	waitWaiting(t, nodes[1], 1)
	b := mustPair(t, relayGo(t, nodes[2].srv.URL, "calls", "B", "A"))
	a := mustPair(t, ch)
	write(t, a, "after restart")
	expectRead(t, b, "after restart")
}

// The embedded server refuses impossible configurations, and a cluster
// forms from a shared route list that includes each server's own address.
func TestStartServer(t *testing.T) {
	if _, err := StartServer(ServerConfig{Listen: "nonsense"}); err == nil {
		t.Fatal("bad listen address accepted")
	}
	if _, err := StartServer(ServerConfig{Listen: "127.0.0.1:0", Routes: []string{"nats://127.0.0.1:1"}}); err == nil {
		t.Fatal("routes without a cluster address accepted")
	}
	// Reserve three cluster ports, then give every server the same list. A
	// reserved port is free again once reserved, so another process may
	// take it before its server starts: then try again with new ones.
	var servers []*Server
	for attempt := 1; servers == nil; attempt++ {
		var addrs []string
		for i := 0; i < 3; i++ {
			s, err := StartServer(ServerConfig{Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, s.ClusterURL())
			s.Shutdown()
		}
		for i := 0; i < 3; i++ {
			s, err := StartServer(ServerConfig{Listen: "127.0.0.1:0", ClusterListen: addrs[i][len("nats://"):], Routes: addrs})
			if err != nil {
				for _, s := range servers {
					s.Shutdown()
				}
				servers = nil
				if attempt == 3 {
					t.Fatal(err)
				}
				t.Logf("attempt %d: %v", attempt, err)
				break
			}
			servers = append(servers, s)
		}
	}
	for _, s := range servers {
		t.Cleanup(s.Shutdown)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.WaitRoutes(ctx, 2); err != nil {
			t.Fatal(err)
		}
	}
	s := servers[1]
	s.Shutdown()
	s.Shutdown()
}
