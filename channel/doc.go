// Package channel is signalchannel's transport: a WebSocket carrying one
// yamux session, streams that open with a header line naming an endpoint,
// the server Handler that dispatches them, and the Go client.
//
// # Server
//
// A Handler is an http.Handler for the channel path (/v1/channel). Register
// an Endpoint for each endpoint name with Handle, then serve:
//
//	h, _ := channel.NewHandler(channel.DefaultConfig())
//	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{}))
//	http.Handle("/v1/channel", h)
//
// The server runs the yamux multiplexer of package channel/mux. Each session has one goroutine,
// its read loop, started once the WebSocket is upgraded; keepalive is a
// timer. Each stream gets a goroutine of its own, in which the endpoint's
// ServeStream runs; an endpoint that waits on its peer most of the time can
// hand the reading to the read loop (Stream.ReadInline) and return, as echo
// does, so an idle echo member holds no goroutine. Writers write under one
// lock per session; a yamux frame goes out as one binary message.
//
// The Go client runs the same multiplexer in the client role: one goroutine
// per session, its read loop, which the Session owns.
//
// # Client
//
//	sess, _ := channel.Dial(ctx, "ws://127.0.0.1:8080/v1/channel", channel.DialOptions{})
//	room, _ := sess.Echo(ctx, "room-1")
//	room.Send([]byte("hello"))
//	frame, _ := room.Recv()
//
// A failure reply surfaces as an *Error carrying the protocol code:
//
//	var perr *channel.Error
//	if errors.As(err, &perr) && perr.Code == channel.CodeLimit { ... }
//
// The wire protocol is PROTOCOL.md at the repository root.
package channel
