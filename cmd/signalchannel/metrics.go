package main

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/turnserver"
	"github.com/signalchannel/signalchannel/webhook"
)

// metrics reads the server's counters at scrape time: the hot paths only
// bump atomics, and nothing is counted twice.
type metrics struct {
	h       *server.Handler
	echo    *endpoints.Echo
	relay   *endpoints.Relay
	sb      *endpoints.Scuttlebutt
	turn    *turnserver.Server // nil when the embedded TURN server is off
	webhook *webhook.Sender    // nil when no webhook is configured
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("signalchannel_"+name, help, labels, nil)
}

var (
	mSessions        = desc("sessions", "Open sessions.")
	mSessionsTotal   = desc("sessions_opened_total", "Sessions opened since start.")
	mCloses          = desc("session_closes_total", "Sessions ended, by the WebSocket close code the server sent.", "code")
	mStreams         = desc("streams", "Streams being served, by endpoint.", "endpoint")
	mErrors          = desc("stream_errors_total", "Failure replies sent, by protocol error code.", "code")
	mOrigin          = desc("origin_refused_total", "WebSocket handshakes refused for their Origin (HTTP 403).")
	mEchoNamespaces  = desc("echo_namespaces", "Echo namespaces with members.")
	mEchoMembers     = desc("echo_members", "Echo members.")
	mEchoFramesIn    = desc("echo_frames_in_total", "Frames echo members wrote.")
	mEchoBytesIn     = desc("echo_bytes_in_total", "Bytes of the frames echo members wrote.")
	mEchoFramesOut   = desc("echo_frames_out_total", "Frames written to echo members.")
	mEchoBytesOut    = desc("echo_bytes_out_total", "Bytes of the frames written to echo members.")
	mEchoDropped     = desc("echo_slow_members_dropped_total", "Echo members reset because their queue overflowed.")
	mEchoRefused     = desc("echo_publish_refused_total", "Echo members refused (limit) for publishing past their budget.")
	mSbNamespaces    = desc("scuttlebutt_namespaces", "Scuttlebutt namespaces with a replica, idle ones included.")
	mSbIdle          = desc("scuttlebutt_idle_namespaces", "Scuttlebutt namespaces without members.")
	mSbMembers       = desc("scuttlebutt_members", "Scuttlebutt streams replicating.")
	mSbKeys          = desc("scuttlebutt_keys", "Live keys in every scuttlebutt namespace.")
	mRelayWaiting    = desc("relay_waiting", "Relay streams waiting for a partner.")
	mRelayOpen       = desc("relay_pairs", "Relay pairs open.")
	mRelayPaired     = desc("relay_pairs_opened_total", "Relay pairs opened since start.")
	mRelayTimeouts   = desc("relay_timeouts_total", "Relay streams that found no partner in time.")
	mRelayConflicts  = desc("relay_conflicts_total", "Relay streams refused with conflict.")
	mRelayRejected   = desc("relay_rejected_total", "Relay streams refused by a cap.")
	mRelayBytes      = desc("relay_bytes_total", "Bytes relayed, both directions.")
	mBuildInfo       = desc("build_info", "The build: version (with the VCS revision and time) and Go version; always 1.", "version", "goversion")
	mWebhookSent     = desc("webhook_events_sent_total", "Events the webhook receiver took.")
	mWebhookDropped  = desc("webhook_events_dropped_total", "Events dropped because the webhook queue was full.")
	mWebhookFailures = desc("webhook_failures_total", "Webhook posts that failed, to be tried again.")
	mWebhookQueued   = desc("webhook_queued_events", "Events waiting for the webhook.")
	mTurnAllocs      = desc("turn_allocations", "Allocations open on the embedded TURN server.")
	mTurnAllocsAll   = desc("turn_allocations_total", "Allocations made on the embedded TURN server since start.")
	mTurnBytes       = desc("turn_bytes_relayed_total", "Bytes the embedded TURN server relayed, both ways.")
	mTurnDropped     = desc("turn_packets_dropped_total", "Packets the embedded TURN server dropped past an allocation's bandwidth or lifetime.")
	mTurnRefused     = desc("turn_refused_total", "Requests the embedded TURN server refused, by reason.", "reason")
)

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(m, ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(mBuildInfo, 1, version(), runtime.Version())
	if w := m.webhook; w != nil {
		st := w.Stats()
		counter(mWebhookSent, float64(st.Sent.Load()))
		counter(mWebhookDropped, float64(st.Dropped.Load()))
		counter(mWebhookFailures, float64(st.Failures.Load()))
		gauge(mWebhookQueued, float64(w.Queued()))
	}
	if t := m.turn; t != nil {
		st := t.Stats()
		gauge(mTurnAllocs, float64(st.Allocations.Load()))
		counter(mTurnAllocsAll, float64(st.AllocationsTotal.Load()))
		counter(mTurnBytes, float64(st.BytesRelayed.Load()))
		counter(mTurnDropped, float64(st.PacketsDropped.Load()))
		counter(mTurnRefused, float64(st.AuthRefused.Load()), "credentials")
		counter(mTurnRefused, float64(st.QuotaRefused.Load()), "quota")
		counter(mTurnRefused, float64(st.Malformed.Load()), "malformed")
	}
	st := m.h.Stats()
	gauge(mSessions, float64(st.Sessions))
	counter(mSessionsTotal, float64(st.SessionsTotal))
	for code, n := range st.Closes {
		counter(mCloses, float64(n), strconv.Itoa(code))
	}
	for ep, n := range st.ByEndpoint {
		gauge(mStreams, float64(n), ep)
	}
	counter(mOrigin, float64(st.OriginRefused))
	for code, n := range st.Rejected {
		counter(mErrors, float64(n), string(code))
	}

	es, ec := m.echo.Stats(), m.echo.Counters()
	gauge(mEchoNamespaces, float64(es.Namespaces))
	gauge(mEchoMembers, float64(es.Members))
	counter(mEchoFramesIn, float64(ec.FramesIn))
	counter(mEchoBytesIn, float64(ec.BytesIn))
	counter(mEchoFramesOut, float64(ec.FramesOut))
	counter(mEchoBytesOut, float64(ec.BytesOut))
	counter(mEchoDropped, float64(ec.Dropped))
	counter(mEchoRefused, float64(ec.Refused))

	ss := m.sb.Stats()
	gauge(mSbNamespaces, float64(ss.Namespaces))
	gauge(mSbIdle, float64(ss.Idle))
	gauge(mSbMembers, float64(ss.Members))
	gauge(mSbKeys, float64(ss.Keys))

	rs := m.relay.Stats()
	gauge(mRelayWaiting, float64(rs.Waiting))
	gauge(mRelayOpen, float64(rs.Open))
	counter(mRelayPaired, float64(rs.Paired))
	counter(mRelayTimeouts, float64(rs.Timeouts))
	counter(mRelayConflicts, float64(rs.Conflicts))
	counter(mRelayRejected, float64(rs.Rejected))
	counter(mRelayBytes, float64(rs.Bytes))
}

// newRegistry holds the server's metrics and Go's runtime and process ones.
func newRegistry(m *metrics) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
