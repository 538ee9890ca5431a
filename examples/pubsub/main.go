// Command pubsub shows two Go clients talking over one echo namespace.
//
//	go run ./examples/pubsub                      # starts its own server on 127.0.0.1
//	go run ./examples/pubsub -url ws://127.0.0.1:8080/v1/channel
//
// Alice and Bob join "room-1"; each announces itself, then both print what
// the namespace carries. Every member receives every frame, its own included,
// in one order.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/examples/internal/localserver"
)

func main() {
	url := flag.String("url", "", "server channel URL (default: start a server in this process)")
	flag.Parse()
	if err := run(*url, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(url string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if url == "" {
		u, stop, err := localserver.Start(endpoints.ScuttlebuttConfig{})
		if err != nil {
			return err
		}
		defer stop()
		url = u
	}

	names := []string{"alice", "bob"}
	rooms := make([]*client.Echo, len(names))
	for i, name := range names {
		sess, err := client.Dial(ctx, url, client.DialOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer sess.Close()
		if rooms[i], err = sess.Echo(ctx, "room-1"); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	const each = 3
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() { // each member reads until it has every frame
			defer wg.Done()
			for n := 0; n < each*len(names); n++ {
				f, err := rooms[i].Recv()
				if err != nil {
					mu.Lock()
					fmt.Fprintf(out, "%s: %v\n", name, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "%-5s got %q\n", name, f)
				mu.Unlock()
			}
		}()
	}
	for n := 0; n < each; n++ {
		for i, name := range names {
			if err := rooms[i].Send([]byte(fmt.Sprintf("%s says hello #%d", name, n+1))); err != nil {
				return err
			}
		}
	}
	wg.Wait()
	for _, r := range rooms {
		r.Close() // leave: the server sends what was queued, then EOF
		if _, err := r.Recv(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("leaving: %v", err)
		}
	}
	return nil
}
