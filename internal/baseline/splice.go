package baseline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// SpliceConfig tunes a Splice proxy. Zero fields mean the default, chosen
// to match the relay endpoint's.
type SpliceConfig struct {
	// PairTimeout is how long a connection waits for its partner, and has
	// to send its token line. Default 30s.
	PairTimeout time.Duration
	// MaxTokenBytes is the longest token. Default 128.
	MaxTokenBytes int
}

// Defaults of SpliceConfig.
const (
	DefaultPairTimeout   = 30 * time.Second
	DefaultMaxTokenBytes = 128
)

// spliceOK is what the proxy sends both connections of a pair once paired.
const spliceOK = "ok\n"

// Splice is a TCP proxy that pairs two connections by a token line and
// copies between them with io.Copy both ways. A client sends its token and
// a newline; when a second connection sends the same token, both receive
// "ok\n" and from then on every byte one sends reaches the other. A
// connection's half-close (FIN) is passed on; the pair is closed when both
// directions are done or either fails.
type Splice struct {
	cfg SpliceConfig

	mu      sync.Mutex
	waiting map[string]*spliceWaiter
	conns   map[net.Conn]struct{}
	lns     map[net.Listener]struct{}
	pairs   int
	closed  bool
	wg      sync.WaitGroup
}

type spliceWaiter struct {
	c      net.Conn
	paired chan struct{}
}

// NewSplice returns a proxy; Serve it on a listener.
func NewSplice(cfg SpliceConfig) *Splice {
	if cfg.PairTimeout <= 0 {
		cfg.PairTimeout = DefaultPairTimeout
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	return &Splice{
		cfg:     cfg,
		waiting: make(map[string]*spliceWaiter),
		conns:   make(map[net.Conn]struct{}),
		lns:     make(map[net.Listener]struct{}),
	}
}

// Pairs returns how many pairs are open.
func (s *Splice) Pairs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pairs
}

// Serve accepts connections on ln until Close, and returns ErrClosed then.
// It blocks.
func (s *Splice) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.lns[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return ErrClosed
		}
		s.wg.Go(func() { s.serveConn(c) })
	}
}

// track records c so that Close can close it; false once closed.
func (s *Splice) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Splice) forget(cs ...net.Conn) {
	s.mu.Lock()
	for _, c := range cs {
		delete(s.conns, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (s *Splice) serveConn(c net.Conn) {
	deadline := time.Now().Add(s.cfg.PairTimeout)
	c.SetReadDeadline(deadline)
	token, err := readTokenLine(c, s.cfg.MaxTokenBytes)
	if err != nil {
		s.forget(c)
		return
	}
	c.SetReadDeadline(time.Time{})

	s.mu.Lock()
	w, ok := s.waiting[token]
	if !ok {
		w = &spliceWaiter{c: c, paired: make(chan struct{})}
		s.waiting[token] = w
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-w.paired:
			return // the partner's goroutine runs the pair
		case <-t.C:
		}
		s.mu.Lock()
		if s.waiting[token] == w {
			delete(s.waiting, token)
			s.mu.Unlock()
			s.forget(c)
			return
		}
		s.mu.Unlock()
		return // paired just in time
	}
	delete(s.waiting, token)
	s.pairs++
	s.mu.Unlock()
	close(w.paired)
	s.pipe(w.c, c)
	s.mu.Lock()
	s.pairs--
	s.mu.Unlock()
}

// pipe copies a<->b until both directions end, then closes both.
func (s *Splice) pipe(a, b net.Conn) {
	defer s.forget(a, b)
	if _, err := io.WriteString(a, spliceOK); err != nil {
		return
	}
	if _, err := io.WriteString(b, spliceOK); err != nil {
		return
	}
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src) // splice(2) between TCP sockets on Linux
		if err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	wg.Go(func() { one(b, a) })
	one(a, b)
	wg.Wait()
}

// readTokenLine reads a line a byte at a time, so that nothing past it is
// taken from the connection, and returns it without the newline.
func readTokenLine(r io.Reader, max int) (string, error) {
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			break
		}
		if len(line) >= max {
			return "", fmt.Errorf("%w: longer than %d bytes", ErrBadToken, max)
		}
		line = append(line, b[0])
	}
	if len(line) == 0 {
		return "", fmt.Errorf("%w: empty", ErrBadToken)
	}
	return string(line), nil
}

// Close stops every Serve, closes every connection and waits for the
// proxy's goroutines. Close may be called more than once.
func (s *Splice) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// DialSplice connects to the proxy at addr with d (nil: a plain
// net.Dialer), sends token and waits until the proxy has paired it. It
// blocks until then or until ctx ends.
func DialSplice(ctx context.Context, d *net.Dialer, addr, token string) (*net.TCPConn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("baseline: dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*net.TCPConn, error) {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("baseline: splice %q: %w", token, err)
	}
	if _, err := io.WriteString(c, token+"\n"); err != nil {
		return fail(err)
	}
	var ok [len(spliceOK)]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = ErrNoPartner
		}
		return fail(err)
	}
	if !bytes.Equal(ok[:], []byte(spliceOK)) {
		return fail(fmt.Errorf("unexpected reply %q", ok[:]))
	}
	if !stop() {
		return fail(ctx.Err())
	}
	return c.(*net.TCPConn), nil
}
