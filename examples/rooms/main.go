// Command rooms runs rooms with an owner, built on the server's Go hooks
// and the peer layer: the first peer to claim a room owns it; others ask
// the owner to let them in, over a call in a public lobby, and wait; the
// owner accepts or rejects each request (the requester learns the owner's
// reason); only the peers the owner admitted can open the room's streams,
// which the server enforces in its stream hook, whatever a client writes in
// its headers; when the owner leaves, the room passes to the peer it named,
// or closes.
//
//	go run ./examples/rooms
//
// The owner's decisions live in the scuttlebutt namespace acl/<room>,
// where the server lets each peer write only its own keys (ownership):
// <owner>/admit/<peer> admits a peer, <owner>/heir names the next owner.
// The hook reads them from the server's replica when a stream opens.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/model"
	"github.com/signalchannel/signalchannel/peer"
)

func main() {
	log.SetFlags(0)
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// backEnd is the server's side of rooms: who owns each room, and the
// hooks that enforce it.
type backEnd struct {
	out  io.Writer
	sc   *signalchannel.Server
	mu   sync.Mutex
	room map[string]*roomState // by room name
}

type roomState struct {
	owner  string
	closed bool
}

func (b *backEnd) say(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(b.out, format+"\n", args...)
}

// roomOf returns the room a namespace belongs to: acl/R, room/R (the peer
// layer's scuttlebutt and relay namespaces) and the echo namespace R of a
// room that exists. isACL tells the first.
func (b *backEnd) roomOf(endpoint, ns string) (name string, isACL bool) {
	if r, ok := strings.CutPrefix(ns, "acl/"); ok && endpoint == channel.EndpointScuttlebutt {
		return r, true
	}
	if r, ok := strings.CutPrefix(ns, "room/"); ok && r != "lobby" {
		return r, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.room[ns]; ok && endpoint == channel.EndpointEcho {
		return ns, false
	}
	return "", false
}

// stream is the stream hook: the owner (the first to open acl/R) writes
// the room's list; the room's namespaces are for the owner and the peers
// it admitted.
func (b *backEnd) stream(_ context.Context, s server.StreamInfo) *channel.Error {
	name, isACL := b.roomOf(s.Endpoint, s.Namespace)
	if name == "" {
		return nil // the lobby, and everything else
	}
	b.mu.Lock()
	r := b.room[name]
	if r == nil && isACL {
		r = &roomState{owner: s.PeerID}
		b.room[name] = r
		b.mu.Unlock()
		b.say("%s owns room %s", short(s.PeerID), name)
		return nil
	}
	if r == nil {
		b.mu.Unlock()
		return channel.Errorf(channel.CodeForbidden, "room %q does not exist", name)
	}
	owner, closed := r.owner, r.closed
	b.mu.Unlock()
	switch {
	case closed:
		return channel.Errorf(channel.CodeForbidden, "room %q is closed", name)
	case s.PeerID == owner:
		return nil
	case isACL:
		return channel.Errorf(channel.CodeForbidden, "only the owner of room %q writes its list", name)
	}
	acl, _ := b.sc.Scuttlebutt().Snapshot("acl/" + name)
	if _, ok := acl[owner+"/admit/"+s.PeerID]; ok {
		return nil
	}
	return channel.Errorf(channel.CodeForbidden, "room %q admits only the peers its owner accepted", name)
}

// event passes a room whose owner's session ended to its heir, or closes
// it and disconnects its members.
func (b *backEnd) event(e server.Event) {
	if e.Type != server.EventSessionClosed {
		return
	}
	b.mu.Lock()
	var owned []string
	for name, r := range b.room {
		if r.owner == e.PeerID && !r.closed {
			owned = append(owned, name)
		}
	}
	b.mu.Unlock()
	for _, name := range owned {
		acl, _ := b.sc.Scuttlebutt().Snapshot("acl/" + name)
		var heir string
		json.Unmarshal(acl[e.PeerID+"/heir"], &heir)
		b.mu.Lock()
		if heir != "" {
			b.room[name].owner = heir
		} else {
			b.room[name].closed = true
		}
		b.mu.Unlock()
		if heir != "" {
			b.say("room %s passes to %s", name, short(heir))
			continue
		}
		b.say("room %s closes", name)
		for k := range acl {
			if p, ok := strings.CutPrefix(k, e.PeerID+"/admit/"); ok {
				b.sc.Handler().Disconnect(p, channel.CloseForbidden, "the room closed")
			}
		}
	}
}

func short(id string) string { return id[:min(len(id), 8)] }

// run starts the server and plays the story: alice owns "book-club"; bob
// asks and is let in; mallory is turned away, and cannot enter by writing
// headers herself; alice names bob her heir and leaves; bob owns the room.
func run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b := &backEnd{out: out, room: map[string]*roomState{}}
	cfg := server.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Ownership = server.OwnershipOn // each peer writes only its own keys...
	cfg.Owned = []string{"scuttlebutt:acl/*"}
	cfg.Hooks = server.Hooks{Stream: b.stream, Event: b.event}
	sc, err := signalchannel.New(signalchannel.Config{Channel: cfg, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	b.sc = sc
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: sc}
	go hs.Serve(ln)
	defer func() {
		sc.Shutdown(context.Background())
		hs.Close()
	}()
	url := "ws://" + ln.Addr().String() + "/v1/channel"
	const room = "book-club"

	dial := func() (*client.Session, error) { return client.Dial(ctx, url, client.DialOptions{}) }
	// alice claims the room (its list), and answers requests in the lobby.
	alice, err := dial()
	if err != nil {
		return err
	}
	acl := model.New(model.Options{})
	defer acl.Close()
	aclRep, err := alice.Replicate(ctx, "acl/"+room, acl, client.ReplicateOptions{})
	if err != nil {
		return err
	}
	if err := aclRep.WaitSync(ctx); err != nil {
		return err
	}
	aliceLobby, err := peer.Join(ctx, alice, "lobby", peer.RoomOptions{Meta: map[string]string{"name": "alice"}, OnRequest: func(q *peer.Request) {
		var who struct{ Name string }
		json.Unmarshal(q.Meta(), &who)
		if who.Name == "mallory" {
			b.say("alice turns %s away", who.Name)
			q.Reject("not on the guest list")
			return
		}
		acl.Set(alice.ID()+"/admit/"+q.From().ID, true)
		b.say("alice lets %s in", who.Name)
		if c, err := q.Accept(); err == nil {
			c.Close("welcome")
		}
	}})
	if err != nil {
		return err
	}
	aliceRoom, err := peer.Join(ctx, alice, room, peer.RoomOptions{Meta: map[string]string{"name": "alice"}})
	if err != nil {
		return err
	}

	// ask has a guest call alice in the lobby, asking to enter.
	ask := func(name string) (*client.Session, error) {
		s, err := dial()
		if err != nil {
			return nil, err
		}
		lobby, err := peer.Join(ctx, s, "lobby", peer.RoomOptions{Meta: map[string]string{"name": name}})
		if err != nil {
			return nil, err
		}
		defer lobby.Leave()
		c, err := lobby.Call(ctx, alice.ID(), peer.CallOptions{Meta: map[string]string{"name": name}})
		var rej *peer.RejectedError
		if errors.As(err, &rej) {
			b.say("%s was turned away: %s", name, rej.Reason)
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		c.Close("thanks")
		return s, nil
	}

	bob, err := ask("bob")
	if err != nil {
		return err
	}
	// Admitted: bob enters. The admission reaches the server just after
	// the answer; a refusal meanwhile is tried again, for a while.
	var bobRoom *peer.Room
	for deadline := time.Now().Add(10 * time.Second); ; {
		bobRoom, err = peer.Join(ctx, bob, room, peer.RoomOptions{Meta: map[string]string{"name": "bob"}})
		if err == nil || time.Now().After(deadline) || !errors.Is(err, &channel.Error{Code: channel.CodeForbidden}) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("bob could not enter: %w", err)
	}
	b.say("bob entered %s, with %d other member(s)", room, len(bobRoom.Members()))

	mallory, err := ask("mallory")
	if err != nil {
		return err
	}
	// mallory writes the header by hand: the server refuses it all the same.
	_, _, err = mallory.Open(ctx, channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: "room/" + room, Ephemeral: true})
	var perr *channel.Error
	if errors.As(err, &perr) {
		b.say("mallory's own header was refused: %s: %s", perr.Code, perr.Message)
	} else {
		return fmt.Errorf("mallory opened the room's namespace: %v", err)
	}
	mallory.Close()

	// alice names bob her heir and leaves.
	acl.Set(alice.ID()+"/heir", bob.ID())
	// The back end has the heir before alice goes (an app would have its
	// back end confirm it to the owner).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if snap, _ := sc.Scuttlebutt().Snapshot("acl/" + room); snap[alice.ID()+"/heir"] != nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the heir did not reach the server")
		}
	}
	aliceRoom.Leave()
	aliceLobby.Leave()
	alice.Close()
	// bob, now the owner, can write the room's list.
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := model.New(model.Options{})
		rep, err := bob.Replicate(ctx, "acl/"+room, m, client.ReplicateOptions{})
		if err == nil {
			b.say("bob now writes the list of %s", room)
			rep.Close()
			m.Close()
			break
		}
		m.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("the room did not pass to bob: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	bobRoom.Leave()
	bob.Close()
	return nil
}
