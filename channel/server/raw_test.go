package server_test

import (
	"io"
	"testing"

	"github.com/signalchannel/signalchannel/channel/client"
)

// openRaw opens a stream with Open's machinery bypassed: it writes line as
// is, with no newline added, and returns the stream for reading the reply.
func openRaw(t testing.TB, s *client.Session, line string) *client.Stream {
	t.Helper()
	st, err := s.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	return st
}

func readAll(r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}
