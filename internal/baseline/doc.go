// Package baseline holds the two minimal servers that signalchannel's
// figures are measured against: the floor for what the same work costs
// without yamux, stream headers or endpoints.
//
//   - Broadcast is a plain WebSocket broadcast room (gorilla/websocket, no
//     yamux): every client that connects joins the one room, and every binary
//     message a client sends is delivered to every client, the sender
//     included. Each client has a bounded queue and a writer goroutine that
//     sends what is queued as one message of length-prefixed frames, as the
//     echo endpoint batches its member's frames into one stream write. It is
//     the floor for echo fan-out.
//   - Splice is a plain TCP proxy: two connections that send the same token
//     line are paired and copied both ways with io.Copy (splice(2) between
//     TCP sockets on Linux), half-close passed on. It is the floor for the
//     relay.
//
// DialBroadcast and DialSplice are their clients. Servers and clients may be
// used from any goroutine; a client's Send and its read loop may run in two
// goroutines at once.
package baseline
