package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// A session hook refuses a session: Dial returns its code and reason; a
// stream hook refuses a stream with forbidden and its reason; others pass.
func TestHooksRefuse(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Hooks: server.Hooks{
		Session: func(_ context.Context, s server.SessionInfo) *server.Refusal {
			if strings.HasPrefix(s.Remote, "127.") && blocked.Load() {
				return &server.Refusal{Code: channel.CloseForbidden, Reason: "banned for the day"}
			}
			return nil
		},
		Stream: func(_ context.Context, s server.StreamInfo) *channel.Error {
			if s.Endpoint == channel.EndpointEcho && strings.HasPrefix(s.Namespace, "private-") {
				return channel.Errorf(channel.CodeForbidden, "private rooms need an invitation")
			}
			return nil
		},
	}}})
	s := sctest.Dial(t, ts.URL)
	_, err := s.Echo(sctest.Ctx(t), "private-1")
	var perr *channel.Error
	if !errors.As(err, &perr) || perr.Code != channel.CodeForbidden || perr.Message != "private rooms need an invitation" {
		t.Fatalf("refused stream: %v", err)
	}
	if _, err := s.Echo(sctest.Ctx(t), "public-1"); err != nil {
		t.Fatalf("allowed stream: %v", err)
	}
	blocked.Store(true)
	defer blocked.Store(false)
	_, err = client.Dial(sctest.Ctx(t), ts.URL, client.DialOptions{})
	var ce *channel.CloseError
	if !errors.As(err, &ce) || ce.Code != channel.CloseForbidden || ce.Reason != "banned for the day" {
		t.Fatalf("refused session: %v", err)
	}
}

var blocked atomic.Bool

// The event hook hears a scripted session in order: opened, a namespace
// joined and left, a relay pair opened and closed, closed by the client.
func TestHooksEvents(t *testing.T) {
	var mu sync.Mutex
	var events []server.Event
	ts := sctest.NewServer(t, sctest.Options{Channel: server.Config{Hooks: server.Hooks{Event: func(e server.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}}})
	alice := sctest.Dial(t, ts.URL)
	bob := sctest.Dial(t, ts.URL)
	e, err := alice.Echo(sctest.Ctx(t), "hooked")
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	// The echo stream ends when the server has answered the FIN: then the
	// relay, so that the order of alice's events is the script's.
	sctest.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.Type == server.EventNamespaceLeft && e.PeerID == alice.ID() {
				return nil
			}
		}
		return errors.New("alice's echo stream has not ended")
	})
	done := make(chan error, 1)
	go func() {
		p, err := bob.Relay(sctest.Ctx(t), "calls", bob.ID(), alice.ID())
		if err == nil {
			p.Close()
		}
		done <- err
	}()
	p, err := alice.Relay(sctest.Ctx(t), "calls", alice.ID(), bob.ID())
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	alice.Close()
	want := []string{
		"session.opened " + alice.ID(),
		"namespace.joined " + alice.ID() + " echo hooked",
		"namespace.left " + alice.ID() + " echo hooked",
		"relay.opened " + alice.ID() + " relay calls",
		"relay.closed " + alice.ID() + " relay calls",
		"session.closed " + alice.ID() + " client 1000",
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, e := range events {
			if e.PeerID != alice.ID() {
				continue
			}
			line := string(e.Type) + " " + e.PeerID
			if e.Endpoint != "" {
				line += " " + e.Endpoint + " " + e.Namespace
			}
			if e.Type == server.EventSessionClosed {
				line += fmt.Sprintf(" %s %d", e.By, e.Code)
			}
			if e.Time.IsZero() {
				return fmt.Errorf("an event without its time: %+v", e)
			}
			got = append(got, line)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			return fmt.Errorf("alice's events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		return nil
	})
}
