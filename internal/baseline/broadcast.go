package baseline

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// BroadcastConfig tunes a Broadcast server. Zero fields mean the default,
// chosen to match the echo endpoint's.
type BroadcastConfig struct {
	// QueueBytes bounds what may wait for one client, frames and their
	// 4-byte length prefixes; a client whose queue would overflow is
	// dropped. Default 1 MiB.
	QueueBytes int
	// MaxMessageBytes is the longest message a client may send.
	// Default 1 MiB.
	MaxMessageBytes int64
	// WriteTimeout bounds every write to a client. Default 10s.
	WriteTimeout time.Duration
}

// Defaults of BroadcastConfig.
const (
	DefaultQueueBytes      = 1 << 20
	DefaultMaxMessageBytes = 1 << 20
	DefaultWriteTimeout    = 10 * time.Second
)

func (c BroadcastConfig) withDefaults() BroadcastConfig {
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Broadcast is a WebSocket broadcast room without yamux: an http.Handler
// where every connection joins the one room and every binary message any
// client sends reaches every client, the sender included, in one order.
// What waits for a client is sent as one binary message holding frames,
// each a 4-byte big-endian length and its bytes (PROTOCOL.md section 3's
// framing).
type Broadcast struct {
	cfg      BroadcastConfig
	upgrader websocket.Upgrader

	mu      sync.Mutex // orders the room's messages; guards clients, closed
	clients map[*bclient]struct{}
	closed  bool
	wg      sync.WaitGroup // handlers and writers
}

// NewBroadcast returns an empty room.
func NewBroadcast(cfg BroadcastConfig) *Broadcast {
	return &Broadcast{
		cfg: cfg.withDefaults(),
		// The buffer sizes are those of channel.Handler's upgrader.
		upgrader: websocket.Upgrader{
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			CheckOrigin:     func(*http.Request) bool { return true },
		},
		clients: make(map[*bclient]struct{}),
	}
}

// Clients returns how many clients are in the room.
func (b *Broadcast) Clients() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

// ServeHTTP upgrades the request, joins the room and relays the client's
// messages until it leaves. It blocks for the connection's lifetime.
func (b *Broadcast) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()

	ws, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(b.cfg.MaxMessageBytes)
	c := &bclient{ws: ws, limit: b.cfg.QueueBytes, writeTimeout: b.cfg.WriteTimeout, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ws.Close()
		return
	}
	b.clients[c] = struct{}{}
	b.mu.Unlock()

	var writer sync.WaitGroup
	writer.Go(c.writeLoop)
	for {
		mt, p, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		b.publish(p)
	}
	b.mu.Lock()
	delete(b.clients, c)
	b.mu.Unlock()
	c.stop()
	ws.Close() // cuts short a write the writer is blocked in
	writer.Wait()
}

// publish queues p for every client; p is shared and never modified.
func (b *Broadcast) publish(p []byte) {
	b.mu.Lock()
	for c := range b.clients {
		c.deliver(p)
	}
	b.mu.Unlock()
}

// Close closes every connection and waits for their goroutines. Later
// connections are refused. Close may be called more than once.
func (b *Broadcast) Close() error {
	b.mu.Lock()
	b.closed = true
	for c := range b.clients {
		c.ws.Close() // ends the handler's read loop
	}
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

// bclient is one connection's outbound side: a bounded queue drained by its
// writer goroutine.
type bclient struct {
	ws           *websocket.Conn
	limit        int
	writeTimeout time.Duration

	mu     sync.Mutex
	queue  [][]byte
	spare  [][]byte
	queued int
	done   bool // stop writing: left, closed or dropped
	wake   chan struct{}
	buf    []byte // the writer's message buffer
}

// deliver queues p without blocking; on overflow the client is dropped.
func (c *bclient) deliver(p []byte) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	size := 4 + len(p)
	if c.queued+size > c.limit {
		c.done = true
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		c.ws.Close() // dropped: the handler's read loop ends too
		c.signal()
		return
	}
	c.queue = append(c.queue, p)
	c.queued += size
	c.mu.Unlock()
	c.signal()
}

func (c *bclient) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *bclient) stop() {
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	c.signal()
}

// writeLoop sends what is queued, one message per batch, until stop.
func (c *bclient) writeLoop() {
	for {
		c.mu.Lock()
		batch, done := c.queue, c.done
		if len(batch) > 0 {
			c.queue, c.spare, c.queued = c.spare[:0], nil, 0
		}
		c.mu.Unlock()
		switch {
		case done:
			return
		case len(batch) == 0:
			<-c.wake
			continue
		}
		buf := c.buf[:0]
		for _, p := range batch {
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(p)))
			buf = append(buf, p...)
		}
		clear(batch)
		c.mu.Lock()
		c.spare = batch
		c.mu.Unlock()
		c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		err := c.ws.WriteMessage(websocket.BinaryMessage, buf)
		if cap(buf) <= 64<<10 {
			c.buf = buf[:0]
		} else {
			c.buf = nil
		}
		if err != nil {
			c.ws.Close()
			return
		}
	}
}

// BroadcastClient is a client of a Broadcast room. Send and Recv may be
// called from two goroutines at once.
type BroadcastClient struct {
	ws  *websocket.Conn
	wmu sync.Mutex
	r   io.Reader // the message being read, nil between messages
	buf []byte    // the last frame Recv returned
}

// broadcastDialer matches channel's client dialer: a pooled write buffer.
var broadcastDialer = &websocket.Dialer{
	HandshakeTimeout: 45 * time.Second,
	WriteBufferPool:  &sync.Pool{},
}

// DialBroadcast joins the room at url (ws://host:port/). d may be nil for
// a default dialer. It blocks until the handshake completes or ctx ends.
func DialBroadcast(ctx context.Context, url string, d *websocket.Dialer) (*BroadcastClient, error) {
	if d == nil {
		d = broadcastDialer
	}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("baseline: dial %s: %w", url, err)
	}
	return &BroadcastClient{ws: ws}, nil
}

// Send sends p as one binary message; every client receives it as one frame.
func (c *BroadcastClient) Send(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, p)
}

// Recv returns the next frame. The slice is valid until the next Recv.
// Frames are read from the message as they are needed, into one buffer
// that is reused, so that a client reads as cheaply as it can.
func (c *BroadcastClient) Recv() ([]byte, error) {
	var hdr [4]byte
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return nil, err
			}
			c.r = r
		}
		_, err := io.ReadFull(c.r, hdr[:])
		if err == io.EOF {
			c.r = nil // the next message
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		break
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > cap(c.buf) {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return c.buf, nil
}

// Close closes the connection.
func (c *BroadcastClient) Close() error { return c.ws.Close() }
