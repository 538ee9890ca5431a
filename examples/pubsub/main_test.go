package main

import (
	"strings"
	"testing"
)

// The example runs end to end and each member sees all six frames.
func TestPubsub(t *testing.T) {
	var out strings.Builder
	if err := run("", &out); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"alice", "bob"} {
		if n := strings.Count(out.String(), who+" got") + strings.Count(out.String(), who+"   got"); n != 6 {
			t.Fatalf("%s got %d frames, want 6:\n%s", who, n, out.String())
		}
	}
}
