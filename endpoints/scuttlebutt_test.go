package endpoints_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

// newSBServer starts a server with the scuttlebutt endpoint (and echo).
// The endpoint is closed after the server has shut down.
func newSBServer(t testing.TB, cfg endpoints.ScuttlebuttConfig) (*sctest.Server, *endpoints.Scuttlebutt) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = sctest.QuietLogger()
	}
	sb, err := endpoints.NewScuttlebutt(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ts := sctest.NewServer(t, sctest.Options{Register: func(h *server.Handler) {
		h.Handle(channel.EndpointScuttlebutt, sb)
	}})
	return ts, sb
}

// sbPeer is a scuttlebutt stream driven line by line, as a client written
// against PROTOCOL.md would drive it.
type sbPeer struct {
	t     testing.TB
	st    *client.Stream
	br    *bufio.Reader
	reply channel.Reply
}

func openPeer(t testing.TB, s *client.Session, ns string, ephemeral bool) *sbPeer {
	t.Helper()
	st, reply, err := s.Open(sctest.Ctx(t), channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: ns, Ephemeral: ephemeral})
	if err != nil {
		t.Fatal(err)
	}
	// A test that goes wrong fails instead of hanging.
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	return &sbPeer{t: t, st: st, br: bufio.NewReaderSize(st, 64<<10), reply: reply}
}

func (p *sbPeer) send(lines ...string) {
	p.t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	if _, err := p.st.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// line reads one line, without its newline.
func (p *sbPeer) line() string {
	p.t.Helper()
	l, err := p.br.ReadString('\n')
	if err != nil {
		p.t.Fatalf("reading a line: %q, %v", l, err)
	}
	return strings.TrimSuffix(l, "\n")
}

func (p *sbPeer) next() model.Message {
	p.t.Helper()
	l := p.line()
	msg, err := model.ParseLine([]byte(l))
	if err != nil {
		p.t.Fatalf("line %q: %v", l, err)
	}
	return msg
}

// nextUpdate reads the next line, which must be an update.
func (p *sbPeer) nextUpdate() model.Update {
	p.t.Helper()
	msg := p.next()
	if msg.Kind != model.KindUpdate {
		p.t.Fatalf("got a %v line, want an update", msg.Kind)
	}
	return msg.Update
}

// join sends the digest of id with clock, reads the server's digest and
// the history up to "SYNC", and returns the history.
func (p *sbPeer) join(id string, clock map[string]float64) []model.Update {
	p.t.Helper()
	if clock == nil {
		clock = map[string]float64{}
	}
	p.send(strings.TrimSuffix(string(model.AppendDigest(nil, model.Digest{ID: id, Clock: clock})), "\n"))
	d := p.next()
	if d.Kind != model.KindDigest || d.Digest.ID != p.reply.ID {
		p.t.Fatalf("first line: %+v, want the digest of %q", d, p.reply.ID)
	}
	var hist []model.Update
	for {
		msg := p.next()
		switch msg.Kind {
		case model.KindSync:
			return hist
		case model.KindUpdate:
			hist = append(hist, msg.Update)
		default:
			p.t.Fatalf("got a %v line before SYNC", msg.Kind)
		}
	}
}

// wantEOF reads the rest of the stream, which must end with the server's
// FIN and hold nothing more.
func (p *sbPeer) wantEOF() {
	p.t.Helper()
	rest, err := io.ReadAll(p.br)
	if err != nil || len(rest) > 0 {
		p.t.Fatalf("after the last line: %q, %v; want EOF", rest, err)
	}
}

// skipUpdates reads update lines until the next line is something else.
// A stream that ends with an error object may drop updates queued before
// it, so a test cannot count on them.
func (p *sbPeer) skipUpdates() {
	p.t.Helper()
	for {
		b, err := p.br.Peek(2)
		if err != nil || string(b) != "[[" {
			return
		}
		p.nextUpdate()
	}
}

// wantError reads an error object line, which must be exactly
// {"error":{"code":code,"message":msg}} (msg "" for any message), then EOF.
func (p *sbPeer) wantError(code, msg string) {
	p.t.Helper()
	l := p.line()
	var obj map[string]map[string]string
	if err := json.Unmarshal([]byte(l), &obj); err != nil || len(obj) != 1 || len(obj["error"]) != 2 {
		p.t.Fatalf("line %q is not an error object {\"error\":{\"code\":..,\"message\":..}}", l)
	}
	e := obj["error"]
	if e["code"] != code || e["message"] == "" || (msg != "" && e["message"] != msg) {
		p.t.Fatalf("error object %q, want code %q message %q", l, code, msg)
	}
	if msg != "" && l != string(model.AppendError(nil, code, msg)[:len(l)]) {
		p.t.Fatalf("error object %q is not written as JSON.stringify writes it", l)
	}
	p.wantEOF()
}

func nowMs() float64 { return float64(time.Now().UnixMilli()) }

// upd returns the line of an update.
func upd(key, value string, ts float64, source string) string {
	u := model.Update{Key: key, Value: json.RawMessage(value), TS: ts, Source: source}
	return strings.TrimSuffix(string(model.AppendUpdate(nil, u)), "\n")
}

func waitSBStats(t testing.TB, sb *endpoints.Scuttlebutt, want endpoints.ScuttlebuttStats) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		if got := sb.Stats(); got != want {
			return fmt.Errorf("stats %+v, want %+v", got, want)
		}
		return nil
	})
}

// waitSnapshot waits until the server replica of ns holds exactly want.
func waitSnapshot(t testing.TB, sb *endpoints.Scuttlebutt, ns string, want map[string]string) {
	t.Helper()
	sctest.WaitFor(t, 5*time.Second, func() error {
		snap, _ := sb.Snapshot(ns)
		got := map[string]string{}
		for k, v := range snap {
			got[k] = string(v)
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("namespace %q holds %v, want %v", ns, got, want)
		}
		return nil
	})
}

// The reply line is {"ok":true,"id":..,"maxAge":..}, then the server's
// digest carries the same id.
func TestScuttlebuttReply(t *testing.T) {
	ts, _ := newSBServer(t, endpoints.ScuttlebuttConfig{})
	st, err := sctest.Dial(t, ts.URL).OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := st.Write([]byte(`{"endpoint":"scuttlebutt","namespace":"presence"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(st)
	reply, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^\{"ok":true,"id":"([^"]+)","maxAge":60000\}\n$`).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("reply %q", reply)
	}
	digest, err := br.ReadString('\n')
	if err != nil || digest != `{"id":"`+m[1]+`","clock":{}}`+"\n" {
		t.Fatalf("server digest %q, %v", digest, err)
	}
	st.Write([]byte(`{"id":"me","clock":{}}` + "\n"))
	if l, err := br.ReadString('\n'); l != `"SYNC"`+"\n" || err != nil {
		t.Fatalf("after the digest: %q, %v", l, err)
	}
}

func sameUpdates(t testing.TB, got []model.Update, want ...model.Update) {
	t.Helper()
	line := func(us []model.Update) string {
		var b []byte
		for _, u := range us {
			b = model.AppendUpdate(b, u)
		}
		return string(b)
	}
	if line(got) != line(want) {
		t.Fatalf("got updates\n%s\nwant\n%s", line(got), line(want))
	}
}

func mkUpd(key, value string, ts float64, source string) model.Update {
	return model.Update{Key: key, Value: json.RawMessage(value), TS: ts, Source: source}
}

// On a digest the server sends every record newer than the digest's clock
// for its source, sorted by (ts, source), deletions included, then "SYNC",
// then live updates.
func TestScuttlebuttNewMemberSyncs(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	a := openPeer(t, sctest.Dial(t, ts.URL), "sync", false)
	if h := a.join("A", nil); len(h) != 0 {
		t.Fatalf("history of a new namespace: %v", h)
	}
	now := nowMs()
	a.send(
		upd("k1", `"v1"`, now-3000, "A"),
		upd("k2", `"v2"`, now-2000, "B"), // relayed from another replica
		upd("k3", `1`, now-1000, "A"),
		upd("k4", `true`, now-1000, "C"), // same ts as k3: sorted by source
		upd("k1", `null`, now-500, "A"),  // a deletion
	)
	waitSnapshot(t, sb, "sync", map[string]string{"k2": `"v2"`, "k3": `1`, "k4": `true`})

	b := openPeer(t, sctest.Dial(t, ts.URL), "sync", false)
	sameUpdates(t, b.join("B", nil),
		mkUpd("k2", `"v2"`, now-2000, "B"),
		mkUpd("k3", `1`, now-1000, "A"),
		mkUpd("k4", `true`, now-1000, "C"),
		mkUpd("k1", `null`, now-500, "A"),
	)
	c := openPeer(t, sctest.Dial(t, ts.URL), "sync", false)
	sameUpdates(t, c.join("C", map[string]float64{"A": now - 1000, "C": now}),
		mkUpd("k2", `"v2"`, now-2000, "B"),
		mkUpd("k1", `null`, now-500, "A"),
	)

	a.send(upd("live", `"x"`, now+1, "A"))
	for _, p := range []*sbPeer{b, c} {
		sameUpdates(t, []model.Update{p.nextUpdate()}, mkUpd("live", `"x"`, now+1, "A"))
	}
	// The writer gets its own update back once, as from npm scuttlebutt.
	echoes := []model.Update{a.nextUpdate(), a.nextUpdate(), a.nextUpdate(), a.nextUpdate(), a.nextUpdate(), a.nextUpdate()}
	if got := echoes[len(echoes)-1]; got.Key != "live" {
		t.Fatalf("the writer's last echo is %+v", got)
	}
}

// Expired records are announced with a deletion from the server's id, and
// are never sent in history, swept or not.
func TestScuttlebuttExpiry(t *testing.T) {
	t.Run("announced", func(t *testing.T) {
		const maxAge = 2000
		ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{MaxAge: maxAge * time.Millisecond, SweepInterval: 20 * time.Millisecond})
		a := openPeer(t, sctest.Dial(t, ts.URL), "exp", false)
		a.join("A", nil)
		now := nowMs()
		a.send(upd("old", `"gone soon"`, now-maxAge+300, "A"), upd("fresh", `"here"`, now, "A"))
		for _, want := range []string{"old", "fresh"} {
			if u := a.nextUpdate(); u.Key != want {
				t.Fatalf("echo %+v, want %s", u, want)
			}
		}
		del := a.nextUpdate()
		if del.Key != "old" || !del.Deleted() || del.Source != a.reply.ID || del.TS < now+300 || del.TS > nowMs()+1 {
			t.Fatalf("expiry announced as %s", model.AppendUpdate(nil, del))
		}
		waitSnapshot(t, sb, "exp", map[string]string{"fresh": `"here"`})

		b := openPeer(t, sctest.Dial(t, ts.URL), "exp", false)
		sameUpdates(t, b.join("B", nil), mkUpd("fresh", `"here"`, now, "A"), del)
		// fresh expires in turn.
		waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Members: 2, Keys: 0})
	})
	t.Run("not yet swept", func(t *testing.T) {
		const maxAge = 2000
		ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{MaxAge: maxAge * time.Millisecond, SweepInterval: time.Hour})
		a := openPeer(t, sctest.Dial(t, ts.URL), "exp", false)
		a.join("A", nil)
		now := nowMs()
		a.send(upd("old", `1`, now-maxAge+1000, "A"), upd("fresh", `2`, now, "A"))
		for a.nextUpdate().Key != "fresh" {
		}
		waitSnapshot(t, sb, "exp", map[string]string{"fresh": `2`})
		if st := sb.Stats(); st.Keys != 2 {
			t.Fatalf("stats %+v: the record should be expired but not swept", st)
		}
		b := openPeer(t, sctest.Dial(t, ts.URL), "exp", false)
		sameUpdates(t, b.join("B", nil), mkUpd("fresh", `2`, now, "A"))
	})
}

// Two writes of one key with equal timestamps from two sources resolve to
// the greater source on every replica, whatever order they arrive in.
func TestScuttlebuttEqualTimestamps(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	now := nowMs()
	a, b := upd("k", `"from a"`, now, "a"), upd("k", `"from b"`, now, "b")
	for ns, lines := range map[string][]string{"ab": {a, b}, "ba": {b, a}} {
		p := openPeer(t, s, ns, false)
		p.join("writer-"+ns, nil)
		p.send(lines...)
		waitSnapshot(t, sb, ns, map[string]string{"k": `"from b"`})
		// A new member of either replica learns the same.
		sameUpdates(t, openPeer(t, s, ns, false).join("reader", nil), mkUpd("k", `"from b"`, now, "b"))
	}
	// So does a Go client's Model, on each server replica.
	for _, ns := range []string{"ab", "ba"} {
		m := model.New(model.Options{ID: "go-" + ns, SilentExpiry: true})
		defer m.Close()
		r, err := s.Replicate(sctest.Ctx(t), ns, m, client.ReplicateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WaitSync(sctest.Ctx(t)); err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Get("k"); string(v) != `"from b"` {
			t.Fatalf("%s: Go replica holds %s", ns, v)
		}
		r.Close()
	}
}

// Stale, too old and too new updates are ignored silently: no error, the
// stream goes on, nothing is stored or passed on.
func TestScuttlebuttIgnoredUpdates(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	w := openPeer(t, s, "stale", false)
	w.join("A", nil)
	o := openPeer(t, s, "stale", false)
	o.join("O", nil)
	now := nowMs()
	const maxAge, maxSkew = 60000, 30000
	w.send(
		upd("k", `"first"`, now, "A"),
		upd("k", `"same ts"`, now, "A"),             // not greater than the last ts of A
		upd("k2", `"older"`, now-1, "A"),            // older than the last ts of A, another key
		upd("old", `1`, now-maxAge-1000, "B"),       // maxAge old
		upd("new", `1`, now+maxSkew+2000, "C"),      // beyond maxSkew
		upd("edge-new", `1`, now+maxSkew-2000, "D"), // within maxSkew
		upd("edge-old", `1`, now-maxAge+5000, "E"),  // within maxAge
		upd("marker", `true`, now+1, "A"),
	)
	var got []string
	for len(got) < 4 {
		got = append(got, o.nextUpdate().Key)
	}
	if want := []string{"k", "edge-new", "edge-old", "marker"}; !slices.Equal(got, want) {
		t.Fatalf("passed on %v, want %v", got, want)
	}
	waitSnapshot(t, sb, "stale", map[string]string{"k": `"first"`, "edge-new": `1`, "edge-old": `1`, "marker": `true`})
	// The writer's stream is still open: it gets its accepted updates back.
	got = got[:0]
	for len(got) < 4 {
		got = append(got, w.nextUpdate().Key)
	}
	if want := []string{"k", "edge-new", "edge-old", "marker"}; !slices.Equal(got, want) {
		t.Fatalf("writer got back %v, want %v", got, want)
	}
}

// An ephemeral stream's keys are deleted, by the server's id, within a
// second of its closing, however it closes; keys it relayed for other
// sources stay. A stream that is not ephemeral leaves its keys to expiry.
func TestScuttlebuttEphemeral(t *testing.T) {
	fin := func(w *sbPeer, _ *client.Session) { w.st.CloseWrite() }
	for _, tc := range []struct {
		name      string
		ephemeral bool
		close     func(w *sbPeer, s *client.Session)
		flood     bool // the writer's window is full: it has not read for long
	}{
		{"FIN", true, fin, false},
		{"FIN from a peer that stopped reading", true, fin, true},
		{"reset", true, func(w *sbPeer, _ *client.Session) { w.st.Reset() }, false},
		{"session end", true, func(_ *sbPeer, s *client.Session) { s.Close() }, false},
		{"not ephemeral", false, func(w *sbPeer, _ *client.Session) { w.st.Reset() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
			o := openPeer(t, sctest.Dial(t, ts.URL), "presence", false)
			o.join("observer", nil)
			ws := sctest.Dial(t, ts.URL)
			w := openPeer(t, ws, "presence", tc.ephemeral)
			w.join("W", nil)
			now := nowMs()
			w.send(upd("w1", `"online"`, now, "W"), upd("w2", `"online"`, now+1, "W"), upd("relayed", `1`, now, "X"))
			for range 3 {
				o.nextUpdate()
			}
			waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Members: 2, Keys: 3})
			if tc.flood {
				// 600 KB for the writer, more than its stream window.
				f := openPeer(t, sctest.Dial(t, ts.URL), "presence", false)
				f.join("F", nil)
				var lines []string
				for i := range 1000 {
					lines = append(lines, upd(fmt.Sprint("f", i), `"`+strings.Repeat("x", 600)+`"`, now+float64(i), "F"))
				}
				f.send(lines...)
				for range 1000 {
					o.nextUpdate()
				}
			}

			closed := time.Now()
			tc.close(w, ws)
			if !tc.ephemeral {
				waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Members: 1, Keys: 3})
				return
			}
			o.st.SetReadDeadline(closed.Add(time.Second))
			var gone []string
			for range 2 {
				u := o.nextUpdate()
				if !u.Deleted() || u.Source != o.reply.ID {
					t.Fatalf("got %s, want a deletion from the server", model.AppendUpdate(nil, u))
				}
				gone = append(gone, u.Key)
			}
			t.Logf("keys deleted %v after the close", time.Since(closed))
			if slices.Sort(gone); !slices.Equal(gone, []string{"w1", "w2"}) {
				t.Fatalf("deleted %v", gone)
			}
			o.st.SetReadDeadline(time.Now().Add(30 * time.Second))
			if !tc.flood {
				waitSnapshot(t, sb, "presence", map[string]string{"relayed": `1`})
			}
		})
	}
}

// A peer that reconnects with the same replica id before its old stream
// closed keeps its keys when the old stream closes; they go when the last
// of its streams does.
func TestScuttlebuttEphemeralReconnectSameID(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	o := openPeer(t, sctest.Dial(t, ts.URL), "presence", false)
	o.join("observer", nil)

	oldSess := sctest.Dial(t, ts.URL)
	old := openPeer(t, oldSess, "presence", true)
	old.join("W", nil)
	now := nowMs()
	old.send(upd("w", `"online"`, now, "W"))
	o.nextUpdate()

	// The same replica on a new connection, before the old one is noticed
	// gone: its digest carries its clock, and it writes a new key.
	renewed := openPeer(t, sctest.Dial(t, ts.URL), "presence", true)
	renewed.join("W", map[string]float64{"W": now})
	renewed.send(upd("w-again", `"online"`, now+1, "W"))
	o.nextUpdate()

	oldSess.Close()
	waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Members: 2, Keys: 2})
	waitSnapshot(t, sb, "presence", map[string]string{"w": `"online"`, "w-again": `"online"`})

	closed := time.Now()
	renewed.st.Reset()
	o.st.SetReadDeadline(closed.Add(time.Second))
	for range 2 {
		if u := o.nextUpdate(); !u.Deleted() {
			t.Fatalf("got %+v, want a deletion", u)
		}
	}
	waitSnapshot(t, sb, "presence", map[string]string{})
}

// lineOf returns an update line of exactly n bytes, newline included,
// padded with a signature (kept and passed on unchanged).
func lineOf(t testing.TB, n int, ts float64) string {
	t.Helper()
	base := len(upd("k", `1`, ts, "A")) + 1
	pad := n - base - len(`,""`)
	if pad < 0 {
		t.Fatalf("line of %d bytes is too short", n)
	}
	u := mkUpd("k", `1`, ts, "A")
	u.Sig = json.RawMessage(`"` + strings.Repeat("s", pad) + `"`)
	l := string(model.AppendUpdate(nil, u))
	if len(l) != n {
		t.Fatalf("built a line of %d bytes, want %d", len(l), n)
	}
	return strings.TrimSuffix(l, "\n")
}

// Each limit of section 4.5, at its edge (accepted) and one past it (the
// error object naming the limit, then the end of the stream).
func TestScuttlebuttLimits(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	str := func(n int) string { return `"` + strings.Repeat("v", n-2) + `"` } // a JSON string of n bytes
	now := nowMs()
	for i, tc := range []struct {
		name, line, msg string // msg "" means accepted
	}{
		{"key 256", upd(strings.Repeat("k", 256), `1`, now, "A"), ""},
		{"key 257", upd(strings.Repeat("k", 257), `1`, now, "A"), "key longer than 256 bytes"},
		{"key 257 bytes of UTF-8", upd(strings.Repeat("é", 128)+"k", `1`, now, "A"), "key longer than 256 bytes"},
		{"value 8192", upd("k", str(8192), now, "A"), ""},
		{"value 8193", upd("k", str(8193), now, "A"), "value larger than 8192 bytes"},
		{"line 16384", lineOf(t, 16384, now), ""},
		{"line 16385", lineOf(t, 16385, now), "line longer than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprint("limits-", i)
			p := openPeer(t, s, ns, false)
			p.join("A", nil)
			p.send(tc.line)
			if tc.msg != "" {
				p.wantError("limit", tc.msg)
				return
			}
			if got := p.line(); got != tc.line {
				t.Fatalf("echo of %d bytes differs from the %d bytes sent", len(got), len(tc.line))
			}
			p.send(upd("after", `1`, now+1, "A"))
			if u := p.nextUpdate(); u.Key != "after" {
				t.Fatalf("stream after an accepted line: %+v", u)
			}
			if _, ok := sb.Snapshot(ns); !ok {
				t.Fatal("no replica")
			}
		})
	}
}

// 10 000 live keys per namespace; one more is refused; deletions do not
// count.
func TestScuttlebuttKeyCountLimit(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	p := openPeer(t, s, "many", false)
	p.join("A", nil)
	now := nowMs()
	var b strings.Builder
	for i := range 10000 {
		b.WriteString(upd(fmt.Sprint("k", i), `1`, now-20000+float64(i), "A"))
		b.WriteByte('\n')
	}
	b.WriteString(upd("one more", `1`, now, "A"))
	p.send(b.String())
	p.skipUpdates()
	p.wantError("limit", "more than 10000 keys")
	if st := sb.Stats(); st.Keys != 10000 {
		t.Fatalf("stats %+v", st)
	}

	q := openPeer(t, s, "many", false)
	if h := q.join("A", map[string]float64{"A": now}); len(h) != 0 {
		t.Fatalf("%d updates in history, want none", len(h))
	}
	q.send(upd("k0", `null`, now+1, "A"), upd("one more", `1`, now+2, "A"), upd("two more", `1`, now+3, "A"))
	q.skipUpdates()
	q.wantError("limit", "more than 10000 keys")
	snap, _ := sb.Snapshot("many")
	if _, ok := snap["k0"]; ok || string(snap["one more"]) != `1` || len(snap) != 10000 {
		t.Fatalf("after a deletion and one more key: %d keys, k0 %v, one more %s", len(snap), ok, snap["one more"])
	}
}

// A line that is not JSON or not a protocol message gets bad_line, then the
// stream ends.
func TestScuttlebuttBadLine(t *testing.T) {
	ts, _ := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	for _, tc := range []struct {
		name       string
		joinFirst  bool
		line       string
		wantDigest bool
	}{
		{"not JSON", true, "hello", false},
		{"not JSON first", false, "{oops", false},
		{"digest without clock", false, `{"id":"x"}`, false},
		{"a number", true, `42`, false},
		{"another string", true, `"HELLO"`, false},
		{"short update", true, `[["k",1],5]`, false},
		{"second digest", true, `{"id":"A","clock":{}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := openPeer(t, s, "bad", false)
			if tc.joinFirst {
				p.join("A", nil)
			} else if d := p.next(); d.Kind != model.KindDigest {
				t.Fatalf("first line %+v", d)
			}
			p.send(tc.line)
			p.wantError("bad_line", "")
		})
	}
}

// Namespaces of different endpoints are distinct: echo "a" and scuttlebutt
// "a" never meet.
func TestScuttlebuttNamespacesDistinctFromEcho(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	e := join(t, s, "a")
	p := openPeer(t, s, "a", false)
	p.join("A", nil)
	waitStats(t, ts, endpoints.BrokerStats{Namespaces: 1, Members: 1})
	waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Members: 1})

	if err := e.Send([]byte("frame for echo")); err != nil {
		t.Fatal(err)
	}
	now := nowMs()
	p.send(upd("k", `1`, now, "A"))
	if u := p.nextUpdate(); u.Key != "k" {
		t.Fatalf("scuttlebutt stream got %+v", u)
	}
	if f := recvN(t, e, 1); string(f[0]) != "frame for echo" {
		t.Fatalf("echo member got %q", f[0])
	}
	if err := e.Send([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if f := recvN(t, e, 1); string(f[0]) != "second" {
		t.Fatalf("echo member got %q", f[0])
	}
}

// A namespace without members keeps its replica, id and records for a peer
// that reconnects; once its last record has expired it is dropped.
func TestScuttlebuttIdleNamespace(t *testing.T) {
	t.Run("keeps records", func(t *testing.T) {
		ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
		p := openPeer(t, sctest.Dial(t, ts.URL), "idle", false)
		p.join("A", nil)
		now := nowMs()
		p.send(upd("k", `"left behind"`, now, "A"))
		p.nextUpdate()
		p.st.CloseWrite()
		p.wantEOF()
		waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 1, Idle: 1, Keys: 1})

		q := openPeer(t, sctest.Dial(t, ts.URL), "idle", false)
		if q.reply.ID != p.reply.ID {
			t.Fatalf("replica id %q, was %q", q.reply.ID, p.reply.ID)
		}
		sameUpdates(t, q.join("A", nil), mkUpd("k", `"left behind"`, now, "A"))
	})
	t.Run("dropped after expiry", func(t *testing.T) {
		ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{MaxAge: 300 * time.Millisecond, SweepInterval: 20 * time.Millisecond})
		p := openPeer(t, sctest.Dial(t, ts.URL), "idle", false)
		p.join("A", nil)
		p.send(upd("k", `1`, nowMs(), "A"))
		p.nextUpdate()
		p.st.Reset()
		waitSBStats(t, sb, endpoints.ScuttlebuttStats{})
		if _, ok := sb.Snapshot("idle"); ok {
			t.Fatal("dropped namespace still has a replica")
		}
		q := openPeer(t, sctest.Dial(t, ts.URL), "idle", false)
		if q.reply.ID == p.reply.ID {
			t.Fatal("a dropped namespace came back with its old replica")
		}
	})
}

// At the cap on namespaces, the least recently used idle namespace is
// evicted; when every namespace has members, a new one gets `limit`.
func TestScuttlebuttNamespaceCap(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{MaxNamespaces: 2})
	s := sctest.Dial(t, ts.URL)
	visits := 0
	visit := func(ns string) {
		visits++
		p := openPeer(t, s, ns, false)
		p.join("A", nil)
		p.send(upd("k", `1`, nowMs(), fmt.Sprint("visitor-", visits)))
		p.nextUpdate()
		p.st.CloseWrite()
		p.wantEOF()
	}
	visit("a")
	visit("b")
	visit("a") // a is now the more recently used
	waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 2, Idle: 2, Keys: 2})

	c := openPeer(t, s, "c", false)
	c.join("C", nil)
	waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 2, Idle: 1, Members: 1, Keys: 1})
	if _, ok := sb.Snapshot("b"); ok {
		t.Fatal("b, the least recently used, was not evicted")
	}
	if _, ok := sb.Snapshot("a"); !ok {
		t.Fatal("a was evicted instead of b")
	}

	a := openPeer(t, s, "a", false) // from idle to busy: no new namespace
	a.join("A", nil)
	_, _, err := s.Open(sctest.Ctx(t), channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: "d"})
	if perr := sctest.WantCode(t, err, channel.CodeLimit); perr.Message != "scuttlebutt namespaces limit (2) reached" {
		t.Fatalf("message %q", perr.Message)
	}
	// Members of busy namespaces are undisturbed.
	now := nowMs()
	c.send(upd("still", `1`, now, "C"))
	if u := c.nextUpdate(); u.Key != "still" {
		t.Fatalf("%+v", u)
	}
}

func TestScuttlebuttMemberCap(t *testing.T) {
	ts, _ := newSBServer(t, endpoints.ScuttlebuttConfig{MaxMembers: 2})
	s := sctest.Dial(t, ts.URL)
	openPeer(t, s, "m", false)
	openPeer(t, s, "m", false)
	_, _, err := s.Open(sctest.Ctx(t), channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: "m"})
	if perr := sctest.WantCode(t, err, channel.CodeLimit); perr.Message != "members per scuttlebutt namespace limit (2) reached" {
		t.Fatalf("message %q", perr.Message)
	}
	openPeer(t, s, "other", false)
}

// Close ends every member's stream and stops every replica's sweeper (the
// leak check after the suite sees to the latter).
func TestScuttlebuttClose(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(t, ts.URL)
	p := openPeer(t, s, "x", false)
	p.join("A", nil)
	q := openPeer(t, s, "y", false)
	q.join("A", nil)
	q.st.CloseWrite()
	q.wantEOF()
	waitSBStats(t, sb, endpoints.ScuttlebuttStats{Namespaces: 2, Idle: 1, Members: 1})
	sb.Close()
	if _, err := io.ReadAll(p.br); !errors.Is(err, channel.ErrStreamReset) {
		t.Fatalf("member after Close: %v, want reset", err)
	}
	_, _, err := s.Open(sctest.Ctx(t), channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: "x"})
	sctest.WantCode(t, err, channel.CodeInternal)
	if st := sb.Stats(); st != (endpoints.ScuttlebuttStats{}) {
		t.Fatalf("stats after Close %+v", st)
	}
	sb.Close()
}

func TestScuttlebuttConfigValidate(t *testing.T) {
	for _, cfg := range []endpoints.ScuttlebuttConfig{
		{MaxAge: -time.Second},
		{MaxNamespaces: -1},
		{MaxLineBytes: 600},
		{MaxKeys: -5},
	} {
		if _, err := endpoints.NewScuttlebutt(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if err := endpoints.DefaultScuttlebuttConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// npmPeer is an npm scuttlebutt 5.6 Model in a node process, its
// createStream() bridged to a server stream: the bridge writes the header,
// reads the reply line, then copies bytes both ways unchanged.
type npmPeer struct {
	t       testing.TB
	cmd     *exec.Cmd
	st      *client.Stream
	ctl     *os.File // commands, the child's fd 3
	answers *bufio.Reader
	wg      sync.WaitGroup
	seq     int
	reply   channel.Reply
	peer    string // the session's peer id
}

// interopDir finds js/interop and fails with what to run when its
// node_modules are missing.
func interopDir(t testing.TB) (dir, node string) {
	t.Helper()
	// Without Node.js or the npm packages the test cannot run: a plain
	// `go test ./...` on a fresh clone skips it, saying how to enable it;
	// the project's test command installs them and requires it.
	missing := t.Skipf
	if os.Getenv("SIGNALCHANNEL_REQUIRE_INTEROP") != "" {
		missing = t.Fatalf
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("SKIPPED: the npm scuttlebutt interoperability test needs Node.js 18 or later in PATH, then `npm ci --prefix js/interop` (or run `bash scripts/test.sh`)")
	}
	dir, err = filepath.Abs(filepath.Join("..", "js", "interop"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "scuttlebutt", "model.js")); err != nil {
		missing("SKIPPED: the npm scuttlebutt interoperability test needs js/interop/node_modules: run `npm ci --prefix js/interop` from the repository root (or `bash scripts/test.sh`), then test again")
	}
	return dir, node
}

func startNPMPeer(t testing.TB, url, ns string, ephemeral bool) *npmPeer {
	t.Helper()
	dir, node := interopDir(t)
	sess := sctest.Dial(t, url)
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := json.Marshal(channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: ns, Ephemeral: ephemeral})
	if _, err := st.Write(append(hdr, '\n')); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	fromServer := bufio.NewReader(st)
	line, err := fromServer.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Time{})
	p := &npmPeer{t: t, st: st, peer: sess.ID()}
	if err := json.Unmarshal(line, &p.reply); err != nil || !p.reply.OK {
		t.Fatalf("reply %q", line)
	}

	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(node, "peer.js")
	p.cmd.Dir = dir
	p.cmd.Stderr = &testWriter{t: t}
	p.cmd.ExtraFiles = []*os.File{ctlR, ansW}
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctlR.Close()
	ansW.Close()
	p.ctl = ctlW
	p.answers = bufio.NewReader(ansR)
	ansR.SetReadDeadline(time.Now().Add(60 * time.Second))

	p.wg.Add(2)
	go func() { // server -> node, the bytes after the reply line included
		defer p.wg.Done()
		io.Copy(stdin, fromServer)
		stdin.Close()
	}()
	go func() { // node -> server
		defer p.wg.Done()
		io.Copy(st, stdout)
		st.CloseWrite()
	}()
	t.Cleanup(func() {
		p.kill()
		ansR.Close()
	})
	return p
}

// testWriter sends a child's stderr to the test log.
type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("node: %s", bytes.TrimSpace(p))
	return len(p), nil
}

// kill ends the node process and resets the stream, as a peer that
// vanishes; it waits for the bridge.
func (p *npmPeer) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.ctl.Close()
		p.st.Reset()
		p.wg.Wait()
		p.cmd.Wait()
		p.st.Close()
	}
}

func (p *npmPeer) set(key string, value any) {
	p.t.Helper()
	b, _ := json.Marshal(map[string]any{"op": "set", "key": key, "value": value})
	if _, err := p.ctl.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
}

type npmState struct {
	Seq    int                        `json:"seq"`
	ID     string                     `json:"id"`
	Synced bool                       `json:"synced"`
	State  map[string]json.RawMessage `json:"state"`
}

func (p *npmPeer) dump() npmState {
	p.t.Helper()
	p.seq++
	b, _ := json.Marshal(map[string]any{"op": "dump", "seq": p.seq})
	if _, err := p.ctl.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
	line, err := p.answers.ReadBytes('\n')
	if err != nil {
		p.t.Fatalf("node peer did not answer: %v", err)
	}
	var st npmState
	if err := json.Unmarshal(line, &st); err != nil || st.Seq != p.seq {
		p.t.Fatalf("answer %q", line)
	}
	return st
}

func stateString(m map[string]json.RawMessage) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for _, k := range keys {
		var v any
		json.Unmarshal(m[k], &v)
		c, _ := json.Marshal(v)
		fmt.Fprintf(&b, "%s=%s ", k, c)
	}
	return strings.TrimSpace(b.String())
}

// Two real npm scuttlebutt 5.6 Models, each piping createStream() to a
// server stream: sets, deletions, expiry and an ephemeral disconnect
// converge on both and on the server.
func TestScuttlebuttInteropNPM(t *testing.T) {
	ts, sb := newSBServer(t, endpoints.ScuttlebuttConfig{MaxAge: 4 * time.Second, SweepInterval: 50 * time.Millisecond})
	a := startNPMPeer(t, ts.URL, "interop", true)
	b := startNPMPeer(t, ts.URL, "interop", false)

	converge := func(want string) {
		t.Helper()
		sctest.WaitFor(t, 10*time.Second, func() error {
			snap, _ := sb.Snapshot("interop")
			if got := stateString(snap); got != want {
				return fmt.Errorf("server holds %q, want %q", got, want)
			}
			for name, p := range map[string]*npmPeer{"a": a, "b": b} {
				if p.cmd.ProcessState != nil {
					continue
				}
				st := p.dump()
				if !st.Synced {
					return fmt.Errorf("npm %s not synced", name)
				}
				if got := stateString(st.State); got != want {
					return fmt.Errorf("npm %s holds %q, want %q", name, got, want)
				}
			}
			return nil
		})
	}
	converge("")

	a.set("from-a", map[string]any{"n": 1, "s": "é\u2028"})
	b.set("from-b", "hello")
	converge(`from-a={"n":1,"s":"é\u2028"} from-b="hello"`)

	b.set("from-a", nil) // b deletes a's key
	converge(`from-b="hello"`)

	// Expiry: nobody refreshes from-b; the server's deletion reaches both.
	converge("")

	// a vanishes: its stream was ephemeral, its key goes at once.
	a.set("a-live", 1)
	b.set("b-live", 2)
	converge(`a-live=1 b-live=2`)
	killed := time.Now()
	a.kill()
	sctest.WaitFor(t, time.Second, func() error {
		if got := stateString(b.dump().State); got != `b-live=2` {
			return fmt.Errorf("npm b holds %q", got)
		}
		return nil
	})
	t.Logf("a's key gone from b %v after a was killed", time.Since(killed))
	converge(`b-live=2`)
}

// npm scuttlebutt Models replicate in a namespace where ownership applies
// as long as each writes only its own keys (its random replica id is no
// obstacle); a write of another's key is refused there and changes
// nothing, while the others go on replicating.
func TestScuttlebuttInteropNPMOwned(t *testing.T) {
	sb, err := endpoints.NewScuttlebutt(endpoints.ScuttlebuttConfig{Logger: sctest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	ts := sctest.NewServer(t, sctest.Options{
		Channel:  server.Config{Ownership: server.OwnershipOn, Owned: []string{"scuttlebutt:room"}},
		Register: func(h *server.Handler) { h.Handle(channel.EndpointScuttlebutt, sb) },
	})
	a := startNPMPeer(t, ts.URL, "room", false)
	b := startNPMPeer(t, ts.URL, "room", true)
	converge := func(want map[string]string, peers ...*npmPeer) {
		t.Helper()
		sctest.WaitFor(t, 10*time.Second, func() error {
			snap, _ := sb.Snapshot("room")
			if got := stateString(snap); got != stateOf(want) {
				return fmt.Errorf("server holds %q, want %q", got, stateOf(want))
			}
			for _, p := range peers {
				st := p.dump()
				if got := stateString(st.State); !st.Synced || got != stateOf(want) {
					return fmt.Errorf("npm peer %s holds %q (synced %v), want %q", p.peer, got, st.Synced, stateOf(want))
				}
			}
			return nil
		})
	}
	a.set(a.peer, map[string]string{"name": "A"})
	a.set(a.peer+"/status", "online")
	b.set(b.peer, map[string]string{"name": "B"})
	want := map[string]string{a.peer: `{"name":"A"}`, a.peer + "/status": `"online"`, b.peer: `{"name":"B"}`}
	converge(want, a, b)

	// a writes b's key: refused, and a's stream ends (its keys stay: it
	// was not ephemeral).
	a.set(b.peer, "forged")
	sctest.WaitFor(t, 10*time.Second, func() error {
		if st := sb.Stats(); st.Members != 1 {
			return fmt.Errorf("%d members, want b alone", st.Members)
		}
		return nil
	})
	// b goes on; once its next write is everywhere, the forged one was
	// applied nowhere.
	b.set(b.peer+"/status", "away")
	want[b.peer+"/status"] = `"away"`
	converge(want, b)
}

// stateOf is stateString of values given as JSON text.
func stateOf(m map[string]string) string {
	raw := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		raw[k] = json.RawMessage(v)
	}
	return stateString(raw)
}

// A new member joins a namespace of 10 000 live keys: the time from its
// digest to the server's "SYNC", history received.
func BenchmarkScuttlebuttJoin10000Keys(b *testing.B) {
	ts, sb := newSBServer(b, endpoints.ScuttlebuttConfig{})
	s := sctest.Dial(b, ts.URL)
	w := openPeer(b, s, "big", false)
	w.join("writer", nil)
	now := nowMs()
	var lines strings.Builder
	for i := range 10000 {
		lines.WriteString(upd(fmt.Sprintf("member/%05d", i), fmt.Sprintf(`{"name":"member %d","status":"online"}`, i), now+float64(i)/1000, "writer"))
		lines.WriteByte('\n')
	}
	w.send(lines.String())
	sctest.WaitFor(b, 30*time.Second, func() error {
		if st := sb.Stats(); st.Keys != 10000 {
			return fmt.Errorf("%d keys", st.Keys)
		}
		return nil
	})
	b.SetBytes(int64(lines.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := openPeer(b, s, "big", false)
		p.send(fmt.Sprintf(`{"id":"joiner-%d","clock":{}}`, i))
		// Count lines up to "SYNC" without parsing them: the server is
		// measured, not this client.
		n := 0
		for {
			l, err := p.br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if string(l) == "\"SYNC\"\n" {
				break
			}
			n++
		}
		if n != 1+10000 { // the server's digest and the history
			b.Fatalf("%d lines before SYNC", n)
		}
		b.StopTimer()
		p.st.CloseWrite()
		io.Copy(io.Discard, p.br)
		b.StartTimer()
	}
}

// A presence namespace of 1 000 members, each refreshing its key every 5 s,
// compressed in time: one round is every member refreshing once, and every
// member receiving every refresh (1 000 000 updates delivered). Reports
// updates delivered per second.
func BenchmarkScuttlebuttPresence1000(b *testing.B) {
	const sessions, perSession = 50, 20
	const members = sessions * perSession
	ts, _ := newSBServer(b, endpoints.ScuttlebuttConfig{})
	var (
		peers    []*sbPeer
		received = make(chan int, members)
		wg       sync.WaitGroup
	)
	for range sessions {
		s := sctest.Dial(b, ts.URL)
		for range perSession {
			p := openPeer(b, s, "presence", true)
			p.join(fmt.Sprint("member-", len(peers)), nil)
			p.st.SetReadDeadline(time.Time{})
			peers = append(peers, p)
		}
	}
	// Each member's reader counts update lines and reports them in batches.
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := p.br.Read(buf)
				if c := bytes.Count(buf[:n], []byte{'\n'}); c > 0 {
					received <- c
				}
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, p := range peers {
			p.st.Reset()
		}
		wg.Wait()
	}()

	base := nowMs()
	want, got := 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for round := 1; round <= b.N; round++ {
		ts := base + float64(round)/1000
		for i, p := range peers {
			id := fmt.Sprint("member-", i)
			p.send(upd(id, fmt.Sprintf(`{"status":"online","round":%d}`, round), ts, id))
		}
		want += members * members
		deadline := time.After(time.Minute)
		for got < want {
			select {
			case c := <-received:
				got += c
			case <-deadline:
				b.Fatalf("round %d: %d of %d updates delivered", round, got, want)
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "updates/s")
	b.ReportMetric(float64(members), "members")
}
