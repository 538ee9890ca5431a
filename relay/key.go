package relay

// Key names a relay stream: its namespace and its two tokens, as the stream
// header gives them.
type Key struct {
	Namespace string
	Local     string
	Remote    string
}

// Mirror returns the key of the stream k pairs with: the same namespace,
// the tokens swapped.
func (k Key) Mirror() Key {
	return Key{Namespace: k.Namespace, Local: k.Remote, Remote: k.Local}
}
