package cluster

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signalchannel/signalchannel/internal/sctest"
)

// FuzzPipeMessage feeds arbitrary messages, split in two, to a pipe end:
// it never panics, never buffers past its window, and what it delivers is
// what arrived in order.
func FuzzPipeMessage(f *testing.F) {
	data := func(off uint64, b string) []byte {
		return append(binary.BigEndian.AppendUint64([]byte{msgData}, off), b...)
	}
	state := func(consumed uint64, fin bool, final uint64) []byte {
		b := binary.BigEndian.AppendUint64([]byte{msgState}, consumed)
		if fin {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		return binary.BigEndian.AppendUint64(b, final)
	}
	f.Add(data(0, "hello"), state(0, true, 5))
	f.Add(data(1, "x"), []byte{msgReset})
	f.Add(state(1<<40, false, 0), data(0, ""))
	f.Add([]byte{}, []byte{'?'})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		p := &Pairer{log: sctest.QuietLogger()}
		pp := &pipe{
			p: p, window: 16, chunk: 8,
			done: make(chan struct{}), readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
			rd: makeDeadline(), wd: makeDeadline(),
		}
		var want []byte
		for _, m := range [][]byte{a, b} {
			before := pp.rcvd
			pp.onMsg(&nats.Msg{Data: m})
			if pp.rcvd > before {
				want = append(want, m[9:]...)
			}
			if pp.rcvd-pp.consumed > pp.window {
				t.Fatalf("buffered %d bytes, window %d", pp.rcvd-pp.consumed, pp.window)
			}
		}
		pp.SetReadDeadline(time.Now())
		var got []byte
		buf := make([]byte, 5)
		for {
			n, err := pp.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if pp.err == nil && string(got) != string(want) {
			t.Fatalf("read %q, want %q", got, want)
		}
	})
}

// FuzzSubjectToken: every string but the empty one becomes one valid
// subject token that decodes back to it.
func FuzzSubjectToken(f *testing.F) {
	f.Add("room-1")
	f.Add("a.b*>c d")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return
		}
		subj := subjects{p: DefaultPrefix}
		got, err := subj.syncNamespace(subj.sbSync(s))
		if err != nil || got != s {
			t.Fatalf("%q: %q, %v", s, got, err)
		}
		for _, c := range token(s) {
			if c == '.' || c == '*' || c == '>' || c <= ' ' {
				t.Fatalf("%q: token %q", s, token(s))
			}
		}
	})
}
