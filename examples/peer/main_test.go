package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/peer"
)

// The example's own run, over the relay and over a loopback data channel:
// alice calls bob, each reads the other's greeting, and alice her echo.
func TestDemo(t *testing.T) {
	se := &webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	for _, c := range []struct {
		path peer.Path
		opts peer.ConnOptions
	}{
		{peer.PathRelay, peer.ConnOptions{ForceRelay: true}},
		{peer.PathDirect, peer.ConnOptions{SettingEngine: se, DirectTimeout: time.Minute}},
	} {
		t.Run(string(c.path), func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := demo(ctx, &out, c.opts); err != nil {
				t.Fatalf("%v; it printed:\n%s", err, out.String())
			}
			seen := map[string]bool{}
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var ev map[string]any
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatalf("%q: %v", sc.Text(), err)
				}
				if ev["event"] == "data" || ev["event"] == "connected" {
					seen[ev["who"].(string)+" "+ev["event"].(string)+" "+ev["path"].(string)+" "+str(ev["text"])] = true
				}
			}
			p := string(c.path)
			for _, want := range []string{
				"alice connected " + p + " ", "bob connected " + p + " ",
				"bob data " + p + " hello from alice", "alice data " + p + " hello from bob", "alice data " + p + " hello from alice",
			} {
				if !seen[want] {
					t.Errorf("no %q in:\n%s", want, out.String())
				}
			}
		})
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
