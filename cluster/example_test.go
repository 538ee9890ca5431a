package cluster_test

import (
	"log"
	"net/http"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/cluster"
)

// One server of a three-server cluster on one machine: it embeds a NATS
// server with a route to the others and joins the cluster through it. The others run the same with their own ports.
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
	// The server builds the echo broker, replica link and relay pairer on
	// the node (Node.Join) and closes them in its Shutdown.
	srv, err := signalchannel.New(signalchannel.Config{Cluster: node})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/channel", srv)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
