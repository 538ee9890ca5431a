package peer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/cluster"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
	"github.com/signalchannel/signalchannel/peer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// members is what a member has been told of the others, by its callbacks.
type members struct {
	mu     sync.Mutex
	events []string
	reqs   chan *peer.Request
}

func (ms *members) log(kind string) func(peer.Member) {
	return func(m peer.Member) {
		ms.mu.Lock()
		ms.events = append(ms.events, fmt.Sprintf("%s %s %s", kind, m.ID, m.Meta))
		ms.mu.Unlock()
	}
}

func (ms *members) has(ev string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, e := range ms.events {
		if e == ev {
			return nil
		}
	}
	return fmt.Errorf("no event %q in %q", ev, ms.events)
}

// join dials url and joins room, with callbacks that record what it hears
// and queue its requests.
func join(t testing.TB, url, room string, meta any, o peer.RoomOptions) (*peer.Room, *members) {
	t.Helper()
	s := sctest.Dial(t, url)
	return joinOn(t, s, room, meta, o)
}

func joinOn(t testing.TB, s *client.Session, room string, meta any, o peer.RoomOptions) (*peer.Room, *members) {
	t.Helper()
	ms := &members{reqs: make(chan *peer.Request, 16)}
	o.Meta = meta
	o.OnJoin, o.OnUpdate, o.OnLeave = ms.log("join"), ms.log("update"), ms.log("leave")
	if o.OnRequest == nil {
		o.OnRequest = func(q *peer.Request) { ms.reqs <- q }
	}
	r, err := peer.Join(sctest.Ctx(t), s, room, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Leave() })
	return r, ms
}

// Members see each other join, change their metadata and leave; a member
// whose session ends is gone at once.
func TestRoomMembers(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	a, am := join(t, ts.URL, "lobby", map[string]string{"name": "A"}, peer.RoomOptions{})
	bs := sctest.Dial(t, ts.URL)
	b, _ := joinOn(t, bs, "lobby", nil, peer.RoomOptions{})
	c, cm := join(t, ts.URL, "lobby", nil, peer.RoomOptions{})
	sctest.WaitFor(t, 10*time.Second, func() error {
		if err := am.has("join " + b.ID() + " "); err != nil {
			return err
		}
		return cm.has("join " + a.ID() + ` {"name":"A"}`)
	})
	if got := c.Members(); len(got) != 2 {
		t.Fatalf("c sees %v", got)
	}
	// A member that joins now knows those here when Join returns: a, b
	// and c, once the server has c's record (a sees it).
	sctest.WaitFor(t, 10*time.Second, func() error { return am.has("join " + c.ID() + " ") })
	d, _ := join(t, ts.URL, "lobby", nil, peer.RoomOptions{})
	if got := d.Members(); len(got) != 3 {
		t.Fatalf("d sees %v as Join returns", got)
	}
	d.Leave()
	// Those who saw d come see it go (a member that comes and goes at
	// once may be seen by no one: gossip sends the latest of a key).
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, r := range []*peer.Room{a, c} {
			for _, m := range r.Members() {
				if m.ID == d.ID() {
					return fmt.Errorf("%s still sees d", r.ID())
				}
			}
		}
		return nil
	})
	if err := a.SetMeta(map[string]string{"name": "A2"}); err != nil {
		t.Fatal(err)
	}
	sctest.WaitFor(t, 10*time.Second, func() error { return cm.has("update " + a.ID() + ` {"name":"A2"}`) })
	// b's session ends without leaving: its ephemeral record goes with it.
	gone := time.Now()
	bs.Close()
	sctest.WaitFor(t, 10*time.Second, func() error {
		if err := am.has("leave " + b.ID() + " "); err != nil {
			return err
		}
		return cm.has("leave " + b.ID() + " ")
	})
	t.Logf("b's leaving seen %v after its session closed", time.Since(gone))
	// A member that leaves is seen leaving too.
	if err := c.Leave(); err != nil {
		t.Fatal(err)
	}
	sctest.WaitFor(t, 10*time.Second, func() error { return am.has("leave " + c.ID() + " ") })
	if got := a.Members(); len(got) != 0 {
		t.Fatalf("a still sees %v", got)
	}
}

// A call accepted carries messages both ways; the request shows the
// caller's id, member meta and request meta; each side knows the other.
func TestCallAccept(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	a, _ := join(t, ts.URL, "r", map[string]string{"name": "A"}, peer.RoomOptions{})
	b, bm := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	waitMember(t, b, a.ID())
	got := make(chan *peer.Call, 1)
	go func() {
		q := <-bm.reqs
		if q.From().ID != a.ID() || string(q.From().Meta) != `{"name":"A"}` || string(q.Meta()) != `{"topic":"x"}` || q.Caller().ID != a.ID() {
			t.Errorf("request from %+v meta %s caller %+v", q.From(), q.Meta(), q.Caller())
		}
		c, err := q.Accept()
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	ac, err := a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{Meta: map[string]string{"topic": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	bc := <-got
	if bc == nil {
		t.FailNow()
	}
	if ac.ID() != bc.ID() || ac.Peer().ID != b.ID() || bc.Peer().ID != a.ID() || ac.Polite() == bc.Polite() {
		t.Fatalf("call %s/%s peers %q %q polite %v %v", ac.ID(), bc.ID(), ac.Peer().ID, bc.Peer().ID, ac.Polite(), bc.Polite())
	}
	exchange(t, ac, bc)
	exchange(t, bc, ac)
	if err := ac.Close("done"); err != nil {
		t.Fatal(err)
	}
	var bye *peer.ByeError
	if _, err := bc.Recv(); !errors.As(err, &bye) || bye.Reason != "done" {
		t.Fatalf("after bye: %v", err)
	}
	bc.Close("done too")
}

func exchange(t *testing.T, from, to *peer.Call) {
	t.Helper()
	want := fmt.Sprintf(`{"type":"note","from":%q}`, from.Peer().ID)
	if err := from.Send(json.RawMessage(want)); err != nil {
		t.Fatal(err)
	}
	msg, err := to.Recv()
	if err != nil || msg.Type != "note" || string(msg.Raw) != want {
		t.Fatalf("got %s %q, %v; want %s", msg.Type, msg.Raw, err, want)
	}
}

func waitMember(t testing.TB, r *peer.Room, id string) {
	t.Helper()
	sctest.WaitFor(t, 10*time.Second, func() error {
		for _, m := range r.Members() {
			if m.ID == id {
				return nil
			}
		}
		return fmt.Errorf("%s does not see %s", r.ID(), id)
	})
}

// A rejection reaches the caller with its reason, not as a timeout; a
// callee that never answers makes the call time out; a callee at its
// limit of undecided requests answers busy.
func TestCallRejectTimeoutBusy(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	a, _ := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	b, bm := join(t, ts.URL, "r", nil, peer.RoomOptions{MaxPending: 1})
	c, _ := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	waitMember(t, a, b.ID())
	waitMember(t, c, b.ID())

	go func() { (<-bm.reqs).Reject("not now") }()
	start := time.Now()
	_, err := a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{Timeout: time.Minute})
	var rej *peer.RejectedError
	if !errors.As(err, &rej) || rej.Reason != "not now" {
		t.Fatalf("call: %v, want rejected: not now", err)
	}
	t.Logf("rejection seen %v after the call", time.Since(start))

	// b holds a's next request undecided: a times out, and c, past b's
	// limit of one, is told busy meanwhile.
	held := make(chan *peer.Request, 1)
	go func() { held <- <-bm.reqs }()
	timedOut := make(chan error, 1)
	go func() {
		_, err := a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{Timeout: 3 * time.Second})
		timedOut <- err
	}()
	q := <-held
	_, err = c.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{Timeout: time.Minute})
	if !errors.As(err, &rej) || rej.Reason != peer.ReasonBusy {
		t.Fatalf("call past the limit: %v, want rejected: busy", err)
	}
	if err := <-timedOut; !errors.Is(err, peer.ErrTimeout) {
		t.Fatalf("unanswered call: %v, want timeout", err)
	}
	// The caller gave up: the request is gone, and its place free.
	sctest.WaitFor(t, 10*time.Second, func() error {
		if _, err := q.Accept(); !errors.Is(err, peer.ErrAnswered) {
			return fmt.Errorf("accept after the caller gave up: %v", err)
		}
		return nil
	})
	go func() {
		if c, err := (<-bm.reqs).Accept(); err == nil {
			c.Close("bye")
		}
	}()
	if call, err := c.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{Timeout: time.Minute}); err != nil {
		t.Fatalf("a call after the place freed: %v", err)
	} else {
		call.Close("bye")
	}
}

// Both members call each other at once: each round ends with one call,
// the same on both sides.
func TestCallGlare(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	// Members that take every call: however the two calls cross, the
	// pair ends with one.
	accept := func(q *peer.Request) { q.Accept() }
	a, _ := join(t, ts.URL, "r", nil, peer.RoomOptions{OnRequest: accept})
	b, _ := join(t, ts.URL, "r", nil, peer.RoomOptions{OnRequest: accept})
	waitMember(t, a, b.ID())
	waitMember(t, b, a.ID())
	for round := range 10 {
		var ac, bc *peer.Call
		var aerr, berr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); ac, aerr = a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{}) }()
		go func() { defer wg.Done(); bc, berr = b.Call(sctest.Ctx(t), a.ID(), peer.CallOptions{}) }()
		wg.Wait()
		if aerr != nil || berr != nil {
			t.Fatalf("round %d: %v, %v", round, aerr, berr)
		}
		if ac.ID() != bc.ID() {
			t.Fatalf("round %d: two calls, %s and %s", round, ac.ID(), bc.ID())
		}
		exchange(t, ac, bc)
		ac.Close("round over")
		bc.Close("round over")
	}
}

// Six members, each calling each: fifteen calls, each once.
func TestRoomMesh(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	const n = 6
	rooms := make([]*peer.Room, n)
	var accepted atomic.Int64
	var mu sync.Mutex
	byPair := map[string]string{}
	note := func(c *peer.Call, self string) {
		lo, hi := self, c.Peer().ID
		if hi < lo {
			lo, hi = hi, lo
		}
		mu.Lock()
		defer mu.Unlock()
		k := lo + " " + hi
		if id, ok := byPair[k]; ok && id != c.ID() {
			t.Errorf("two calls between %s: %s and %s", k, id, c.ID())
		}
		byPair[k] = c.ID()
	}
	for i := range n {
		var self string
		rooms[i], _ = join(t, ts.URL, "mesh", nil, peer.RoomOptions{OnRequest: func(q *peer.Request) {
			c, err := q.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			accepted.Add(1)
			note(c, self)
		}})
		self = rooms[i].ID()
	}
	for _, r := range rooms {
		sctest.WaitFor(t, 10*time.Second, func() error {
			if got := len(r.Members()); got != n-1 {
				return fmt.Errorf("%s sees %d members", r.ID(), got)
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	for i := range n {
		for j := i + 1; j < n; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := rooms[i].Call(sctest.Ctx(t), rooms[j].ID(), peer.CallOptions{})
				if err != nil {
					t.Errorf("%d calls %d: %v", i, j, err)
					return
				}
				note(c, rooms[i].ID())
			}()
		}
	}
	wg.Wait()
	if accepted.Load() != n*(n-1)/2 || len(byPair) != n*(n-1)/2 {
		t.Fatalf("%d accepted, %d pairs; want %d", accepted.Load(), len(byPair), n*(n-1)/2)
	}
}

// A member that leaves ends its calls, and the others see it leave.
func TestLeaveEndsCalls(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	a, _ := join(t, ts.URL, "r", nil, peer.RoomOptions{})
	b, bm := join(t, ts.URL, "r", nil, peer.RoomOptions{OnRequest: func(q *peer.Request) { q.Accept() }})
	waitMember(t, a, b.ID())
	c, err := a.Call(sctest.Ctx(t), b.ID(), peer.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = bm
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	var bye *peer.ByeError
	if _, err := c.Recv(); !errors.As(err, &bye) && err != io.EOF {
		t.Fatalf("a's call after b left: %v", err)
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if len(a.Members()) != 0 {
			return fmt.Errorf("a sees %v", a.Members())
		}
		return nil
	})
}

// With ownership, a member cannot ring another in someone else's name: the
// server refuses the forged call key, and the callee hears nothing of it.
func TestForgedCallRefused(t *testing.T) {
	dial := ownedRooms(t)
	var requests atomic.Int64
	bob, _ := joinOn(t, dial("bob"), "r", nil, peer.RoomOptions{OnRequest: func(q *peer.Request) {
		requests.Add(1)
		q.Reject("no")
	}})
	_ = bob
	// mallory writes alice's call key by hand.
	m := model.New(model.Options{})
	defer m.Close()
	rep, err := dial("mallory").Replicate(sctest.Ctx(t), "room/r", m, client.ReplicateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if err := rep.WaitSync(sctest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	m.Set("alice/call/bob/forged-call-1", json.RawMessage(`{}`))
	select {
	case <-rep.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the forged key was not refused")
	}
	if err := rep.Err(); !errors.Is(err, &channel.Error{Code: channel.CodeForbidden}) {
		t.Fatalf("replica ended with %v, want forbidden", err)
	}
	// A real call from alice is the first request bob sees.
	alice, _ := joinOn(t, dial("alice"), "r", nil, peer.RoomOptions{})
	waitMember(t, alice, "bob")
	_, err = alice.Call(sctest.Ctx(t), "bob", peer.CallOptions{})
	var rej *peer.RejectedError
	if !errors.As(err, &rej) || requests.Load() != 1 {
		t.Fatalf("alice's call: %v; bob saw %d requests, want 1", err, requests.Load())
	}
}

// Members on two servers of a cluster see each other and call each other.
func TestRoomAcrossCluster(t *testing.T) {
	nats, err := cluster.StartServer(cluster.ServerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nats.Shutdown)
	var urls []string
	for i := range 2 {
		node, err := cluster.Connect(cluster.Config{URL: nats.ClientURL(), Name: fmt.Sprintf("node-%d", i), Logger: sctest.QuietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := signalchannel.New(signalchannel.Config{Cluster: node, Logger: sctest.QuietLogger()})
		if err != nil {
			node.Close()
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			hs.Close()
			node.Close()
		})
		urls = append(urls, "ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/channel")
	}
	a, _ := join(t, urls[0], "r", map[string]string{"name": "A"}, peer.RoomOptions{})
	b, bm := join(t, urls[1], "r", nil, peer.RoomOptions{})
	waitMember(t, a, b.ID())
	waitMember(t, b, a.ID())
	ac, bc := acceptedCall(t, a, b, bm)
	if ac.Peer().ID != b.ID() || bc.Peer().ID != a.ID() {
		t.Fatalf("peers %q and %q", ac.Peer().ID, bc.Peer().ID)
	}
	exchange(t, ac, bc)
	exchange(t, bc, ac)
	// A connection over the call: the data channel on loopback.
	ca, cb := connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: loopback(false), DirectTimeout: time.Minute}
	})
	if ca.Path() != peer.PathDirect || cb.Path() != peer.PathDirect {
		t.Fatalf("paths %q and %q, want direct", ca.Path(), cb.Path())
	}
	transfer(t, ca, cb, 1<<20)
	ca.Close()
	cb.Close()
	// A second call whose ICE cannot form: the data takes the relay pair,
	// its two ends on two servers.
	ac, bc = acceptedCall(t, a, b, bm)
	ca, cb = connectPair(t, ac, bc, func() peer.ConnOptions {
		return peer.ConnOptions{SettingEngine: loopback(true), DirectTimeout: time.Second}
	})
	if ca.Path() != peer.PathRelay || cb.Path() != peer.PathRelay {
		t.Fatalf("paths %q and %q, want relay", ca.Path(), cb.Path())
	}
	transfer(t, ca, cb, 1<<20)
	// b leaves: a, on the other server, sees it go, and its connection ends.
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ca.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a's connection outlived b's leaving")
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if len(a.Members()) != 0 {
			return fmt.Errorf("a still sees %v", a.Members())
		}
		return nil
	})
}

// The glare rule holds when the crossing call is seen only after the
// other's request was paired: a hand-driven caller x pairs with b, waits
// until b calls x too, and only then sends its request. The greater id
// takes x's call as the answer to its own; the smaller keeps its own and
// leaves x's call unanswered. Either way b never asks its application.
func TestCallGlareLate(t *testing.T) {
	dial := ownedRooms(t)
	for _, x := range []string{"a", "c"} { // b is greater than a, smaller than c
		t.Run("x="+x, func(t *testing.T) {
			room := "late-" + x
			var asked atomic.Int64
			b, _ := joinOn(t, dial("b"), room, nil, peer.RoomOptions{OnRequest: func(q *peer.Request) {
				asked.Add(1)
				q.Reject("asked")
			}})
			xs := dial(x)
			m := model.New(model.Options{})
			defer m.Close()
			rep, err := xs.Replicate(sctest.Ctx(t), "room/"+room, m, client.ReplicateOptions{Ephemeral: true})
			if err != nil {
				t.Fatal(err)
			}
			defer rep.Close()
			m.Set(x, json.RawMessage(`{"meta":null}`))
			m.Set(x+"/call/b/late-call-1", json.RawMessage(`{}`))
			xconn, err := xs.Relay(sctest.Ctx(t), "room/"+room, x+"/sig/b/late-call-1", "b/sig/"+x+"/late-call-1")
			if err != nil {
				t.Fatal(err)
			}
			defer xconn.Reset()
			// b calls x; x sees b's call key, then sends its own request.
			type result struct {
				c   *peer.Call
				err error
			}
			got := make(chan result, 1)
			go func() {
				c, err := b.Call(sctest.Ctx(t), x, peer.CallOptions{})
				got <- result{c, err}
			}()
			var bKey string
			sctest.WaitFor(t, 10*time.Second, func() error {
				for _, k := range m.Keys() {
					if strings.HasPrefix(k, "b/call/"+x+"/") {
						bKey = k
						return nil
					}
				}
				return errors.New("b's call key not seen")
			})
			if _, err := xconn.Write([]byte(`{"type":"request","meta":null}` + "\n")); err != nil {
				t.Fatal(err)
			}
			bCallID := bKey[strings.LastIndexByte(bKey, '/')+1:]
			var want string
			if x < "b" {
				// b drops its call and accepts x's.
				line := readLine(t, xconn)
				if line != `{"type":"accept"}` {
					t.Fatalf("x's request answered %s", line)
				}
				want = "late-call-1"
			} else {
				// b keeps its call: x answers it, and its own stays unanswered.
				bconn, err := xs.Relay(sctest.Ctx(t), "room/"+room, x+"/sig/b/"+bCallID, "b/sig/"+x+"/"+bCallID)
				if err != nil {
					t.Fatal(err)
				}
				defer bconn.Reset()
				if line := readLine(t, bconn); !strings.Contains(line, `"request"`) {
					t.Fatalf("b's call began with %s", line)
				}
				bconn.Write([]byte(`{"type":"accept"}` + "\n"))
				want = bCallID
			}
			r := <-got
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.c.ID() != want || asked.Load() != 0 {
				t.Fatalf("b's call is %s, want %s; b's application was asked %d times", r.c.ID(), want, asked.Load())
			}
			r.c.Close("done")
		})
	}
}

// readLine reads one newline-terminated line, byte by byte so that
// nothing after it is consumed.
func readLine(t *testing.T, r io.Reader) string {
	t.Helper()
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := r.Read(one); err != nil {
			t.Fatalf("read after %q: %v", b, err)
		}
		if one[0] == '\n' {
			return string(b)
		}
		b = append(b, one[0])
	}
}

// ownedRooms starts a server that checks tokens, and returns a dialer of
// sessions with the peer id sub, owning their keys in rooms.
func ownedRooms(t *testing.T) func(sub string) *client.Session {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: sctest.TestSecret})
	if err != nil {
		t.Fatal(err)
	}
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Verifier: v}})
	return func(sub string) *client.Session {
		tok, err := auth.Mint(sctest.TestSecret, auth.Grant{Subject: sub, Allow: []string{"scuttlebutt:room/*", "relay:room/*"}, Own: []string{"scuttlebutt:room/*"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		s, err := client.Dial(sctest.Ctx(t), ts.URL, client.DialOptions{Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// A message of MaxMessageBytes with its newline crosses a call both ways;
// one byte more is refused by Send.
func TestCallMessageLimit(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	ac, bc := callPair(t, ts.URL)
	msg := func(size int) map[string]string {
		// {"type":"big","x":"..."} and the newline: 22 bytes around x.
		return map[string]string{"type": "big", "x": strings.Repeat("x", size-22)}
	}
	for _, c := range []struct{ from, to *peer.Call }{{ac, bc}, {bc, ac}} {
		if err := c.from.Send(msg(peer.MaxMessageBytes)); err != nil {
			t.Fatal(err)
		}
		got, err := c.to.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		if err := got.Decode(&m); err != nil || len(m["x"]) != peer.MaxMessageBytes-22 {
			t.Fatalf("received %d bytes of x, %v", len(m["x"]), err)
		}
		if err := c.from.Send(msg(peer.MaxMessageBytes + 1)); err == nil {
			t.Fatal("a message past the limit was sent")
		}
	}
}

// A room whose session ends frees itself without Leave: once the session
// and the server are gone, no goroutine of the room or its model stays.
func TestRoomEndsWithSession(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var r *peer.Room
	t.Run("session", func(t *testing.T) {
		ts := sctest.NewServer(t, sctest.Options{})
		s, err := client.Dial(sctest.Ctx(t), ts.URL, client.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err = peer.Join(sctest.Ctx(t), s, "r", peer.RoomOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		select {
		case <-r.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the room outlived its session")
		}
	}) // the server shuts down here
	sctest.WaitFor(t, 10*time.Second, func() error { return goleak.Find(before) })
	r.Leave() // harmless after the end
}
