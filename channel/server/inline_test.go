package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
)

// inlineSink is an endpoint that reads its streams inline and keeps what
// they sent and how they ended.
type inlineSink struct {
	start chan struct{} // closed to let streams start reading inline

	mu    sync.Mutex
	data  map[uint32]*bytes.Buffer
	ends  map[uint32][]error
	dones map[uint32]func()
}

func newInlineSink() *inlineSink {
	return &inlineSink{start: make(chan struct{}), data: map[uint32]*bytes.Buffer{}, ends: map[uint32][]error{}, dones: map[uint32]func(){}}
}

func (k *inlineSink) ServeStream(ctx context.Context, s *server.Stream, req *server.Request) {
	if err := s.Accept(nil); err != nil {
		return
	}
	<-k.start
	id := s.ID()
	k.mu.Lock()
	k.data[id] = new(bytes.Buffer)
	k.mu.Unlock()
	done, err := s.ReadInline(func(p []byte) {
		k.mu.Lock()
		k.data[id].Write(p)
		k.mu.Unlock()
	}, func(err error) {
		k.mu.Lock()
		k.ends[id] = append(k.ends[id], err)
		done := k.dones[id]
		k.mu.Unlock()
		if done != nil {
			done()
		}
	})
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	if len(k.ends[id]) > 0 {
		k.mu.Unlock()
		done() // it ended while the call passed on what was buffered
		return
	}
	k.dones[id] = done
	k.mu.Unlock()
}

func (k *inlineSink) got(id uint32) (data []byte, ends []error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if b := k.data[id]; b != nil {
		data = bytes.Clone(b.Bytes())
	}
	return data, append([]error(nil), k.ends[id]...)
}

func startInline(t *testing.T) (*inlineSink, *client.Session, func() server.Stats) {
	k := newInlineSink()
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) { h.Handle("sink", k) })
	return k, dial(t, ts.URL), ts.Stats
}

func openSink(t *testing.T, s *client.Session) *client.Stream {
	st, _, err := s.Open(ctxT(t), map[string]any{"endpoint": "sink", "namespace": "n"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReadInlineKeepsOrder: bytes sent before the endpoint reads inline
// (more than a window of them: the sender waits for credit) and after it
// arrive whole and in order, then end reports the FIN once.
func TestReadInlineKeepsOrder(t *testing.T) {
	k, sess, stats := startInline(t)
	st := openSink(t, sess)
	want := make([]byte, 700<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	wrote := make(chan error, 1)
	go func() {
		if _, err := st.Write(want[:400<<10]); err != nil {
			wrote <- err
			return
		}
		if _, err := st.Write(want[400<<10:]); err != nil {
			wrote <- err
			return
		}
		wrote <- st.CloseWrite()
	}()
	close(k.start)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if _, ends := k.got(st.ID()); len(ends) == 0 {
			return errorf("not ended")
		}
		return nil
	})
	data, ends := k.got(st.ID())
	if !bytes.Equal(data, want) {
		t.Fatalf("got %d bytes, want %d, equal %v", len(data), len(want), bytes.Equal(data, want))
	}
	if len(ends) != 1 || ends[0] != io.EOF {
		t.Fatalf("ends %v, want one io.EOF", ends)
	}
	// done half-closed the stream and ended its service.
	if _, err := st.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read %v, want EOF", err)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := stats().Streams; n != 0 {
			return errorf("%d streams served", n)
		}
		return nil
	})
}

// TestReadInlineEnds: a reset and a session's end reach end; neither
// leaves a stream counted.
func TestReadInlineEnds(t *testing.T) {
	k, sess, stats := startInline(t)
	close(k.start)
	reset := openSink(t, sess)
	cut := openSink(t, sess)
	waitFor(t, 10*time.Second, func() error {
		if n := stats().ByEndpoint["sink"]; n != 2 {
			return errorf("%d sink streams", n)
		}
		return nil
	})
	reset.Reset()
	waitFor(t, 10*time.Second, func() error {
		if _, ends := k.got(reset.ID()); len(ends) != 1 || !errors.Is(ends[0], channel.ErrStreamReset) {
			return errorf("reset stream ends %v", ends)
		}
		return nil
	})
	sess.Close()
	waitFor(t, 10*time.Second, func() error {
		if _, ends := k.got(cut.ID()); len(ends) != 1 || !errors.Is(ends[0], net.ErrClosed) {
			return errorf("cut stream ends %v", ends)
		}
		if st := stats(); st.Streams != 0 || st.ByEndpoint["sink"] != 0 || st.Sessions != 0 {
			return errorf("%d streams, %d sink, %d sessions", st.Streams, st.ByEndpoint["sink"], st.Sessions)
		}
		return nil
	})
}

// TestReadInlineHoldsNoGoroutine: streams read inline cost the server no
// goroutine each.
func TestReadInlineHoldsNoGoroutine(t *testing.T) {
	k, sess, stats := startInline(t)
	close(k.start)
	const n = 40
	before := runtime.NumGoroutine()
	for range n {
		openSink(t, sess)
	}
	waitFor(t, 10*time.Second, func() error {
		if got := stats().ByEndpoint["sink"]; got != n {
			return errorf("%d sink streams", got)
		}
		if grown := runtime.NumGoroutine() - before; grown >= n/2 {
			return errorf("%d more goroutines for %d inline streams", grown, n)
		}
		return nil
	})
}

// ReadInline needs an accepted stream.
func TestReadInlineBeforeAccept(t *testing.T) {
	errc := make(chan error, 1)
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) {
		h.Handle("early", server.EndpointFunc(func(ctx context.Context, s *server.Stream, req *server.Request) {
			_, err := s.ReadInline(func([]byte) {}, func(error) {})
			errc <- err
			s.Accept(nil)
		}))
	})
	sess := dial(t, ts.URL)
	if _, _, err := sess.Open(ctxT(t), map[string]any{"endpoint": "early", "namespace": "n"}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("ReadInline before Accept allowed")
	}
}
