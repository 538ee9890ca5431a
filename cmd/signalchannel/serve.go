package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signalchannel/signalchannel"
	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/ice"
	"github.com/signalchannel/signalchannel/internal/demo"
	"github.com/signalchannel/signalchannel/turnserver"
	"github.com/signalchannel/signalchannel/webhook"
)

// options are the server's settings, one flag each.
type options struct {
	addr            string
	shutdownTimeout time.Duration
	drainTimeout    time.Duration
	logFormat       string
	logLevel        string
	origins         string
	demo            bool
	nats            natsOptions
	secretFile      string
	publicKeyFile   string
	leeway          time.Duration
	ownership       string
	owned           string
	pprofListen     string
	tlsCert         string
	tlsKey          string
	apiKeyFile      string
	webhookURL      string
	webhookSecret   string
	webhookEvents   string
	webhookQueue    int
	ice             iceOptions

	channel server.Config
	echo    endpoints.EchoConfig
	relay   endpoints.RelayConfig
	sb      endpoints.ScuttlebuttConfig
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{channel: server.DefaultConfig()}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", ":8080", "listen address HOST:PORT")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 0, "on SIGINT/SIGTERM, how long open streams may go on (no new sessions or streams) before sessions are closed with 1001")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "after the drain, how long closing sessions may take before the process exits")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.origins, "allowed-origins", "", "comma-separated browser origins allowed to connect, e.g. https://*.example.com (empty: any)")
	fs.StringVar(&o.secretFile, "auth-secret-file", "", "require HS256 tokens signed with the secret in this file (at least 32 bytes)")
	fs.StringVar(&o.publicKeyFile, "auth-public-key-file", "", "require EdDSA tokens verified with this Ed25519 public key (PEM)")
	fs.DurationVar(&o.leeway, "auth-leeway", auth.DefaultLeeway, "clock skew tolerated on a token's exp, nbf and iat")
	fs.StringVar(&o.ownership, "ownership", "auto", "whether a session acts only as itself: a relay stream's local token must be its peer id or begin with it and '/', and in -owned namespaces and those of a token's own claim it writes only its own keys: auto (on with credentials), on or off")
	fs.StringVar(&o.owned, "owned", "", "comma-separated endpoint:namespace patterns where ownership applies to every session, e.g. scuttlebutt:presence,scuttlebutt:room-*")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "serve HTTPS and wss:// with this certificate (PEM, with its chain); read again on SIGHUP and when it changes")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "the private key of -tls-cert-file (PEM)")
	fs.StringVar(&o.apiKeyFile, "api-key-file", "", "turn the HTTP API (/v1/api/) on, for requests that carry this key (at least 32 bytes, in this file) as Authorization: Bearer")
	fs.StringVar(&o.webhookURL, "webhook-url", "", "post the server's events to this URL, signed (see PROTOCOL.md section 12; empty: off)")
	fs.StringVar(&o.webhookSecret, "webhook-secret-file", "", "the secret the webhook posts are signed with (at least 32 bytes), in this file")
	fs.StringVar(&o.webhookEvents, "webhook-events", "", "comma-separated event types to post, e.g. session.opened,session.closed (empty: all)")
	fs.IntVar(&o.webhookQueue, "webhook-queue", webhook.DefaultQueue, "events waiting for the webhook at most; past it they are dropped and counted")
	fs.BoolVar(&o.demo, "demo", false, "serve the WebRTC demo page and the JavaScript client under /demo/")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "serve net/http/pprof under /debug/pprof/ on this separate address HOST:PORT, never on -addr (empty: off)")

	c := &o.channel
	fs.IntVar(&c.MaxStreams, "max-streams", c.MaxStreams, "streams one session may have open at once")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", c.HeaderTimeout, "time a new stream has to send its header line")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest WebSocket message a client may send")
	fs.DurationVar(&c.KeepAliveInterval, "keepalive", c.KeepAliveInterval, "interval between yamux pings to each client")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "bound on every write to a client; a client that does not answer a ping within it is dropped")
	fs.DurationVar(&c.StreamCloseTimeout, "stream-close-timeout", c.StreamCloseTimeout, "how long a half-closed stream waits for the client's FIN")
	fs.IntVar(&c.MaxPingsPerSecond, "max-pings-per-second", c.MaxPingsPerSecond, "yamux pings a client may send per second before its session is closed (4400)")
	fs.IntVar(&c.MaxSessions, "max-sessions", c.MaxSessions, "sessions on the server; past it a connection is closed with 4429")
	fs.IntVar(&c.MaxSessionsPerIP, "max-sessions-per-ip", c.MaxSessionsPerIP, "sessions from one client address; past it a connection is closed with 4429")
	fs.IntVar(&c.MaxStreamOpensPerSecond, "max-stream-opens-per-second", c.MaxStreamOpensPerSecond, "streams one session may open per second; past it a stream gets limit")
	fs.IntVar(&c.MaxHeaderErrors, "max-header-errors", c.MaxHeaderErrors, "malformed stream headers one session may send before it is closed with 4400")

	e := &o.echo
	fs.IntVar(&e.MaxFrame, "echo-max-frame", endpoints.DefaultEchoMaxFrame, "largest echo frame in bytes")
	fs.IntVar(&e.QueueBytes, "echo-queue-bytes", endpoints.DefaultEchoQueueBytes, "bytes queued for one echo member before it is dropped")
	fs.IntVar(&e.PublishRate, "echo-publish-rate", endpoints.DefaultEchoPublishRate, "bytes per second one echo member may publish, frames counted with their 4-byte length prefix; a frame past the budget gets limit and ends the membership (0: no budget)")
	fs.IntVar(&e.PublishBurst, "echo-publish-burst", endpoints.DefaultEchoPublishBurst, "bytes one echo member may publish at once: at most -echo-queue-bytes, at least one frame of -echo-max-frame and its prefix")
	fs.IntVar(&e.MaxNamespaces, "echo-max-namespaces", 0, "echo namespaces on the server (0: no cap)")
	fs.IntVar(&e.MaxMembers, "echo-max-members", 0, "members of one echo namespace (0: no cap)")

	r := &o.relay
	*r = endpoints.DefaultRelayConfig()
	fs.DurationVar(&r.PairTimeout, "relay-pair-timeout", r.PairTimeout, "how long a relay stream waits for its partner")
	fs.IntVar(&r.MaxWaiting, "relay-max-waiting", r.MaxWaiting, "relay streams waiting for a partner at once")
	fs.IntVar(&r.MaxPairs, "relay-max-pairs", r.MaxPairs, "relay pairs open at once")
	fs.Int64Var(&r.Limits.Bytes, "relay-max-bytes", 0, "bytes per direction of one relay pair (0: no cap)")
	fs.DurationVar(&r.Limits.Lifetime, "relay-max-lifetime", 0, "lifetime of one relay pair, whole seconds (0: no cap)")
	fs.DurationVar(&r.Limits.Idle, "relay-idle-timeout", 0, "a relay pair with no byte either way for this long is closed (0: never)")
	fs.Int64Var(&r.Limits.BytesPerSecond, "relay-rate", 0, "bytes per second per direction of one relay pair (0: no cap)")

	sb := &o.sb
	*sb = endpoints.DefaultScuttlebuttConfig()
	fs.DurationVar(&sb.MaxAge, "scuttlebutt-max-age", sb.MaxAge, "a presence record expires this long after its timestamp")
	fs.DurationVar(&sb.MaxSkew, "scuttlebutt-max-skew", sb.MaxSkew, "updates timestamped further in the future are ignored")
	fs.DurationVar(&sb.SweepInterval, "scuttlebutt-sweep-interval", sb.SweepInterval, "how often expired records are purged")
	fs.IntVar(&sb.MaxKeyBytes, "scuttlebutt-max-key-bytes", sb.MaxKeyBytes, "longest key in bytes")
	fs.IntVar(&sb.MaxValueBytes, "scuttlebutt-max-value-bytes", sb.MaxValueBytes, "largest value in bytes, as JSON")
	fs.IntVar(&sb.MaxKeys, "scuttlebutt-max-keys", sb.MaxKeys, "live keys in one namespace")
	fs.IntVar(&sb.MaxLineBytes, "scuttlebutt-max-line-bytes", sb.MaxLineBytes, "longest protocol line, newline included")
	fs.IntVar(&sb.MaxNamespaces, "scuttlebutt-max-namespaces", sb.MaxNamespaces, "scuttlebutt namespaces kept on the server (idle ones are evicted first)")
	fs.IntVar(&sb.MaxMembers, "scuttlebutt-max-members", sb.MaxMembers, "members of one scuttlebutt namespace (0: no cap)")
	fs.IntVar(&sb.QueueBytes, "scuttlebutt-queue-bytes", sb.QueueBytes, "bytes queued for one scuttlebutt member before it is dropped")

	n := &o.nats
	fs.StringVar(&n.url, "nats", "", "join a cluster through this NATS server (nats://HOST:PORT, several separated by commas)")
	fs.StringVar(&n.listen, "nats-listen", "", "run an embedded NATS server on HOST:PORT and join the cluster through it")
	fs.StringVar(&n.clusterListen, "nats-cluster-listen", "", "the embedded NATS server's route address HOST:PORT, for the other servers' routes")
	fs.StringVar(&n.routes, "nats-routes", "", "the embedded NATS server's routes to the others: nats://HOST:PORT,... (this server's own may be listed)")
	fs.StringVar(&n.clusterName, "nats-cluster-name", "signalchannel", "the NATS cluster name; every embedded server of a cluster uses the same")
	fs.StringVar(&n.nodeName, "node-name", "", "this server's name in the cluster, for logs (default: generated)")
	fs.StringVar(&n.prefix, "cluster-prefix", "signalchannel", "first subject token of the cluster's NATS traffic; every server of a cluster uses the same")
	fs.DurationVar(&n.heartbeat, "cluster-heartbeat", time.Second, "how often this server tells the cluster it is alive")
	fs.DurationVar(&n.deadAfter, "cluster-dead-after", 3*time.Second, "a server silent for this long is taken for gone: its ephemeral keys are deleted")

	i := &o.ice
	fs.StringVar(&i.stun, "stun", "", "comma-separated STUN URLs handed to clients (stun:HOST:PORT)")
	fs.StringVar(&i.turn, "turn", "", "comma-separated TURN URLs handed to clients with credentials (turn:HOST:PORT?transport=udp, turns:...); default, with -turn-listen-udp or -turn-listen-tcp, the embedded TURN server's")
	fs.StringVar(&i.secretFile, "turn-secret-file", "", "the secret shared with the TURN servers (coturn's static-auth-secret), at least 32 bytes, in this file")
	fs.DurationVar(&i.ttl, "turn-ttl", ice.DefaultTTL, "lifetime of the TURN credentials handed out")
	fs.StringVar(&i.udp, "turn-listen-udp", "", "run the embedded TURN server on this UDP address HOST:PORT (empty: off)")
	fs.StringVar(&i.tcp, "turn-listen-tcp", "", "run the embedded TURN server on this TCP address HOST:PORT (empty: off)")
	fs.StringVar(&i.publicIP, "turn-public-ip", "", "the IP address clients and peers reach the embedded TURN server at (default: its listen address's)")
	fs.StringVar(&i.realm, "turn-realm", turnserver.DefaultRealm, "the embedded TURN server's realm")
	fs.StringVar(&i.ports, "turn-relay-ports", "49152-65535", "the embedded TURN server's relay port range MIN-MAX")
	fs.IntVar(&i.maxAllocs, "turn-max-allocations-per-peer", turnserver.DefaultMaxAllocationsPerPeer, "allocations one peer id may hold at once on the embedded TURN server")
	fs.IntVar(&i.bandwidth, "turn-bandwidth", 0, "bytes per second each way of one allocation on the embedded TURN server; packets past it are dropped (0: no cap)")
	fs.DurationVar(&i.lifetime, "turn-max-lifetime", turnserver.DefaultMaxLifetime, "the longest an allocation on the embedded TURN server relays")

	addEnvToUsage(fs)
	if err := parseArgs(fs, args, stderr); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, osLookupEnv); err != nil {
		return nil, err
	}
	if o.origins != "" {
		for _, s := range strings.Split(o.origins, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, s)
			}
		}
	}
	// In Config a zero means "the default"; on the command line a zero or a
	// negative limit is a mistake.
	for name, ok := range map[string]bool{
		"max-streams":                 c.MaxStreams > 0,
		"header-timeout":              c.HeaderTimeout > 0,
		"max-message-bytes":           c.MaxMessageBytes > 0,
		"keepalive":                   c.KeepAliveInterval > 0,
		"write-timeout":               c.WriteTimeout > 0,
		"stream-close-timeout":        c.StreamCloseTimeout > 0,
		"max-pings-per-second":        c.MaxPingsPerSecond > 0,
		"shutdown-timeout":            o.shutdownTimeout > 0,
		"echo-publish-rate":           e.PublishRate >= 0,
		"echo-publish-burst":          e.PublishBurst > 0,
		"echo-max-namespaces":         e.MaxNamespaces >= 0,
		"echo-max-members":            e.MaxMembers >= 0,
		"max-sessions":                c.MaxSessions > 0,
		"max-sessions-per-ip":         c.MaxSessionsPerIP > 0,
		"max-stream-opens-per-second": c.MaxStreamOpensPerSecond > 0,
		"max-header-errors":           c.MaxHeaderErrors > 0,
		"scuttlebutt-max-age":         sb.MaxAge > 0,
		"scuttlebutt-max-skew":        sb.MaxSkew > 0,
		"scuttlebutt-sweep-interval":  sb.SweepInterval > 0,
		"scuttlebutt-max-key-bytes":   sb.MaxKeyBytes > 0,
		"scuttlebutt-max-value-bytes": sb.MaxValueBytes > 0,
		"scuttlebutt-max-keys":        sb.MaxKeys > 0,
		"scuttlebutt-max-line-bytes":  sb.MaxLineBytes > 0,
		"scuttlebutt-max-namespaces":  sb.MaxNamespaces > 0,
		"scuttlebutt-max-members":     sb.MaxMembers >= 0,
		"scuttlebutt-queue-bytes":     sb.QueueBytes > 0,
		"relay-pair-timeout":          r.PairTimeout > 0,
		"relay-max-waiting":           r.MaxWaiting > 0,
		"relay-max-pairs":             r.MaxPairs > 0,
		"relay-max-bytes":             r.Limits.Bytes >= 0,
		"relay-max-lifetime":          r.Limits.Lifetime >= 0,
		"relay-idle-timeout":          r.Limits.Idle >= 0,
		"relay-rate":                  r.Limits.BytesPerSecond >= 0,
	} {
		if !ok {
			return nil, fmt.Errorf("-%s must be positive", name)
		}
	}
	if e.MaxFrame <= 0 || e.QueueBytes < e.MaxFrame+channel.FrameHeaderSize {
		return nil, fmt.Errorf("-echo-queue-bytes (%d) must hold at least one frame of -echo-max-frame (%d) bytes", e.QueueBytes, e.MaxFrame)
	}
	if err := n.validate(e.MaxFrame); err != nil {
		return nil, err
	}
	if err := validatePublishBudget(e); err != nil {
		return nil, err
	}
	if err := validatePprofListen(o.pprofListen, o.addr); err != nil {
		return nil, err
	}
	var err error
	if c.Ownership, err = server.ParseOwnership(o.ownership); err != nil {
		return nil, fmt.Errorf("-ownership %q: want auto, on or off", o.ownership)
	}
	for _, p := range strings.Split(o.owned, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := auth.ParsePattern(p); err != nil {
				return nil, fmt.Errorf("-owned: %w", err)
			}
			c.Owned = append(c.Owned, p)
		}
	}
	if o.secretFile != "" || o.publicKeyFile != "" {
		ac := auth.Config{Leeway: o.leeway}
		if o.leeway == 0 {
			ac.Leeway = -1 // none
		}
		var err error
		if o.secretFile != "" && o.publicKeyFile != "" {
			return nil, errors.New("give -auth-secret-file or -auth-public-key-file, not both")
		} else if o.secretFile != "" {
			ac.Secret, err = auth.LoadSecretFile(o.secretFile)
		} else {
			ac.PublicKey, err = auth.LoadPublicKeyFile(o.publicKeyFile)
		}
		if err != nil {
			return nil, err
		}
		if c.Verifier, err = auth.NewVerifier(ac); err != nil {
			return nil, err
		}
	}
	return o, errors.Join(c.Validate(), r.Validate(), sb.Validate())
}

// validatePublishBudget checks the echo publish budget against the frame and
// queue limits, and turns -echo-publish-rate 0 into the EchoConfig's "off".
func validatePublishBudget(e *endpoints.EchoConfig) error {
	switch {
	case e.PublishRate == 0:
		e.PublishRate = -1 // in EchoConfig a zero means the default
	case e.PublishBurst > e.QueueBytes:
		return fmt.Errorf("-echo-publish-burst (%d) must be at most -echo-queue-bytes (%d), or one writer could overflow the queue of a member that keeps up: lower the burst or raise the queue", e.PublishBurst, e.QueueBytes)
	case e.PublishBurst < e.MaxFrame+channel.FrameHeaderSize:
		return fmt.Errorf("-echo-publish-burst (%d) must hold at least one frame of -echo-max-frame (%d) bytes and its %d-byte length prefix", e.PublishBurst, e.MaxFrame, channel.FrameHeaderSize)
	}
	return nil
}

// validatePprofListen checks -pprof-listen, when set, is an address of its
// own: profiles are never served on the public listener.
func validatePprofListen(pprofAddr, addr string) error {
	if pprofAddr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(pprofAddr)
	if err != nil {
		return fmt.Errorf("-pprof-listen %q: want HOST:PORT: %v", pprofAddr, err)
	}
	if pprofAddr == addr && port != "0" { // port 0 picks a free port each time
		return fmt.Errorf("-pprof-listen %q must differ from -addr", pprofAddr)
	}
	return nil
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %v", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want json or text", o.logFormat)
}

// serve runs the server until ctx ends, then shuts down gracefully: it stops
// accepting, closes sessions with 1001 and returns within the shutdown
// timeout.
func serve(ctx context.Context, args []string, stderr io.Writer, ready func(string)) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	o.channel.Logger = log // DefaultConfig's is slog.Default()
	// The cluster's node (and its embedded NATS server) outlives the
	// server built on it: closed after Shutdown (deferred calls run last
	// first).
	cl, err := startCluster(&o.nats, log)
	if err != nil {
		return err
	}
	defer cl.close()
	cfg := signalchannel.Config{Channel: o.channel, Echo: o.echo, Relay: o.relay, Scuttlebutt: o.sb, Logger: log}
	if cl != nil {
		cfg.Cluster = cl.node
		log.Info("cluster joined", "nats", cl.url, "node", cl.node.Name())
	}
	var certs *certReloader
	if o.tlsCert != "" || o.tlsKey != "" {
		if o.tlsCert == "" || o.tlsKey == "" {
			return errors.New("TLS needs both -tls-cert-file and -tls-key-file")
		}
		if certs, err = newCertReloader(o.tlsCert, o.tlsKey, log); err != nil {
			return err
		}
		wctx, stopWatch := context.WithCancel(ctx)
		wait := certs.watch(wctx)
		defer wait()
		defer stopWatch()
	}
	wh, err := startWebhook(o, log)
	if err != nil {
		return err
	}
	if wh != nil {
		cfg.Channel.Hooks.Event = wh.Send
		// After the server's shutdown, so that the sessions' ends are sent.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			wh.Close(ctx)
		}()
	}
	ts, err := startICE(&o.ice, &cfg.Channel, log)
	if err != nil {
		return err
	}
	if ts != nil {
		defer ts.Close()
	}
	sc, err := signalchannel.New(cfg)
	if err != nil {
		return err
	}
	// Until the server runs, an error stops what New started; once it
	// runs, the shutdown below does.
	running := false
	defer func() {
		if !running {
			sc.Shutdown(context.Background())
		}
	}()
	h := sc.Handler()

	var shuttingDown atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/v1/channel", sc)
	mux.Handle("/v1/ice-servers", h.ICEHandler())
	if o.apiKeyFile != "" {
		key, err := auth.LoadSecretFile(o.apiKeyFile)
		if err != nil {
			return fmt.Errorf("-api-key-file: %w", err)
		}
		mux.Handle("/v1/api/", sc.APIHandler(key))
		log.Info("HTTP API on", "path", "/v1/api/")
	}
	reg := newRegistry(&metrics{h: h, echo: sc.Echo(), relay: sc.Relay(), sb: sc.Scuttlebutt(), turn: ts, webhook: wh})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if shuttingDown.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if cl != nil && !cl.node.Connected() {
			http.Error(w, "not connected to the cluster", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})

	if o.demo {
		mux.Handle(demo.Prefix, demo.Handler())
	}

	if o.pprofListen != "" {
		stopPprof, err := startPprof(o.pprofListen, log)
		if err != nil {
			return err
		}
		defer stopPprof() // after the drain and shutdown, so they can be profiled
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: o.channel.HeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	scheme := "ws"
	if certs != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: certs.getCertificate, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "wss"
	}
	log.Info("listening", "addr", ln.Addr().String(), "channel", scheme+"://"+ln.Addr().String()+"/v1/channel", "tls", certs != nil, "demo", o.demo, "version", version())
	if o.demo {
		log.Info("demo page: open it in two or more tabs", "url", demoURL(ln.Addr(), certs != nil))
	}
	if v := o.channel.Verifier; v != nil {
		log.Info("credentials required", "algorithm", v.Algorithm(), "leeway", v.Leeway().String(), "ownership", o.channel.Ownership.String(), "owned", o.channel.Owned)
	} else {
		log.Warn("no credentials configured: the server is open to every client", "ownership", o.channel.Ownership.String(), "owned", o.channel.Owned)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}

	running = true
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		sc.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}

	shuttingDown.Store(true) // readyz fails from now on
	if o.drainTimeout > 0 {
		log.Info("draining", "timeout", o.drainTimeout.String(), "streams", h.Stats().Streams)
		dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
		if err := sc.Drain(dctx); err != nil {
			log.Info("drain deadline passed", "streams", h.Stats().Streams)
		}
		cancel()
	}
	log.Info("shutting down", "timeout", o.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// Sessions are hijacked connections, which the server closes with 1001
	// before it stops the endpoints; then the HTTP server finishes plain
	// requests.
	herr := sc.Shutdown(sctx)
	serr := srv.Shutdown(sctx)
	<-errc
	if herr != nil || (serr != nil && !errors.Is(serr, http.ErrServerClosed)) {
		log.Warn("shutdown deadline passed with sessions still open", "err", errors.Join(herr, serr))
	}
	log.Info("stopped")
	return nil
}

// demoURL is the address of the demo page a browser on this machine opens.
func demoURL(addr net.Addr, tls bool) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + demo.Prefix + "?room=lobby"
}

// startWebhook starts the webhook sender when -webhook-url is set.
func startWebhook(o *options, log *slog.Logger) (*webhook.Sender, error) {
	if o.webhookURL == "" {
		if o.webhookSecret != "" || o.webhookEvents != "" {
			return nil, errors.New("-webhook-secret-file and -webhook-events need -webhook-url")
		}
		return nil, nil
	}
	if o.webhookSecret == "" {
		return nil, errors.New("-webhook-url needs -webhook-secret-file: receivers check each post's signature")
	}
	secret, err := auth.LoadSecretFile(o.webhookSecret)
	if err != nil {
		return nil, fmt.Errorf("-webhook-secret-file: %w", err)
	}
	var types []server.EventType
	known := map[server.EventType]bool{server.EventSessionOpened: true, server.EventSessionClosed: true, server.EventNamespaceJoined: true,
		server.EventNamespaceLeft: true, server.EventRelayOpened: true, server.EventRelayClosed: true}
	for _, t := range strings.Split(o.webhookEvents, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !known[server.EventType(t)] {
			return nil, fmt.Errorf("-webhook-events: unknown event %q (session.opened, session.closed, namespace.joined, namespace.left, relay.opened, relay.closed)", t)
		}
		types = append(types, server.EventType(t))
	}
	wh, err := webhook.New(webhook.Config{URL: o.webhookURL, Secret: secret, Types: types, Queue: o.webhookQueue, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("webhook on", "url", o.webhookURL, "events", o.webhookEvents)
	return wh, nil
}
