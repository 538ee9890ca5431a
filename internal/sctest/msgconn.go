package sctest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// MsgConn carries a hashicorp/yamux session over a WebSocket: each Write
// (yamux writes a frame's header and body separately) is one message, or,
// with rng, several small ones, so frames cross message boundaries as other
// clients may send them; reads run across messages.
type MsgConn struct {
	ws  *websocket.Conn
	rng *rand.Rand // cuts writes into messages of 1 to 17 bytes

	wmu sync.Mutex
	r   io.Reader

	pings atomic.Int64 // ping requests read: whole frames, as the project's client sends them
}

func (c *MsgConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for buf := p; len(buf) > 0; {
		n := len(buf)
		if c.rng != nil {
			n = min(n, 1+c.rng.IntN(17))
		}
		if err := c.ws.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
			return 0, err
		}
		buf = buf[n:]
	}
	return len(p), nil
}

func (c *MsgConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, m, err := c.ws.ReadMessage()
			if err != nil {
				return 0, err
			}
			if len(m) == 12 && m[1] == 2 && m[3]&1 != 0 {
				c.pings.Add(1)
			}
			c.r = bytes.NewReader(m)
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *MsgConn) Close() error { return c.ws.Close() }

// NewMsgConn returns a MsgConn on ws; with rng, writes are cut into
// messages of 1 to 17 bytes.
func NewMsgConn(ws *websocket.Conn, rng *rand.Rand) *MsgConn { return &MsgConn{ws: ws, rng: rng} }

// Pings returns how many yamux ping requests were read.
func (c *MsgConn) Pings() int64 { return c.pings.Load() }

// HashicorpConfig is a hashicorp/yamux config for tests: no logs, no
// keepalive.
func HashicorpConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	return cfg
}

// ReadCloseErr reads from ws until the peer's close message, within 10 s,
// and returns its code and reason.
func ReadCloseErr(ws *websocket.Conn) (int, string, error) {
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text, nil
		}
		return 0, "", fmt.Errorf("connection ended without a close message: %w", err)
	}
}
