package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ErrWatcherClosed is returned by KeyWatcher.Next after Close.
var ErrWatcherClosed = errors.New("model: key watcher closed")

// KeyEventKind says what happened to a key.
type KeyEventKind int

// The kinds of KeyEvent.
const (
	// KeyAdded: a key that was absent or deleted got a value; a member
	// joined, when keys are members.
	KeyAdded KeyEventKind = iota + 1
	// KeyChanged: a live key got a different value. A write of the value it
	// already had (a refresh) is not reported.
	KeyChanged
	// KeyRemoved: a live key was deleted, by its writer, by expiry or when
	// its ephemeral writer disconnected; a member left.
	KeyRemoved
)

func (k KeyEventKind) String() string {
	switch k {
	case KeyAdded:
		return "added"
	case KeyChanged:
		return "changed"
	case KeyRemoved:
		return "removed"
	}
	return fmt.Sprintf("KeyEventKind(%d)", int(k))
}

// KeyEvent is a change of one key seen by a KeyWatcher.
type KeyEvent struct {
	Kind KeyEventKind
	Key  string
	// Value is the key's new value; nil for KeyRemoved.
	Value json.RawMessage
	// Source is the id of the replica whose write made the change: for a
	// key removed at expiry or at its ephemeral writer's disconnect, the
	// server's. Empty for a removal found by a resynchronisation.
	Source string
	// TS is the timestamp of that write, in milliseconds since the Unix
	// epoch; 0 when Source is empty.
	TS float64
}

// KeyWatcher reports keys appearing, changing and disappearing in a Model:
// joins and leaves, when each member of a presence namespace writes one
// key. It is a view over Model.Subscribe that drops refreshes and, when it
// falls behind, resubscribes and reports the difference, so it never loses
// track.
//
// Next must be called from one goroutine at a time; Close from any.
type KeyWatcher struct {
	m      *Model
	buffer int

	mu      sync.Mutex // guards sub and closed against Close
	sub     *Subscription
	closed  bool
	live    map[string]Update // live keys and their current write
	seen    map[string]Update // latest write of every key, deletions included
	pending []KeyEvent
}

// WatchKeys returns a KeyWatcher of m whose first events are a KeyAdded for
// every live key, oldest write first. buffer is the subscription's buffer
// (DefaultSubscriptionBuffer when <= 0).
func WatchKeys(m *Model, buffer int) *KeyWatcher {
	w := &KeyWatcher{m: m, buffer: buffer, live: map[string]Update{}}
	w.resync()
	return w
}

// resync subscribes again and reports the difference between what the
// watcher knew and the Model's records.
func (w *KeyWatcher) resync() {
	sub := w.m.Subscribe(w.buffer)
	w.mu.Lock()
	if w.closed {
		sub.Cancel()
	}
	w.sub = sub
	w.mu.Unlock()
	hist := w.m.History(nil) // sorted by (ts, source), expired records left out
	seen := make(map[string]Update, len(hist))
	live := make(map[string]Update, len(hist))
	for _, u := range hist {
		seen[u.Key] = u
		if !u.Deleted() {
			live[u.Key] = u
		}
	}
	for _, u := range hist {
		if u.Deleted() {
			continue
		}
		if old, ok := w.live[u.Key]; !ok {
			w.pending = append(w.pending, keyEvent(KeyAdded, u))
		} else if !bytes.Equal(old.Value, u.Value) {
			w.pending = append(w.pending, keyEvent(KeyChanged, u))
		}
	}
	var gone []KeyEvent
	for k, old := range w.live {
		if _, ok := live[k]; ok {
			continue
		}
		ev := KeyEvent{Kind: KeyRemoved, Key: k}
		if u, ok := seen[k]; ok && u.Deleted() && wins(u, old) {
			ev.Source, ev.TS = u.Source, u.TS
		}
		gone = append(gone, ev)
	}
	slices.SortFunc(gone, func(a, b KeyEvent) int { return strings.Compare(a.Key, b.Key) })
	w.pending = append(w.pending, gone...)
	w.live, w.seen = live, seen
}

func keyEvent(kind KeyEventKind, u Update) KeyEvent {
	ev := KeyEvent{Kind: kind, Key: u.Key, Source: u.Source, TS: u.TS}
	if kind != KeyRemoved {
		ev.Value = u.Value
	}
	return ev
}

// wins reports whether u is a later write of its key than v: the greater
// timestamp, or on equal timestamps the greater source.
func wins(u, v Update) bool {
	if u.TS != v.TS {
		return u.TS > v.TS
	}
	return u.Source > v.Source
}

// Next returns the next change. It blocks until there is one or ctx ends,
// and returns ErrClosed once the Model is closed and ErrWatcherClosed
// after Close.
// Pending returns, and takes, the events the watcher holds without waiting:
// after WatchKeys, a KeyAdded for every live key. Like Next, it is for the
// one goroutine that reads the watcher.
func (w *KeyWatcher) Pending() []KeyEvent {
	evs := w.pending
	w.pending = nil
	return evs
}

func (w *KeyWatcher) Next(ctx context.Context) (KeyEvent, error) {
	for {
		if len(w.pending) > 0 {
			ev := w.pending[0]
			w.pending = w.pending[1:]
			return ev, nil
		}
		w.mu.Lock()
		sub, closed := w.sub, w.closed
		w.mu.Unlock()
		if closed {
			return KeyEvent{}, ErrWatcherClosed
		}
		select {
		case u, ok := <-sub.Updates():
			if !ok {
				switch err := sub.Err(); {
				case errors.Is(err, ErrSlowSubscriber):
					w.resync()
					continue
				case err != nil:
					return KeyEvent{}, err
				}
				return KeyEvent{}, ErrWatcherClosed
			}
			if ev, ok := w.apply(u); ok {
				return ev, nil
			}
		case <-ctx.Done():
			return KeyEvent{}, ctx.Err()
		}
	}
}

// apply folds one change into the watcher's view and returns the event it
// makes, if any.
func (w *KeyWatcher) apply(u Update) (KeyEvent, bool) {
	if prev, ok := w.seen[u.Key]; ok && !wins(u, prev) {
		return KeyEvent{}, false // already counted by the last resync
	}
	w.seen[u.Key] = u
	old, wasLive := w.live[u.Key]
	switch {
	case u.Deleted():
		if !wasLive {
			return KeyEvent{}, false
		}
		delete(w.live, u.Key)
		return keyEvent(KeyRemoved, u), true
	case !wasLive:
		w.live[u.Key] = u
		return keyEvent(KeyAdded, u), true
	default:
		w.live[u.Key] = u
		if bytes.Equal(old.Value, u.Value) {
			return KeyEvent{}, false
		}
		return keyEvent(KeyChanged, u), true
	}
}

// Live returns the watcher's view of the live keys and their values: that
// of the events Next returned and of those it has still to return. Call it
// from the goroutine that calls Next.
func (w *KeyWatcher) Live() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(w.live))
	for k, u := range w.live {
		out[k] = u.Value
	}
	return out
}

// Close stops the watcher; a pending or later Next returns
// ErrWatcherClosed. It may be called more than once.
func (w *KeyWatcher) Close() {
	w.mu.Lock()
	w.closed = true
	sub := w.sub
	w.mu.Unlock()
	if sub != nil {
		sub.Cancel()
	}
}
