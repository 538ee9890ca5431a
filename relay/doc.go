// Package relay pairs two streams by token and pipes bytes between them,
// with caps per pair. It is the server side of the relay endpoint
// (PROTOCOL.md, section 5): the TURN-like fallback when two WebRTC peers
// cannot connect directly, and a private channel between two peers.
//
// A stream with (namespace, local=A, remote=B) pairs with exactly one stream
// with (namespace, local=B, remote=A). An endpoint serving one relay stream
// does, from the stream's own goroutine:
//
//	link, err := pairer.Pair(ctx, relay.Key{Namespace: ns, Local: a, Remote: b}, s)
//	if err != nil {
//		// ErrConflict -> "conflict", ErrTimeout -> "timeout", ErrLimit -> "limit",
//		// ErrBadKey -> "bad_token"; after ErrReset, ErrCanceled or ErrClosed
//		// the stream is gone or the server is stopping: no reply.
//		return
//	}
//	if err := writeOpenReply(s, link.Limits()); err != nil {
//		link.Reset() // the partner's Run returns ErrReset
//		return
//	}
//	err = link.Run(ctx, s) // copies s -> partner until the pair ends
//
// Both Pair calls of a pair return the same *Link, and each side calls Run
// once with its own stream. Nothing of the partner reaches a stream before
// that stream's own Run has been called, so the open reply always comes
// first. Run returns when the pair has ended, for both sides, with the same
// error: nil when both directions were half-closed, or the reason
// (ErrReset, ErrBytesLimit, ErrLifetime, ErrIdle, ErrCanceled, ErrClosed).
//
// A Pairer pairs streams within one process. Pairing across servers can
// implement the same Pair method and build the pipe with NewLink from any
// two Streams, one of them network-backed.
//
// Pairer and Link are safe for concurrent use. A Pairer owns one sweeper
// goroutine, stopped by Close; a running Link owns one watcher goroutine
// (for resets, lifetime and idleness), stopped before Run returns. The copy
// itself runs on the goroutines that call Run.
package relay
