package server_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
)

// TestHeaderErrors drives every header error of PROTOCOL.md section 2 over
// one session, and checks after each that the session still serves.
func TestHeaderErrors(t *testing.T) {
	ts := newTestServer(t, server.Config{MaxHeaderErrors: 1000}, func(h *server.Handler) {
		// relay's token rules apply once relay is a known endpoint
		h.Handle("relay", server.EndpointFunc(func(ctx context.Context, s *server.Stream, r *server.Request) {
			s.Reject(channel.Errorf(channel.CodeInternal, "test relay"))
		}))
	})
	s := dial(t, ts.URL)
	long := func(n int) string { return strings.Repeat("n", n) }
	cases := []struct {
		name   string
		header string
		code   channel.Code
	}{
		{"not json", `hello`, channel.CodeBadHeader},
		{"broken json", `{"endpoint":"echo",`, channel.CodeBadHeader},
		{"array", `["echo","a"]`, channel.CodeBadHeader},
		{"string", `"echo"`, channel.CodeBadHeader},
		{"missing endpoint", `{"namespace":"a"}`, channel.CodeBadHeader},
		{"missing namespace", `{"endpoint":"echo"}`, channel.CodeBadHeader},
		{"null namespace", `{"endpoint":"echo","namespace":null}`, channel.CodeBadHeader},
		{"number namespace", `{"endpoint":"echo","namespace":7}`, channel.CodeBadHeader},
		{"number endpoint", `{"endpoint":1,"namespace":"a"}`, channel.CodeBadHeader},
		{"number local", `{"endpoint":"relay","namespace":"a","local":1,"remote":"b"}`, channel.CodeBadHeader},
		{"object remote", `{"endpoint":"relay","namespace":"a","local":"a","remote":{}}`, channel.CodeBadHeader},
		{"string ephemeral", `{"endpoint":"scuttlebutt","namespace":"a","ephemeral":"yes"}`, channel.CodeBadHeader},
		{"invalid utf8", "{\"endpoint\":\"echo\",\"namespace\":\"\xff\"}", channel.CodeBadHeader},
		{"over 4096 bytes", `{"endpoint":"echo","namespace":"a","pad":"` + long(4096) + `"}`, channel.CodeBadHeader},
		{"4096 bytes with newline is one too many", `{"endpoint":"echo","namespace":"a","pad":"` + long(4096-len(`{"endpoint":"echo","namespace":"a","pad":""}`)) + `"}`, channel.CodeBadHeader},
		{"unknown endpoint", `{"endpoint":"chat","namespace":"a"}`, channel.CodeUnknownEndpoint},
		{"empty endpoint", `{"endpoint":"","namespace":"a"}`, channel.CodeUnknownEndpoint},
		{"endpoint case", `{"endpoint":"Echo","namespace":"a"}`, channel.CodeUnknownEndpoint},
		{"empty namespace", `{"endpoint":"echo","namespace":""}`, channel.CodeBadNamespace},
		{"namespace 257 bytes", `{"endpoint":"echo","namespace":"` + long(257) + `"}`, channel.CodeBadNamespace},
		{"namespace NUL", `{"endpoint":"echo","namespace":"a\u0000b"}`, channel.CodeBadNamespace},
		{"namespace newline", `{"endpoint":"echo","namespace":"a\nb"}`, channel.CodeBadNamespace},
		{"namespace U+001F", `{"endpoint":"echo","namespace":"\u001f"}`, channel.CodeBadNamespace},
		{"namespace DEL", `{"endpoint":"echo","namespace":"a\u007f"}`, channel.CodeBadNamespace},
		{"relay no local", `{"endpoint":"relay","namespace":"g","remote":"b"}`, channel.CodeBadToken},
		{"relay no remote", `{"endpoint":"relay","namespace":"g","local":"a"}`, channel.CodeBadToken},
		{"relay empty local", `{"endpoint":"relay","namespace":"g","local":"","remote":"b"}`, channel.CodeBadToken},
		{"relay token 129 bytes", `{"endpoint":"relay","namespace":"g","local":"` + long(129) + `","remote":"b"}`, channel.CodeBadToken},
		{"relay token control", `{"endpoint":"relay","namespace":"g","local":"a\tb","remote":"b"}`, channel.CodeBadToken},
		{"relay same tokens", `{"endpoint":"relay","namespace":"g","local":"x","remote":"x"}`, channel.CodeBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := s.Open(ctxT(t), []byte(c.header))
			wantCode(t, err, c.code)
		})
	}
	echoRoundTrip(t, s)
}

// TestHeaderEdges checks the limits that must still pass.
func TestHeaderEdges(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	s := dial(t, ts.URL)
	base := `{"endpoint":"echo","namespace":"a","pad":""}`
	line := `{"endpoint":"echo","namespace":"a","pad":"` + strings.Repeat("p", 4095-len(base)) + `"}`
	if len(line)+1 != 4096 {
		t.Fatalf("test line is %d bytes", len(line)+1)
	}
	for name, h := range map[string]string{
		"4096 bytes with newline": line,
		"namespace 256 bytes":     `{"endpoint":"echo","namespace":"` + strings.Repeat("n", 256) + `"}`,
		"unicode namespace":       `{"endpoint":"echo","namespace":"salle-🎉-é"}`,
		"unknown fields ignored":  `{"endpoint":"echo","namespace":"a","x":[1,{"y":null}],"local":"z"}`,
		"whitespace":              ` { "endpoint" : "echo" , "namespace" : "a" } `,
	} {
		t.Run(name, func(t *testing.T) {
			st, reply, err := s.Open(ctxT(t), []byte(h))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if !reply.OK || reply.MaxFrame != channel.DefaultMaxFrame {
				t.Fatalf("reply %s", reply.Raw)
			}
		})
	}
}

// TestErrorReplyHalfCloses checks the failure reply's shape and that the
// server half-closes the stream after it and ignores what follows.
func TestErrorReplyHalfCloses(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	s := dial(t, ts.URL)
	_, reply, err := s.Open(ctxT(t), []byte(`{"endpoint":"nope","namespace":"a"}`))
	perr := wantCode(t, err, channel.CodeUnknownEndpoint)
	if reply.OK || reply.Error == nil || reply.Error.Code != perr.Code {
		t.Fatalf("reply %s", reply.Raw)
	}
	if !strings.HasPrefix(string(reply.Raw), `{"ok":false,"error":{"code":"unknown_endpoint","message":"`) {
		t.Fatalf("reply line %s", reply.Raw)
	}
	echoRoundTrip(t, s)
}

// TestHeaderTimeout: a stream that sends no header gets `timeout`.
func TestHeaderTimeout(t *testing.T) {
	ts := newTestServer(t, server.Config{HeaderTimeout: 200 * time.Millisecond})
	s := dial(t, ts.URL)
	// Half a header, never finished.
	st := openRaw(t, s, `{"endpoint":"echo"`) // no newline
	line, err := readAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, `"code":"timeout"`) {
		t.Fatalf("want timeout reply, got %q", line)
	}
	echoRoundTrip(t, s)
}

// TestStreamLimit: the stream past MaxStreams gets `limit`, naming it, and
// one more fits again once a stream closes.
func TestStreamLimit(t *testing.T) {
	const max = 4
	ts := newTestServer(t, server.Config{MaxStreams: max})
	s := dial(t, ts.URL)
	var open []*client.Echo
	for i := 0; i < max; i++ {
		e, err := s.Echo(ctxT(t), "room")
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		open = append(open, e)
	}
	_, err := s.Echo(ctxT(t), "room")
	perr := wantCode(t, err, channel.CodeLimit)
	if !strings.Contains(perr.Message, "4") || !strings.Contains(perr.Message, "streams per session") {
		t.Fatalf("limit message %q does not name the limit and its value", perr.Message)
	}
	// The open streams still work.
	if err := open[0].Send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, e := range open {
		if got, err := e.Recv(); err != nil || string(got) != "x" {
			t.Fatalf("recv %q %v", got, err)
		}
	}
	open[0].Close()
	if _, err := open[0].Recv(); err != io.EOF {
		t.Fatalf("after close: %v", err)
	}
	waitFor(t, 5*time.Second, func() error {
		e, err := s.Echo(ctxT(t), "room")
		if err != nil {
			return err
		}
		e.Close()
		return nil
	})
}

// TestForbiddenAndInternal covers the codes that come from the authorizer
// and from an endpoint that fails to answer.
func TestForbiddenAndInternal(t *testing.T) {
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) {
		h.SetAuthorizer(func(ctx context.Context, hd *channel.Header) *channel.Error {
			if hd.Namespace == "secret" {
				return channel.Errorf(channel.CodeForbidden, "not allowed to use echo:%s", hd.Namespace)
			}
			return nil
		})
		h.Handle("scuttlebutt", server.EndpointFunc(func(ctx context.Context, s *server.Stream, r *server.Request) {}))
	})
	s := dial(t, ts.URL)
	_, err := s.Echo(ctxT(t), "secret")
	wantCode(t, err, channel.CodeForbidden)
	_, _, err = s.Open(ctxT(t), channel.Header{Endpoint: "scuttlebutt", Namespace: "a"})
	perr := wantCode(t, err, channel.CodeInternal)
	if strings.Contains(perr.Message, "channel") || strings.Contains(perr.Message, ".go") {
		t.Fatalf("internal message leaks internals: %q", perr.Message)
	}
	echoRoundTrip(t, s)
}

// TestOpenCanceled: ending ctx while waiting for a reply resets the stream.
func TestOpenCanceled(t *testing.T) {
	ts := newTestServer(t, server.Config{}, func(h *server.Handler) {
		h.Handle("relay", server.EndpointFunc(func(ctx context.Context, s *server.Stream, r *server.Request) {
			select { // never answers until the stream or session goes
			case <-s.Done():
			case <-ctx.Done():
			}
			s.Reject(channel.Errorf(channel.CodeTimeout, "gave up"))
		}))
	})
	s := dial(t, ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := s.Open(ctx, channel.Header{Endpoint: "relay", Namespace: "g", Local: "a", Remote: "b"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
	waitFor(t, 5*time.Second, func() error {
		if n := ts.Stats().Streams; n != 0 {
			return errorf("%d streams still served", n)
		}
		return nil
	})
	echoRoundTrip(t, s)
}
