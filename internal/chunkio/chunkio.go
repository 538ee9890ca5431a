// Package chunkio splits input into chunks for fuzz tests, so that parsers
// meet their input cut at every place a network would cut it (as
// nats-server's FuzzParser does).
package chunkio

import "io"

// Reader returns Data in chunks whose sizes come from Sizes, cycled, each
// size byte meaning size+1 bytes; one byte at a time without Sizes.
type Reader struct {
	Data  []byte
	Sizes []byte
	i     int
}

func (c *Reader) Read(p []byte) (int, error) {
	if len(c.Data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.Sizes) > 0 {
		n = int(c.Sizes[c.i%len(c.Sizes)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.Data))
	copy(p, c.Data[:n])
	c.Data = c.Data[n:]
	return n, nil
}
