// Command presence shows presence over the scuttlebutt endpoint. Go peers
// announce themselves with ephemeral keys and refresh them; an observer
// prints joins and leaves as they happen. One peer is killed (its session
// closed) and leaves at once; one freezes (stops refreshing but keeps its
// stream, which is not ephemeral) and leaves when its key expires; the
// others leave by closing their replicas. The run ends by itself.
//
//	go run ./examples/presence                # starts its own server on 127.0.0.1
//	go run ./examples/presence -maxage 2s     # a shorter expiry
//	go run ./examples/presence -url ws://127.0.0.1:8080/v1/channel
//
// With -url, the server's maxAge applies (60 s by default), and the frozen
// peer leaves that long after its last refresh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/examples/internal/localserver"
	"github.com/signalchannel/signalchannel/model"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "server channel URL (default: start a server on 127.0.0.1)")
	maxAge := flag.Duration("maxage", 3*time.Second, "maxAge of the server started here (ignored with -url)")
	namespace := flag.String("namespace", fmt.Sprintf("presence-demo-%d", time.Now().UnixNano()), "scuttlebutt namespace")
	flag.Parse()

	if *url == "" {
		u, stop, err := localserver.Start(endpoints.ScuttlebuttConfig{MaxAge: *maxAge, SweepInterval: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		defer stop()
		*url = u
	}
	// Whatever happens, the demo ends.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	d := &demo{ctx: ctx, url: *url, namespace: *namespace, start: time.Now()}
	obs, err := d.observe()
	if err != nil {
		return err
	}
	defer obs.close()
	age := obs.replica.MaxAge()
	refresh := age / 3
	fmt.Printf("server %s, namespace %q, maxAge %v, peers refresh every %v\n\n", *url, *namespace, age, refresh)

	var peers []*peer
	defer func() {
		for _, p := range peers {
			p.leave()
		}
	}()
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		p, err := d.join(name, name != "dave", refresh)
		if err != nil {
			return err
		}
		peers = append(peers, p)
		if err := obs.waitFor(name, model.KeyAdded, 5*time.Second); err != nil {
			return err
		}
		d.pause(200 * time.Millisecond)
	}
	alice, bob, carol, dave := peers[0], peers[1], peers[2], peers[3]

	d.say("everyone refreshes for %v, longer than maxAge: nobody leaves", age+time.Second)
	d.pause(age + time.Second)

	d.say("carol's connection is killed (her session closes)")
	carol.kill()
	if err := obs.waitFor("carol", model.KeyRemoved, 5*time.Second); err != nil {
		return err
	}

	d.say("dave freezes: he stops refreshing but keeps his stream open; his key expires about %v after his last refresh", age)
	dave.freeze()
	if err := obs.waitFor("dave", model.KeyRemoved, age+refresh+10*time.Second); err != nil {
		return err
	}

	d.say("alice and bob leave (Replica.Close)")
	alice.leave()
	bob.leave()
	for _, name := range []string{"alice", "bob"} {
		if err := obs.waitFor(name, model.KeyRemoved, 5*time.Second); err != nil {
			return err
		}
	}
	d.say("everyone has left")
	return nil
}

type demo struct {
	ctx       context.Context
	url       string
	namespace string
	start     time.Time
	mu        sync.Mutex // one line at a time
}

func (d *demo) printf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Printf("%6.2fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) say(format string, args ...any) { d.printf("-- "+format, args...) }

// pause waits for dur, or less if the demo's time is up.
func (d *demo) pause(dur time.Duration) {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.ctx.Done():
	}
}

func memberKey(name string) string { return "member/" + name }

// observer is a replica with no keys of its own that reports joins and
// leaves.
type observer struct {
	d       *demo
	sess    *client.Session
	replica *client.Replica
	m       *model.Model
	watch   *model.KeyWatcher
	events  chan model.KeyEvent
	wg      sync.WaitGroup
}

func (d *demo) observe() (*observer, error) {
	sess, err := client.Dial(d.ctx, d.url, client.DialOptions{})
	if err != nil {
		return nil, err
	}
	m := model.New(model.Options{ID: "observer", SilentExpiry: true})
	r, err := sess.Replicate(d.ctx, d.namespace, m, client.ReplicateOptions{})
	if err == nil {
		err = r.WaitSync(d.ctx)
	}
	if err != nil {
		sess.Close()
		m.Close()
		return nil, err
	}
	o := &observer{d: d, sess: sess, replica: r, m: m, watch: r.Watch(), events: make(chan model.KeyEvent, 64)}
	o.wg.Add(1)
	go o.loop()
	return o, nil
}

// loop prints every join and leave and passes it on, until the watcher is
// closed.
func (o *observer) loop() {
	defer o.wg.Done()
	defer close(o.events)
	for {
		ev, err := o.watch.Next(o.d.ctx)
		if err != nil {
			return
		}
		name, ok := strings.CutPrefix(ev.Key, "member/")
		if !ok {
			continue
		}
		switch ev.Kind {
		case model.KeyAdded:
			o.d.printf("%-6s joined   %s", name, ev.Value)
		case model.KeyChanged:
			o.d.printf("%-6s changed  %s", name, ev.Value)
		case model.KeyRemoved:
			by := "by " + ev.Source
			if ev.Source == o.replica.ServerID() {
				by = "by the server"
			}
			o.d.printf("%-6s left     (deleted %s)", name, by)
		}
		select {
		case o.events <- ev:
		case <-o.d.ctx.Done():
			return
		}
	}
}

// waitFor waits until the observer sees name's key change as kind.
func (o *observer) waitFor(name string, kind model.KeyEventKind, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-o.events:
			if !ok {
				return errors.New("the observer stopped")
			}
			if ev.Key == memberKey(name) && ev.Kind == kind {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%s was not %v within %v", name, kind, timeout)
		}
	}
}

func (o *observer) close() {
	o.watch.Close()
	o.wg.Wait()
	o.replica.Close()
	o.sess.Close()
	o.m.Close()
}

// peer is a member announcing itself under member/<name> and refreshing
// its key from a goroutine it owns.
type peer struct {
	name    string
	sess    *client.Session
	m       *model.Model
	replica *client.Replica

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
	leftOnce sync.Once
}

func (d *demo) join(name string, ephemeral bool, refresh time.Duration) (*peer, error) {
	sess, err := client.Dial(d.ctx, d.url, client.DialOptions{})
	if err != nil {
		return nil, err
	}
	m := model.New(model.Options{ID: name + "-" + fmt.Sprint(time.Now().UnixNano()), SilentExpiry: true})
	r, err := sess.Replicate(d.ctx, d.namespace, m, client.ReplicateOptions{Ephemeral: ephemeral})
	if err != nil {
		sess.Close()
		m.Close()
		return nil, err
	}
	p := &peer{name: name, sess: sess, m: m, replica: r, stop: make(chan struct{})}
	value := map[string]any{"name": name, "since": time.Now().Format(time.TimeOnly), "ephemeral": ephemeral}
	if err := m.Set(memberKey(name), value); err != nil {
		p.leave()
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-d.ctx.Done():
				return
			case <-t.C:
				m.Set(memberKey(name), value) // a new timestamp: the key lives on
			}
		}
	}()
	return p, nil
}

// freeze stops refreshing; the stream stays open.
func (p *peer) freeze() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.wg.Wait()
}

// kill ends the peer's session at once, as a process that dies.
func (p *peer) kill() {
	p.freeze()
	p.sess.Close()
}

// leave closes the replica gracefully, then the session.
func (p *peer) leave() {
	p.leftOnce.Do(func() {
		p.freeze()
		p.replica.Close()
		p.sess.Close()
		p.m.Close()
	})
}
