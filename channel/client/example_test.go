package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/channel/server"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// exampleServer starts a server with the echo endpoint on 127.0.0.1 and
// returns its channel URL and a function that stops it.
func exampleServer() (url string, stop func()) {
	h, _ := server.NewHandler(server.Config{Logger: sctest.QuietLogger()})
	h.Handle(channel.EndpointEcho, endpoints.NewEcho(endpoints.EchoConfig{Logger: sctest.QuietLogger()}))
	srv := httptest.NewServer(h)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
	}
}

// Two clients in one echo namespace: every frame reaches every member,
// the writer included.
func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	alice, _ := client.Dial(ctx, url, client.DialOptions{})
	defer alice.Close()
	bob, _ := client.Dial(ctx, url, client.DialOptions{})
	defer bob.Close()

	a, _ := alice.Echo(ctx, "room-1")
	b, _ := bob.Echo(ctx, "room-1")
	a.Send([]byte("offer from alice"))

	fa, _ := a.Recv()
	fb, _ := b.Recv()
	fmt.Printf("alice got %q\nbob got %q\n", fa, fb)
	// Output:
	// alice got "offer from alice"
	// bob got "offer from alice"
}

// A refused stream returns a *channel.Error carrying the protocol code.
func ExampleError() {
	url, stop := exampleServer()
	defer stop()
	ctx := context.Background()

	sess, _ := client.Dial(ctx, url, client.DialOptions{})
	defer sess.Close()
	_, err := sess.Echo(ctx, strings.Repeat("x", 300))
	var perr *channel.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Code, "-", perr.Message)
	}
	// Output:
	// bad_namespace - namespace longer than 256 bytes
}
