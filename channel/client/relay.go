package client

import (
	"context"
	"fmt"

	"github.com/signalchannel/signalchannel/channel"
)

// relayHeader is the relay stream header. Unlike Header it sends empty
// tokens as they are, so that the server names the empty one.
type relayHeader struct {
	Endpoint  string `json:"endpoint"`
	Namespace string `json:"namespace"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Peer      bool   `json:"peer"` // name the partner in the open reply
}

// Relay opens a relay stream (PROTOCOL.md section 5) with the tokens local
// and remote in namespace, and returns it once the peer that opened the
// mirror stream (local and remote swapped) has arrived and the server has
// sent the open reply.
//
// Relay blocks until then, until the server's pairing timeout (an *Error
// with CodeTimeout), or until ctx ends, which resets the waiting stream so
// that the server forgets it at once. A failure reply (conflict, limit,
// bad_token, ...) is returned as an *Error.
func (s *Session) Relay(ctx context.Context, namespace, local, remote string) (*RelayConn, error) {
	st, reply, err := s.Open(ctx, relayHeader{Endpoint: channel.EndpointRelay, Namespace: namespace, Local: local, Remote: remote, Peer: true})
	if err != nil {
		return nil, err
	}
	if !reply.Open {
		st.Reset()
		st.Close()
		return nil, fmt.Errorf("%w: relay reply without \"open\":true", channel.ErrBadReply)
	}
	c := &RelayConn{Stream: st}
	if reply.Limit != nil {
		c.limit = *reply.Limit
	}
	if reply.Peer != nil {
		c.peer = *reply.Peer
	}
	return c, nil
}

// RelayConn is one end of an open relay pair: a net.Conn whose bytes reach
// the peer unchanged. It is a *Stream, so
//
//   - CloseWrite and Close half-close (the peer reads EOF, reading goes on);
//     the pair ends when both sides have half-closed;
//   - Reset aborts the pair: both sides get a reset;
//   - Done is closed when the pair was reset, by the peer, the server or a
//     cap, or the session ended.
//
// Read and Write may be called from two goroutines at once.
type RelayConn struct {
	*Stream
	limit channel.RelayLimit
	peer  channel.PeerInfo
}

// Peer returns who is at the other end, as the server vouches for it: the
// partner's peer id and the public metadata of its token (PROTOCOL.md
// section 9). Its ID is "" against a server that does not say.
func (c *RelayConn) Peer() channel.PeerInfo { return c.peer }

// Limit returns the caps the server announced for this pair: bytes per
// direction and lifetime in seconds, 0 meaning no cap. Past either, the
// server resets both sides.
func (c *RelayConn) Limit() channel.RelayLimit { return c.limit }
