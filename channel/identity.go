package channel

import (
	"encoding/json"
	"strings"

	"github.com/signalchannel/signalchannel/ice"
)

// EndpointSession is the endpoint that tells a session who it is and takes
// a fresh token (PROTOCOL.md section 9). Its header needs no namespace.
const EndpointSession = "session"

// IDSeparator separates a peer id from the rest of a relay token or
// scuttlebutt key the peer owns: the peer "alice" owns "alice" and every
// name that begins with "alice/". No peer id contains it.
const IDSeparator = "/"

// Owns reports whether the peer id owns name: name is id, or begins with id
// and IDSeparator. An empty id owns nothing.
func Owns(id, name string) bool {
	if id == "" || !strings.HasPrefix(name, id) {
		return false
	}
	return len(name) == len(id) || strings.HasPrefix(name[len(id):], IDSeparator)
}

// SessionInfo is the session endpoint's reply after "ok":true: the peer id
// the server vouches for, the token's public metadata, and when the token
// expires.
type SessionInfo struct {
	// ID is the session's peer id: the token's sub, or an id the server
	// assigned when it takes no credentials.
	ID string `json:"id"`
	// Meta is the token's meta claim, absent when it has none.
	Meta json.RawMessage `json:"meta,omitempty"`
	// Exp is the token's exp in seconds since the Unix epoch; 0 (absent)
	// on a server without credentials. The server closes the session with
	// 4401 once Exp plus its clock skew allowance has passed, unless a
	// fresh token arrives first.
	Exp int64 `json:"exp,omitempty"`
	// ICE is the ICE servers this peer should use, with TURN credentials
	// for its id (PROTOCOL.md section 11); absent when the server hands out
	// none. Each session stream's reply carries fresh ones.
	ICE *ice.Servers `json:"ice,omitempty"`
}

// PeerInfo names a peer as the server vouches for it: its id and the public
// metadata of its token. The relay endpoint's open reply carries the
// partner's as "peer".
type PeerInfo struct {
	ID   string          `json:"id"`
	Meta json.RawMessage `json:"meta,omitempty"`
}
