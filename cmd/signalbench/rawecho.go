package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel"
)

// rawEcho is an echo member that speaks just enough yamux on a WebSocket of
// its own: one stream (id 1), window updates as it reads, answers to pings,
// and the peer's window respected when it sends. It reads frames straight
// from the WebSocket messages, as the baseline's client does, so that the
// clients, which share the machine with the server, take from it about what
// the baseline's clients take (-client raw). The Go client (-client go)
// runs a whole client session, with its stream buffers and read loop.
type rawEcho struct {
	ws *websocket.Conn

	// read side, owned by the reader
	r       io.Reader // inside a data frame of stream 1
	left    uint32    // its body bytes still to read
	fin     bool      // the server half-closed the stream
	unacked uint32    // bytes read and not yet granted back
	buf     []byte    // the last frame Recv returned

	wmu    sync.Mutex // serialises writes
	mu     sync.Mutex // guards window and ended
	cond   *sync.Cond // signalled when the send window grows or the stream ends
	window uint32     // what the server still takes on stream 1
	ended  error
}

const (
	rawWindow = 256 << 10 // yamux's initial stream window
	rawID     = 1
)

func rawHeader(typ byte, flags uint16, id, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// dialRawEcho joins namespace ns as a member over a new WebSocket.
func dialRawEcho(ctx context.Context, url string, d *websocket.Dialer, ns string) (*rawEcho, error) {
	dd := *d
	dd.Subprotocols = []string{channel.Subprotocol}
	ws, _, err := dd.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &rawEcho{ws: ws, window: rawWindow}
	c.cond = sync.NewCond(&c.mu)
	line, _ := json.Marshal(map[string]string{"endpoint": channel.EndpointEcho, "namespace": ns})
	line = append(line, '\n')
	msg := append(rawHeader(1, 1, rawID, 0), rawHeader(0, 0, rawID, uint32(len(line)))...)
	if err := ws.WriteMessage(websocket.BinaryMessage, append(msg, line...)); err != nil {
		ws.Close()
		return nil, err
	}
	c.window -= uint32(len(line))
	if dl, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(dl)
	}
	var reply []byte
	for !bytes.HasSuffix(reply, []byte("\n")) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			ws.Close()
			return nil, fmt.Errorf("echo reply: %w", err)
		}
		reply = append(reply, b[0])
	}
	ws.SetReadDeadline(time.Time{})
	if !bytes.HasPrefix(reply, []byte(`{"ok":true`)) {
		ws.Close()
		return nil, fmt.Errorf("echo refused: %s", bytes.TrimSpace(reply))
	}
	return c, nil
}

// Read reads stream 1's bytes, handling the frames around them.
func (c *rawEcho) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.fin {
			return 0, io.EOF
		}
		if err := c.nextFrame(); err != nil {
			c.end(err)
			return 0, err
		}
	}
	n, err := c.r.Read(p[:min(uint32(len(p)), c.left)])
	c.left -= uint32(n)
	if err == io.EOF && c.left > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	if c.unacked += uint32(n); c.unacked >= rawWindow/2 {
		err = errors.Join(err, c.write(rawHeader(1, 0, rawID, c.unacked)))
		c.unacked = 0
	}
	return n, err
}

// nextFrame reads the next message's frame (the server sends one a
// message): a data frame of stream 1 is left for Read.
func (c *rawEcho) nextFrame() error {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return err
	}
	var h [12]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	typ, flags := h[1], binary.BigEndian.Uint16(h[2:4])
	id, length := binary.BigEndian.Uint32(h[4:8]), binary.BigEndian.Uint32(h[8:12])
	switch {
	case typ == 2 && flags&1 != 0: // ping
		return c.write(rawHeader(2, 2, 0, length))
	case id != rawID || typ > 1:
		return nil
	case flags&8 != 0:
		return channel.ErrStreamReset
	}
	if typ == 1 && length > 0 {
		c.mu.Lock()
		c.window += length
		c.mu.Unlock()
		c.cond.Broadcast()
	}
	if typ == 0 {
		c.r, c.left = r, length
	}
	if flags&4 != 0 {
		c.fin = true
	}
	return nil
}

func (c *rawEcho) write(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, msg)
}

// end wakes a sender waiting for window: the stream is over.
func (c *rawEcho) end(err error) {
	c.mu.Lock()
	if c.ended == nil {
		c.ended = err
	}
	c.mu.Unlock()
	c.cond.Broadcast()
}

// Send sends p as one echo frame, once the server's window has room.
func (c *rawEcho) Send(p []byte) error {
	size := uint32(channel.FrameHeaderSize + len(p))
	if size > rawWindow {
		return channel.ErrFrameTooLarge
	}
	msg := append(rawHeader(0, 0, rawID, size), channel.AppendFrame(nil, p)...)
	c.mu.Lock()
	for c.window < size && c.ended == nil {
		c.cond.Wait()
	}
	err := c.ended
	if err == nil {
		c.window -= size
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.write(msg)
}

// Recv returns the next echo frame; it is valid until the next Recv.
func (c *rawEcho) Recv() ([]byte, error) {
	var hdr [channel.FrameHeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > cap(c.buf) {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c, c.buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return c.buf, nil
}

// Close closes the connection.
func (c *rawEcho) Close() error {
	c.end(net.ErrClosed)
	return c.ws.Close()
}
