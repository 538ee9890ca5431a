package client_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

func newTestServer(t testing.TB, cfg server.Config, register ...func(*server.Handler)) *sctest.Server {
	t.Helper()
	o := sctest.Options{Channel: cfg}
	if len(register) > 0 {
		o.Register = register[0]
	}
	return sctest.NewServer(t, o)
}

var (
	dial          = sctest.Dial
	waitFor       = sctest.WaitFor
	wantCode      = sctest.WantCode
	echoRoundTrip = sctest.EchoRoundTrip
)

func ctxT(t testing.TB) context.Context { return sctest.Ctx(t) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func readAll(r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

// mintFor returns a token for sub signed with sctest.TestSecret.
func mintFor(t testing.TB, sub string, ttl time.Duration, allow ...string) string {
	t.Helper()
	tok, err := auth.Mint(sctest.TestSecret, auth.Grant{Subject: sub, Allow: allow, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
