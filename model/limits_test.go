package model_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

func wantLimit(t *testing.T, err error, sentinel error, msg string) {
	t.Helper()
	var pe *model.ProtocolError
	if !errors.As(err, &pe) || pe.Code != model.CodeLimit || pe.Message != msg || !errors.Is(err, sentinel) {
		t.Fatalf("got %v, want limit %q", err, msg)
	}
}

func TestKeyLimit(t *testing.T) {
	m := newModel(t, "A", newFakeClock())
	if err := m.Set(strings.Repeat("k", 256), 1); err != nil {
		t.Fatalf("256-byte key: %v", err)
	}
	wantLimit(t, m.Set(strings.Repeat("k", 257), 1), model.ErrKeyTooLong, "key longer than 256 bytes")
	// Bytes of UTF-8, not characters.
	wantLimit(t, m.Set(strings.Repeat("é", 129), 1), model.ErrKeyTooLong, "key longer than 256 bytes")
	_, err := m.Apply(upd(strings.Repeat("k", 257), "1", ms(0), "B"))
	wantLimit(t, err, model.ErrKeyTooLong, "key longer than 256 bytes")
}

// jsonString returns a JSON string of exactly n bytes.
func jsonString(n int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("v", n-2) + `"`)
}

func TestValueLimit(t *testing.T) {
	m := newModel(t, "A", newFakeClock())
	if err := m.Set("k", jsonString(8192)); err != nil {
		t.Fatalf("8192-byte value: %v", err)
	}
	wantLimit(t, m.Set("k", jsonString(8193)), model.ErrValueTooLarge, "value larger than 8192 bytes")
	_, err := m.Apply(upd("k", string(jsonString(8193)), ms(0), "B"))
	wantLimit(t, err, model.ErrValueTooLarge, "value larger than 8192 bytes")
	// Measured as compact JSON: white space does not count.
	if err := m.Set("k", json.RawMessage(string(jsonString(8192))+"   ")); err != nil {
		t.Fatalf("8192-byte value with spaces: %v", err)
	}
}

func TestKeyCountLimit(t *testing.T) {
	clk := newFakeClock()
	m := newModel(t, "A", clk, func(o *model.Options) { o.MaxAge = 10 * time.Second })
	for i := range 9999 {
		if err := m.Set(fmt.Sprint("k", i), i); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, m, upd("remote", "1", ms(0), "B"), true) // the 10000th
	if got := m.Stats().Live; got != 10000 {
		t.Fatalf("%d live keys", got)
	}
	wantLimit(t, m.Set("one more", 1), model.ErrTooManyKeys, "more than 10000 keys")
	_, err := m.Apply(upd("one more", "1", ms(0)+1, "B"))
	wantLimit(t, err, model.ErrTooManyKeys, "more than 10000 keys")
	// Rewriting a live key and deleting do not add keys.
	if err := m.Set("k1", "again"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete("k2"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, m, upd("never set", "null", ms(0)+2, "B"), true)
	// The deletion freed a place; deletions do not count.
	if err := m.Set("one more", 1); err != nil {
		t.Fatalf("after a deletion: %v", err)
	}
	wantLimit(t, m.Set("two more", 1), model.ErrTooManyKeys, "more than 10000 keys")
	// Expired keys free their places even before the sweeper runs.
	clk.Add(10 * time.Second)
	if err := m.Set("two more", 1); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestLineLimit feeds Replicate a line of exactly 16384 bytes, newline
// included, and one of 16385.
func TestLineLimit(t *testing.T) {
	line := func(n int) string {
		l := fmt.Sprintf(`[["k",1],%v,"B"]`, ms(0))
		return l + strings.Repeat(" ", n-len(l)-1) + "\n"
	}
	if len(line(16384)) != 16384 {
		t.Fatal("bad test line")
	}
	clk := newFakeClock()
	t.Run("16384", func(t *testing.T) {
		m := newModel(t, "A", clk)
		p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
		p.next() // digest
		p.send(line(16384))
		p.w.Close()
		if err := p.result(); err != nil {
			t.Fatal(err)
		}
		if got := get(m, "k"); got != "1" {
			t.Fatalf("k = %s", got)
		}
	})
	t.Run("16385", func(t *testing.T) {
		m := newModel(t, "A", clk)
		p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
		p.next() // digest
		p.sendAsync(line(16385))
		p.expect(`{"error":{"code":"limit","message":"line longer than 16384 bytes"}}` + "\n")
		wantLimit(t, p.result(), model.ErrLineTooLong, "line longer than 16384 bytes")
		if _, ok := m.Get("k"); ok {
			t.Fatal("k applied")
		}
	})
	t.Run("last line without newline", func(t *testing.T) {
		m := newModel(t, "A", clk)
		p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
		p.next()
		l := line(16384)
		p.send(l[:len(l)-1])
		p.w.Close()
		if err := p.result(); err != nil {
			t.Fatal(err)
		}
		if got := get(m, "k"); got != "1" {
			t.Fatalf("k = %s", got)
		}
	})
	t.Run("last line without newline, one too long", func(t *testing.T) {
		m := newModel(t, "A", clk)
		p := newPeer(t, t.Context(), m, model.ReplicateOptions{})
		p.next()
		l := line(16385)
		go func() { _, _ = p.w.Write([]byte(l[:len(l)-1])); p.w.Close() }()
		p.expect(`{"error":{"code":"limit","message":"line longer than 16384 bytes"}}` + "\n")
		wantLimit(t, p.result(), model.ErrLineTooLong, "line longer than 16384 bytes")
	})
	t.Run("updates that would encode longer", func(t *testing.T) {
		m := newModel(t, "A", clk)
		src := strings.Repeat("s", 16384-len(`[["k",1],1700000000000,""]`)) // one byte too many with the newline
		_, err := m.Apply(upd("k", "1", ms(0), src))
		wantLimit(t, err, model.ErrLineTooLong, "line longer than 16384 bytes")
		_, err = m.Apply(upd("k", "1", ms(0), src[1:]))
		if err != nil {
			t.Fatal(err)
		}
	})
}
