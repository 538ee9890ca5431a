package wsraw

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// maxHeader is the longest frame header: 2 bytes, 8 of extended length and
// 4 of mask.
const maxHeader = 14

// maxControlPayload is the longest payload of a control frame.
const maxControlPayload = 125

// header is a frame's header as the client sent it.
type header struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

// protocolError is a frame no client may send; the session closes with
// 1002 and its text.
type protocolError string

func (e protocolError) Error() string { return "websocket: " + string(e) }

// parseHeader parses the client frame header at the start of b. It returns
// the header and its size, or size 0 if b holds only part of it. A header no
// client may send is a protocolError: a reserved bit or opcode (no
// extension is negotiated), an unmasked frame, a fragmented or long control
// frame, a length with its top bit set.
func parseHeader(b []byte) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&0x80 != 0
	h.op = b0 & 0x0f
	if b0&0x70 != 0 {
		return h, 0, protocolError(fmt.Sprintf("reserved bits 0x%x set with no extension negotiated", b0&0x70>>4))
	}
	switch h.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, protocolError(fmt.Sprintf("reserved opcode %d", h.op))
	}
	if b1&0x80 == 0 {
		return h, 0, protocolError("client frame not masked")
	}
	n = 2
	switch l := b1 & 0x7f; l {
	case 126:
		if len(b) < n+2 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[n:]))
		n += 2
	case 127:
		if len(b) < n+8 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[n:])
		if u>>63 != 0 {
			return h, 0, protocolError("frame length with its most significant bit set")
		}
		h.length = int64(u)
		n += 8
	default:
		h.length = int64(l)
	}
	if h.op >= opClose {
		if !h.fin {
			return h, 0, protocolError("fragmented control frame")
		}
		if h.length > maxControlPayload {
			return h, 0, protocolError(fmt.Sprintf("control frame of %d bytes: at most %d", h.length, maxControlPayload))
		}
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.mask[:], b[n:n+4])
	return h, n + 4, nil
}

// putHeader writes the header of an unmasked final frame of op with a
// payload of length bytes into b, which holds at least 10 bytes, and returns
// its size.
func putHeader(b []byte, op byte, length int) int {
	b[0] = 0x80 | op
	switch {
	case length < 126:
		b[1] = byte(length)
		return 2
	case length <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(length))
		return 4
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(length))
		return 10
	}
}

// maskBytes XORs b with key, starting at key position pos, and returns the
// position after b.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 16 {
		// Rotate the key to pos, then 8 bytes at a time.
		k := binary.LittleEndian.Uint32(key[:])
		k = bits.RotateLeft32(k, -8*(pos&3))
		k64 := uint64(k) | uint64(k)<<32
		for len(b) >= 32 {
			_ = b[31]
			binary.LittleEndian.PutUint64(b[0:], binary.LittleEndian.Uint64(b[0:])^k64)
			binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])^k64)
			binary.LittleEndian.PutUint64(b[16:], binary.LittleEndian.Uint64(b[16:])^k64)
			binary.LittleEndian.PutUint64(b[24:], binary.LittleEndian.Uint64(b[24:])^k64)
			b = b[32:]
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}
