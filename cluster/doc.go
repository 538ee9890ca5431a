// Package cluster joins several signalchannel servers through NATS: it
// implements the endpoints' scale-out seams (endpoints.Broker,
// endpoints.ReplicaLink, endpoints.Pairer) over core NATS, and runs an
// embedded NATS server so that servers can form a cluster with nothing else
// installed.
//
// # Pieces
//
//   - StartServer runs a NATS server in the process, with a client port and
//     routes to the other servers' cluster ports.
//   - Connect makes a Node: this server's NATS connection (one for
//     everything, so what a node publishes keeps its order), its heartbeats,
//     and the liveness of the other nodes.
//   - NewBroker, NewReplicaLink and NewPairer build the three seams on a
//     Node; hand them to endpoints.EchoConfig.Broker,
//     endpoints.ScuttlebuttConfig.Link and endpoints.RelayConfig.Pairer.
//     Node.Join builds all three from the endpoints' limits, and is what
//     signalchannel.New calls when Config.Cluster is a Node.
//
// Stop them in the reverse order: the channel handler (sessions end), the
// endpoints, then Pairer, ReplicaLink and Broker (signalchannel.Server's
// Shutdown does all of that), then the Node, then the embedded Server.
//
// # Subjects
//
// Every subject starts with Config.Prefix ("signalchannel" by default).
// Namespaces and relay tokens are arbitrary UTF-8, so they are carried as
// one subject token each in unpadded base64url (RFC 4648 section 5), whose
// alphabet has none of '.', '*', '>' or whitespace: any namespace of 1 to
// 256 bytes is a valid token of at most 342 characters. The subjects are
// listed with the type subjects.
//
// # Guarantees
//
// Echo: each member on each node gets each frame once, whole; a writer's
// frames keep their order on every node; members of one node see one order
// (PROTOCOL.md section 3, across servers). Scuttlebutt: the replicas of a
// namespace on all nodes converge by the scuttlebutt rules; ephemeral keys
// end with their stream, or with their node (within DeadAfter +
// HeartbeatInterval/4 of its last heartbeat, 3.25 s by default). Relay: a
// stream pairs at most once, with one partner, wherever both are; bytes
// across nodes are flow-controlled both ways and arrive intact or the pair
// is reset.
//
// Core NATS delivers at most once: frames and updates published while a
// node is cut from NATS may be lost to the others. Replicas repair this
// with a sync after reconnection; echo frames are not repeated; relay pairs
// across nodes that lose a message are reset.
//
// # Concurrency
//
// Every exported method may be called from any goroutine. Each type's Close
// stops the goroutines it started and waits for them. Callbacks of the
// NATS connection run in its own goroutines and never block on a client.
package cluster
