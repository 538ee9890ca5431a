package signalchannel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/cluster"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves srv on 127.0.0.1 and returns its channel URL; the listener
// closes when the test ends, after the test's own Shutdown.
func start(t *testing.T, srv *signalchannel.Server) string {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/v1/channel"
}

// clusterOf starts an embedded NATS server and n servers joined over it,
// each on its own node; the servers shut down, then their nodes close, then
// NATS, when the test ends.
func clusterOf(t *testing.T, n int) []*signalchannel.Server {
	t.Helper()
	nats, err := cluster.StartServer(cluster.ServerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nats.Shutdown)
	var out []*signalchannel.Server
	for i := range n {
		node, err := cluster.Connect(cluster.Config{URL: nats.ClientURL(), Name: fmt.Sprintf("node-%d", i), Logger: sctest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := signalchannel.New(signalchannel.Config{Cluster: node, Logger: sctest.QuietLogger()})
		if err != nil {
			node.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Error(err)
			}
			node.Close()
		})
		out = append(out, srv)
	}
	return out
}

// Shutdown ends every session with 1001 before it stops the endpoints: a
// relay stream still waiting for its partner learns of the shutdown from
// its session's close code, not from its stream ending first; and the
// three endpoints are all served until then.
func TestShutdownClosesSessionsFirst(t *testing.T) {
	srv, err := signalchannel.New(signalchannel.Config{Logger: sctest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	url := start(t, srv)
	sess := sctest.Dial(t, url)
	echo, err := sess.Echo(sctest.Ctx(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(model.Options{ID: "alice"})
	defer m.Close()
	rep, err := sess.Replicate(sctest.Ctx(t), "presence", m, client.ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	waiting := make(chan error, 1)
	go func() {
		_, err := sess.Relay(context.Background(), "calls", "alice", "bob")
		waiting <- err
	}()
	sctest.WaitFor(t, 10*time.Second, func() error {
		if st := srv.Relay().Stats(); st.Waiting != 1 {
			return errors.New("the relay stream is not waiting yet")
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-waiting
	if code, _ := sess.CloseReason(); code != channel.CloseGoingAway || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("waiting relay stream: %v, session close %d; want the session's end and 1001", err, code)
	}
	if _, err := echo.Recv(); err == nil {
		t.Fatal("echo member still open after Shutdown")
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// With Config.Cluster, two servers on one NATS share echo namespaces; the
// seams the server built go with its Shutdown, before the node closes.
func TestClusterJoinsServers(t *testing.T) {
	var urls []string
	for _, srv := range clusterOf(t, 2) {
		urls = append(urls, start(t, srv))
	}
	a, err := sctest.Dial(t, urls[0]).Echo(sctest.Ctx(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sctest.Dial(t, urls[1]).Echo(sctest.Ctx(t), "room")
	if err != nil {
		t.Fatal(err)
	}
	// Until b's membership has reached a's server, a frame may miss it:
	// send until one arrives.
	got := make(chan string, 1)
	go func() {
		f, err := b.Recv()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(f)
	}()
	deadline := time.After(10 * time.Second)
	for tick := time.NewTicker(50 * time.Millisecond); ; {
		if err := a.Send([]byte("across")); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-got:
			if f != "across" {
				t.Fatalf("b got %q", f)
			}
			tick.Stop()
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no frame crossed the cluster")
		}
	}
}

// A cluster builds the seams itself: a Config that also sets one is refused
// before anything starts.
func TestClusterRefusesOwnSeams(t *testing.T) {
	_, err := signalchannel.New(signalchannel.Config{
		Cluster: (*cluster.Node)(nil),
		Echo:    endpoints.EchoConfig{Broker: endpoints.NewMemoryBroker(0, 0)},
	})
	if err == nil || !strings.Contains(err.Error(), "leave Echo.Broker") {
		t.Fatalf("got %v", err)
	}
}
