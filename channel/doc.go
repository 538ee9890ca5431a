// Package channel is signalchannel's wire contract (PROTOCOL.md at the
// repository root): the stream header line and the reply to it, the error
// codes and error objects, echo frames and error records, and the
// WebSocket close codes. Both sides build on it:
//
//   - package channel/mux is the yamux multiplexer, in both roles;
//   - package channel/server is the server side: Handler, an
//     http.Handler that hands each stream to the endpoint its header names;
//   - package channel/client is the Go client: Dial for one session,
//     Reconnect for a client that dials again, echo, relay and replicas.
//
// A failure reply surfaces as an *Error carrying the protocol code:
//
//	var perr *channel.Error
//	if errors.As(err, &perr) && perr.Code == channel.CodeLimit { ... }
package channel
