package model

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Update is one write of one key, the unit the protocol replicates:
// [[Key,Value],TS,Source] on the wire, or [[Key,Value],TS,Source,Sig].
type Update struct {
	// Key is the key written, at most Options.MaxKeyBytes bytes of UTF-8.
	Key string
	// Value is the compact JSON value written; JSON null (or empty) deletes
	// the key.
	Value json.RawMessage
	// TS is the write's time in milliseconds since the Unix epoch, possibly
	// fractional.
	TS float64
	// Source is the id of the replica that made the write.
	Source string
	// Sig is the optional fourth element, a signature, kept and passed on
	// unchanged; nil when absent.
	Sig json.RawMessage
}

// Deleted reports whether the update is a deletion (its value is null).
func (u Update) Deleted() bool { return isNull(u.Value) }

// wins reports whether u beats v as the value of their key: the greater
// timestamp, or on equal timestamps the greater source.
func (u *Update) wins(v *Update) bool {
	if u.TS != v.TS {
		return u.TS > v.TS
	}
	return u.Source > v.Source
}

// before orders updates by (TS, Source), the order of History.
func (u *Update) before(v *Update) int {
	switch {
	case u.TS < v.TS:
		return -1
	case u.TS > v.TS:
		return 1
	}
	return strings.Compare(u.Source, v.Source)
}

var nullJSON = json.RawMessage("null")

func isNull(v json.RawMessage) bool {
	return len(v) == 0 || bytes.Equal(v, nullJSON)
}

// Digest is the first line each side of a stream sends: the replica's id and
// clock, the greatest timestamp it has seen from each source.
type Digest struct {
	ID    string
	Clock map[string]float64
	// Meta is the optional "meta" field an npm peer may send, kept as
	// compact JSON; nil when absent. Replicate ignores it.
	Meta json.RawMessage
}
