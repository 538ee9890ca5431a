package model_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel/model"
)

// The suite runs twice: with Model.Replicate, then with every Replicate of
// the tests made through Model.ReplicateInline (replicateInline).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(bothReplicates{m})
}

type bothReplicates struct{ m *testing.M }

func (b bothReplicates) Run() int {
	if code := b.m.Run(); code != 0 {
		return code
	}
	replicate = replicateInline
	return b.m.Run()
}

// replicate is the Replicate under test.
var replicate = func(m *model.Model, ctx context.Context, r io.Reader, w io.Writer, opts model.ReplicateOptions) error {
	return m.Replicate(ctx, r, w, opts)
}

// replicateInline runs m.ReplicateInline as Replicate runs: a goroutine
// reads r in small pieces, as a session's read loop would, and feeds them;
// it returns onDone's error once the reader has ended too, interrupting it
// as Replicate does if the stream ended first.
func replicateInline(m *model.Model, ctx context.Context, r io.Reader, w io.Writer, opts model.ReplicateOptions) error {
	done := make(chan error, 1)
	rep, err := m.ReplicateInline(ctx, w, opts, func(err error) { done <- err })
	if err != nil {
		return err
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 13) // lines split across feeds
		for {
			n, err := r.Read(buf)
			if n > 0 {
				rep.Feed(buf[:n])
			}
			if err != nil {
				rep.End(err)
				return
			}
		}
	}()
	err = <-done
	select {
	case <-readerDone:
	default:
		if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); !ok || d.SetReadDeadline(time.Unix(1, 0)) != nil {
			if c, ok := r.(io.Closer); ok {
				c.Close()
			}
		}
		<-readerDone
	}
	return err
}

// t0 is the start of fake time in tests: a realistic epoch in milliseconds.
var t0 = time.UnixMilli(1_700_000_000_000)

// ms is t0 plus d, in milliseconds since the epoch.
func ms(d time.Duration) float64 {
	return float64(t0.Add(d).UnixMicro()) / 1000
}

// fakeClock is a time source the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newModel returns a Model on clk with a sweeper that never fires by itself,
// closed when the test ends.
func newModel(t testing.TB, id string, clk *fakeClock, opts ...func(*model.Options)) *model.Model {
	t.Helper()
	o := model.Options{ID: id, Now: clk.Now, SweepInterval: time.Hour}
	for _, f := range opts {
		f(&o)
	}
	m := model.New(o)
	t.Cleanup(func() { m.Close() })
	return m
}

// waitFor polls f until it returns nil, and fails the test if it still
// fails after timeout.
func waitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// connect replicates a and b through a pair of io.Pipes until the test ends
// or the returned stop is called; stop waits for both Replicate calls.
func connect(t testing.TB, a, b *model.Model) (stop func() (errA, errB error)) {
	t.Helper()
	abR, abW := io.Pipe()
	baR, baW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() { defer wg.Done(); errA = replicate(a, ctx, baR, abW, model.ReplicateOptions{}) }()
	go func() { defer wg.Done(); errB = replicate(b, ctx, abR, baW, model.ReplicateOptions{}) }()
	var once sync.Once
	stop = func() (error, error) {
		once.Do(func() { cancel(); wg.Wait() })
		return errA, errB
	}
	t.Cleanup(func() { stop() })
	return stop
}

// peer is the far end of a Replicate stream, driven by the test line by line.
type peer struct {
	t     testing.TB
	w     *io.PipeWriter // to the Model
	r     *io.PipeReader // from the Model
	lines chan string
	done  chan error // Replicate's result
}

// newPeer starts m.Replicate against a peer the test drives.
func newPeer(t testing.TB, ctx context.Context, m *model.Model, opts model.ReplicateOptions) *peer {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &peer{t: t, w: inW, r: outR, lines: make(chan string, 1<<16), done: make(chan error, 1)}
	go func() { p.done <- replicate(m, ctx, inR, outW, opts) }()
	go func() {
		defer close(p.lines)
		br := bufio.NewReaderSize(outR, 1<<20)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		outR.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Error("Replicate did not return")
		}
	})
	return p
}

// send writes raw bytes to the Model.
func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.w, s); err != nil {
		p.t.Fatalf("send %q: %v", s, err)
	}
}

// sendAsync writes raw bytes to the Model from another goroutine, for input
// the Model may stop reading; errors are ignored.
func (p *peer) sendAsync(s string) {
	go func() { _, _ = io.WriteString(p.w, s) }()
}

// expect reads the next line from the Model and compares it with want.
func (p *peer) expect(want string) {
	p.t.Helper()
	if got := p.next(); got != want {
		p.t.Fatalf("got line %q, want %q", got, want)
	}
}

// next returns the next line from the Model.
func (p *peer) next() string {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("stream ended, want a line")
		}
		return line
	case <-time.After(5 * time.Second):
		p.t.Fatalf("no line within 5s")
	}
	return ""
}

// result waits for Replicate to return and returns its result; it may be
// called more than once.
func (p *peer) result() error {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(5 * time.Second):
		p.t.Fatalf("Replicate did not return within 5s")
	}
	return nil
}

// noMoreLines checks that the Model wrote nothing else once Replicate
// returned.
func (p *peer) noMoreLines() {
	p.t.Helper()
	p.result()
	p.r.Close()
	for line := range p.lines {
		p.t.Fatalf("unexpected line %q", line)
	}
}

var errNotYet = errors.New("not yet")
