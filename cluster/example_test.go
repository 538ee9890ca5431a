package cluster_test

import (
	"log"
	"net/http"

	"github.com/signalchannel/signalchannel/channel/server"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/cluster"
	"github.com/signalchannel/signalchannel/endpoints"
)

// One server of a three-server cluster on one machine: it embeds a NATS
// server with a route to the others and wires the three endpoints to the
// cluster. The others run the same with their own ports.
func Example() {
	nats, err := cluster.StartServer(cluster.ServerConfig{
		Listen:        "127.0.0.1:4222",
		ClusterListen: "127.0.0.1:6222",
		Routes:        []string{"nats://127.0.0.1:6222", "nats://127.0.0.1:6223", "nats://127.0.0.1:6224"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer nats.Shutdown()
	node, err := cluster.Connect(cluster.Config{URL: nats.ClientURL(), Name: "a"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	broker := cluster.NewBroker(node, cluster.BrokerConfig{})
	defer broker.Close()
	link := cluster.NewReplicaLink(node, cluster.ReplicaLinkConfig{})
	defer link.Close()
	pairer, err := cluster.NewPairer(node, cluster.PairerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer pairer.Close()

	h, err := server.NewHandler(server.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{Broker: broker}))
	sb, err := endpoints.NewScuttlebutt(endpoints.ScuttlebuttConfig{Link: link})
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	h.Handle(channel.EndpointScuttlebutt, sb)
	rel, err := endpoints.NewRelay(endpoints.RelayConfig{Pairer: pairer})
	if err != nil {
		log.Fatal(err)
	}
	defer rel.Close()
	h.Handle(channel.EndpointRelay, rel)
	mux := http.NewServeMux()
	mux.Handle("/v1/channel", h)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
