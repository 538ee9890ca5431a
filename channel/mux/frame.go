package mux

import (
	"encoding/binary"
	"sync"
)

// yamux framing (hashicorp/yamux spec.md, version 0).
const (
	headerSize   = 12
	protoVersion = 0

	typeData         = 0
	typeWindowUpdate = 1
	typePing         = 2
	typeGoAway       = 3

	flagSYN = 1
	flagACK = 2
	flagFIN = 4
	flagRST = 8

	// StreamWindow is the yamux stream window: no data frame may be longer.
	StreamWindow = 256 << 10

	// MaxFrameBytes is the largest yamux frame, header included: the
	// least message size limit under which every frame fits one message.
	MaxFrameBytes = headerSize + StreamWindow
)

func putHeader(f []byte, typ uint8, flags uint16, id, length uint32) {
	f[0] = protoVersion
	f[1] = typ
	binary.BigEndian.PutUint16(f[2:4], flags)
	binary.BigEndian.PutUint32(f[4:8], id)
	binary.BigEndian.PutUint32(f[8:12], length)
}

// Frame buffers come from pools by power-of-two size class from 64 B up
// to one whole frame, so neither bulk transfers nor small frames allocate
// per frame, and a buffer is at most twice what it holds.
const (
	minPooledBuf = 64
	maxPooledBuf = 512 << 10 // the class holding a 256 KiB frame and its header
	// tailBuf is the buffer small bodies are copied into (receiveCopy).
	tailBuf = 8 << 10
)

var bufPools [14]sync.Pool // 64 B, 128 B, ..., 512 KiB

func bufClass(n int) int {
	c, size := 0, minPooledBuf
	for size < n {
		c, size = c+1, size*2
	}
	return c
}

func getBuf(n int) []byte {
	if n < minPooledBuf || n > maxPooledBuf {
		return make([]byte, n)
	}
	c := bufClass(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, minPooledBuf<<c)
}

func putBuf(b []byte) {
	c := cap(b)
	if c < minPooledBuf || c > maxPooledBuf || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	bufPools[bufClass(c)].Put(&b)
}
