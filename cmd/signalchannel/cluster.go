package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/signalchannel/signalchannel/cluster"
)

// natsOptions are the flags that join servers in a cluster over NATS.
type natsOptions struct {
	url           string
	listen        string
	clusterListen string
	routes        string
	clusterName   string
	nodeName      string
	prefix        string
	heartbeat     time.Duration
	deadAfter     time.Duration
}

// natsMaxPayload is the embedded NATS server's message limit; an echo frame
// crosses the cluster in one message.
const natsMaxPayload = 1 << 20

func (n *natsOptions) enabled() bool { return n.url != "" || n.listen != "" }

func (n *natsOptions) validate(maxFrame int) error {
	switch {
	case n.url != "" && n.listen != "":
		return errors.New("give -nats (an existing NATS) or -nats-listen (an embedded one), not both")
	case n.listen == "" && (n.clusterListen != "" || n.routes != ""):
		return errors.New("-nats-cluster-listen and -nats-routes need -nats-listen")
	case n.enabled() && (n.heartbeat <= 0 || n.deadAfter < n.heartbeat):
		return errors.New("-cluster-heartbeat must be positive and -cluster-dead-after at least as long")
	case n.enabled() && maxFrame > natsMaxPayload-4096:
		return fmt.Errorf("-echo-max-frame (%d) must stay under the NATS message limit (%d) in a cluster", maxFrame, natsMaxPayload-4096)
	}
	return nil
}

// clusterNode is this server's part of a cluster.
type clusterNode struct {
	url  string
	ns   *cluster.Server // nil when joining an existing NATS
	node *cluster.Node
}

// startCluster starts the embedded NATS server if asked and connects the
// node; it returns nil when no cluster is configured.
func startCluster(n *natsOptions, log *slog.Logger) (*clusterNode, error) {
	if !n.enabled() {
		return nil, nil
	}
	c := &clusterNode{url: n.url}
	if n.listen != "" {
		var routes []string
		for _, r := range strings.Split(n.routes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				routes = append(routes, r)
			}
		}
		ns, err := cluster.StartServer(cluster.ServerConfig{
			Listen:        n.listen,
			ClusterListen: n.clusterListen,
			Routes:        routes,
			ClusterName:   n.clusterName,
			Name:          n.nodeName,
			MaxPayload:    natsMaxPayload,
			Logger:        log.With("component", "nats"),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		c.ns, c.url = ns, ns.ClientURL()
	}
	node, err := cluster.Connect(cluster.Config{
		URL:               c.url,
		Name:              n.nodeName,
		Prefix:            n.prefix,
		HeartbeatInterval: n.heartbeat,
		DeadAfter:         n.deadAfter,
		Logger:            log.With("component", "cluster"),
	})
	if err != nil {
		if c.ns != nil {
			c.ns.Shutdown()
		}
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.node = node
	return c, nil
}

// close stops what startCluster started: the node, then the embedded NATS
// server.
func (c *clusterNode) close() {
	if c == nil {
		return
	}
	c.node.Close()
	if c.ns != nil {
		c.ns.Shutdown()
	}
}
