package channel

import (
	"encoding/binary"
	"fmt"
	"io"
)

// DefaultMaxFrame is the echo endpoint's largest frame (PROTOCOL.md section 3).
const DefaultMaxFrame = 64 << 10

// FrameHeaderSize is the size of a frame's big-endian length prefix.
const FrameHeaderSize = 4

// ReadFrame reads one length-prefixed frame (PROTOCOL.md section 3) of at
// most max bytes. A longer frame returns ErrFrameTooLarge after only its
// length prefix was read. A stream that ends between frames returns io.EOF;
// one that ends inside a frame returns io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// AppendFrame appends p with its length prefix to dst.
func AppendFrame(dst, p []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}
