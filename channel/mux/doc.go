// Package mux is the yamux multiplexer of both ends of a signalchannel
// session.
//
// Both ends speak yamux (hashicorp/yamux spec.md, version 0) with the
// project's own multiplexer rather than a hashicorp/yamux session. A yamux
// session keeps three goroutines and a 4 KiB read buffer per connection
// (receive, send, keepalive) and an accept goroutine on top; this one keeps
// one goroutine, its read loop: on the server the goroutine that serves the
// connection, on a client one the Session owns. Writers write under one
// lock, keepalive is a timer, and on the server each stream is handed to its
// handler goroutine as its SYN arrives. Idle memory per session is what the
// aim of one server holding many peers is about.
//
// It also does what a hashicorp/yamux session cannot: reset a stream, and
// send each frame, header and body, as one WebSocket message.
//
// The roles differ only in who opens streams: a client opens odd stream ids
// (OpenStream) and resets any stream the server opens; the server accepts
// odd ids (OnStream) and opens none.
package mux
