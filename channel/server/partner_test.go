package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

func hashiDial(t *testing.T, url string) *yamux.Session {
	t.Helper()
	ws := rawDial(t, url, nil, channel.Subprotocol)
	cfg := sctest.HashicorpConfig()
	ys, err := yamux.Client(sctest.NewMsgConn(ws, nil), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ys.Close() })
	return ys
}

// hashiOpen opens a stream with header and reads the reply line.
func hashiOpen(t *testing.T, ys *yamux.Session, header string) (*yamux.Stream, *bufio.Reader) {
	t.Helper()
	st, err := ys.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte(header + "\n")); err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(st)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, `{"ok":true`) {
		t.Fatalf("reply %q, %v", line, err)
	}
	st.SetReadDeadline(time.Time{})
	return st, br
}

// TestHashicorpClientAgainstServer: hashicorp/yamux clients and the
// project's client share an echo namespace on the project's server; every
// member gets every frame.
func TestHashicorpClientAgainstServer(t *testing.T) {
	ts := newTestServer(t, server.Config{})
	const frames = 200
	var readers []*bufio.Reader
	var streams []*yamux.Stream
	for range 3 {
		st, br := hashiOpen(t, hashiDial(t, ts.URL), `{"endpoint":"echo","namespace":"partners"}`)
		streams, readers = append(streams, st), append(readers, br)
	}
	own, err := dial(t, ts.URL).Echo(ctxT(t), "partners")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := ts.Echo.Stats().Members; n != 4 {
			return errorf("%d members", n)
		}
		return nil
	})
	for i := range frames {
		f := bytes.Repeat([]byte{byte(i)}, 1+i*37)
		var err error
		if i%2 == 0 {
			_, err = streams[i%3].Write(channel.AppendFrame(nil, f))
		} else {
			err = own.Send(f)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The hub orders frames from different sessions as they arrive: every
	// member sees every frame, all in the same order.
	var first []int
	check := func(who string, recv func() ([]byte, error)) {
		var lens []int
		seen := map[int]bool{}
		for range frames {
			got, err := recv()
			if err != nil {
				t.Fatalf("%s, frame %d: %v", who, len(lens), err)
			}
			lens = append(lens, len(got))
			seen[len(got)] = true
		}
		for i := range frames {
			if !seen[1+i*37] {
				t.Fatalf("%s never got frame %d", who, i)
			}
		}
		if first == nil {
			first = lens
		} else if fmt.Sprint(lens) != fmt.Sprint(first) {
			t.Fatalf("%s got the frames in another order", who)
		}
	}
	for k, br := range readers {
		streams[k].SetReadDeadline(time.Now().Add(30 * time.Second))
		check(fmt.Sprintf("hashicorp member %d", k), func() ([]byte, error) { return channel.ReadFrame(br, channel.DefaultMaxFrame) })
	}
	check("own member", own.Recv)
}
