package channel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/signalchannel/signalchannel/internal/chunkio"
)

// FuzzHeader reads a header line from input split in chunks, as the server
// does, and parses it. It must never panic, must split the line exactly at
// the first newline, and whatever it accepts must obey PROTOCOL.md section 2.
func FuzzHeader(f *testing.F) {
	for _, seed := range []string{
		`{"endpoint":"echo","namespace":"room-1"}` + "\n" + "\x00\x00\x00\x01x",
		`{"endpoint":"relay","namespace":"g","local":"A","remote":"B"}` + "\n",
		`{"endpoint":"scuttlebutt","namespace":"p","ephemeral":true}` + "\n",
		`{"endpoint":"echo","namespace":7}` + "\n",
		`{"endpoint":"echo","namespace":"a\u0000"}` + "\n",
		`["echo"]` + "\n",
		`{"endpoint":"echo"`,
		"{\"endpoint\":\"echo\",\"namespace\":\"\xff\"}\n",
		`{"endpoint":"session"}` + "\n",
		`{"endpoint":"session","token":"a.b.c","namespace":7}` + "\n",
		`{"endpoint":"session","token":5}` + "\n",
		`{"endpoint":"echo","namespace":"a","token":5}` + "\n",
	} {
		f.Add([]byte(seed), []byte{0, 3, 200})
	}
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		line, rest, err := ReadLine(&chunkio.Reader{Data: data, Sizes: sizes}, MaxHeaderBytes)
		nl := bytes.IndexByte(data, '\n')
		switch {
		case nl >= 0 && nl < MaxHeaderBytes:
			if err != nil || !bytes.Equal(line, data[:nl]) {
				t.Fatalf("line %q, %v; want %q", line, err, data[:nl])
			}
			// What was read past the newline is kept, never lost.
			if !bytes.HasPrefix(data[nl+1:], rest) {
				t.Fatalf("rest %q is not what followed the line", rest)
			}
		case len(data) >= MaxHeaderBytes:
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("%d bytes without newline: %v", len(data), err)
			}
			return
		default:
			if err == nil {
				t.Fatalf("no newline, yet a line %q", line)
			}
			return
		}
		h, perr := ParseHeader(line, nil)
		if perr != nil {
			if perr.Code == "" || perr.Message == "" || !utf8.ValidString(perr.Message) {
				t.Fatalf("bad error %+v", perr)
			}
			return
		}
		if h.Endpoint == EndpointSession {
			if h.Namespace != "" || h.Local != "" || h.Remote != "" {
				t.Fatalf("session header kept fields of another endpoint: %+v", h)
			}
			return
		}
		if h.Token != "" {
			t.Fatalf("%s header kept a token", h.Endpoint)
		}
		if !isProtocolEndpoint(h.Endpoint) {
			t.Fatalf("accepted endpoint %q", h.Endpoint)
		}
		if checkName("namespace", h.Namespace, MaxNamespaceBytes) != "" {
			t.Fatalf("accepted namespace %q", h.Namespace)
		}
		if h.Endpoint == EndpointRelay && (h.Local == h.Remote ||
			checkName("local", h.Local, MaxTokenBytes) != "" || checkName("remote", h.Remote, MaxTokenBytes) != "") {
			t.Fatalf("accepted tokens %q %q", h.Local, h.Remote)
		}
	})
}

// FuzzFrame reads length-prefixed frames from input split in chunks. It must
// never panic, never return a frame over the limit, and give back exactly
// the frames the input holds.
func FuzzFrame(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("hello")), nil), []byte{1, 2}, uint16(16))
	f.Add([]byte{0, 0, 0, 9, 1}, []byte{0}, uint16(8))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, []byte{3}, uint16(100))
	f.Fuzz(func(t *testing.T, data, sizes []byte, max uint16) {
		r := &chunkio.Reader{Data: data, Sizes: sizes}
		pos := 0
		for {
			frame, err := ReadFrame(r, int(max))
			if err != nil {
				left := len(data) - pos
				switch {
				case errors.Is(err, io.EOF):
					if left != 0 {
						t.Fatalf("EOF with %d bytes left", left)
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if left == 0 {
						t.Fatal("unexpected EOF at a frame boundary")
					}
				case errors.Is(err, ErrFrameTooLarge):
					if n := binary.BigEndian.Uint32(data[pos:]); n <= uint32(max) {
						t.Fatalf("frame of %d refused with limit %d", n, max)
					}
				default:
					t.Fatal(err)
				}
				return
			}
			if len(frame) > int(max) {
				t.Fatalf("frame of %d over limit %d", len(frame), max)
			}
			want := data[pos+FrameHeaderSize : pos+FrameHeaderSize+len(frame)]
			if !bytes.Equal(frame, want) {
				t.Fatal("frame differs from input")
			}
			pos += FrameHeaderSize + len(frame)
		}
	})
}

// FuzzFrameParser feeds FrameParser the input in chunks and checks it cuts
// the same frames as ReadFrame, refuses the same one, and knows when the
// input ends inside a frame.
func FuzzFrameParser(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("hello")), nil), []byte{1, 2}, uint16(16))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte{3}, uint16(0))
	f.Add([]byte{0, 0, 0, 9, 1}, []byte{0}, uint16(8))
	f.Fuzz(func(t *testing.T, data, sizes []byte, max uint16) {
		var want [][]byte
		r := bytes.NewReader(data)
		var wantErr error
		for {
			frame, err := ReadFrame(r, int(max))
			if err != nil {
				wantErr = err
				break
			}
			want = append(want, frame)
		}
		fp := FrameParser{Max: int(max)}
		var got [][]byte
		var err error
		c := &chunkio.Reader{Data: data, Sizes: sizes}
		buf := make([]byte, 300)
		for err == nil {
			n, rerr := c.Read(buf)
			if rerr != nil {
				break
			}
			chunk := buf[:n]
			err = fp.Feed(chunk, func(b []byte) { got = append(got, b) })
			clear(chunk) // the parser must not keep the caller's bytes
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, ReadFrame %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
		switch {
		case errors.Is(wantErr, ErrFrameTooLarge):
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("parser: %v, want too large", err)
			}
		case err != nil:
			t.Fatalf("parser: %v, ReadFrame: %v", err, wantErr)
		case errors.Is(wantErr, io.ErrUnexpectedEOF) != fp.Partial():
			t.Fatalf("Partial %v, ReadFrame ended with %v", fp.Partial(), wantErr)
		}
	})
}
