// Command relay sends a file from one Go peer to another through the relay
// endpoint, the fallback for peers that cannot connect directly, and has
// both check its SHA-256.
//
//	go run ./examples/relay                      # an in-process server, 8 MiB of generated data
//	go run ./examples/relay -file big.iso        # a file of your own
//	go run ./examples/relay -url ws://127.0.0.1:8080/v1/channel
//
// Alice and Bob each open a session and a relay stream with the same
// namespace and swapped tokens; the server pairs them. Alice sends the
// SHA-256 of the file, then the file, then half-closes. Bob hashes what he
// receives, checks it against Alice's digest and sends his digest back,
// which Alice checks in turn.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/endpoints"
	"github.com/signalchannel/signalchannel/examples/internal/localserver"
)

func main() {
	url := flag.String("url", "", "server channel URL (default: start a server on 127.0.0.1)")
	file := flag.String("file", "", "file to send (default: generated data)")
	size := flag.Int64("size", 8<<20, "bytes of generated data when -file is not given")
	flag.Parse()
	log.SetFlags(0)
	if err := run(*url, *file, *size); err != nil {
		log.Fatal(err)
	}
}

func run(url, file string, size int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if url == "" {
		u, stop, err := localserver.Start(endpoints.ScuttlebuttConfig{})
		if err != nil {
			return err
		}
		defer stop()
		url = u
	}

	// The file is read twice: once for its digest, once to send it.
	open := func() (io.ReadCloser, error) {
		if file != "" {
			return os.Open(file)
		}
		return io.NopCloser(io.LimitReader(rand.NewChaCha8([32]byte{42}), size)), nil
	}
	want, n, err := digest(open)
	if err != nil {
		return err
	}
	log.Printf("sending %d bytes, sha256 %x", n, want)

	// Each peer would run on its own machine; here they are goroutines,
	// each with its own session. A session is closed only after the pair
	// has ended on both sides: a session that ends while bytes are still in
	// flight through the relay resets the pair (PROTOCOL.md 5.6).
	var sessions []*client.Session
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	for range 2 {
		s, err := client.Dial(ctx, url, client.DialOptions{})
		if err != nil {
			return err
		}
		sessions = append(sessions, s)
	}
	errc := make(chan error, 2)
	start := time.Now()
	go func() { errc <- alice(ctx, sessions[0], open, want) }()
	go func() { errc <- bob(ctx, sessions[1]) }()
	for range 2 {
		if err := <-errc; err != nil {
			return err
		}
	}
	d := time.Since(start)
	log.Printf("done: %d bytes in %v (%.1f MB/s), both digests match", n, d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6)
	return nil
}

// alice sends the digest and the file, then checks Bob's digest.
func alice(ctx context.Context, sess *client.Session, open func() (io.ReadCloser, error), sum []byte) error {
	conn, err := connect(ctx, sess, "alice", "bob")
	if err != nil {
		return err
	}
	defer conn.Close()
	f, err := open()
	if err != nil {
		conn.Reset()
		return err
	}
	defer f.Close()
	if _, err := conn.Write(sum); err != nil {
		return fmt.Errorf("alice: %w", err)
	}
	if _, err := io.CopyBuffer(conn, f, make([]byte, 256<<10)); err != nil {
		return fmt.Errorf("alice: sending: %w", err)
	}
	if err := conn.CloseWrite(); err != nil {
		return fmt.Errorf("alice: %w", err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("alice: reading Bob's digest: %w", err)
	}
	if !bytes.Equal(got, sum) {
		return fmt.Errorf("alice: Bob received sha256 %x, sent %x", got, sum)
	}
	log.Printf("alice: Bob's digest matches")
	return nil
}

// bob receives the digest and the file, checks it and sends his digest.
func bob(ctx context.Context, sess *client.Session) error {
	conn, err := connect(ctx, sess, "bob", "alice")
	if err != nil {
		return err
	}
	defer conn.Close()
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, want); err != nil {
		return fmt.Errorf("bob: reading Alice's digest: %w", err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, conn, make([]byte, 256<<10))
	if err != nil {
		return fmt.Errorf("bob: receiving: %w", err)
	}
	got := h.Sum(nil)
	if !bytes.Equal(got, want) {
		conn.Reset()
		return fmt.Errorf("bob: received %d bytes with sha256 %x, Alice sent %x", n, got, want)
	}
	log.Printf("bob: received %d bytes, digest matches", n)
	if _, err := conn.Write(got); err != nil {
		return fmt.Errorf("bob: %w", err)
	}
	return conn.CloseWrite()
}

// connect opens the relay stream; it returns once the peer has arrived.
func connect(ctx context.Context, sess *client.Session, local, remote string) (*client.RelayConn, error) {
	conn, err := sess.Relay(ctx, "file-transfer", local, remote)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", local, err)
	}
	if lim := conn.Limit(); lim.Bytes != 0 || lim.Seconds != 0 {
		log.Printf("%s: paired; the server caps the pair at %d bytes per direction and %d s (0: no cap)", local, lim.Bytes, lim.Seconds)
	} else {
		log.Printf("%s: paired", local)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, nil
}

func digest(open func() (io.ReadCloser, error)) ([]byte, int64, error) {
	f, err := open()
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return h.Sum(nil), n, err
}
