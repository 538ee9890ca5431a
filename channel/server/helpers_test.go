package server_test

import (
	"context"
	"fmt"
	"testing"

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
