package model

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Kind is the kind of a protocol line.
type Kind uint8

// The kinds of line of the stream protocol.
const (
	// KindDigest is {"id":..,"clock":{..}}, the first line of each side.
	KindDigest Kind = iota + 1
	// KindUpdate is [[key,value],ts,source] or [[key,value],ts,source,sig].
	KindUpdate
	// KindSync is "SYNC": the sender has sent all of its history.
	KindSync
	// KindError is {"error":{"code":..,"message":..}}, sent before closing.
	KindError
)

func (k Kind) String() string {
	switch k {
	case KindDigest:
		return "digest"
	case KindUpdate:
		return "update"
	case KindSync:
		return "sync"
	case KindError:
		return "error"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Message is one parsed line. Kind says which of the other fields is set.
type Message struct {
	Kind   Kind
	Digest Digest         // KindDigest
	Update Update         // KindUpdate
	Err    *ProtocolError // KindError, with Remote set
}

// syncString is the line "SYNC" without its newline.
const syncString = `"SYNC"`

// ParseLine parses one line of the stream protocol, with or without its
// trailing newline. It checks syntax and shape only; limits on keys, values
// and line length are checked by Model.Apply and Replicate. An error is a
// *ProtocolError with code "bad_line". ParseLine does not retain line.
//
// Accepted shapes, as an npm peer writes them:
//   - a digest: an object with "clock", an object of numbers; "id", when
//     present and not null, is a string; "meta" is kept; other fields are
//     ignored. An object with an "error" field is an error object instead.
//   - an update: an array of 3 or 4 elements, the first [key,value] with a
//     string key, then a finite number and a string source; a fourth element
//     of any JSON is kept as Sig.
//   - the string "SYNC".
//   - an error object: {"error":{"code":"..","message":".."}}, message
//     optional.
//
// Values, signatures and meta are kept as compact JSON.
func ParseLine(line []byte) (Message, error) {
	line = bytes.TrimRight(line, "\n")
	start := skipSpace(line, 0)
	if start == len(line) {
		return Message{}, badLine(ErrInvalidJSON, "empty line")
	}
	if !json.Valid(line) {
		return Message{}, badLine(ErrInvalidJSON, "line is not JSON")
	}
	if !utf8.Valid(line) {
		return Message{}, badLine(ErrInvalidJSON, "line is not UTF-8")
	}
	switch line[start] {
	case '[':
		u, err := parseUpdate(line)
		if err != nil {
			return Message{}, err
		}
		return Message{Kind: KindUpdate, Update: u}, nil
	case '{':
		return parseObject(line)
	case '"':
		var s string
		if err := json.Unmarshal(line, &s); err != nil || s != "SYNC" {
			return Message{}, badLine(ErrInvalidMessage, "a string line must be \"SYNC\"")
		}
		return Message{Kind: KindSync}, nil
	}
	return Message{}, badLine(ErrInvalidMessage, "line is not a digest, an update, \"SYNC\" or an error object")
}

func badLine(sentinel error, msg string) *ProtocolError {
	return &ProtocolError{Code: CodeBadLine, Message: msg, err: sentinel}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonKind returns the first byte of a JSON value: '{', '[', '"', 'n', 't',
// 'f', or '-' or a digit for a number.
func jsonKind(raw json.RawMessage) byte {
	i := skipSpace(raw, 0)
	if i == len(raw) {
		return 0
	}
	return raw[i]
}

func isNumberStart(c byte) bool { return c == '-' || (c >= '0' && c <= '9') }

// parseNumber parses a JSON number that must be finite as a float64.
func parseNumber(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !isNumberStart(raw[0]) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !(math.Abs(f) < math.MaxFloat64) {
		return 0, false // overflow to ±Inf
	}
	return f, true
}

func parseString(raw json.RawMessage) (string, bool) {
	if jsonKind(raw) != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func parseUpdate(line []byte) (Update, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(line, &parts); err != nil {
		return Update{}, badLine(ErrInvalidMessage, "update is not an array")
	}
	if len(parts) != 3 && len(parts) != 4 {
		return Update{}, badLine(ErrInvalidMessage, "update must be [[key,value],ts,source] with an optional signature")
	}
	var kv []json.RawMessage
	if jsonKind(parts[0]) != '[' || json.Unmarshal(parts[0], &kv) != nil || len(kv) != 2 {
		return Update{}, badLine(ErrInvalidMessage, "update must begin with [key,value]")
	}
	var u Update
	var ok bool
	if u.Key, ok = parseString(kv[0]); !ok {
		return Update{}, badLine(ErrInvalidMessage, "update key must be a string")
	}
	u.Value = compact(kv[1])
	if u.TS, ok = parseNumber(parts[1]); !ok {
		return Update{}, badLine(ErrInvalidMessage, "update timestamp must be a finite number")
	}
	if u.Source, ok = parseString(parts[2]); !ok {
		return Update{}, badLine(ErrInvalidMessage, "update source must be a string")
	}
	if len(parts) == 4 {
		u.Sig = compact(parts[3])
	}
	return u, nil
}

func parseObject(line []byte) (Message, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return Message{}, badLine(ErrInvalidMessage, "line is not an object")
	}
	if raw, ok := obj["error"]; ok {
		var e map[string]json.RawMessage
		if jsonKind(raw) != '{' || json.Unmarshal(raw, &e) != nil {
			return Message{}, badLine(ErrInvalidMessage, "error must be an object with a code")
		}
		pe := &ProtocolError{Remote: true}
		if pe.Code, ok = parseString(e["code"]); !ok {
			return Message{}, badLine(ErrInvalidMessage, "error code must be a string")
		}
		if msg, has := e["message"]; has {
			if pe.Message, ok = parseString(msg); !ok {
				return Message{}, badLine(ErrInvalidMessage, "error message must be a string")
			}
		}
		return Message{Kind: KindError, Err: pe}, nil
	}

	raw, ok := obj["clock"]
	if !ok {
		return Message{}, badLine(ErrInvalidMessage, "digest without clock")
	}
	var clock map[string]json.RawMessage
	if jsonKind(raw) != '{' || json.Unmarshal(raw, &clock) != nil {
		return Message{}, badLine(ErrInvalidMessage, "digest clock must be an object")
	}
	d := Digest{Clock: make(map[string]float64, len(clock))}
	for src, v := range clock {
		ts, ok := parseNumber(v)
		if !ok {
			return Message{}, badLine(ErrInvalidMessage, "digest clock values must be finite numbers")
		}
		d.Clock[src] = ts
	}
	if raw, ok := obj["id"]; ok && jsonKind(raw) != 'n' {
		if d.ID, ok = parseString(raw); !ok {
			return Message{}, badLine(ErrInvalidMessage, "digest id must be a string")
		}
	}
	if raw, ok := obj["meta"]; ok {
		d.Meta = compact(raw)
	}
	return Message{Kind: KindDigest, Digest: d}, nil
}

// compact returns raw without insignificant white space, reusing raw when it
// has none. raw must be valid JSON.
func compact(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			var b bytes.Buffer
			b.Grow(len(raw))
			if json.Compact(&b, raw) != nil {
				return raw
			}
			return b.Bytes()
		}
	}
	return raw
}

// AppendLine appends the line of msg, newline included, to dst.
func AppendLine(dst []byte, msg Message) []byte {
	switch msg.Kind {
	case KindDigest:
		return AppendDigest(dst, msg.Digest)
	case KindUpdate:
		return AppendUpdate(dst, msg.Update)
	case KindSync:
		return AppendSync(dst)
	case KindError:
		if msg.Err == nil {
			return AppendError(dst, "", "")
		}
		return AppendError(dst, msg.Err.Code, msg.Err.Message)
	}
	return dst
}

// AppendUpdate appends [[key,value],ts,source] (and the signature when u has
// one) and a newline to dst. An empty Value is written as null.
func AppendUpdate(dst []byte, u Update) []byte {
	dst = append(dst, "[["...)
	dst = appendString(dst, u.Key)
	dst = append(dst, ',')
	if len(u.Value) == 0 {
		dst = append(dst, nullJSON...)
	} else {
		dst = append(dst, u.Value...)
	}
	dst = append(dst, "],"...)
	dst = appendNumber(dst, u.TS)
	dst = append(dst, ',')
	dst = appendString(dst, u.Source)
	if len(u.Sig) > 0 {
		dst = append(dst, ',')
		dst = append(dst, u.Sig...)
	}
	return append(dst, "]\n"...)
}

// updateLineLen returns len(AppendUpdate(nil, u)) without building the line.
func updateLineLen(u *Update) int {
	n := len(`[[,],,]`) + 1 + stringLen(u.Key) + stringLen(u.Source) + numberLen(u.TS)
	if len(u.Value) == 0 {
		n += len(nullJSON)
	} else {
		n += len(u.Value)
	}
	if len(u.Sig) > 0 {
		n += 1 + len(u.Sig)
	}
	return n
}

// AppendDigest appends {"id":..,"clock":{..}} (and "meta" when d has it) and
// a newline to dst. Clock entries are written in order of source.
func AppendDigest(dst []byte, d Digest) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, d.ID)
	dst = append(dst, `,"clock":{`...)
	srcs := slices.Sorted(maps.Keys(d.Clock))
	for i, src := range srcs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, src)
		dst = append(dst, ':')
		dst = appendNumber(dst, d.Clock[src])
	}
	dst = append(dst, '}')
	if len(d.Meta) > 0 {
		dst = append(dst, `,"meta":`...)
		dst = append(dst, d.Meta...)
	}
	return append(dst, "}\n"...)
}

// AppendSync appends the line "SYNC" and a newline to dst.
func AppendSync(dst []byte) []byte {
	return append(dst, syncString+"\n"...)
}

// AppendError appends {"error":{"code":..,"message":..}} and a newline to dst.
func AppendError(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, "}}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as JSON.stringify writes a string: only '"', '\\'
// and control characters below U+0020 are escaped, the latter as \b, \t, \n,
// \f, \r or \u00xx. Bytes that are not UTF-8 are written as \ufffd.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// stringLen returns len(appendString(nil, s)).
func stringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				n += len(`\ufffd`)
			} else {
				n += size
			}
			i += size
			continue
		case c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r':
			n += 2
		case c < 0x20:
			n += 6
		default:
			n++
		}
		i++
	}
	return n
}

// appendNumber appends f as JavaScript's Number#toString (and so
// JSON.stringify) writes it: the shortest digits that round-trip, integers
// without a fraction, and exponent form only when the decimal exponent is
// below -6 or at least 21. NaN and infinities, which JSON cannot carry, are
// written as null, as JSON.stringify does.
func appendNumber(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == 0 {
		return append(dst, '0') // -0 too
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest round-trip digits, as d.ddde±x.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	var digits [24]byte
	k := 0
	i := 0
	for ; e[i] != 'e'; i++ {
		if e[i] != '.' {
			digits[k] = e[i]
			k++
		}
	}
	exp, _ := strconv.Atoi(string(e[i+1:]))
	n := exp + 1 // the decimal point is n digits after the first digit
	ds := digits[:k]
	switch {
	case k <= n && n <= 21:
		dst = append(dst, ds...)
		for j := k; j < n; j++ {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, ds[:n]...)
		dst = append(dst, '.')
		dst = append(dst, ds[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for j := n; j < 0; j++ {
			dst = append(dst, '0')
		}
		dst = append(dst, ds...)
	default:
		dst = append(dst, ds[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, ds[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// numberLen returns len(appendNumber(nil, f)).
func numberLen(f float64) int {
	var buf [40]byte
	return len(appendNumber(buf[:0], f))
}
