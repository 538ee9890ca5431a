package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs the program as main would, on 127.0.0.1:0.
func startServer(t *testing.T, args ...string) (addr string, stop func() error, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...), io.Discard, logs, func(a string) { ready <- a })
	}()
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start in 10s")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				err = errors.New("server did not stop in 20s")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return addr, stop, logs
}

func TestServeEchoAndHealth(t *testing.T) {
	addr, stop, logs := startServer(t, "-demo")
	for _, path := range []string{"/healthz", "/readyz", "/demo/"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Dial(ctx, "ws://"+addr+"/v1/channel", client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Echo(ctx, "room-1")
	if err != nil {
		t.Fatal(err)
	}
	e.Send([]byte("hi"))
	if f, err := e.Recv(); err != nil || string(f) != "hi" {
		t.Fatalf("%q %v", f, err)
	}

	// Scuttlebutt is served, with the default maxAge.
	st, reply, err := s.Open(ctx, channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: "presence"})
	if err != nil {
		t.Fatal(err)
	}
	if reply.ID == "" || reply.MaxAge != 60000 {
		t.Fatalf("scuttlebutt reply %s", reply.Raw)
	}
	st.Close()

	// Relay is served too.
	type res struct {
		c   *client.RelayConn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := s.Relay(ctx, "calls", "A", "B"); ch <- res{c, err} }()
	peer, err := s.Relay(ctx, "calls", "B", "A")
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	peer.Write([]byte("over the relay"))
	buf := make([]byte, 64)
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.c.Read(buf); err != nil || string(buf[:n]) != "over the relay" {
		t.Fatalf("relay read %q %v", buf[:n], err)
	}

	// Metrics tell what happened.
	s.Open(ctx, []byte(`{"endpoint":"echo"}`)) // one bad_header
	wants := []string{
		"signalchannel_sessions 1",
		"signalchannel_echo_frames_in_total 1",
		"signalchannel_echo_frames_out_total 1",
		`signalchannel_stream_errors_total{code="bad_header"} 1`,
		"signalchannel_relay_pairs_opened_total 1",
		"signalchannel_relay_bytes_total 14",
		`signalchannel_streams{endpoint="relay"} 2`,
		"go_memstats_heap_inuse_bytes",
		"process_resident_memory_bytes",
	}
	// Counters are bumped after the write they count: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrape(t, addr)
		var missing []string
		for _, want := range wants {
			if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Shutdown: the session is closed with 1001 and run returns.
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if code, _ := s.CloseReason(); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	for _, want := range []string{`"msg":"listening"`, `"msg":"no credentials configured`, `"msg":"session open"`, `"session":"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

// TestEnvTwins: a limit set through its environment variable applies, and a
// flag on the command line wins over it.
func TestEnvTwins(t *testing.T) {
	t.Setenv("SIGNALCHANNEL_MAX_STREAMS", "1")
	t.Setenv("SIGNALCHANNEL_ECHO_MAX_FRAME", "10")
	addr, _, _ := startServer(t, "-echo-max-frame", "20")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Dial(ctx, "ws://"+addr+"/v1/channel", client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Echo(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if e.MaxFrame() != 20 {
		t.Fatalf("maxFrame %d, want the flag's 20", e.MaxFrame())
	}
	_, err = s.Echo(ctx, "b")
	var perr *channel.Error
	if !errors.As(err, &perr) || perr.Code != channel.CodeLimit || !strings.Contains(perr.Message, "(1)") {
		t.Fatalf("second stream: %v, want limit (1)", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "-max-streams", "0"},
		{"serve", "-header-timeout", "-1s"},
		{"serve", "-echo-max-frame", "100", "-echo-queue-bytes", "50"},
		{"serve", "-log-format", "xml"},
		{"serve", "-relay-max-lifetime", "1500ms"},
		{"serve", "-relay-pair-timeout", "0"},
		{"serve", "-pprof-listen", "no-port"},
		{"serve", "-nope"},
		{"serve", "extra"},
		{"frobnicate"},
	} {
		// Should a bad flag be taken, the server stops after a second.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := run(ctx, append(args, "-addr", "127.0.0.1:0"), io.Discard, io.Discard, nil)
		cancel()
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	t.Setenv("SIGNALCHANNEL_MAX_STREAMS", "many")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := run(ctx, []string{"serve", "-addr", "127.0.0.1:0"}, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "SIGNALCHANNEL_MAX_STREAMS") {
		t.Errorf("bad env: %v", err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keygen, token and serve -auth-public-key-file work together: a minted
// token opens what it allows, and no token is closed with 4401.
func TestTokensEndToEnd(t *testing.T) {
	dir := t.TempDir()
	priv, pub := dir+"/k.pem", dir+"/k.pub.pem"
	if err := run(context.Background(), []string{"keygen", "-private", priv, "-public", pub}, io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"token", "-auth-private-key-file", priv, "-sub", "alice", "-allow", "echo:room-*", "-allow", "relay:*", "-own", "scuttlebutt:presence", "-meta", `{"name":"Alice"}`, "-ttl", "1h"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	addr, _, logs := startServer(t, "-auth-public-key-file", pub)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws://" + addr + "/v1/channel"
	s, err := client.Dial(ctx, url, client.DialOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID() != "alice" || string(s.Meta()) != `{"name":"Alice"}` {
		t.Fatalf("id %q meta %s, want the token's", s.ID(), s.Meta())
	}
	if _, err := s.Echo(ctx, "room-1"); err != nil {
		t.Fatal(err)
	}
	// Ownership is on with credentials: a relay only as alice.
	_, err = s.Relay(ctx, "calls", "bob", "carol")
	if perr := (*channel.Error)(nil); !errors.As(err, &perr) || perr.Code != channel.CodeForbidden {
		t.Fatalf("relay as bob: %v, want forbidden", err)
	}
	_, err = s.Echo(ctx, "lobby")
	var perr *channel.Error
	if !errors.As(err, &perr) || perr.Code != channel.CodeForbidden {
		t.Fatalf("echo:lobby: %v, want forbidden", err)
	}
	_, err = client.Dial(ctx, url, client.DialOptions{})
	var ce *channel.CloseError
	if !errors.As(err, &ce) || ce.Code != 4401 || ce.Reason != "missing credentials" {
		t.Fatalf("dial without a token: %v, want close 4401 missing credentials", err)
	}
	if !strings.Contains(logs.String(), `"msg":"credentials required"`) || strings.Contains(logs.String(), "open to every client") {
		t.Fatalf("start log does not say credentials are required:\n%s", logs)
	}
	if err := run(context.Background(), []string{"token", "-sub", "x"}, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("token without a key file succeeded")
	}
}

// TestPprofListen: with -pprof-listen, the profiling handlers answer on
// that address, and never on the public listener.
func TestPprofListen(t *testing.T) {
	addr, _, logs := startServer(t, "-pprof-listen", "127.0.0.1:0")
	pprofAddr := loggedAddr(t, logs.String(), "pprof listening")
	if pprofAddr == addr {
		t.Fatalf("pprof on the public address %s", addr)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if code, body := get(t, "http://"+pprofAddr+path); code != 200 || body == "" {
			t.Errorf("pprof %s: %d, %d bytes", path, code, len(body))
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/cmdline"} {
		if code, _ := get(t, "http://"+addr+path); code != http.StatusNotFound {
			t.Errorf("public listener %s: %d, want 404", path, code)
		}
	}
}

func TestPprofListenMustDifferFromAddr(t *testing.T) {
	if err := validatePprofListen("127.0.0.1:6060", "127.0.0.1:6060"); err == nil {
		t.Fatal("-pprof-listen equal to -addr was taken")
	}
	if err := validatePprofListen("127.0.0.1:6060", ":8080"); err != nil {
		t.Fatal(err)
	}
}

// Without -pprof-listen nothing is profiled, here or elsewhere.
func TestPprofOffByDefault(t *testing.T) {
	addr, _, logs := startServer(t)
	if strings.Contains(logs.String(), "pprof listening") {
		t.Fatalf("pprof started without -pprof-listen:\n%s", logs)
	}
	if code, _ := get(t, "http://"+addr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("public listener /debug/pprof/: %d, want 404", code)
	}
}

// loggedAddr returns the addr attribute of the JSON log line with msg.
func loggedAddr(t *testing.T, logs, msg string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg && rec.Addr != "" {
			return rec.Addr
		}
	}
	t.Fatalf("no %q log line with an addr:\n%s", msg, logs)
	return ""
}

func get(t *testing.T, url string) (code int, body string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// joinEcho joins ns on the server at addr, with reads bounded by 20 s.
func joinEcho(t *testing.T, addr, ns string) *client.Echo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Dial(ctx, "ws://"+addr+"/v1/channel", client.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e, err := s.Echo(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	e.Stream().SetReadDeadline(time.Now().Add(20 * time.Second))
	return e
}

// recvUntilRefused reads e until an error, which must be `limit` with msg,
// and returns how many frames came before it.
func recvUntilRefused(t *testing.T, e *client.Echo, msg string) int {
	t.Helper()
	for n := 0; ; n++ {
		_, err := e.Recv()
		if err == nil {
			continue
		}
		var perr *channel.Error
		if !errors.As(err, &perr) || perr.Code != channel.CodeLimit || perr.Message != msg {
			t.Fatalf("after %d frames: %v, want limit %q", n, err, msg)
		}
		return n
	}
}

// With the default flags a member that publishes 55 frames of 60 KB at
// once is refused with `limit`, reads why, and the refusal is counted.
func TestEchoPublishBudgetDefaults(t *testing.T) {
	addr, _, _ := startServer(t)
	e := joinEcho(t, addr, "burst")
	go func() {
		for range 55 {
			if e.Send(make([]byte, 60000)) != nil {
				return
			}
		}
	}()
	recvUntilRefused(t, e, "echo publish budget (262144 bytes/s, burst 524288 bytes) exceeded")
	waitMetric(t, addr, "signalchannel_echo_publish_refused_total 1")
}

// The budget's flags and environment twins apply, 0 turns it off, and a
// burst the queue cannot hold, or that cannot hold a frame, is refused at
// start.
func TestEchoPublishBudgetFlags(t *testing.T) {
	t.Setenv("SIGNALCHANNEL_ECHO_PUBLISH_RATE", "1")
	addr, _, _ := startServer(t, "-echo-publish-burst", "65540")
	e := joinEcho(t, addr, "edge")
	// One whole frame of 65540 bytes framed is the burst; no second one.
	for range 2 {
		if err := e.Send(make([]byte, 65536)); err != nil {
			t.Fatal(err)
		}
	}
	// The first frame's echo may be dropped with the member's queue.
	if n := recvUntilRefused(t, e, "echo publish budget (1 bytes/s, burst 65540 bytes) exceeded"); n > 1 {
		t.Fatalf("%d frames delivered, the burst holds one", n)
	}

	for _, c := range []struct{ args, want string }{
		{"-echo-publish-burst 1048577", "-echo-publish-burst (1048577) must be at most -echo-queue-bytes (1048576)"},
		{"-echo-publish-burst 65539", "-echo-publish-burst (65539) must hold at least one frame"},
		{"-echo-publish-rate -1", "-echo-publish-rate must be positive"},
		{"-echo-publish-burst 0", "-echo-publish-burst must be positive"},
	} {
		_, err := parseFlags(strings.Fields(c.args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.args, err, c.want)
		}
	}
	o, err := parseFlags([]string{"-echo-publish-rate", "0", "-echo-publish-burst", "1"}, io.Discard)
	if err != nil || o.echo.PublishRate != -1 {
		t.Fatalf("-echo-publish-rate 0: %v, want the budget off", err)
	}
}

// waitMetric polls /metrics until it has the sample want.
func waitMetric(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrape(t, addr)
		if strings.Contains(body, want+"\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// -ownership and -owned: their values, their env twins, and the faults.
func TestOwnershipFlags(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-ownership maybe", `-ownership "maybe": want auto, on or off`},
		{"-owned presence", `-owned: auth: bad allow pattern: "presence" has no ':'`},
	} {
		_, err := parseFlags(strings.Fields(c.args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.args, err, c.want)
		}
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.channel.Ownership != server.OwnershipAuto || o.channel.Owned != nil {
		t.Fatalf("defaults: %v, %v %v", err, o.channel.Ownership, o.channel.Owned)
	}
	t.Setenv("SIGNALCHANNEL_OWNERSHIP", "on")
	t.Setenv("SIGNALCHANNEL_OWNED", "scuttlebutt:presence, scuttlebutt:room-*")
	o, err = parseFlags(nil, io.Discard)
	if err != nil || o.channel.Ownership != server.OwnershipOn || strings.Join(o.channel.Owned, " ") != "scuttlebutt:presence scuttlebutt:room-*" {
		t.Fatalf("from the environment: %v, %v %q", err, o.channel.Ownership, o.channel.Owned)
	}
	o, err = parseFlags([]string{"-ownership", "off"}, io.Discard)
	if err != nil || o.channel.Ownership != server.OwnershipOff {
		t.Fatalf("the flag over the environment: %v, %v", err, o.channel.Ownership)
	}
}

// keygen refuses to replace a key pair unless told to, and says what it
// wrote and what to run next.
func TestKeygenKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	var out strings.Builder
	if err := run(context.Background(), []string{"keygen", "-private", priv, "-public", pub}, io.Discard, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "-auth-public-key-file "+pub) || !strings.Contains(out.String(), "-auth-private-key-file "+priv) {
		t.Fatalf("keygen said:\n%s", out.String())
	}
	first, _ := os.ReadFile(priv)
	err := run(context.Background(), []string{"keygen", "-private", priv, "-public", pub}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("second keygen: %v", err)
	}
	if again, _ := os.ReadFile(priv); string(again) != string(first) {
		t.Fatal("the private key changed")
	}
	if err := run(context.Background(), []string{"keygen", "-private", priv, "-public", pub, "-force"}, io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(priv); string(again) == string(first) {
		t.Fatal("-force kept the old key")
	}
}

// token refuses an endpoint the server does not have, and warns of a token
// that allows nothing.
func TestTokenChecksItsGrant(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(strings.Repeat("k", 40)), 0o600)
	base := []string{"token", "-auth-secret-file", secret, "-sub", "alice"}
	for _, bad := range [][]string{{"-allow", "bogus:x"}, {"-allow", "echo:*", "-own", "presence:x"}} {
		if err := run(context.Background(), append(base, bad...), io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "does not have") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	var stdout, stderr strings.Builder
	if err := run(context.Background(), base, &stdout, &stderr, nil); err != nil || stdout.Len() == 0 || !strings.Contains(stderr.String(), "allows no stream") {
		t.Fatalf("no -allow: %v, %q, %q", err, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if err := run(context.Background(), append(base, "-allow", "*:*"), io.Discard, &stderr, nil); err != nil || stderr.Len() != 0 {
		t.Fatalf("-allow *:*: %v, %q", err, stderr.String())
	}
}

// -h shows the commands and the most-used flags; a wrong flag is one line
// that names it and where the flags are; version prints the build.
func TestHelpAndVersion(t *testing.T) {
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"-h"}, &out, &errOut, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"signalchannel token", "signalchannel version", "-addr", "-auth-public-key-file", "serve -h"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	err := run(context.Background(), []string{"serve", "-nope"}, &out, &errOut, nil)
	if err == nil || strings.Contains(err.Error(), "\\n") || !strings.Contains(err.Error(), "-nope") || !strings.Contains(err.Error(), "serve -h") {
		t.Fatalf("wrong flag: %v", err)
	}
	if errOut.Len() != 0 {
		t.Fatalf("a wrong flag printed:\n%s", errOut.String())
	}
	errOut.Reset()
	if err := run(context.Background(), []string{"serve", "-h"}, &out, &errOut, nil); err != nil || !strings.Contains(errOut.String(), "-max-streams") {
		t.Fatalf("serve -h: %v\n%s", err, errOut.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, nil); err != nil || !strings.HasPrefix(out.String(), "signalchannel ") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("version: %v %q", err, out.String())
	}
}

// The start log names the version and, with -demo, the demo page's URL;
// /metrics has the build.
func TestStartLogAndBuildInfo(t *testing.T) {
	addr, _, logs := startServer(t, "-demo")
	_, port, _ := net.SplitHostPort(addr)
	for _, want := range []string{`"version":"`, `"url":"http://127.0.0.1:` + port + `/demo/?room=lobby"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the start log lacks %s:\n%s", want, logs)
		}
	}
	if m := scrape(t, addr); !strings.Contains(m, "signalchannel_build_info{") {
		t.Errorf("no build info in /metrics")
	}
}
