package cluster

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// DefaultPrefix is the first token of every subject a node uses.
const DefaultPrefix = "signalchannel"

// token encodes s as one NATS subject token: unpadded base64url
// (RFC 4648 section 5), whose alphabet A-Z a-z 0-9 - _ holds none of the
// characters a token may not contain ('.', '*', '>', whitespace). Any string
// of 1 to 256 bytes (a namespace) becomes 2 to 342 characters; equal
// strings give equal tokens and different strings different ones. The empty
// string has no token and is refused by the callers.
func token(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// untoken decodes a token made by token.
func untoken(t string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return "", fmt.Errorf("%w: subject token %q: %v", ErrBadMessage, t, err)
	}
	return string(b), nil
}

// subjects names the subjects of one node's prefix.
//
//	<p>.echo.<ns>                  echo frames of a namespace
//	<p>.sb.<ns>.u                  scuttlebutt updates of a namespace
//	<p>.sb.<ns>.e                  ephemeral replica ids announced by nodes
//	<p>.sb.<ns>.s                  sync requests (answered by every node)
//	<p>.node.hb                    heartbeats and goodbyes
//	<p>.node.<id>.relay            relay proposals addressed to a node
//	<p>.relay.<ns>.<lo>.<hi>       relay rendezvous of a token pair
//	<p>.pipe.<id>.<pipe>           bytes of one relay pipe, to node id
//
// <ns>, <lo> and <hi> are tokens (see token); <lo> is the smaller of the
// pair's two relay tokens as strings; <id> is a node id (NUID characters).
type subjects struct{ p string }

func (s subjects) echo(ns string) string        { return s.p + ".echo." + token(ns) }
func (s subjects) sbUpdates(ns string) string   { return s.p + ".sb." + token(ns) + ".u" }
func (s subjects) sbEphemeral(ns string) string { return s.p + ".sb." + token(ns) + ".e" }
func (s subjects) sbSync(ns string) string      { return s.p + ".sb." + token(ns) + ".s" }
func (s subjects) sbSyncAll() string            { return s.p + ".sb.*.s" }
func (s subjects) heartbeat() string            { return s.p + ".node.hb" }
func (s subjects) nodeRelay(id string) string   { return s.p + ".node." + id + ".relay" }
func (s subjects) pipe(id, pipe string) string  { return s.p + ".pipe." + id + "." + pipe }

// rendezvous is the subject shared by every stream of the token pair {a, b}
// in namespace ns, whichever side it is.
func (s subjects) rendezvous(ns, a, b string) string {
	if a > b {
		a, b = b, a
	}
	return s.p + ".relay." + token(ns) + "." + token(a) + "." + token(b)
}

// syncNamespace returns the namespace of a sync request's subject.
func (s subjects) syncNamespace(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, s.p+".sb.")
	if !ok {
		return "", fmt.Errorf("%w: subject %q", ErrBadMessage, subject)
	}
	tok, ok := strings.CutSuffix(rest, ".s")
	if !ok || strings.Contains(tok, ".") {
		return "", fmt.Errorf("%w: subject %q", ErrBadMessage, subject)
	}
	return untoken(tok)
}

// validPrefix reports whether p is one or more subject tokens without
// wildcards or whitespace.
func validPrefix(p string) error {
	if p == "" {
		return fmt.Errorf("cluster: empty subject prefix")
	}
	for _, t := range strings.Split(p, ".") {
		if t == "" || strings.ContainsAny(t, "*> \t\r\n") {
			return fmt.Errorf("cluster: subject prefix %q: tokens must be non-empty, without '*', '>' or whitespace", p)
		}
	}
	return nil
}

func (s subjects) disconnect() string { return s.p + ".ctl.disconnect" }
