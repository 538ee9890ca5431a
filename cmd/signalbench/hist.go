package main

import (
	"math"
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: 2^histSubBits buckets per
// power of two, so a value is known within about 3%.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// hist is a log-linear histogram of durations in nanoseconds (the layout of
// HdrHistogram). The zero value is empty and ready; it is not safe for
// concurrent use.
type hist struct {
	counts []uint64
	n      uint64
	sum    float64
	max    int64
}

func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits
	return e*histSub + int(v>>(e-1)-histSub)
}

// histLow returns the smallest value of bucket i.
func histLow(i int) uint64 {
	e, m := i/histSub, uint64(i%histSub)
	if e == 0 {
		return m
	}
	return (m + histSub) << (e - 1)
}

// Record adds one duration; a negative one counts as 0.
func (h *hist) Record(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	v := max(int64(d), 0)
	h.counts[histBucket(uint64(v))]++
	h.n++
	h.sum += float64(v)
	h.max = max(h.max, v)
}

// Merge adds o's counts to h.
func (h *hist) Merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count returns how many durations were recorded.
func (h *hist) Count() uint64 { return h.n }

// Mean returns the mean duration, 0 when empty.
func (h *hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest duration recorded.
func (h *hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the q-quantile (0 < q <= 1), the middle of its bucket,
// and 0 when empty.
func (h *hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			mid := time.Duration(lo + (hi-lo)/2)
			return min(mid, time.Duration(h.max))
		}
	}
	return time.Duration(h.max)
}

// latency is a histogram's summary for reports.
type latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (h *hist) Summary() latency {
	return latency{
		Count: h.n,
		P50:   ms(h.Quantile(0.50)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
		Mean:  ms(h.Mean()),
	}
}
