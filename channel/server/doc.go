// Package server is the server side of a signalchannel session: Handler,
// an http.Handler for the channel path (/v1/channel), which checks
// credentials, upgrades to a WebSocket, runs the multiplexer of package
// channel/mux on it, reads each stream's header and hands the stream to
// the Endpoint its header names.
//
//	h, _ := server.NewHandler(server.DefaultConfig())
//	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{}))
//	http.Handle("/v1/channel", h)
//
// Each session has one goroutine, its read loop, started once the
// WebSocket is upgraded; keepalive is a timer. Each stream gets a goroutine
// of its own, in which the endpoint's ServeStream runs; an endpoint that
// waits on its peer most of the time can hand the reading to the read loop
// (Stream.ReadInline) and return, as echo does, so an idle echo member
// holds no goroutine. Writers write under one lock per session; a yamux
// frame goes out as one binary message.
package server
