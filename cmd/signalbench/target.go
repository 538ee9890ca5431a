package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// errNotLoopback is returned for a target outside 127.0.0.0/8 and [::1].
var errNotLoopback = errors.New("the target must be on loopback (127.0.0.0/8 or [::1])")

// checkLoopbackHost accepts an IP literal in 127.0.0.0/8 or ::1, and
// "localhost" (taken as 127.0.0.1: no name is resolved, so what is checked
// is what is dialled). It returns the IP to dial.
func checkLoopbackHost(host string) (net.IP, error) {
	if strings.EqualFold(host, "localhost") {
		return net.IPv4(127, 0, 0, 1), nil
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if ip == nil {
		return nil, fmt.Errorf("%w: %q is not an IP address", errNotLoopback, host)
	}
	if v4 := ip.To4(); v4 != nil {
		if v4[0] == 127 {
			return v4, nil
		}
	} else if ip.Equal(net.IPv6loopback) {
		return ip, nil
	}
	return nil, fmt.Errorf("%w: %s is not a loopback address", errNotLoopback, ip)
}

// checkLoopbackAddr checks a HOST:PORT address and returns it with the
// host as an IP literal.
func checkLoopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", addr, err)
	}
	ip, err := checkLoopbackHost(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// parseTarget checks a server URL (ws://, or http:// taken as ws://) and
// returns its channel URL (path /v1/channel unless one is given), its
// HOST:PORT and its http:// base for /healthz and /metrics.
func parseTarget(raw string) (wsURL, addr, httpBase string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("-url %q: %v", raw, err)
	}
	switch u.Scheme {
	case "ws", "http":
	case "wss", "https":
		return "", "", "", fmt.Errorf("-url %q: TLS is not supported on loopback; use ws://", raw)
	default:
		return "", "", "", fmt.Errorf("-url %q: want ws://HOST:PORT/v1/channel", raw)
	}
	if u.Port() == "" {
		return "", "", "", fmt.Errorf("-url %q: give the port", raw)
	}
	addr, err = checkLoopbackAddr(u.Host)
	if err != nil {
		return "", "", "", err
	}
	path := u.Path
	if path == "" || path == "/" {
		path = "/v1/channel"
	}
	return "ws://" + addr + path, addr, "http://" + addr, nil
}

// sourceIPs returns n client source addresses for a server at target: for
// an IPv4 target, 127.0.0.2 upwards, so that each source has its own
// ephemeral ports and the server's per-address session cap is shared out;
// for [::1], which has no neighbours, nil (the kernel chooses).
func sourceIPs(target net.IP, n, offset int) []net.IP {
	if target.To4() == nil || n <= 0 {
		return nil
	}
	ips := make([]net.IP, 0, n)
	for i := 0; len(ips) < n; i++ {
		// 127.0.0.2 ... 127.0.0.254, 127.0.1.1 ..., skipping .0 and .255.
		k := offset + i
		hi, lo := k/253, k%253+2
		if hi == 0 && lo < 2 {
			continue
		}
		ips = append(ips, net.IPv4(127, byte(hi>>8), byte(hi), byte(lo)).To4())
	}
	return ips
}
