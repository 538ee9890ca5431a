package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

func newSBTestServer(t testing.TB, cfg endpoints.ScuttlebuttConfig) (*sctest.Server, *endpoints.Scuttlebutt) {
	t.Helper()
	cfg.Logger = sctest.QuietLogger()
	sb, err := endpoints.NewScuttlebutt(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) { h.Handle(channel.EndpointScuttlebutt, sb) })
	return ts, sb
}

func newModel(t testing.TB, id string) *model.Model {
	t.Helper()
	m := model.New(model.Options{ID: id, SilentExpiry: true})
	t.Cleanup(func() { m.Close() })
	return m
}

func replicate(t testing.TB, s *client.Session, ns string, m *model.Model, opts client.ReplicateOptions) *client.Replica {
	t.Helper()
	r, err := s.Replicate(ctxT(t), ns, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.WaitSync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// nextEvent returns the watcher's next event within d.
func nextEvent(t testing.TB, w *model.KeyWatcher, d time.Duration) model.KeyEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("no key event within %v: %v", d, err)
	}
	return ev
}

func wantEvent(t testing.TB, ev model.KeyEvent, kind model.KeyEventKind, key, value string) {
	t.Helper()
	if ev.Kind != kind || ev.Key != key || string(ev.Value) != value {
		t.Fatalf("event %v %q %s, want %v %q %s", ev.Kind, ev.Key, ev.Value, kind, key, value)
	}
}

// Presence through the Go Client: members join with ephemeral keys, a
// refresh is not reported, a change is, and members leave at a graceful
// Close and at their session's end, within a second.
func TestReplicatePresence(t *testing.T) {
	ts, sb := newSBTestServer(t, endpoints.ScuttlebuttConfig{})
	obs := replicate(t, dial(t, ts.URL), "presence", newModel(t, "observer"), client.ReplicateOptions{})
	w := obs.Watch()
	defer w.Close()

	aliceSess := dial(t, ts.URL)
	alice := newModel(t, "alice")
	ar := replicate(t, aliceSess, "presence", alice, client.ReplicateOptions{Ephemeral: true})
	if ar.ServerID() != obs.ServerID() || ar.MaxAge() != time.Minute || ar.Namespace() != "presence" {
		t.Fatalf("server id %q / %q, maxAge %v", ar.ServerID(), obs.ServerID(), ar.MaxAge())
	}
	if err := alice.Set("member/alice", "online"); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, nextEvent(t, w, 5*time.Second), model.KeyAdded, "member/alice", `"online"`)

	bob := newModel(t, "bob")
	br := replicate(t, dial(t, ts.URL), "presence", bob, client.ReplicateOptions{Ephemeral: true})
	if _, ok := bob.Get("member/alice"); !ok {
		t.Fatal("bob did not sync alice's key")
	}
	bob.Set("member/bob", "online")
	ev := nextEvent(t, w, 5*time.Second)
	wantEvent(t, ev, model.KeyAdded, "member/bob", `"online"`)
	if ev.Source != "bob" || ev.TS == 0 {
		t.Fatalf("event source %q ts %v", ev.Source, ev.TS)
	}

	alice.Set("member/alice", "online") // a refresh: not reported
	alice.Set("member/alice", "away")
	wantEvent(t, nextEvent(t, w, 5*time.Second), model.KeyChanged, "member/alice", `"away"`)

	closed := time.Now()
	if err := br.Close(); err != nil || br.Err() != nil {
		t.Fatalf("Close: %v, Err: %v", err, br.Err())
	}
	ev = nextEvent(t, w, time.Second)
	wantEvent(t, ev, model.KeyRemoved, "member/bob", "")
	if ev.Source != obs.ServerID() {
		t.Fatalf("removed by %q, want the server %q", ev.Source, obs.ServerID())
	}
	t.Logf("bob left %v after Close", time.Since(closed))

	closed = time.Now()
	aliceSess.Close()
	wantEvent(t, nextEvent(t, w, time.Second), model.KeyRemoved, "member/alice", "")
	t.Logf("alice left %v after her session ended", time.Since(closed))
	<-ar.Done()
	if ar.Err() == nil {
		t.Fatal("a replica whose session ended reports no error")
	}
	if got := w.Live(); len(got) != 0 {
		t.Fatalf("live after everyone left: %v", got)
	}
	sctest.WaitFor(t, 5*time.Second, func() error {
		if st := sb.Stats(); st.Members != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

// An error object from the server ends the Replica with an *Error carrying
// its code and message.
func TestReplicateErrorObject(t *testing.T) {
	ts, _ := newSBTestServer(t, endpoints.ScuttlebuttConfig{})
	m := model.New(model.Options{ID: "big", MaxValueBytes: 16 << 10})
	defer m.Close()
	r := replicate(t, dial(t, ts.URL), "limits", m, client.ReplicateOptions{})
	if err := m.Set("k", strings.Repeat("v", 9000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("replica still running")
	}
	perr := wantCode(t, r.Err(), channel.CodeLimit)
	if perr.Message != "value larger than 8192 bytes" {
		t.Fatalf("message %q", perr.Message)
	}
}

// A failure reply is returned by Replicate itself.
func TestReplicateRefused(t *testing.T) {
	ts, _ := newSBTestServer(t, endpoints.ScuttlebuttConfig{MaxMembers: 1})
	s := dial(t, ts.URL)
	replicate(t, s, "full", newModel(t, "a"), client.ReplicateOptions{})
	_, err := s.Replicate(ctxT(t), "full", newModel(t, "b"), client.ReplicateOptions{})
	wantCode(t, err, channel.CodeLimit)
	_, err = s.Replicate(ctxT(t), "", newModel(t, "c"), client.ReplicateOptions{})
	wantCode(t, err, channel.CodeBadNamespace)
}

// The server's records as they were when the stream joined are in the
// Model once WaitSync returns; writes after Close stay local.
func TestReplicateSyncAndClose(t *testing.T) {
	ts, sb := newSBTestServer(t, endpoints.ScuttlebuttConfig{})
	writer := newModel(t, "writer")
	replicate(t, dial(t, ts.URL), "sync", writer, client.ReplicateOptions{})
	for i := range 100 {
		writer.Set(fmt.Sprint("k", i), i)
	}
	sctest.WaitFor(t, 5*time.Second, func() error {
		if snap, _ := sb.Snapshot("sync"); len(snap) != 100 {
			return fmt.Errorf("server holds %d keys", len(snap))
		}
		return nil
	})
	reader := newModel(t, "reader")
	r := replicate(t, dial(t, ts.URL), "sync", reader, client.ReplicateOptions{})
	if got := len(reader.Keys()); got != 100 {
		t.Fatalf("after WaitSync the reader has %d keys", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := r.WaitSync(ctxT(t)); err != nil {
		t.Fatalf("WaitSync after sync and Close: %v", err)
	}
	reader.Set("local only", true)
	writer.Set("after", true)
	sctest.WaitFor(t, 5*time.Second, func() error {
		snap, _ := sb.Snapshot("sync")
		if _, ok := snap["after"]; !ok {
			return errors.New("writer's key not on the server")
		}
		if _, ok := snap["local only"]; ok {
			return errors.New("a write after Close reached the server")
		}
		return nil
	})
	if _, ok := reader.Get("after"); ok {
		t.Fatal("a write reached the closed replica")
	}
}

// A Replica whose server ends the stream reports it.
func TestReplicateServerEnds(t *testing.T) {
	ts, sb := newSBTestServer(t, endpoints.ScuttlebuttConfig{})
	r := replicate(t, dial(t, ts.URL), "ends", newModel(t, "a"), client.ReplicateOptions{})
	sb.Close()
	select {
	case <-r.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("replica still running")
	}
	if !errors.Is(r.Err(), channel.ErrStreamReset) {
		t.Fatalf("Err %v, want a reset", r.Err())
	}
	if err := r.WaitSync(ctxT(t)); err != nil {
		t.Fatalf("WaitSync after a completed sync: %v", err)
	}
}

// A watcher reports the keys present when it starts, oldest first, and
// after falling behind it resynchronises and reports the difference.
func TestKeyWatcherResync(t *testing.T) {
	m := newModel(t, "m")
	m.Set("first", 1)
	m.Set("second", 2)
	w := model.WatchKeys(m, 2)
	defer w.Close()
	wantEvent(t, nextEvent(t, w, time.Second), model.KeyAdded, "first", "1")
	wantEvent(t, nextEvent(t, w, time.Second), model.KeyAdded, "second", "2")

	// Far more changes than the buffer holds, unread.
	for i := range 50 {
		m.Set(fmt.Sprint("k", i), i)
	}
	m.Delete("first")
	m.Set("second", "changed")
	m.Delete("k7")

	got := map[string]json.RawMessage{"first": json.RawMessage("1"), "second": json.RawMessage("2")}
	for !maps.EqualFunc(got, m.Snapshot(), func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		ev := nextEvent(t, w, time.Second)
		switch ev.Kind {
		case model.KeyAdded, model.KeyChanged:
			got[ev.Key] = ev.Value
		case model.KeyRemoved:
			if _, ok := got[ev.Key]; !ok {
				t.Fatalf("removed %q, which was not live", ev.Key)
			}
			delete(got, ev.Key)
		}
	}
	if len(got) != 50 || !maps.EqualFunc(w.Live(), got, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		t.Fatalf("watcher's view %d keys, Live %d keys", len(got), len(w.Live()))
	}

	w.Close()
	if _, err := w.Next(ctxT(t)); !errors.Is(err, model.ErrWatcherClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	w2 := model.WatchKeys(m, 0)
	m.Close()
	for {
		_, err := w2.Next(ctxT(t))
		if err != nil {
			if !errors.Is(err, model.ErrClosed) {
				t.Fatalf("Next after the Model closed: %v", err)
			}
			break
		}
	}
}
