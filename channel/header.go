package channel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/signalchannel/signalchannel/ice"
)

// Protocol limits of PROTOCOL.md section 2.
// Subprotocol is the WebSocket subprotocol of PROTOCOL.md: a client offers
// it, the server selects it when offered.
const Subprotocol = "signalchannel.v1"

const (
	// MaxHeaderBytes is the longest header line, newline included.
	MaxHeaderBytes = 4096
	// MaxNamespaceBytes is the longest namespace.
	MaxNamespaceBytes = 256
	// MaxTokenBytes is the longest relay token.
	MaxTokenBytes = 128
)

// Endpoint names of PROTOCOL.md section 2.
const (
	EndpointEcho        = "echo"
	EndpointScuttlebutt = "scuttlebutt"
	EndpointRelay       = "relay"
)

// Header is the first line of a stream: which endpoint and namespace it is
// for, and the endpoint's options. Raw holds the whole line so an endpoint
// can read options this struct does not name.
type Header struct {
	Endpoint  string `json:"endpoint"`
	Namespace string `json:"namespace"`
	// Local and Remote are the relay tokens (relay only).
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Ephemeral asks the scuttlebutt endpoint to delete the stream's keys
	// when the stream closes.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// Token is a fresh credential for the session (session endpoint only).
	Token string `json:"token,omitempty"`
	// Peer asks the relay endpoint to name the partner in its open reply
	// (PROTOCOL.md section 9).
	Peer bool `json:"peer,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// wireHeader tells a missing field from an empty one.
type wireHeader struct {
	Endpoint  *string `json:"endpoint"`
	Namespace *string `json:"namespace"`
	Local     *string `json:"local"`
	Remote    *string `json:"remote"`
	Ephemeral *bool   `json:"ephemeral"`
	Peer      *bool   `json:"peer"`
	// Token is decoded for the session endpoint only: elsewhere it is an
	// unknown field, ignored.
	Token json.RawMessage `json:"token"`
}

// ParseHeader parses and validates one header line (without its newline)
// against PROTOCOL.md section 2. It checks, in order: well-formed JSON object
// with fields of the right types (bad_header), a known endpoint
// (unknown_endpoint), the namespace (bad_namespace) and, for relay, the
// tokens (bad_token). knownEndpoint may be nil to accept the three endpoints
// of the protocol.
func ParseHeader(line []byte, knownEndpoint func(string) bool) (Header, *Error) {
	var h Header
	if len(line) >= MaxHeaderBytes {
		return h, Errorf(CodeBadHeader, "header longer than %d bytes including the newline", MaxHeaderBytes)
	}
	if !utf8.Valid(line) {
		return h, Errorf(CodeBadHeader, "header is not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return h, Errorf(CodeBadHeader, "header must be a JSON object such as {\"endpoint\":\"echo\",\"namespace\":\"room-1\"}")
	}
	var w wireHeader
	if err := json.Unmarshal(trimmed, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return h, Errorf(CodeBadHeader, "header field %q must be a JSON %s", te.Field, jsonKind(te.Field))
		}
		return h, Errorf(CodeBadHeader, "header is not valid JSON")
	}
	if w.Endpoint == nil {
		return h, Errorf(CodeBadHeader, "header has no \"endpoint\" field")
	}
	if *w.Endpoint == EndpointSession {
		// The session endpoint names no namespace: it speaks of the
		// session itself.
		h.Endpoint = EndpointSession
		if w.Token != nil {
			if w.Token[0] != '"' || json.Unmarshal(w.Token, &h.Token) != nil {
				return h, Errorf(CodeBadHeader, "header field \"token\" must be a JSON string")
			}
			if h.Token == "" {
				return h, Errorf(CodeBadHeader, "header field \"token\" is empty")
			}
		}
		h.Raw = append(json.RawMessage(nil), trimmed...)
		return h, nil
	}
	if w.Namespace == nil {
		return h, Errorf(CodeBadHeader, "header has no \"namespace\" field")
	}
	h.Endpoint, h.Namespace = *w.Endpoint, *w.Namespace
	known := knownEndpoint
	if known == nil {
		known = isProtocolEndpoint
	}
	if !known(h.Endpoint) {
		return h, Errorf(CodeUnknownEndpoint, "unknown endpoint %q: use \"echo\", \"scuttlebutt\", \"relay\" or \"session\"", Clip(h.Endpoint))
	}
	if err := ValidNamespace(h.Namespace); err != nil {
		return h, err
	}
	if w.Ephemeral != nil {
		h.Ephemeral = *w.Ephemeral
	}
	if w.Peer != nil {
		h.Peer = *w.Peer
	}
	if h.Endpoint == EndpointRelay {
		for _, tok := range []struct {
			name string
			v    *string
		}{{"local", w.Local}, {"remote", w.Remote}} {
			if tok.v == nil {
				return h, Errorf(CodeBadToken, "relay header has no %q token", tok.name)
			}
			if msg := checkName(tok.name+" token", *tok.v, MaxTokenBytes); msg != "" {
				return h, Errorf(CodeBadToken, "%s", msg)
			}
		}
		h.Local, h.Remote = *w.Local, *w.Remote
		if h.Local == h.Remote {
			return h, Errorf(CodeBadToken, "relay tokens \"local\" and \"remote\" must differ")
		}
	}
	h.Raw = append(json.RawMessage(nil), trimmed...)
	return h, nil
}

func isProtocolEndpoint(name string) bool {
	return name == EndpointEcho || name == EndpointScuttlebutt || name == EndpointRelay
}

// checkName applies the namespace and token rules: 1 to max bytes, no
// control characters. It returns a message for a person, or "".
func checkName(what, v string, max int) string {
	if v == "" {
		return what + " is empty"
	}
	if len(v) > max {
		return fmt.Sprintf("%s longer than %d bytes", what, max)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Sprintf("%s has control character U+%04X at byte %d", what, c, i)
		}
	}
	return ""
}

func jsonKind(field string) string {
	if field == "ephemeral" || field == "peer" {
		return "boolean"
	}
	return "string"
}

// Clip shortens a client-supplied string for an error message.
func Clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	i := 64
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// reply lines

type errorReply struct {
	OK    bool   `json:"ok"`
	Error *Error `json:"error"`
}

// EncodeReply returns the success reply line `{"ok":true,...fields}\n`. fields must marshal to a
// JSON object, or be nil.
func EncodeReply(fields any) ([]byte, error) {
	if fields == nil {
		return []byte("{\"ok\":true}\n"), nil
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[0] != '{' {
		return nil, fmt.Errorf("channel: reply fields must be a JSON object, got %s", b)
	}
	out := make([]byte, 0, len(b)+12)
	out = append(out, `{"ok":true`...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, b[1:]...)
	return append(out, '\n'), nil
}

// EncodeError returns the failure reply line carrying e.
func EncodeError(e *Error) []byte {
	b, _ := json.Marshal(errorReply{OK: false, Error: e})
	return append(b, '\n')
}

// ValidNamespace checks ns against the namespace rules of a header
// (PROTOCOL.md section 2): a bad_namespace *Error when it breaks one.
func ValidNamespace(ns string) *Error {
	if msg := checkName("namespace", ns, MaxNamespaceBytes); msg != "" {
		return Errorf(CodeBadNamespace, "%s", msg)
	}
	return nil
}

// Reply is the server's answer to a header, as the client sees it. Fields
// not named here stay in Raw.
type Reply struct {
	OK bool `json:"ok"`
	// MaxFrame is the echo endpoint's largest frame.
	MaxFrame int `json:"maxFrame,omitempty"`
	// ID and MaxAge come from the scuttlebutt endpoint (the replica id);
	// ID, Meta and Exp from the session endpoint (the peer id).
	ID     string          `json:"id,omitempty"`
	Meta   json.RawMessage `json:"meta,omitempty"`
	Exp    int64           `json:"exp,omitempty"`
	MaxAge int64           `json:"maxAge,omitempty"`
	// Open and Limit come from the relay endpoint once paired.
	Open  bool        `json:"open,omitempty"`
	Limit *RelayLimit `json:"limit,omitempty"`
	// Peer comes from the relay endpoint once paired: who is at the other
	// end.
	Peer *PeerInfo `json:"peer,omitempty"`
	// ICE comes from the session endpoint: the ICE servers to use.
	ICE *ice.Servers `json:"ice,omitempty"`

	Error *Error `json:"error,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// RelayLimit is the relay's announced caps: bytes per direction and the
// pair's lifetime in seconds; 0 means no cap.
type RelayLimit struct {
	Bytes   int64 `json:"bytes"`
	Seconds int64 `json:"seconds"`
}

// ParseReply parses a reply line (without its newline): a failure reply
// is returned as its *Error, a line that is not a reply as ErrBadReply.
func ParseReply(line []byte) (Reply, error) {
	var r Reply
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadReply, err)
	}
	r.Raw = append(json.RawMessage(nil), line...)
	if !r.OK {
		if r.Error == nil || r.Error.Code == "" {
			return r, fmt.Errorf("%w: failure without an error object", ErrBadReply)
		}
		return r, r.Error
	}
	return r, nil
}
