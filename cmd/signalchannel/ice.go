package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/turnserver"
)

// iceOptions are the flags of the ICE servers handed out and of the
// embedded TURN server.
type iceOptions struct {
	stun, turn string
	secretFile string
	ttl        time.Duration

	udp, tcp  string
	publicIP  string
	realm     string
	ports     string
	maxAllocs int
	bandwidth int
	lifetime  time.Duration
}

// startICE starts the embedded TURN server when it is on, and sets the
// ICE servers the channel hands out. It returns the TURN server, nil when
// it is off.
func startICE(o *iceOptions, ch *server.Config, log *slog.Logger) (*turnserver.Server, error) {
	embedded := o.udp != "" || o.tcp != ""
	var secret []byte
	if o.secretFile != "" {
		var err error
		if secret, err = auth.LoadSecretFile(o.secretFile); err != nil {
			return nil, fmt.Errorf("-turn-secret-file: %w", err)
		}
	}
	if (embedded || o.turn != "") && secret == nil {
		return nil, fmt.Errorf("TURN needs the secret its credentials are made with: give -turn-secret-file (at least 32 bytes; signalchannel keygen writes one)")
	}
	turnURLs := splitList(o.turn)
	var ts *turnserver.Server
	if embedded {
		cfg := turnserver.Config{UDP: o.udp, TCP: o.tcp, Realm: o.realm, Secret: secret,
			MaxAllocationsPerPeer: o.maxAllocs, Bandwidth: o.bandwidth, MaxLifetime: o.lifetime, Logger: log}
		if o.publicIP != "" {
			if cfg.PublicIP = net.ParseIP(o.publicIP); cfg.PublicIP == nil {
				return nil, fmt.Errorf("-turn-public-ip %q: not an IP address", o.publicIP)
			}
		}
		lo, hi, err := portRange(o.ports)
		if err != nil {
			return nil, err
		}
		cfg.MinPort, cfg.MaxPort = lo, hi
		if ts, err = turnserver.Start(cfg); err != nil {
			return nil, err
		}
		if len(turnURLs) == 0 {
			turnURLs = ts.URLs()
		}
		log.Info("TURN server listening", "udp", o.udp, "tcp", o.tcp, "urls", ts.URLs())
	}
	iss, err := ice.NewIssuer(ice.Config{STUN: splitList(o.stun), TURN: turnURLs, Secret: secret, TTL: o.ttl})
	if err != nil {
		if ts != nil {
			ts.Close()
		}
		return nil, err
	}
	ch.ICE = iss
	return ts, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// portRange parses MIN-MAX.
func portRange(s string) (uint16, uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("-turn-relay-ports %q: want MIN-MAX, such as 49152-65535", s)
	}
	return uint16(lo), uint16(hi), nil
}
