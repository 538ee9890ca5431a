package cluster

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// disconnectMsg asks every node to close a peer's sessions.
type disconnectMsg struct {
	From   string `json:"from"` // the node that asks, which has closed its own
	Peer   string `json:"peer"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// Disconnects lets a server close a peer's sessions on every node (the
// HTTP API's disconnect): local is called for each request of another
// node, and send asks the others. stop ends it.
func (n *Node) Disconnects(local func(peer string, code int, reason string)) (send func(peer string, code int, reason string), stop func(), err error) {
	sub, err := n.nc.Subscribe(n.subj.disconnect(), func(m *nats.Msg) {
		var d disconnectMsg
		if json.Unmarshal(m.Data, &d) != nil || d.From == n.id || d.Peer == "" {
			return
		}
		local(d.Peer, d.Code, d.Reason)
	})
	if err != nil {
		return nil, nil, err
	}
	if err := n.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, nil, err
	}
	send = func(peer string, code int, reason string) {
		b, _ := json.Marshal(disconnectMsg{From: n.id, Peer: peer, Code: code, Reason: reason})
		if err := n.nc.Publish(n.subj.disconnect(), b); err != nil {
			n.log.Warn("disconnect not sent to the cluster", "peer", peer, "err", err)
		}
	}
	return send, func() { sub.Unsubscribe() }, nil
}
