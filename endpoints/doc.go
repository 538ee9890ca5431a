// Package endpoints holds the stream handlers of signalchannel: echo
// (broadcast namespaces), scuttlebutt (an expiring gossip model) and relay
// (token-paired pipes). Each implements server.Endpoint and shares state
// per namespace through the small interfaces it consumes (Broker for echo),
// so an implementation that spans several servers can plug in.
//
// ServeStream runs in the stream's goroutine. The echo endpoint hands a
// member's reading to the session's read loop (server.Stream.ReadInline)
// and returns at once, so an idle member holds no goroutine; a member's
// writer goroutine runs only while frames are queued for it. Publishers
// never write to a member's stream: they queue frames for it.
package endpoints
