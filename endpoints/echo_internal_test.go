package endpoints

import "testing"

// A batch buffer always has room for its batch, and one larger than the
// pool's bound is not kept.
func TestBatchBufPool(t *testing.T) {
	for _, size := range []int{0, 100, minBatchBuf + 1, maxPooledBatch + 1} {
		bp := getBatchBuf(size)
		if cap(*bp) < size || len(*bp) != 0 {
			t.Fatalf("size %d: buffer len %d cap %d", size, len(*bp), cap(*bp))
		}
		putBatchBuf(bp, *bp)
	}
	huge := make([]byte, 0, maxPooledBatch+1)
	putBatchBuf(&huge, huge)
	for range 100 {
		if bp := getBatchBuf(0); cap(*bp) > maxPooledBatch {
			t.Fatalf("a %d-byte buffer came back from the pool", cap(*bp))
		}
	}
}
