package cluster

import (
	"errors"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/endpoints"
)

var (
	_ signalchannel.Cluster      = (*Node)(nil)
	_ signalchannel.Disconnector = (*Node)(nil)
)

// Join builds the three seams on n and sets them in the endpoints'
// configurations: a Broker for echo (with echo's namespace and member
// caps), a ReplicaLink for scuttlebutt and a Pairer for the relay (with the
// relay's timeout, caps and limits). leave closes them,
// the pairer first; call it after the endpoints have stopped, and close the
// node after it. signalchannel.New calls Join when Config.Cluster is set.
func (n *Node) Join(echo *endpoints.EchoConfig, sb *endpoints.ScuttlebuttConfig, rel *endpoints.RelayConfig) (leave func() error, err error) {
	p, err := NewPairer(n, PairerConfig{ // zero fields get the relay's defaults
		PairTimeout: rel.PairTimeout,
		MaxWaiting:  rel.MaxWaiting,
		MaxPairs:    rel.MaxPairs,
		Limits:      rel.Limits,
	})
	if err != nil {
		return nil, err
	}
	b := NewBroker(n, BrokerConfig{MaxNamespaces: echo.MaxNamespaces, MaxMembers: echo.MaxMembers})
	link := NewReplicaLink(n, ReplicaLinkConfig{})
	echo.Broker, sb.Link, rel.Pairer = b, link, p
	return func() error {
		p.Close()
		return errors.Join(link.Close(), b.Close())
	}, nil
}
