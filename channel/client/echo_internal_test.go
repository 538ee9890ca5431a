package client

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

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/internal/chunkio"
	"github.com/signalchannel/signalchannel/model"
)

// FuzzEchoRecv feeds an echo member arbitrary bytes in chunks. Recv returns
// the frames ReadFrame finds, and at an error record its error object as an
// *Error (or ErrBadReply), never a frame; any other end is ReadFrame's.
// Every error record written by AppendErrorRecord reads back the same.
func FuzzEchoRecv(f *testing.F) {
	limit := channel.Errorf(channel.CodeLimit, "echo publish budget (262144 bytes/s, burst 524288 bytes) exceeded")
	f.Add(channel.AppendErrorRecord(channel.AppendFrame(nil, []byte("hi")), limit), []byte{0, 5, 200}, uint16(16))
	f.Add([]byte("\xff\xff\xff\xff{\"error\":{\"code\":\"\"}}\n"), []byte{1}, uint16(8))
	f.Add([]byte("\xff\xff\xff\xff{\"ok\":true}\n"), []byte{2}, uint16(8))
	f.Add([]byte("\xff\xff\xff\xff{\"error\":"), []byte{0}, uint16(8))
	f.Add([]byte("\xff\xff\xff"), []byte{0}, uint16(8))
	f.Add(channel.AppendFrame(channel.AppendFrame(channel.AppendFrame(nil, []byte("ab")), make([]byte, 200)), []byte("cd")), []byte{3, 9}, uint16(256))
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
				if binary.BigEndian.Uint32(data[pos:]) == channel.ErrorRecordPrefix {
					t.Fatal("an error record read as a frame")
				}
				if want := data[pos+channel.FrameHeaderSize:]; len(frame) > int(max) || !bytes.HasPrefix(want, frame) {
					t.Fatal("frame differs from input or is over the limit")
				}
				frames = append(frames, kept{frame, pos + channel.FrameHeaderSize})
				pos += channel.FrameHeaderSize + len(frame)
				continue
			}
			rest := data[pos:]
			record := len(rest) >= channel.FrameHeaderSize && binary.BigEndian.Uint32(rest) == channel.ErrorRecordPrefix
			var perr *channel.Error
			switch {
			case !record:
				if _, want := channel.ReadFrame(bytes.NewReader(rest), int(max)); fmt.Sprint(err) != fmt.Sprint(want) {
					t.Fatalf("Recv: %v, ReadFrame: %v", err, want)
				}
			case errors.As(err, &perr):
				line, _, _ := bytes.Cut(rest[channel.FrameHeaderSize:], []byte("\n"))
				m, lerr := model.ParseLine(line)
				if lerr != nil || m.Kind != model.KindError || perr.Code == "" ||
					string(perr.Code) != m.Err.Code || perr.Message != m.Err.Message {
					t.Fatalf("error record %q read as %+v", line, perr)
				}
			case errors.Is(err, channel.ErrBadReply):
			case bytes.IndexByte(rest[channel.FrameHeaderSize:], '\n') < 0:
				if err != io.ErrUnexpectedEOF && !errors.Is(err, channel.ErrBadReply) {
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
		want := &channel.Error{Code: channel.CodeLimit, Message: string(data)}
		_, err := recv(channel.AppendErrorRecord(nil, want)).Recv()
		if perr := (*channel.Error)(nil); !errors.As(err, &perr) || *perr != *want {
			t.Fatalf("record of %q read back as %v", want.Message, err)
		}
	})
}

// An error record's line may be 16 KiB, newline included; one byte more
// is ErrBadReply.
func TestErrorRecordLineBound(t *testing.T) {
	for _, extra := range []int{0, 1} {
		head, tail := `{"error":{"code":"limit","message":"`, "\"}}\n"
		msg := strings.Repeat("m", channel.MaxErrorRecordLine-len(head)-len(tail)+extra)
		rec := channel.AppendErrorRecord(nil, &channel.Error{Code: channel.CodeLimit, Message: msg})
		e := &Echo{r: bufio.NewReaderSize(bytes.NewReader(rec), echoReadBuffer), max: channel.DefaultMaxFrame}
		_, err := e.Recv()
		if perr := (*channel.Error)(nil); extra == 0 && (!errors.As(err, &perr) || perr.Message != msg) ||
			extra == 1 && !errors.Is(err, channel.ErrBadReply) {
			t.Fatalf("line of %d bytes: %v", len(rec)-channel.FrameHeaderSize, err)
		}
	}
}
