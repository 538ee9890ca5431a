package server

import (
	"context"
	"time"
)

// sessionCtx is a session's context, handed to its endpoints and hooks: it
// is cancelled when the session ends, or when the Handler shuts down. The
// session is its own context, rather than holding a context.WithCancel of
// the Handler's: an idle session then keeps no cancelCtx and no place among
// the Handler context's children, and the channel is made only if someone
// waits on it. Contexts derived from it are cancelled through AfterFunc
// (the context package uses it when a parent has one), without a goroutine
// each.
type sessionCtx session

func (s *session) context() context.Context { return (*sessionCtx)(s) }

func (c *sessionCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value is the Handler context's, without its cancellation: context.Cause
// of a session's context then falls back to its own Err.
func (c *sessionCtx) Value(key any) any { return context.WithoutCancel(c.h.ctx).Value(key) }

func (c *sessionCtx) Done() <-chan struct{} {
	c.ctxMu.Lock()
	defer c.ctxMu.Unlock()
	if c.ctxDone == nil {
		c.ctxDone = make(chan struct{})
		if c.ctxErr != nil {
			close(c.ctxDone)
		}
	}
	return c.ctxDone
}

func (c *sessionCtx) Err() error {
	c.ctxMu.Lock()
	defer c.ctxMu.Unlock()
	return c.ctxErr
}

// AfterFunc arranges for f to run in a goroutine of its own once the
// context is cancelled (at once if it is); stop undoes it if f has not run,
// as context.AfterFunc does.
func (c *sessionCtx) AfterFunc(f func()) (stop func() bool) {
	c.ctxMu.Lock()
	if c.ctxErr != nil {
		c.ctxMu.Unlock()
		go f()
		return func() bool { return false }
	}
	a := &f
	c.ctxAfter = append(c.ctxAfter, a)
	c.ctxMu.Unlock()
	return func() bool {
		c.ctxMu.Lock()
		defer c.ctxMu.Unlock()
		for i, x := range c.ctxAfter {
			if x == a {
				c.ctxAfter = append(c.ctxAfter[:i], c.ctxAfter[i+1:]...)
				return true
			}
		}
		return false
	}
}

// cancel cancels the session's context; later calls do nothing.
func (s *session) cancel() {
	s.ctxMu.Lock()
	if s.ctxErr != nil {
		s.ctxMu.Unlock()
		return
	}
	s.ctxErr = context.Canceled
	if s.ctxDone != nil {
		close(s.ctxDone)
	}
	after := s.ctxAfter
	s.ctxAfter = nil
	s.ctxMu.Unlock()
	for _, f := range after {
		go (*f)()
	}
}
