package model_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// lockedBuffer collects what a stream writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An inline replication holds no goroutine while idle: its writer runs to
// write the digest, the history and each live update, then ends.
func TestReplicateInlineIdleHoldsNoGoroutine(t *testing.T) {
	m := model.New(model.Options{ID: "S", SweepInterval: time.Hour})
	defer m.Close()
	const n = 50
	before := runtime.NumGoroutine()
	outs := make([]*lockedBuffer, n)
	reps := make([]*model.Replication, n)
	done := make(chan error, n)
	for i := range n {
		outs[i] = &lockedBuffer{}
		rep, err := m.ReplicateInline(context.Background(), outs[i], model.ReplicateOptions{}, func(err error) { done <- err })
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = rep
		// The digest in two pieces, as a read loop may hand it on.
		digest := fmt.Sprintf(`{"id":"P%d","clock":{}}`+"\n", i)
		rep.Feed([]byte(digest[:7]))
		rep.Feed([]byte(digest[7:]))
	}
	idle := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines, %d before the %d replications", what, runtime.NumGoroutine(), before, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	idle("after the sync")
	if err := m.Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	for i, out := range outs {
		waitFor(t, 10*time.Second, func() error {
			if !strings.Contains(out.String(), `"k"`) {
				return fmt.Errorf("stream %d did not get the update: %q", i, out.String())
			}
			return nil
		})
	}
	idle("after a live update")
	// EOF: each ends cleanly, after writing what was queued.
	for _, rep := range reps {
		rep.End(nil)
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats().Subscribers; s != 0 {
		t.Fatalf("%d subscribers left", s)
	}
}

// A line past the limit is refused whether it comes whole or in pieces,
// and at the end of input without its newline; a line at the limit is
// read (and refused for what it says, not for its length).
func TestReplicateInlineLineLimit(t *testing.T) {
	const limit = 512
	for _, tc := range []struct {
		name   string
		pieces []string
		end    bool
		code   string
	}{
		{"at the limit", []string{strings.Repeat("x", limit-1) + "\n"}, false, model.CodeBadLine},
		{"at the limit in pieces", []string{strings.Repeat("x", 300), strings.Repeat("x", limit-301) + "\n"}, false, model.CodeBadLine},
		{"whole", []string{strings.Repeat("x", limit) + "\n"}, false, model.CodeLimit},
		{"in pieces", []string{strings.Repeat("x", 300), strings.Repeat("x", limit-300) + "\n"}, false, model.CodeLimit},
		{"no newline at EOF", []string{strings.Repeat("x", limit)}, true, model.CodeLimit},
		{"no newline at EOF, at the limit", []string{strings.Repeat("x", limit-1)}, true, model.CodeBadLine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := model.New(model.Options{ID: "S", MaxLineBytes: limit, SweepInterval: time.Hour})
			defer m.Close()
			out := &lockedBuffer{}
			done := make(chan error, 1)
			rep, err := m.ReplicateInline(context.Background(), out, model.ReplicateOptions{}, func(err error) { done <- err })
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.pieces {
				rep.Feed([]byte(p))
			}
			if tc.end {
				rep.End(nil)
			}
			var pe *model.ProtocolError
			if err := <-done; !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if !strings.Contains(out.String(), `"`+tc.code+`"`) {
				t.Fatalf("no error line written: %q", out.String())
			}
		})
	}
}
