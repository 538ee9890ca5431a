package model_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

func upd(key, value string, ts float64, source string) model.Update {
	return model.Update{Key: key, Value: json.RawMessage(value), TS: ts, Source: source}
}

func mustApply(t *testing.T, m *model.Model, u model.Update, want bool) {
	t.Helper()
	got, err := m.Apply(u)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", u, err)
	}
	if got != want {
		t.Fatalf("Apply(%+v) = %v, want %v", u, got, want)
	}
}

func get(m *model.Model, key string) string {
	v, ok := m.Get(key)
	if !ok {
		return "<absent>"
	}
	return string(v)
}

func TestSetGetDelete(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	if m.ID() != "A" {
		t.Fatalf("ID() = %q", m.ID())
	}
	if err := m.Set("a", map[string]any{"html": "<b>&</b>", "n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("b", json.RawMessage(` [1, 2] `)); err != nil {
		t.Fatal(err)
	}
	if got := get(m, "a"); got != `{"html":"<b>&</b>","n":1}` {
		t.Fatalf("a = %s", got)
	}
	if got := get(m, "b"); got != `[1,2]` {
		t.Fatalf("b = %s (want compact JSON)", got)
	}
	if err := m.Set("c", json.RawMessage(`{bad`)); !errors.Is(err, model.ErrBadLine) {
		t.Fatalf("Set of bad JSON: %v", err)
	}
	if err := m.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if got := get(m, "a"); got != "<absent>" {
		t.Fatalf("deleted a = %s", got)
	}
	if err := m.Set("d", nil); err != nil {
		t.Fatal(err)
	}
	if got := m.Keys(); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("Keys() = %v", got)
	}
	if got := m.Snapshot(); len(got) != 1 || string(got["b"]) != "[1,2]" {
		t.Fatalf("Snapshot() = %v", got)
	}
	if st := m.Stats(); st.Live != 1 || st.Records != 3 || st.Sources != 1 {
		t.Fatalf("Stats() = %+v", st)
	}
}

func TestDefaultIDIsRandom(t *testing.T) {
	a, b := model.New(model.Options{}), model.New(model.Options{})
	defer a.Close()
	defer b.Close()
	if a.ID() == "" || a.ID() == b.ID() || len(a.ID()) != 32 {
		t.Fatalf("ids %q and %q", a.ID(), b.ID())
	}
}

// TestLocalTimestampsIncrease checks local writes get strictly increasing
// timestamps when the clock stands still or steps back, and that they stay
// above the own source's clock entry learnt from a peer.
func TestLocalTimestampsIncrease(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	sub := m.Subscribe(100)
	defer sub.Cancel()
	for i := range 10 {
		if err := m.Set(fmt.Sprint("k", i), i); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(-time.Second)
	if err := m.Set("back", 1); err != nil {
		t.Fatal(err)
	}
	// An update from a previous life of the same id, ahead of local time.
	mustApply(t, m, upd("old", "1", ms(5*time.Second), "A"), true)
	if err := m.Set("after", 1); err != nil {
		t.Fatal(err)
	}
	var last float64
	for range 13 {
		u := <-sub.Updates()
		if u.TS <= last {
			t.Fatalf("timestamp %v after %v", u.TS, last)
		}
		last = u.TS
	}
	if got := m.Clock()["A"]; got != last {
		t.Fatalf("clock[A] = %v, want %v", got, last)
	}
	if last <= ms(5*time.Second) {
		t.Fatalf("local write %v not after %v", last, ms(5*time.Second))
	}
}

// TestLastWriteWins: greater ts wins; on equal ts the greater source wins,
// whatever the order of arrival.
func TestLastWriteWins(t *testing.T) {
	clk := newFakeClock()
	ts := ms(0)
	updates := []model.Update{
		upd("k", `"from A"`, ts, "A"),
		upd("k", `"from B"`, ts, "B"),
		upd("k", `"from AA"`, ts, "AA"),
		upd("k", `"older C"`, ts-1, "C"),
	}
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {2, 3, 0, 1}}
	for i, order := range orders {
		m := newModel(t, fmt.Sprint("R", i), clk)
		for _, j := range order {
			if _, err := m.Apply(updates[j]); err != nil {
				t.Fatal(err)
			}
		}
		if got := get(m, "k"); got != `"from B"` {
			t.Fatalf("order %v: k = %s, want \"from B\"", order, got)
		}
		// Every fresh update advanced its source's clock, winner or not.
		want := map[string]float64{"A": ts, "B": ts, "AA": ts, "C": ts - 1}
		if got := m.Clock(); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %v: clock %v, want %v", order, got, want)
		}
	}
}

func TestStaleUpdatesIgnored(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	mustApply(t, m, upd("k", "2", ms(0), "B"), true)
	// Same or older ts from the same source: ignored, even for another key.
	mustApply(t, m, upd("k", "3", ms(0), "B"), false)
	mustApply(t, m, upd("x", "3", ms(-time.Millisecond), "B"), false)
	if got := get(m, "k"); got != "2" {
		t.Fatalf("k = %s", got)
	}
	if _, ok := m.Get("x"); ok {
		t.Fatal("stale x applied")
	}
	// A fresh update from another source with an older ts loses the key but
	// is not an error.
	mustApply(t, m, upd("k", "4", ms(-time.Second), "C"), false)
	mustApply(t, m, upd("k", "5", ms(time.Millisecond), "B"), true)
	if got := get(m, "k"); got != "5" {
		t.Fatalf("k = %s", got)
	}
}

// TestAgeAndSkew: ts <= now-maxAge or ts > now+maxSkew is ignored.
func TestAgeAndSkew(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second; o.MaxSkew = 2 * time.Second })
	for _, tc := range []struct {
		ts   float64
		want bool
	}{
		{ms(-10 * time.Second), false},
		{ms(-10*time.Second) + 0.001, true},
		{ms(2*time.Second) + 0.001, false},
		{ms(2 * time.Second), true},
	} {
		mustApply(t, m, upd(fmt.Sprint(tc.ts), "1", tc.ts, fmt.Sprint("S", tc.ts)), tc.want)
	}
	if got := len(m.Keys()); got != 2 {
		t.Fatalf("%d keys, want 2", got)
	}
}

// TestHistoryOrderAcrossSources checks History sorts by (ts, source) across
// sources and filters by the clock, entry by entry.
func TestHistoryOrderAcrossSources(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "Z", clk)
	in := []model.Update{
		upd("b1", "1", ms(0)+1, "B"),
		upd("a1", "1", ms(0)+2, "A"),
		upd("c1", "1", ms(0)+3, "C"),
		upd("b2", "1", ms(0)+4, "B"),
		upd("a2", "1", ms(0)+4, "A"),
		upd("a3", "null", ms(0)+5, "A"),
		upd("c2", "1", ms(0)+6, "C"),
	}
	// Applied out of order across sources, in order within each.
	for _, i := range []int{2, 6, 0, 3, 1, 4, 5} {
		mustApply(t, m, in[i], true)
	}
	keys := func(h []model.Update) []string {
		var ks []string
		for _, u := range h {
			ks = append(ks, u.Key)
		}
		return ks
	}
	if got, want := keys(m.History(nil)), []string{"b1", "a1", "c1", "a2", "b2", "a3", "c2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("History(nil) = %v, want %v", got, want)
	}
	clock := map[string]float64{"A": ms(0) + 4, "B": ms(0) + 1, "D": ms(100)}
	if got, want := keys(m.History(clock)), []string{"c1", "b2", "a3", "c2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("History(%v) = %v, want %v", clock, got, want)
	}
	if got := m.History(m.Clock()); len(got) != 0 {
		t.Fatalf("History(own clock) = %v", got)
	}
}

func TestHistoryExcludesExpired(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second })
	mustApply(t, m, upd("old", "1", ms(-5*time.Second), "B"), true)
	mustApply(t, m, upd("gone", "null", ms(-4*time.Second), "B"), true)
	if err := m.Set("new", 1); err != nil {
		t.Fatal(err)
	}
	clk.Add(6 * time.Second) // old and gone expired, not swept yet
	h := m.History(nil)
	if len(h) != 1 || h[0].Key != "new" {
		t.Fatalf("History = %+v, want only new", h)
	}
	if _, ok := m.Get("old"); ok {
		t.Fatal("Get returned an expired record")
	}
	if got := m.Keys(); !reflect.DeepEqual(got, []string{"new"}) {
		t.Fatalf("Keys() = %v", got)
	}
}

// TestLocalWriteBeatsFutureRecord: a local write replaces a record whose ts
// is ahead of local time (within maxSkew).
func TestLocalWriteBeatsFutureRecord(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	mustApply(t, m, upd("k", `"B"`, ms(20*time.Second), "B"), true)
	if err := m.Set("k", "A"); err != nil {
		t.Fatal(err)
	}
	if got := get(m, "k"); got != `"A"` {
		t.Fatalf("k = %s", got)
	}
	mustApply(t, m, upd("p", `"B"`, ms(25*time.Second), "B"), true)
	if n := m.DeleteSource("B"); n != 1 {
		t.Fatalf("DeleteSource = %d, want 1", n)
	}
	if _, ok := m.Get("p"); ok {
		t.Fatal("p not deleted")
	}
}

func TestDeleteSource(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "S", clk)
	mustApply(t, m, upd("x1", "1", ms(0), "X"), true)
	mustApply(t, m, upd("x2", "2", ms(0)+1, "X"), true)
	mustApply(t, m, upd("x3", "null", ms(0)+2, "X"), true)
	mustApply(t, m, upd("y1", "1", ms(0)+3, "Y"), true)
	mustApply(t, m, upd("y2", "1", ms(0)+4, "Y"), true)
	mustApply(t, m, upd("y2", "2", ms(0)+5, "X"), true) // y2 now from X
	sub := m.Subscribe(10)
	defer sub.Cancel()
	if n := m.DeleteSource("X"); n != 3 {
		t.Fatalf("DeleteSource = %d, want 3", n)
	}
	if got := m.Keys(); !reflect.DeepEqual(got, []string{"y1"}) {
		t.Fatalf("Keys() = %v", got)
	}
	for _, key := range []string{"x1", "x2", "y2"} {
		u := <-sub.Updates()
		if u.Key != key || !u.Deleted() || u.Source != "S" {
			t.Fatalf("got %+v, want a deletion of %s by S", u, key)
		}
	}
	if n := m.DeleteSource("X"); n != 0 {
		t.Fatalf("second DeleteSource = %d", n)
	}
}

func TestSubscribe(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	sub := m.Subscribe(2)
	if err := m.Set("a", 1); err != nil {
		t.Fatal(err)
	}
	mustApply(t, m, upd("b", "2", ms(0), "B"), true)
	mustApply(t, m, upd("b", "3", ms(-1), "C"), false) // lost: not a change
	if u := <-sub.Updates(); u.Key != "a" || u.Source != "A" {
		t.Fatalf("got %+v", u)
	}
	if u := <-sub.Updates(); u.Key != "b" || string(u.Value) != "2" {
		t.Fatalf("got %+v", u)
	}
	// Overflow cancels the subscriber without blocking the Model.
	for i := range 3 {
		if err := m.Set(fmt.Sprint("o", i), i); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for range sub.Updates() {
		n++
	}
	if n != 2 || !errors.Is(sub.Err(), model.ErrSlowSubscriber) {
		t.Fatalf("got %d updates and %v", n, sub.Err())
	}
	sub.Cancel()

	sub2 := m.Subscribe(0)
	sub2.Cancel()
	sub2.Cancel()
	if _, ok := <-sub2.Updates(); ok || sub2.Err() != nil {
		t.Fatalf("cancelled subscription: %v", sub2.Err())
	}
	// A receiver may call back into the Model.
	sub3 := m.Subscribe(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range sub3.Updates() {
			if u.Key == "ping" {
				_ = m.Set("pong", 1)
			}
		}
	}()
	if err := m.Set("ping", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if _, ok := m.Get("pong"); !ok {
			return errNotYet
		}
		return nil
	})
	m.Close()
	<-done
	if !errors.Is(sub3.Err(), model.ErrClosed) {
		t.Fatalf("Err() after Close = %v", sub3.Err())
	}
}

func TestClose(t *testing.T) {
	m := model.New(model.Options{})
	sub := m.Subscribe(1)
	if err := m.Set("a", 1); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close()
	if err := m.Set("b", 1); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if _, err := m.Apply(upd("c", "1", float64(time.Now().UnixMilli()), "B")); !errors.Is(err, model.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if got := get(m, "a"); got != "1" {
		t.Fatalf("Get after Close = %s", got)
	}
	if _, ok := <-sub.Updates(); !ok {
		t.Fatal("buffered update lost")
	}
	if _, ok := <-sub.Updates(); ok || !errors.Is(sub.Err(), model.ErrClosed) {
		t.Fatalf("subscription not closed: %v", sub.Err())
	}
	if s := m.Subscribe(1); s.Err() != model.ErrClosed {
		t.Fatalf("Subscribe after Close: %v", s.Err())
	}
	if n := m.DeleteSource("A"); n != 0 || m.Sweep() != 0 {
		t.Fatal("writes after Close")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []model.Options{
		{MaxAge: -1},
		{MaxSkew: time.Microsecond},
		{SweepInterval: -time.Second},
		{MaxKeys: -1},
		{MaxLineBytes: 100},
		{ID: string(make([]byte, 257))},
		{ID: "\xff"},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: Validate() = nil", o)
		}
	}
	if err := (model.Options{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := model.DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	m := model.New(model.Options{ID: "x"})
	defer m.Close()
	o := m.Options()
	if o.MaxAge != time.Minute || o.MaxSkew != 30*time.Second || o.MaxKeyBytes != 256 || o.MaxValueBytes != 8192 ||
		o.MaxKeys != 10000 || o.MaxLineBytes != 16384 || o.SweepInterval != time.Second || o.Now == nil {
		t.Fatalf("defaults: %+v", o)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New with invalid options did not panic")
		}
	}()
	model.New(model.Options{MaxAge: -1})
}

// TestCallerMemoryNotKept: the Model copies values given to Set and Apply.
func TestCallerMemoryNotKept(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk)
	v := json.RawMessage(`"abc"`)
	if err := m.Set("set", v); err != nil {
		t.Fatal(err)
	}
	u := upd("apply", `"abc"`, ms(0), "B")
	u.Sig = json.RawMessage(`"sig"`)
	mustApply(t, m, u, true)
	v[1], u.Value[1], u.Sig[1] = 'X', 'X', 'X'
	if get(m, "set") != `"abc"` || get(m, "apply") != `"abc"` {
		t.Fatalf("stored values changed: %s %s", get(m, "set"), get(m, "apply"))
	}
	if h := m.History(map[string]float64{"A": ms(time.Hour)}); len(h) != 1 || string(h[0].Sig) != `"sig"` {
		t.Fatalf("History = %+v", h)
	}
}
