package auth

import (
	"fmt"
	"strings"
)

// Pattern is one parsed entry of a token's allow claim,
// "endpoint:namespace-pattern" (PROTOCOL.md section 7):
//
//   - The text before the first ':' is the endpoint. "*" alone matches every
//     endpoint; any other text is an endpoint name, matched exactly and
//     case-sensitively ("ech*" is the literal name "ech*", which no endpoint
//     has).
//   - The text after the first ':' is the namespace pattern. A '*' at its
//     end matches any suffix, the empty one included: "room-*" matches
//     "room-" and "room-1", and "*" matches every namespace. A '*' anywhere
//     else is a literal character: "a*b" matches only the namespace "a*b".
//     Further ':' belong to the namespace: "echo:a:b" is namespace "a:b".
//
// An entry without ':', or with an empty endpoint or namespace pattern, is
// malformed (ParsePattern returns ErrBadPattern, and Verify rejects a token
// holding one). The zero Pattern matches nothing.
type Pattern struct {
	raw         string
	endpoint    string // "" when anyEndpoint
	anyEndpoint bool
	namespace   string // without the trailing '*' when prefix
	prefix      bool
}

// ParsePattern parses one allow entry. Parse once and call Match per stream.
func ParsePattern(s string) (Pattern, error) {
	ep, ns, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return Pattern{}, fmt.Errorf("%w: %s has no ':' (want endpoint:namespace-pattern, such as \"echo:room-*\")", ErrBadPattern, quote(s, 64))
	case ep == "":
		return Pattern{}, fmt.Errorf("%w: %s has an empty endpoint (use \"*\" for every endpoint)", ErrBadPattern, quote(s, 64))
	case ns == "":
		return Pattern{}, fmt.Errorf("%w: %s has an empty namespace pattern (use \"*\" for every namespace)", ErrBadPattern, quote(s, 64))
	}
	p := Pattern{raw: s, endpoint: ep, namespace: ns}
	if ep == "*" {
		p.endpoint, p.anyEndpoint = "", true
	}
	if strings.HasSuffix(ns, "*") {
		p.namespace, p.prefix = ns[:len(ns)-1], true
	}
	return p, nil
}

// Match reports whether the pattern allows a stream of endpoint and
// namespace. It does not allocate.
func (p Pattern) Match(endpoint, namespace string) bool {
	if p.raw == "" {
		return false
	}
	if !p.anyEndpoint && endpoint != p.endpoint {
		return false
	}
	if p.prefix {
		return strings.HasPrefix(namespace, p.namespace)
	}
	return namespace == p.namespace
}

// String returns the entry as it was written.
func (p Pattern) String() string { return p.raw }
