// Command peer is a Go peer of a signalchannel room: it joins the room,
// accepts every call, connects over it (a WebRTC data channel, or the
// relay when no ICE path forms), greets the caller and echoes back every
// line it receives, and counts the media packets of the tracks it is sent.
// Browsers on the demo page (-demo) and other Go peers are peers alike.
//
//	go run ./examples/peer                       # an in-process server and two Go peers, one calling the other
//	go run ./examples/peer -url ws://127.0.0.1:8080/v1/channel -room lobby
//	go run ./examples/peer -url ... -room lobby -call <peer id>
//
// It prints what happens as JSON lines, one event a line.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/examples/internal/localserver"
	"github.com/signalchannel/signalchannel/peer"
)

func main() {
	url := flag.String("url", "", "server channel URL (default: start a server on 127.0.0.1 and run two peers)")
	room := flag.String("room", "lobby", "the room to join")
	token := flag.String("token", "", "credentials, for a server that requires them")
	name := flag.String("name", "go", "the name in this peer's member meta")
	call := flag.String("call", "", "call this peer id once it is in the room")
	relay := flag.Bool("relay", false, "carry the data over the relay, without WebRTC")
	direct := flag.Duration("direct-timeout", peer.DefaultDirectTimeout, "how long to wait for the data channel before taking the relay")
	stun := flag.String("stun", "", "a STUN server URL (stun:host:port) for ICE")
	verbose := flag.Bool("v", false, "log the connections' signalling and paths to stderr")
	onlyTURN := flag.Bool("turn-only", false, "use TURN candidates only (ICE transport policy relay), with the server's ICE servers")
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := peer.ConnOptions{ForceRelay: *relay, DirectTimeout: *direct}
	if *onlyTURN {
		opts.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if *stun != "" {
		opts.ICEServers = []webrtc.ICEServer{{URLs: []string{*stun}}}
	}
	var err error
	if *url == "" {
		err = demo(ctx, os.Stdout, opts)
	} else {
		err = run(ctx, &events{w: os.Stdout}, *url, *token, *room, *name, *call, opts)
	}
	if err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// events writes one JSON object a line.
type events struct {
	mu sync.Mutex
	w  io.Writer
}

func (e *events) emit(fields ...any) {
	m := map[string]any{}
	for i := 0; i+1 < len(fields); i += 2 {
		m[fields[i].(string)] = fields[i+1]
	}
	b, _ := json.Marshal(m)
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.w, "%s\n", b)
}

// demo starts a server and two peers: bob waits, alice calls him, says
// hello over the connection and reads bob's greeting and echo.
func demo(ctx context.Context, w io.Writer, opts peer.ConnOptions) error {
	url, stopServer, err := localserver.Start(endpoints.ScuttlebuttConfig{})
	if err != nil {
		return err
	}
	defer stopServer()
	ev := &events{w: w}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	bobID := make(chan string, 1)
	bobDone := make(chan error, 1)
	defer func() {
		cancel()
		<-bobDone
	}()
	go func() {
		bobDone <- run(ctx, ev, url, "", "demo", "bob", "", opts, func(id string) { bobID <- id })
	}()
	var id string
	select {
	case id = <-bobID:
	case err := <-bobDone:
		bobDone <- err
		return err
	}
	sess, err := client.Dial(ctx, url, client.DialOptions{})
	if err != nil {
		return err
	}
	defer sess.Close()
	r, err := peer.Join(ctx, sess, "demo", peer.RoomOptions{Meta: map[string]string{"name": "alice"}})
	if err != nil {
		return err
	}
	defer r.Leave()
	ev.emit("event", "joined", "who", "alice", "id", r.ID())
	c, err := r.Call(ctx, id, peer.CallOptions{Meta: "hello"})
	if err != nil {
		return err
	}
	conn, err := peer.Connect(ctx, c, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	ev.emit("event", "connected", "who", "alice", "peer", id, "path", conn.Path())
	if _, err := fmt.Fprintf(conn, "hello from alice\n"); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	for range 2 { // bob's greeting, then the echo of alice's line
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		ev.emit("event", "data", "who", "alice", "from", id, "text", line[:len(line)-1], "path", conn.Path())
	}
	return nil
}

// run joins the room and serves its calls until ctx ends; it calls `call`
// once that peer is a member. joined, if given, is told this peer's id.
func run(ctx context.Context, ev *events, url, token, room, name, call string, opts peer.ConnOptions, joined ...func(string)) error {
	sess, err := client.Dial(ctx, url, client.DialOptions{Token: token})
	if err != nil {
		return err
	}
	defer sess.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(c *peer.Call) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			connect(ctx, ev, name, c, opts)
		}()
	}
	found := make(chan struct{})
	var once sync.Once
	seen := func(m peer.Member) {
		ev.emit("event", "member", "who", name, "id", m.ID, "meta", m.Meta)
		if m.ID == call {
			once.Do(func() { close(found) })
		}
	}
	r, err := peer.Join(ctx, sess, room, peer.RoomOptions{
		Meta:    map[string]string{"name": name},
		OnJoin:  seen,
		OnLeave: func(m peer.Member) { ev.emit("event", "left", "who", name, "id", m.ID) },
		OnRequest: func(q *peer.Request) {
			ev.emit("event", "request", "who", name, "from", q.From().ID, "meta", q.Meta())
			c, err := q.Accept()
			if err != nil {
				ev.emit("event", "error", "who", name, "error", err.Error())
				return
			}
			serve(c)
		},
	})
	if err != nil {
		return err
	}
	defer r.Leave()
	for _, m := range r.Members() {
		seen(m)
	}
	ev.emit("event", "joined", "who", name, "id", r.ID(), "room", room)
	for _, f := range joined {
		f(r.ID())
	}
	if call != "" {
		select {
		case <-found:
		case <-ctx.Done():
			return ctx.Err()
		}
		c, err := r.Call(ctx, call, peer.CallOptions{})
		if err != nil {
			return err
		}
		serve(c)
	}
	select {
	case <-ctx.Done():
	case <-r.Done():
	}
	return nil
}

// connect connects over c, greets the other side, echoes its lines and
// counts the packets of the tracks it sends, until either side ends.
func connect(ctx context.Context, ev *events, name string, c *peer.Call, opts peer.ConnOptions) {
	other := c.Peer().ID
	opts.OnPath = func(p peer.Path) { ev.emit("event", "path", "who", name, "peer", other, "path", p) }
	conn, err := peer.Connect(ctx, c, opts)
	if err != nil {
		ev.emit("event", "error", "who", name, "peer", other, "error", err.Error())
		c.Close("no connection")
		return
	}
	defer conn.Close()
	if pc := conn.PeerConnection(); pc != nil {
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			n := 0
			for {
				if _, _, err := t.ReadRTP(); err != nil {
					return
				}
				if n++; n == 50 {
					ev.emit("event", "track", "who", name, "peer", other, "kind", t.Kind().String(), "packets", n)
				}
			}
		})
	}
	ev.emit("event", "connected", "who", name, "peer", other, "path", conn.Path())
	if _, err := fmt.Fprintf(conn, "hello from %s\n", name); err != nil {
		return
	}
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			ev.emit("event", "closed", "who", name, "peer", other)
			return
		}
		ev.emit("event", "data", "who", name, "from", other, "text", line[:len(line)-1], "path", conn.Path())
		if _, err := io.WriteString(conn, line); err != nil {
			return
		}
	}
}
