// Package webhook posts the server's events to an app's back end: batched
// JSON, signed with HMAC-SHA256 under a shared secret, retried with
// backoff, from a bounded queue that never blocks a session (PROTOCOL.md
// section 12).
//
// Each POST carries a JSON object {"events":[...]} and the headers
//
//	Webhook-Timestamp: <unix seconds>
//	Webhook-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">
//
// A receiver recomputes the signature, compares it in constant time, and
// refuses timestamps too far from its clock (replays).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel/server"
)

// Defaults of Config.
const (
	DefaultQueue    = 10000
	DefaultBatch    = 100
	DefaultInterval = 200 * time.Millisecond
	DefaultTimeout  = 10 * time.Second
	// MaxBackoff bounds the wait between two tries of a batch.
	MaxBackoff = 30 * time.Second
)

// Headers of a delivery.
const (
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// Config configures a Sender.
type Config struct {
	// URL receives the POSTs.
	URL string
	// Secret signs them.
	Secret []byte
	// Types, if not empty, are the event types sent; others are left out.
	Types []server.EventType
	// Queue bounds the events waiting; past it an event is dropped and
	// counted. Default 10000.
	Queue int
	// Batch bounds the events of one POST. Default 100.
	Batch int
	// Interval is how long the sender waits for more events before it
	// posts a batch that is not full. Default 200ms.
	Interval time.Duration
	// Timeout bounds one POST. Default 10s.
	Timeout time.Duration
	// Client makes the requests. Default one with no other settings.
	Client *http.Client
	// Logger receives failures. Default slog.Default().
	Logger *slog.Logger
}

// Sender posts events. Send never blocks; Close stops it. Its methods may
// be called from any goroutine.
type Sender struct {
	cfg   Config
	types map[server.EventType]bool
	log   *slog.Logger

	mu     sync.Mutex
	queue  []server.Event
	wake   chan struct{}
	closed bool

	done      chan struct{}
	closeOnce sync.Once
	stop      context.CancelFunc
	ctx       context.Context
	stats     Stats
	runner    sync.WaitGroup
}

// Stats are a Sender's counters.
type Stats struct {
	Sent     atomic.Int64 // events the receiver took (2xx)
	Dropped  atomic.Int64 // events the full queue refused
	Failures atomic.Int64 // POSTs that failed (to be tried again)
}

// New starts a Sender.
func New(cfg Config) (*Sender, error) {
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("webhook: URL %q: want http:// or https://", cfg.URL)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook: no secret to sign with")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sender{cfg: cfg, log: cfg.Logger.With("part", "webhook"), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if len(cfg.Types) > 0 {
		s.types = map[server.EventType]bool{}
		for _, t := range cfg.Types {
			s.types[t] = true
		}
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.runner.Add(1)
	go s.run()
	return s, nil
}

// Send queues ev, unless its type is filtered out or the queue is full
// (then it is counted as dropped). It never blocks: it is the server's
// Hooks.Event.
func (s *Sender) Send(ev server.Event) {
	if s.types != nil && !s.types[ev.Type] {
		return
	}
	s.mu.Lock()
	if s.closed || len(s.queue) >= s.cfg.Queue {
		s.mu.Unlock()
		s.stats.Dropped.Add(1)
		return
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats returns the sender's counters.
func (s *Sender) Stats() *Stats { return &s.stats }

// Queued returns how many events wait.
func (s *Sender) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Close stops the sender: what is queued is tried once more, within ctx,
// then left.
// Close may be called more than once.
func (s *Sender) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, s.stop)
	defer stop()
	s.closeOnce.Do(func() { close(s.done) })
	s.runner.Wait()
	s.stop()
}

// run posts batches until Close.
func (s *Sender) run() {
	defer s.runner.Done()
	backoff := time.Duration(0)
	for {
		if backoff == 0 {
			// Wait for an event, then a little for more to batch.
			select {
			case <-s.wake:
			case <-s.done:
				s.flush()
				return
			}
			if s.Queued() < s.cfg.Batch {
				select {
				case <-time.After(s.cfg.Interval):
				case <-s.done:
					s.flush()
					return
				}
			}
		} else {
			select {
			case <-time.After(backoff):
			case <-s.done:
				s.flush()
				return
			}
		}
		if s.post() {
			backoff = 0
			if s.Queued() > 0 {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		} else {
			backoff = min(max(2*backoff, 100*time.Millisecond), MaxBackoff)
		}
	}
}

// flush tries what is queued once more, at Close.
func (s *Sender) flush() {
	for s.Queued() > 0 && s.ctx.Err() == nil {
		if !s.post() {
			return
		}
	}
}

// post sends the oldest batch; it reports whether the receiver took it
// (the batch then leaves the queue).
func (s *Sender) post() bool {
	s.mu.Lock()
	n := min(len(s.queue), s.cfg.Batch)
	batch := append([]server.Event(nil), s.queue[:n]...)
	s.mu.Unlock()
	if n == 0 {
		return true
	}
	body, err := json.Marshal(struct {
		Events []server.Event `json:"events"`
	}{batch})
	if err != nil {
		s.log.Error("webhook batch not encoded", "err", err)
		s.drop(n)
		return true
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		s.log.Error("webhook request", "err", err)
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, "v1="+Sign(s.cfg.Secret, ts, body))
	resp, err := s.cfg.Client.Do(req)
	if err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("the receiver answered %s", resp.Status)
		}
	}
	if err != nil {
		s.stats.Failures.Add(1)
		s.log.Warn("webhook delivery failed; will try again", "url", s.cfg.URL, "events", n, "err", err)
		return false
	}
	s.drop(n)
	s.stats.Sent.Add(int64(n))
	return true
}

// drop takes the first n events off the queue.
func (s *Sender) drop(n int) {
	s.mu.Lock()
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	s.mu.Unlock()
}

// Sign returns the hex HMAC-SHA256 of "<timestamp>.<body>" under secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a delivery as a receiver does: the signature header
// against the body and timestamp, and the timestamp within tolerance of
// now.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: timestamp %q: %w", timestamp, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: timestamp %s off by %v", timestamp, d.Round(time.Second))
	}
	want := "v1=" + Sign(secret, timestamp, body)
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return errors.New("webhook: the signature does not match")
	}
	return nil
}
