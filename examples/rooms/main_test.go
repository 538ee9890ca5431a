package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The story runs to its end: the admitted peer enters, the rejected one
// learns the owner's reason and cannot open the room's streams even with a
// header of its own, and the room passes to the heir.
func TestRooms(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"owns room book-club",
		"alice lets bob in",
		"bob entered book-club, with 1 other member(s)",
		"mallory was turned away: not on the guest list",
		`mallory's own header was refused: forbidden: room "book-club" admits only the peers its owner accepted`,
		"room book-club passes to ",
		"bob now writes the list of book-club",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
