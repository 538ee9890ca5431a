package relay

// BigBuffers reports how many big buffers the link's two copies hold now,
// and how many they have taken so far.
func (l *Link) BigBuffers() (held int, taken int64) {
	for _, d := range []*direction{&l.ab, &l.ba} {
		if d.bigHeld.Load() {
			held++
		}
		taken += d.bursts.Load()
	}
	return held, taken
}

// Buffer sizes, for tests at their edges.
const (
	SmallBufSize = smallBufSize
	BigBufSize   = bigBufSize
)
