package server_test

import (
	"context"
	"testing"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// BenchmarkStreamOpen measures opening and closing an echo stream on one
// session, without hooks and with a stream hook and an event hook that do
// nearly nothing, in the same run: the hooks' own cost.
//
//	go test ./channel/server -run XXX -bench StreamOpen -count 6
func BenchmarkStreamOpen(b *testing.B) {
	for _, c := range []struct {
		name  string
		hooks server.Hooks
	}{
		{"none", server.Hooks{}},
		{"hooks", server.Hooks{
			Stream: func(_ context.Context, s server.StreamInfo) *channel.Error {
				if s.Namespace == "never" {
					return channel.Errorf(channel.CodeForbidden, "no")
				}
				return nil
			},
			Event: func(server.Event) {},
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ts := sctest.NewServer(b, sctest.Options{Channel: server.Config{Hooks: c.hooks, MaxStreamOpensPerSecond: 1 << 30}})
			s := sctest.Dial(b, ts.URL)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				e, err := s.Echo(ctx, "bench")
				if err != nil {
					b.Fatal(err)
				}
				e.Stream().Reset()
			}
		})
	}
}
