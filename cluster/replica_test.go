package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

// replica joins ns on the server at url with a client Model of its own.
func replica(t testing.TB, url, ns string, ephemeral bool) *client.Replica {
	t.Helper()
	m := model.New(model.Options{SilentExpiry: true})
	t.Cleanup(func() { m.Close() })
	r, err := sctest.Dial(t, url).Replicate(sctest.Ctx(t), ns, m, client.ReplicateOptions{Ephemeral: ephemeral})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.WaitSync(sctest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// keysOf returns a snapshot's keys and values as strings.
func keysOf(snap map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(snap))
	for k, v := range snap {
		out[k] = string(v)
	}
	return out
}

// waitConverged waits until every node's replica of ns and every client
// model holds exactly want.
func waitConverged(t testing.TB, nodes []*testNode, clients []*client.Replica, ns string, want map[string]string, within time.Duration) {
	t.Helper()
	sctest.WaitFor(t, within, func() error {
		for _, n := range nodes {
			snap, _ := n.sb.Snapshot(ns)
			if got := keysOf(snap); !maps.Equal(got, want) {
				return fmt.Errorf("%s holds %v, want %v", n.node.Name(), got, want)
			}
		}
		for i, c := range clients {
			if got := keysOf(c.Model().Snapshot()); !maps.Equal(got, want) {
				return fmt.Errorf("client %d holds %v, want %v", i, got, want)
			}
		}
		return nil
	})
}

// A presence namespace converges on every node: sets, overwrites and
// deletions made on any node reach every node and every client.
func TestReplicaConverges(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{})
	const ns = "presence"
	var clients []*client.Replica
	for _, n := range nodes {
		clients = append(clients, replica(t, n.srv.URL, ns, false))
	}
	want := map[string]string{}
	for i, c := range clients {
		k := fmt.Sprintf("peer-%d", i)
		if err := c.Model().Set(k, map[string]any{"node": i}); err != nil {
			t.Fatal(err)
		}
		want[k] = fmt.Sprintf(`{"node":%d}`, i)
	}
	waitConverged(t, nodes, clients, ns, want, 5*time.Second)

	// Overwrite on one node, delete on another.
	if err := clients[2].Model().Set("peer-0", "moved"); err != nil {
		t.Fatal(err)
	}
	if err := clients[0].Model().Delete("peer-1"); err != nil {
		t.Fatal(err)
	}
	want["peer-0"] = `"moved"`
	delete(want, "peer-1")
	waitConverged(t, nodes, clients, ns, want, 5*time.Second)

	// Many writes from every node at once.
	for i, c := range clients {
		for k := 0; k < 200; k++ {
			key := fmt.Sprintf("bulk-%d-%d", i, k)
			if err := c.Model().Set(key, k); err != nil {
				t.Fatal(err)
			}
			want[key] = fmt.Sprint(k)
		}
	}
	waitConverged(t, nodes, clients, ns, want, 10*time.Second)
}

// A node that opens a namespace after the others learns what they hold,
// deletions included, from the sync request.
func TestReplicaLateNodeSyncs(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{})
	const ns = "late"
	a := replica(t, nodes[0].srv.URL, ns, false)
	b := replica(t, nodes[1].srv.URL, ns, false)
	for _, kv := range [][2]string{{"x", "1"}, {"y", "2"}, {"z", "3"}} {
		if err := a.Model().Set(kv[0], json.RawMessage(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Model().Set("w", 4); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, nodes[:2], []*client.Replica{a, b}, ns, map[string]string{"x": "1", "y": "2", "z": "3", "w": "4"}, 5*time.Second)
	if err := b.Model().Delete("y"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"x": "1", "z": "3", "w": "4"}
	waitConverged(t, nodes[:2], []*client.Replica{a, b}, ns, want, 5*time.Second)
	if _, ok := nodes[2].sb.Snapshot(ns); ok {
		t.Fatal("node 2 has the namespace before any member joined it")
	}

	c := replica(t, nodes[2].srv.URL, ns, false)
	waitConverged(t, nodes, []*client.Replica{a, b, c}, ns, want, 5*time.Second)
	// The deletion of y reached node 2 as a record too.
	var deleted bool
	for _, u := range nodes[2].link.get(ns).m.History(nil) {
		deleted = deleted || (u.Key == "y" && u.Deleted())
	}
	if !deleted {
		t.Fatal("node 2 has no deletion record of y")
	}
}

// Records expire on every node by their own timestamp, and a deletion by
// expiry replicates like any update.
func TestReplicaExpiryConverges(t *testing.T) {
	sb := endpoints.ScuttlebuttConfig{MaxAge: 1500 * time.Millisecond, SweepInterval: 50 * time.Millisecond}
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{sb: sb})
	const ns = "expiring"
	var clients []*client.Replica
	for _, n := range nodes {
		clients = append(clients, replica(t, n.srv.URL, ns, false))
	}
	if err := clients[0].Model().Set("short", true); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, nodes, nil, ns, map[string]string{"short": "true"}, 5*time.Second)
	start := time.Now()
	// Keep one key alive from another node; the first one expires.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = clients[1].Model().Set("refreshed", 1)
			}
		}
	}()
	waitConverged(t, nodes, clients, ns, map[string]string{"refreshed": "1"}, 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("expiry took %v", d)
	}
}

// Ephemeral ids announced by a node are learned by the others, from the
// announcements and from sync answers, and forgotten when withdrawn.
func TestReplicaEphemeralAnnouncements(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 2)), clusterOptions{})
	const ns = "eph"
	replica(t, nodes[0].srv.URL, ns, false)
	replica(t, nodes[1].srv.URL, ns, false)
	waitLinked(t, nodes, ns)
	nodes[0].link.EphemeralOpen(ns, "client-a", "")
	nodes[0].link.EphemeralOpen(ns, "client-a", "")
	nodes[0].link.EphemeralOpen(ns, "client-b", "")
	waitRemoteEph(t, nodes[1], ns, nodes[0].node.ID(), "client-a", "client-b")
	nodes[0].link.EphemeralClose(ns, "client-a", "")
	nodes[0].link.EphemeralClose(ns, "client-b", "")
	waitRemoteEph(t, nodes[1], ns, nodes[0].node.ID(), "client-a")

	// A node that links the namespace later learns the ids from the sync.
	nodes = append(nodes, newTestNode(t, Config{URL: nodes[0].node.cfg.URL, Name: "late", Logger: testLogger()}, clusterOptions{}))
	waitPeers(t, nodes)
	replica(t, nodes[2].srv.URL, ns, false)
	waitRemoteEph(t, nodes[2], ns, nodes[0].node.ID(), "client-a")
}

func waitLinked(t testing.TB, nodes []*testNode, ns string) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		for _, n := range nodes {
			lk := n.link.get(ns)
			if lk == nil || lk.syncs.Load() == 0 {
				return fmt.Errorf("%s has not synced %q", n.node.Name(), ns)
			}
		}
		return nil
	})
}

// plainIDs returns the replica ids of ephemeral keys (ephKey), sorted.
func plainIDs(keys []string) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i], _ = splitEphKey(k)
	}
	slices.Sort(ids)
	return ids
}

// waitRemoteEph waits until n knows exactly ids as node's ephemeral ids.
func waitRemoteEph(t testing.TB, n *testNode, ns, node string, ids ...string) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		lk := n.link.get(ns)
		if lk == nil {
			return errors.New("not linked")
		}
		lk.mu.Lock()
		var got []string
		for k, nodes := range lk.remoteEph {
			if _, ok := nodes[node]; ok {
				id, _ := splitEphKey(k)
				got = append(got, id)
			}
		}
		lk.mu.Unlock()
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			return fmt.Errorf("%s knows %v, want %v", n.node.Name(), got, ids)
		}
		return nil
	})
}
