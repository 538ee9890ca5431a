// Package client is the Go client of signalchannel.
//
// Dial opens one session, which ends for good when its WebSocket does:
//
//	sess, _ := client.Dial(ctx, "ws://127.0.0.1:8080/v1/channel", client.DialOptions{})
//	room, _ := sess.Echo(ctx, "room-1")
//	room.Send([]byte("hello"))
//	frame, _ := room.Recv()
//
// Reconnect returns a Client that dials again, over a list of servers,
// whenever its session ends, and rejoins its echo namespaces
// (ReconnectingEcho) and resynchronises its models (ReconnectingReplica).
// The JavaScript client names them the same: connect and reconnect.
//
// A session runs the multiplexer of package channel/mux in the client
// role: one goroutine per session, its read loop, which the Session owns.
// A failure reply surfaces as a *channel.Error carrying the protocol code.
package client
