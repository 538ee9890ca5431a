package channel

import (
	"bytes"
	"errors"
	"io"
)

// ErrLineTooLong is returned by ReadLine for a line without a newline within
// its limit.
var ErrLineTooLong = errors.New("channel: line too long")

// ReadLine reads from r until a newline, at most max bytes including it. It
// returns the line without the newline and the bytes read past it. A line
// without a newline within max bytes is ErrLineTooLong; a stream that ends
// inside a line is io.ErrUnexpectedEOF.
func ReadLine(r io.Reader, max int) (line, rest []byte, err error) {
	buf := make([]byte, 0, min(512, max))
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= max {
				return nil, nil, ErrLineTooLong
			}
			nb := make([]byte, len(buf), min(2*cap(buf), max))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if i := bytes.IndexByte(buf[len(buf):len(buf)+n], '\n'); i >= 0 {
			end := len(buf) + i
			if r := buf[end+1 : len(buf)+n]; len(r) > 0 {
				rest = append([]byte(nil), r...)
			}
			return buf[:end], rest, nil
		}
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}
