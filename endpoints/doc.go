// Package endpoints holds the stream handlers of signalchannel: echo
// (broadcast namespaces), scuttlebutt (an expiring gossip model) and relay
// (token-paired pipes). Each implements server.Endpoint and shares state
// per namespace through the small interfaces it consumes (Broker for echo),
// so an implementation that spans several servers can plug in.
//
// ServeStream runs in the stream's goroutine; the echo endpoint starts one
// more goroutine per member, its writer, and waits for it before returning.
// Publishers never write to a member's stream: they queue frames for it.
package endpoints
