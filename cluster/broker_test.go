package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// echoMember is a client member of an echo namespace whose frames are read
// by a goroutine of its own: pings are tallied by writer, data frames kept
// in arrival order.
type echoMember struct {
	name string
	e    *client.Echo

	mu    sync.Mutex
	pings map[string]bool
	data  []string
	err   error
	done  chan struct{}
}

// joinEcho joins ns on the server at url as member name and starts reading.
// Every read is bounded by a deadline; the reader ends at EOF, on error, or
// when the test ends.
func joinEcho(t testing.TB, url, ns, name string) *echoMember {
	t.Helper()
	e, err := sctest.Dial(t, url).Echo(sctest.Ctx(t), ns)
	if err != nil {
		t.Fatal(err)
	}
	m := &echoMember{name: name, e: e, pings: make(map[string]bool), done: make(chan struct{})}
	go m.read()
	t.Cleanup(func() {
		e.Stream().Reset()
		<-m.done
	})
	return m
}

func (m *echoMember) read() {
	defer close(m.done)
	for {
		m.e.Stream().SetReadDeadline(time.Now().Add(30 * time.Second))
		f, err := m.e.Recv()
		m.mu.Lock()
		if err != nil {
			m.err = err
			m.mu.Unlock()
			return
		}
		if w, ok := strings.CutPrefix(string(f), "ping "); ok {
			m.pings[w] = true
		} else {
			m.data = append(m.data, string(f))
		}
		m.mu.Unlock()
	}
}

func (m *echoMember) snapshot() (pings int, data []string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pings), append([]string(nil), m.data...), m.err
}

// warmUp has every member ping until every member has heard every other:
// then each node's subscription has reached every other node's server, and
// frames from now on must reach everyone.
func warmUp(t testing.TB, members []*echoMember) {
	t.Helper()
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, m := range members {
			if err := m.e.Send([]byte("ping " + m.name)); err != nil {
				return err
			}
		}
		time.Sleep(20 * time.Millisecond)
		for _, m := range members {
			if n, _, err := m.snapshot(); n != len(members) || err != nil {
				return fmt.Errorf("%s heard %d of %d members (%v)", m.name, n, len(members), err)
			}
		}
		return nil
	})
}

// checkEcho checks that every member received every writer's frames exactly
// once and in the writer's order, that members of one node saw one order,
// and returns once all frames have arrived.
func checkEcho(t testing.TB, members []*echoMember, writers []string, perWriter int, nodeOf func(*echoMember) int) {
	t.Helper()
	want := len(writers) * perWriter
	sctest.WaitFor(t, 30*time.Second, func() error {
		for _, m := range members {
			if _, data, err := m.snapshot(); len(data) < want {
				return fmt.Errorf("%s has %d of %d frames (%v)", m.name, len(data), want, err)
			}
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // let a duplicate show up
	orders := map[int][]string{}
	for _, m := range members {
		_, data, _ := m.snapshot()
		if len(data) != want {
			t.Fatalf("%s got %d frames, want %d: a duplicate", m.name, len(data), want)
		}
		next := map[string]int{}
		for _, f := range data {
			w, seq, ok := strings.Cut(f, " ")
			n, err := strconv.Atoi(seq)
			if !ok || err != nil {
				t.Fatalf("%s: bad frame %q", m.name, f)
			}
			if n != next[w] {
				t.Fatalf("%s: frame %d of %s arrived when %d was due", m.name, n, w, next[w])
			}
			next[w]++
		}
		for _, w := range writers {
			if next[w] != perWriter {
				t.Fatalf("%s: %d frames of %s, want %d", m.name, next[w], w, perWriter)
			}
		}
		node := nodeOf(m)
		if o, ok := orders[node]; ok {
			if strings.Join(o, ",") != strings.Join(data, ",") {
				t.Fatalf("members of node %d saw different orders", node)
			}
		} else {
			orders[node] = data
		}
	}
}

// Frames from every node reach every member on every node exactly once,
// each writer's in its order, and members of one node see one order.
func TestBrokerEchoAcrossNodes(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 3)), clusterOptions{})
	const perNode, perWriter = 3, 300
	var members []*echoMember
	where := map[*echoMember]int{}
	for i, n := range nodes {
		for j := 0; j < perNode; j++ {
			m := joinEcho(t, n.srv.URL, "room/ünïcode.*>", fmt.Sprintf("n%dm%d", i, j))
			members = append(members, m)
			where[m] = i
		}
	}
	for _, n := range nodes {
		if st := n.broker.Stats(); st != (endpoints.BrokerStats{Namespaces: 1, Members: perNode}) {
			t.Fatalf("stats %+v", st)
		}
	}
	warmUp(t, members)

	var wg sync.WaitGroup
	var writers []string
	for _, m := range members {
		writers = append(writers, m.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perWriter; k++ {
				if err := m.e.Send([]byte(fmt.Sprintf("%s %d", m.name, k))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkEcho(t, members, writers, perWriter, func(m *echoMember) int { return where[m] })
}

// Frames travel whole, from empty to the largest, and the node leaves a
// namespace's subject with its last member.
func TestBrokerFramesAndUnsubscribe(t *testing.T) {
	nodes := newCluster(t, urlsOf(startNATS(t, 2)), clusterOptions{})
	a := joinEcho(t, nodes[0].srv.URL, "big", "a")
	b := joinEcho(t, nodes[1].srv.URL, "big", "b")
	warmUp(t, []*echoMember{a, b})
	frames := [][]byte{{}, []byte("x"), bytes.Repeat([]byte{0, 1, 2, 255}, 4096), make([]byte, 65536)}
	for _, f := range frames {
		if err := a.e.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if _, data, _ := b.snapshot(); len(data) < len(frames) {
			return fmt.Errorf("%d frames", len(data))
		}
		return nil
	})
	_, got, _ := b.snapshot()
	for i, f := range frames {
		if got[i] != string(f) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(got[i]), len(f))
		}
	}

	b.e.Stream().Reset()
	sctest.WaitFor(t, 5*time.Second, func() error {
		nodes[1].broker.mu.Lock()
		defer nodes[1].broker.mu.Unlock()
		if len(nodes[1].broker.subs) != 0 {
			return errors.New("node 1 still subscribed")
		}
		return nil
	})
}

// Caps count this node's members only.
func TestBrokerLimits(t *testing.T) {
	servers := startNATS(t, 1)
	n, err := Connect(Config{URL: servers[0].ClientURL(), Logger: sctest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	b := NewBroker(n, BrokerConfig{MaxNamespaces: 1, MaxMembers: 2})
	defer b.Close()
	var subs []func()
	for i := 0; i < 2; i++ {
		u, err := b.Subscribe("a", &nopSub{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, u)
	}
	if _, err := b.Subscribe("a", &nopSub{}); !errors.Is(err, endpoints.ErrLimit) {
		t.Fatalf("third member: %v", err)
	}
	if _, err := b.Subscribe("b", &nopSub{}); !errors.Is(err, endpoints.ErrLimit) {
		t.Fatalf("second namespace: %v", err)
	}
	if _, err := b.Subscribe("", &nopSub{}); !errors.Is(err, ErrEmptyNamespace) {
		t.Fatalf("empty namespace: %v", err)
	}
	for _, u := range subs {
		u()
		u()
	}
	if st := b.Stats(); st != (endpoints.BrokerStats{}) {
		t.Fatalf("stats after leaving: %+v", st)
	}
	b.Close()
	if _, err := b.Subscribe("a", &nopSub{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

type nopSub struct{ _ byte }

func (*nopSub) Deliver([]byte) {}
