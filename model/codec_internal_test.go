package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLineLen checks the length functions agree with the encoders.
func TestLineLen(t *testing.T) {
	alphabet := []string{"a", "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "é", "😀", "\u2028", "\xff", "\xe2\x82"}
	rng := rand.New(rand.NewPCG(1, 2))
	randString := func() string {
		s := ""
		for range rng.IntN(8) {
			s += alphabet[rng.IntN(len(alphabet))]
		}
		return s
	}
	floats := []float64{0, -1, 1e21, 1e-7, 1700000000000.001, math.MaxFloat64, 5e-324, math.Inf(1), math.NaN()}
	for i := range 10000 {
		u := Update{Key: randString(), Value: nullJSON, TS: rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)), Source: randString()}
		if i < len(floats) {
			u.TS = floats[i]
		}
		if i%3 == 0 {
			u.Value = nil
			u.Sig = []byte(`{"s":1}`)
		}
		if got, want := updateLineLen(&u), len(AppendUpdate(nil, u)); got != want {
			t.Fatalf("updateLineLen(%+v) = %d, want %d", u, got, want)
		}
		if got, want := stringLen(u.Key), len(appendString(nil, u.Key)); got != want {
			t.Fatalf("stringLen(%q) = %d, want %d", u.Key, got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindDigest: "digest", KindUpdate: "update", KindSync: "sync", KindError: "error", 9: "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("%d: %q", k, got)
		}
	}
}
