// Package peer is the peer layer of the Go client: rooms whose members see
// each other join, change and leave, and private calls between two
// members, which the callee accepts or rejects, built on the scuttlebutt
// and relay endpoints as PROTOCOL.md section 10 writes them.
//
//	room, err := peer.Join(ctx, sess, "lobby", peer.RoomOptions{
//		Meta:      map[string]string{"name": "Alice"},
//		OnJoin:    func(m peer.Member) { log.Printf("%s joined", m.ID) },
//		OnRequest: func(q *peer.Request) { q.Accept() },
//	})
//	call, err := room.Call(ctx, bobID, peer.CallOptions{})
//	call.Send(map[string]string{"type": "hello"})
//	msg, err := call.Recv()
//
// A call's pipe is private to its two members, and each side knows the
// other's id as the server vouches for it (Call.Peer). The WebRTC
// connection is set up over a call.
package peer
