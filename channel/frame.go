package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/signalchannel/signalchannel/model"
)

// DefaultMaxFrame is the echo endpoint's largest frame (PROTOCOL.md section 3).
const DefaultMaxFrame = 64 << 10

// FrameHeaderSize is the size of a frame's big-endian length prefix.
const FrameHeaderSize = 4

// ReadFrame reads one length-prefixed frame (PROTOCOL.md section 3) of at
// most max bytes. A longer frame returns ErrFrameTooLarge after only its
// length prefix was read. A stream that ends between frames returns io.EOF;
// one that ends inside a frame returns io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// AppendFrame appends p with its length prefix to dst.
func AppendFrame(dst, p []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}

// ErrorRecordPrefix begins an error record on an echo member's stream: a
// length no frame can have. An error object line follows it,
// {"error":{"code":..,"message":..}} as the scuttlebutt endpoint writes
// one, and then the server half-closes the stream (PROTOCOL.md section 8).
const ErrorRecordPrefix = 0xFFFFFFFF

// MaxErrorRecordLine bounds an error record's line, newline included.
const MaxErrorRecordLine = 16 << 10

// AppendErrorRecord appends an error record carrying e to dst.
func AppendErrorRecord(dst []byte, e *Error) []byte {
	dst = binary.BigEndian.AppendUint32(dst, ErrorRecordPrefix)
	return model.AppendError(dst, string(e.Code), e.Message)
}

// ReadErrorRecord reads the line that follows an error record's prefix
// and returns its error object as an *Error; a line that is not one is
// ErrBadReply.
func ReadErrorRecord(r io.Reader) error {
	line, _, err := ReadLine(r, MaxErrorRecordLine)
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case errors.Is(err, ErrLineTooLong):
		return fmt.Errorf("%w: error record longer than %d bytes", ErrBadReply, MaxErrorRecordLine)
	case err != nil:
		return err
	}
	m, err := model.ParseLine(line)
	if err != nil || m.Kind != model.KindError || m.Err.Code == "" {
		return fmt.Errorf("%w: error record without an error object", ErrBadReply)
	}
	return &Error{Code: Code(m.Err.Code), Message: m.Err.Message}
}

// FrameParser cuts length-prefixed frames out of data that arrives in
// pieces, as Stream.ReadInline passes it on. Its zero value is not usable:
// set Max.
type FrameParser struct {
	// Max is the largest frame accepted.
	Max int

	hdr    [FrameHeaderSize]byte
	nhdr   int
	body   []byte
	inBody bool
}

// Feed parses p, calling frame for each whole frame, which it may keep. It
// returns ErrFrameTooLarge at a length prefix over Max; the parser is then
// spent.
func (fp *FrameParser) Feed(p []byte, frame func([]byte)) error {
	for len(p) > 0 {
		if !fp.inBody {
			k := copy(fp.hdr[fp.nhdr:], p)
			fp.nhdr += k
			p = p[k:]
			if fp.nhdr < FrameHeaderSize {
				return nil
			}
			fp.nhdr = 0
			n := binary.BigEndian.Uint32(fp.hdr[:])
			if uint64(n) > uint64(fp.Max) {
				return fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, fp.Max)
			}
			fp.body, fp.inBody = make([]byte, 0, n), true
		}
		k := min(len(p), cap(fp.body)-len(fp.body))
		fp.body = append(fp.body, p[:k]...)
		p = p[k:]
		if len(fp.body) == cap(fp.body) {
			frame(fp.body)
			fp.body, fp.inBody = nil, false
		}
	}
	return nil
}

// Partial reports whether a frame has begun and not ended: a stream that
// ends now ends inside a frame.
func (fp *FrameParser) Partial() bool { return fp.inBody || fp.nhdr > 0 }
