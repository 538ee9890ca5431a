package server

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// A session's context is cancelled once, wakes Done, and cancels the
// contexts derived from it, without a goroutine parked for each.
func TestSessionContext(t *testing.T) {
	h := &Handler{ctx: context.Background()}
	s := &session{h: h}
	ctx := s.context()
	before := runtime.NumGoroutine()
	var kids []context.Context
	for range 50 {
		k, cancel := context.WithCancel(ctx)
		defer cancel()
		kids = append(kids, k)
	}
	// One derived and cancelled first: it leaves the session's list.
	k, cancel := context.WithCancel(ctx)
	cancel()
	if len(s.ctxAfter) != 50 {
		t.Fatalf("%d functions registered, want 50", len(s.ctxAfter))
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Fatalf("%d goroutines for 50 derived contexts, %d before", g, before)
	}
	if ctx.Err() != nil || k.Err() == nil {
		t.Fatal("wrong state before the cancel")
	}
	done := ctx.Done()
	s.cancel()
	s.cancel()
	<-done
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Err %v", ctx.Err())
	}
	for i, k := range kids {
		select {
		case <-k.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("derived context %d not cancelled", i)
		}
	}
	// After the cancel: Done is closed, a new AfterFunc runs at once.
	s2 := &session{h: h}
	s2.cancel()
	<-s2.context().Done()
	ran := make(chan struct{})
	context.AfterFunc(s2.context(), func() { close(ran) })
	<-ran
}
