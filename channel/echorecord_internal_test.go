package channel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/signalchannel/signalchannel/internal/chunkio"
	"github.com/signalchannel/signalchannel/model"
)

// FuzzEchoRecv feeds an echo member arbitrary bytes in chunks. Recv returns
// the frames ReadFrame finds, and at an error record its error object as an
// *Error (or ErrBadReply), never a frame; any other end is ReadFrame's.
// Every error record written by AppendErrorRecord reads back the same.
func FuzzEchoRecv(f *testing.F) {
	limit := Errorf(CodeLimit, "echo publish budget (262144 bytes/s, burst 524288 bytes) exceeded")
	f.Add(AppendErrorRecord(AppendFrame(nil, []byte("hi")), limit), []byte{0, 5, 200}, uint16(16))
	f.Add([]byte("\xff\xff\xff\xff{\"error\":{\"code\":\"\"}}\n"), []byte{1}, uint16(8))
	f.Add([]byte("\xff\xff\xff\xff{\"ok\":true}\n"), []byte{2}, uint16(8))
	f.Add([]byte("\xff\xff\xff\xff{\"error\":"), []byte{0}, uint16(8))
	f.Add([]byte("\xff\xff\xff"), []byte{0}, uint16(8))
	f.Add(AppendFrame(AppendFrame(AppendFrame(nil, []byte("ab")), make([]byte, 200)), []byte("cd")), []byte{3, 9}, uint16(256))
	f.Fuzz(func(t *testing.T, data, sizes []byte, max uint16) {
		recv := func(data []byte) *Echo {
			return &Echo{r: bufio.NewReaderSize(&chunkio.Reader{Data: data, Sizes: sizes}, echoReadBuffer), max: int(max)}
		}
		e, pos := recv(data), 0
		type kept struct {
			frame []byte
			at    int
		}
		var frames []kept // every frame stays as read, however many follow
		for {
			frame, err := e.Recv()
			if err == nil {
				if binary.BigEndian.Uint32(data[pos:]) == ErrorRecordPrefix {
					t.Fatal("an error record read as a frame")
				}
				if want := data[pos+FrameHeaderSize:]; len(frame) > int(max) || !bytes.HasPrefix(want, frame) {
					t.Fatal("frame differs from input or is over the limit")
				}
				frames = append(frames, kept{frame, pos + FrameHeaderSize})
				pos += FrameHeaderSize + len(frame)
				continue
			}
			rest := data[pos:]
			record := len(rest) >= FrameHeaderSize && binary.BigEndian.Uint32(rest) == ErrorRecordPrefix
			var perr *Error
			switch {
			case !record:
				if _, want := ReadFrame(bytes.NewReader(rest), int(max)); fmt.Sprint(err) != fmt.Sprint(want) {
					t.Fatalf("Recv: %v, ReadFrame: %v", err, want)
				}
			case errors.As(err, &perr):
				line, _, _ := bytes.Cut(rest[FrameHeaderSize:], []byte("\n"))
				m, lerr := model.ParseLine(line)
				if lerr != nil || m.Kind != model.KindError || perr.Code == "" ||
					string(perr.Code) != m.Err.Code || perr.Message != m.Err.Message {
					t.Fatalf("error record %q read as %+v", line, perr)
				}
			case errors.Is(err, ErrBadReply):
			case bytes.IndexByte(rest[FrameHeaderSize:], '\n') < 0:
				if err != io.ErrUnexpectedEOF && !errors.Is(err, ErrBadReply) {
					t.Fatalf("error record cut short: %v", err)
				}
			default:
				t.Fatalf("error record: %v", err)
			}
			break
		}
		for _, k := range frames {
			_ = append(k.frame, 0xAA) // must not write into its neighbour
		}
		for _, k := range frames {
			if !bytes.Equal(k.frame, data[k.at:k.at+len(k.frame)]) {
				t.Fatalf("frame at %d changed after later reads", k.at)
			}
		}

		if !utf8.Valid(data) || len(data) > 1024 {
			return
		}
		want := &Error{Code: CodeLimit, Message: string(data)}
		_, err := recv(AppendErrorRecord(nil, want)).Recv()
		if perr := (*Error)(nil); !errors.As(err, &perr) || *perr != *want {
			t.Fatalf("record of %q read back as %v", want.Message, err)
		}
	})
}

// An error record's line may be 16 KiB, newline included; one byte more
// is ErrBadReply.
func TestErrorRecordLineBound(t *testing.T) {
	for _, extra := range []int{0, 1} {
		head, tail := `{"error":{"code":"limit","message":"`, "\"}}\n"
		msg := strings.Repeat("m", maxErrorRecordLine-len(head)-len(tail)+extra)
		rec := AppendErrorRecord(nil, &Error{Code: CodeLimit, Message: msg})
		e := &Echo{r: bufio.NewReaderSize(bytes.NewReader(rec), echoReadBuffer), max: DefaultMaxFrame}
		_, err := e.Recv()
		if perr := (*Error)(nil); extra == 0 && (!errors.As(err, &perr) || perr.Message != msg) ||
			extra == 1 && !errors.Is(err, ErrBadReply) {
			t.Fatalf("line of %d bytes: %v", len(rec)-FrameHeaderSize, err)
		}
	}
}
