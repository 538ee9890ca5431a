package model_test

import (
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// TestExpiryEmitsDeletion: an expired live record becomes a deletion by the
// Model's own id, applied locally and received by subscribers; the deletion
// is purged silently once it is maxAge old.
func TestExpiryEmitsDeletion(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second })
	mustApply(t, m, upd("remote", `"r"`, ms(0), "B"), true)
	if err := m.Set("local", "l"); err != nil {
		t.Fatal(err)
	}
	clk.Add(5 * time.Second)
	if err := m.Set("later", 1); err != nil {
		t.Fatal(err)
	}
	sub := m.Subscribe(10)
	defer sub.Cancel()

	clk.Add(5*time.Second - time.Millisecond)
	if n := m.Sweep(); n != 0 {
		t.Fatalf("Sweep before expiry = %d", n)
	}
	clk.Add(time.Millisecond) // remote and local are exactly maxAge old
	if n := m.Sweep(); n != 2 {
		t.Fatalf("Sweep = %d, want 2", n)
	}
	now := ms(10 * time.Second)
	var last float64
	for _, key := range []string{"remote", "local"} {
		u := <-sub.Updates()
		if u.Key != key || !u.Deleted() || u.Source != "S" || u.TS < now || u.TS <= last {
			t.Fatalf("got %+v, want a deletion of %q by S at %v or later", u, key, now)
		}
		last = u.TS
	}
	if got := m.Keys(); len(got) != 1 || got[0] != "later" {
		t.Fatalf("Keys() = %v", got)
	}
	// The deletions replicate: history for an empty clock carries them.
	h := m.History(nil)
	if len(h) != 3 || h[0].Key != "later" || !h[1].Deleted() || !h[2].Deleted() {
		t.Fatalf("History = %+v", h)
	}
	// Source B's clock entry is older than maxAge: dropped.
	if d := m.Digest(); d.ID != "S" || len(d.Clock) != 1 || d.Clock["S"] != last {
		t.Fatalf("digest %+v, want only S at %v", d, last)
	}

	// later expires at 15s, the deletions at 20s and 20s + 1µs.
	clk.Add(5 * time.Second)
	if n := m.Sweep(); n != 1 {
		t.Fatalf("Sweep = %d, want 1", n)
	}
	if u := <-sub.Updates(); u.Key != "later" || !u.Deleted() {
		t.Fatalf("got %+v", u)
	}
	clk.Add(5*time.Second + time.Millisecond)
	if n := m.Sweep(); n != 2 {
		t.Fatalf("Sweep = %d, want 2 purged deletions", n)
	}
	select {
	case u := <-sub.Updates():
		t.Fatalf("a purge was announced: %+v", u)
	default:
	}
	if st := m.Stats(); st.Records != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want only the later deletion", st)
	}
	clk.Add(5 * time.Second)
	m.Sweep()
	if st := m.Stats(); st.Records != 0 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want empty", st)
	}
	if h := m.History(nil); len(h) != 0 {
		t.Fatalf("History = %+v", h)
	}
}

// TestExpiredUpdateIgnoredAfterClockPruned: once a source's clock entry is
// dropped, its old updates are still ignored by the age rule.
func TestExpiredUpdateIgnoredAfterClockPruned(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second })
	u := upd("k", "1", ms(0), "B")
	mustApply(t, m, u, true)
	clk.Add(10 * time.Second)
	m.Sweep()
	if _, ok := m.Clock()["B"]; ok {
		t.Fatal("clock entry kept")
	}
	mustApply(t, m, u, false)
	if _, ok := m.Get("k"); ok {
		t.Fatal("replayed update applied")
	}
}

func TestSilentExpiry(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "C", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second; o.SilentExpiry = true })
	if err := m.Set("k", 1); err != nil {
		t.Fatal(err)
	}
	sub := m.Subscribe(10)
	defer sub.Cancel()
	clk.Add(10 * time.Second)
	if n := m.Sweep(); n != 1 {
		t.Fatalf("Sweep = %d", n)
	}
	if st := m.Stats(); st.Records != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	select {
	case u := <-sub.Updates():
		t.Fatalf("silent expiry announced %+v", u)
	default:
	}
}

// TestSweeperGoroutine runs the real sweeper on real time.
func TestSweeperGoroutine(t *testing.T) {
	m := model.New(model.Options{ID: "S", MaxAge: 50 * time.Millisecond, SweepInterval: 5 * time.Millisecond})
	defer m.Close()
	sub := m.Subscribe(10)
	if err := m.Set("k", 1); err != nil {
		t.Fatal(err)
	}
	if u := <-sub.Updates(); u.Key != "k" || u.Deleted() {
		t.Fatalf("got %+v", u)
	}
	select {
	case u := <-sub.Updates():
		if u.Key != "k" || !u.Deleted() {
			t.Fatalf("got %+v", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no deletion from the sweeper")
	}
	waitFor(t, 5*time.Second, func() error {
		if m.Stats().Records != 0 {
			return errNotYet
		}
		return nil
	})
}
