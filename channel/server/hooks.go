package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
)

// Hooks let a program that embeds the server decide on sessions and
// streams, and hear what happens, without a network hop. Every field is
// optional. They are called from the sessions' goroutines: they must be
// safe for concurrent use and return quickly.
type Hooks struct {
	// Session is asked about every session whose credentials passed,
	// before its WebSocket opens: a non-nil Refusal closes it with the
	// Refusal's code (4401 and 4403 are the conventional ones; any of
	// 4000-4999) and reason, which the client gets.
	Session func(ctx context.Context, s SessionInfo) *Refusal
	// Stream is asked about every stream whose header is valid and that
	// the token allows: a non-nil *channel.Error refuses it with that
	// code (channel.CodeForbidden, by convention) and message.
	Stream func(ctx context.Context, s StreamInfo) *channel.Error
	// Event is told of what happens: sessions opened and closed,
	// namespaces joined and left, relay pairs opened and closed.
	Event func(Event)
}

// SessionInfo is a session a Hooks.Session decides on.
type SessionInfo struct {
	// PeerID is the id the session will have: the token's sub, or the id
	// the server assigns on a server without credentials.
	PeerID string
	// Meta is the token's meta claim, nil when none.
	Meta json.RawMessage
	// Remote is the client's address.
	Remote string
	// Claims are the token's, nil on a server without credentials.
	Claims *auth.Claims
}

// StreamInfo is a stream a Hooks.Stream decides on.
type StreamInfo struct {
	SessionID string
	PeerID    string
	Meta      json.RawMessage
	Endpoint  string
	Namespace string
	// Header is the stream's whole header (relay tokens, ephemeral...).
	Header *channel.Header
}

// Refusal refuses a session: the close code and reason the client gets.
type Refusal struct {
	Code   int
	Reason string
}

// EventType names an event.
type EventType string

// The events.
const (
	EventSessionOpened   EventType = "session.opened"
	EventSessionClosed   EventType = "session.closed"
	EventNamespaceJoined EventType = "namespace.joined"
	EventNamespaceLeft   EventType = "namespace.left"
	EventRelayOpened     EventType = "relay.opened"
	EventRelayClosed     EventType = "relay.closed"
)

// Event is something that happened on the server.
type Event struct {
	Type      EventType `json:"type"`
	Time      time.Time `json:"time"`
	SessionID string    `json:"session"`
	PeerID    string    `json:"peer"`
	// Endpoint and Namespace name the stream's (namespace and relay
	// events).
	Endpoint  string `json:"endpoint,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Code and Reason are the close code and reason of a session that
	// closed; By says who ended it: "client", "server" or "connection
	// lost".
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
}

// event tells the Event hook of ev, stamped now.
func (h *Handler) event(ev Event) {
	if f := h.cfg.Hooks.Event; f != nil {
		ev.Time = time.Now()
		f(ev)
	}
}

// streamEvents returns the events of an accepted stream of endpoint: a
// relay pair's, or a namespace's.
func streamEvents(endpoint string) (opened, closed EventType) {
	if endpoint == channel.EndpointRelay {
		return EventRelayOpened, EventRelayClosed
	}
	return EventNamespaceJoined, EventNamespaceLeft
}
