package turnserver

import "testing"

// isChannelData classifies any datagram without panicking, and takes only
// channel numbers 0x4000-0x7FFF with a length that fits.
func FuzzIsChannelData(f *testing.F) {
	for _, b := range [][]byte{{}, {0x40}, {0x40, 0, 0, 0}, {0x7f, 0xff, 0, 4, 1, 2, 3, 4}, {0x80, 0, 0, 0}, {0x40, 0, 0xff, 0xff}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if isChannelData(b) && (len(b) < 4 || b[0] < 0x40 || b[0] > 0x7f || int(b[2])<<8|int(b[3]) > len(b)-4) {
			t.Fatalf("% x taken for ChannelData", b)
		}
	})
}
