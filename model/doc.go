// Package model is an expiring scuttlebutt Model: a replicated key-value map
// in which every record carries the timestamp and the source replica of its
// last write, and the line protocol that replicates it. It speaks the stream
// protocol of the npm package scuttlebutt 5.x (Model#createStream), so a Model
// here and an npm Model piped to each other converge (PROTOCOL.md section 4).
//
// # Records and clocks
//
// A record is a key, a JSON value, a timestamp (float64 milliseconds since the
// Unix epoch, possibly fractional) and the id of the replica that wrote it
// (its source). A value of JSON null is a deletion; a deletion is kept as a
// record so that it replicates like any other write. Between two writes of one
// key the greater timestamp wins, and on equal timestamps the greater source
// (compared as strings), so every replica resolves a tie the same way.
//
// Each Model keeps a clock: the greatest timestamp it has seen from each
// source. An update whose timestamp is not greater than the clock entry for its
// source is stale and ignored. Local writes (Set, Delete, expiry, DeleteSource)
// use the Model's own id as source and a timestamp that strictly increases,
// even when the wall clock stalls or steps back.
//
// # Expiry
//
// A record expires MaxAge after its own timestamp. One sweeper goroutine per
// Model, started by New and stopped by Close, purges expired records every
// SweepInterval. When a live record (not a deletion) expires, the Model issues
// a deletion of its key with its own id and the current time, applies it and
// passes it to every subscriber and replication stream, so that connected
// replicas learn of the expiry at once; the deletion is itself purged, without
// notice, once it is MaxAge old. Expired records are never returned by Get,
// Snapshot or History, even before the sweeper has purged them. Remote updates
// older than MaxAge or more than MaxSkew ahead of the local clock are ignored.
// Clock entries of other sources whose timestamp is MaxAge old are dropped by
// the sweeper: every update they could reject is rejected by the age rule too.
//
// # Concurrency
//
// A Model is safe for use by many goroutines. Changes are applied under one
// lock and handed, under that lock and in the order applied, to subscribers
// and replication streams through bounded queues that never block: a
// Subscription whose buffer is full is cancelled, a Replicate stream whose
// queue overflows ends with ErrSlowPeer. No callback and no I/O runs under the
// Model's lock.
//
// # Line protocol
//
// ParseLine and the Append functions convert the four kinds of line: a digest
// {"id":..,"clock":{..}}, an update [[key,value],ts,source] (with an optional
// fourth element, a signature, kept and passed on unchanged), the string
// "SYNC", and an error object {"error":{"code":..,"message":..}}. Numbers are
// written as JavaScript's Number#toString writes them, and strings as
// JSON.stringify writes them, so lines are byte for byte those an npm peer
// would write for the same update.
//
// Replicate runs the stream protocol over any io.Reader and io.Writer: the
// server endpoint gives it a stream, a Go client its half of a connection.
package model
