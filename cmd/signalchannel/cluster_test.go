package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
)

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// Three servers, each with an embedded NATS node routed to the others, as
// the README's cluster commands start them: an echo namespace and a relay
// pair span the nodes.
func TestClusterFlags(t *testing.T) {
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[3+i]))
	}
	var urls []string
	for i := range 3 {
		addr, _, _ := startServer(t,
			"-node-name", fmt.Sprint("n", i),
			"-nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]),
			"-nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[3+i]),
			"-nats-routes", strings.Join(routes, ","))
		urls = append(urls, "ws://"+addr+"/v1/channel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(url string) *client.Session {
		s, err := client.Dial(ctx, url, client.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, c := dial(urls[0]), dial(urls[2])
	ea, err := a.Echo(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	ec, err := c.Echo(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	// Routes form in the background: send until the frame crosses.
	got := make(chan string, 1)
	go func() {
		for {
			f, err := ec.Recv()
			if err != nil {
				return
			}
			if string(f) == "from a" {
				got <- string(f)
				return
			}
		}
	}()
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		ea.Send([]byte("from a"))
		select {
		case <-got:
			done = true
		case <-deadline:
			t.Fatal("no frame crossed from node 0 to node 2")
		case <-time.After(100 * time.Millisecond):
		}
	}

	// A relay pair across nodes 0 and 2.
	type res struct {
		r   *client.RelayConn
		err error
	}
	ch := make(chan res, 1)
	go func() { r, err := a.Relay(ctx, "calls", "A", "C"); ch <- res{r, err} }()
	rc, err := c.Relay(ctx, "calls", "C", "A")
	if err != nil {
		t.Fatal(err)
	}
	ra := <-ch
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	ra.r.Write([]byte("across the cluster"))
	buf := make([]byte, 64)
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := rc.Read(buf); err != nil || string(buf[:n]) != "across the cluster" {
		t.Fatalf("relay read %q %v", buf[:n], err)
	}
}

func TestClusterFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "-nats", "nats://127.0.0.1:1", "-nats-listen", "127.0.0.1:0"},
		{"serve", "-nats-routes", "nats://127.0.0.1:1"},
		{"serve", "-nats-listen", "127.0.0.1:0", "-echo-max-frame", "2000000", "-echo-queue-bytes", "4000000"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := run(ctx, append(args, "-addr", "127.0.0.1:0"), nil, nil, nil)
		cancel()
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
