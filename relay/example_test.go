package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/signalchannel/signalchannel/relay"
)

// The relay endpoint, for one stream whose header named the key: Pair,
// then the open reply, then Run. Error replies are left out.
func serveRelay(ctx context.Context, p *relay.Pairer, key relay.Key, s relay.Stream) error {
	link, err := p.Pair(ctx, key, s)
	switch {
	case errors.Is(err, relay.ErrConflict), errors.Is(err, relay.ErrTimeout),
		errors.Is(err, relay.ErrLimit), errors.Is(err, relay.ErrBadKey):
		return err // reply {"ok":false,...} with the matching code
	case err != nil:
		return err // the stream or the server is gone: no reply
	}
	lim := link.Limits()
	reply := fmt.Sprintf(`{"ok":true,"open":true,"limit":{"bytes":%d,"seconds":%d}}`+"\n",
		lim.Bytes, int64(lim.Lifetime.Seconds()))
	if _, err := io.WriteString(s, reply); err != nil {
		link.Reset()
		return err
	}
	return link.Run(ctx, s)
}

func Example() {
	p, err := relay.NewPairer(relay.Config{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	// Two clients, each with the server's end of its stream.
	aliceClient, aliceStream, _ := loopback()
	bobClient, bobStream, _ := loopback()
	defer aliceClient.Close()
	defer bobClient.Close()

	key := relay.Key{Namespace: "calls", Local: "alice", Remote: "bob"}

	var wg sync.WaitGroup
	wg.Go(func() { serveRelay(context.Background(), p, key, aliceStream) })
	wg.Go(func() { serveRelay(context.Background(), p, key.Mirror(), bobStream) })

	aliceClient.Write([]byte("hello bob"))
	aliceClient.CloseWrite()
	got, _ := io.ReadAll(bobClient)
	fmt.Printf("%s", got)
	bobClient.CloseWrite()
	wg.Wait()
	aliceStream.Close()
	bobStream.Close()
	// Output:
	// {"ok":true,"open":true,"limit":{"bytes":0,"seconds":0}}
	// hello bob
}
