package peer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
)

// MaxMessageBytes is the longest message of a call, newline included
// (PROTOCOL.md section 10).
const MaxMessageBytes = 65536

// Message types of PROTOCOL.md section 10.
const (
	TypeRequest     = "request"
	TypeAccept      = "accept"
	TypeReject      = "reject"
	TypeBye         = "bye"
	TypeDescription = "description"
	TypeCandidate   = "candidate"
)

// Message is one message of a call: its type and the whole JSON object.
type Message struct {
	Type string
	Raw  json.RawMessage
}

// Decode unmarshals the whole message into v.
func (m Message) Decode(v any) error { return json.Unmarshal(m.Raw, v) }

// Call is an accepted call: a private pipe between two members of a room,
// carrying JSON messages both ways (PROTOCOL.md section 10). The
// WebRTC layer sends its descriptions and candidates over it; an
// application may send messages of its own types.
//
// Send may be called from any goroutine; Recv from one at a time.
type Call struct {
	room   *Room
	id     string // the call id
	conn   *client.RelayConn
	br     *bufio.Reader
	peer   channel.PeerInfo
	polite bool

	wmu    sync.Mutex
	closed sync.Once
}

func newCall(r *Room, id string, conn *client.RelayConn, rd io.Reader) *Call {
	if rd == nil {
		rd = conn
	}
	return &Call{
		room:   r,
		id:     id,
		conn:   conn,
		br:     bufio.NewReaderSize(rd, MaxMessageBytes),
		peer:   conn.Peer(),
		polite: r.id > conn.Peer().ID,
	}
}

// ID returns the call id, the same on both sides.
func (c *Call) ID() string { return c.id }

// Peer returns the other side, as the server vouches for it: its peer id
// and the public metadata of its token.
func (c *Call) Peer() channel.PeerInfo { return c.peer }

// Polite reports whether this side is the polite peer of perfect
// negotiation: the side whose id is the greater byte string.
func (c *Call) Polite() bool { return c.polite }

// ended reports whether the call's pipe has ended.
func (c *Call) ended() bool {
	select {
	case <-c.conn.Done():
		return true
	default:
		return false
	}
}

// Done is closed when the call's pipe has ended: reset by either side, or
// its session gone.
func (c *Call) Done() <-chan struct{} { return c.conn.Done() }

// Send writes msg, which must marshal to a JSON object with a "type", as
// one message.
func (c *Call) Send(msg any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("peer: message: %w", err)
	}
	return c.sendRaw(b)
}

func (c *Call) sendRaw(b []byte) error {
	if len(b) == 0 || b[0] != '{' {
		return errors.New("peer: a message must be a JSON object")
	}
	if len(b)+1 > MaxMessageBytes {
		return fmt.Errorf("peer: message of %d bytes, at most %d", len(b)+1, MaxMessageBytes-1)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(append(b, '\n'))
	return err
}

// Recv returns the next message. It returns io.EOF once the other side has
// said bye (ErrBye, with its reason) or half-closed, and the stream's error
// when it was reset.
func (c *Call) Recv() (Message, error) {
	line, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return Message{}, c.fail(fmt.Errorf("peer: a message longer than %d bytes", MaxMessageBytes))
	case err == io.EOF && len(line) == 0:
		return Message{}, io.EOF
	case err != nil && err != io.EOF:
		return Message{}, err
	}
	var head struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	if err := json.Unmarshal(line, &head); err != nil || len(line) == 0 || line[0] != '{' {
		return Message{}, c.fail(fmt.Errorf("peer: a message that is not a JSON object: %.40q", line))
	}
	msg := Message{Type: head.Type, Raw: append(json.RawMessage(nil), line...)}
	if head.Type == TypeBye {
		return msg, &ByeError{Reason: head.Reason}
	}
	return msg, nil
}

// fail resets the pipe after a fault of the other side and returns err.
func (c *Call) fail(err error) error {
	c.conn.Reset()
	return err
}

// Close ends the call: it says bye with reason and half-closes the pipe;
// the other side's Recv returns a *ByeError. It does not wait.
func (c *Call) Close(reason string) error {
	var err error
	c.closed.Do(func() {
		err = c.Send(struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		}{TypeBye, reason})
		c.conn.Close()
		c.room.forget(c)
	})
	return err
}

// readRequest reads the caller's first message, within d.
func readRequest(br *bufio.Reader, conn *client.RelayConn, d time.Duration) (json.RawMessage, error) {
	conn.SetReadDeadline(time.Now().Add(d))
	defer conn.SetReadDeadline(time.Time{})
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("peer: reading the request: %w", err)
	}
	var req struct {
		Type string          `json:"type"`
		Meta json.RawMessage `json:"meta"`
	}
	if err := json.Unmarshal(line, &req); err != nil || req.Type != TypeRequest {
		return nil, fmt.Errorf("peer: the first message is not a request: %.60q", line)
	}
	if string(req.Meta) == "null" {
		req.Meta = nil
	}
	return req.Meta, nil
}
