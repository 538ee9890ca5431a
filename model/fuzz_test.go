package model_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

var fuzzSeeds = []string{
	`{"id":"A","clock":{"A":1700000000000,"B":1700000000000.001}}`,
	`{"id":"A","clock":{},"meta":{"m":[1, 2]},"extra":true}`,
	`{"clock":{"x":1e21}}`,
	`[["k",{"a":[1,2,{"b":null}]}],1700000000000.5,"A"]`,
	`[["k",null],1700000000000,"A"]`,
	`[["k\u0000\n\"",1],1e-7,"\u2028"]`,
	`[["k","v"],1700000000000,"A",{"signature":"abc"}]`,
	`"SYNC"`,
	`{"error":{"code":"limit","message":"value larger than 8192 bytes"}}`,
	`{"error":{"code":"x"}}`,
	`[["k",1],1e400,"A"]`,
	`[[1,1],1,"A"]`,
	"\xff",
	` [ [ "k" , 1 ] , 17E11 , "A" ] ` + "\r\n",
}

// FuzzModelLine parses any bytes: no panic, errors are bad_line
// ProtocolErrors, and what parses encodes to a line that parses back to the
// same message and encodes to the same bytes.
func FuzzModelLine(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := model.ParseLine(data)
		if err != nil {
			var pe *model.ProtocolError
			if !errors.As(err, &pe) || pe.Code != model.CodeBadLine {
				t.Fatalf("error %v is not a bad_line ProtocolError", err)
			}
			return
		}
		line := model.AppendLine(nil, msg)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("%q is not one line", line)
		}
		back, err := model.ParseLine(line)
		if err != nil {
			t.Fatalf("%q from %q does not parse: %v", line, data, err)
		}
		if !reflect.DeepEqual(back, msg) {
			t.Fatalf("%q parsed as %+v, re-encoded as %q, parsed back as %+v", data, msg, line, back)
		}
		if again := model.AppendLine(nil, back); !bytes.Equal(again, line) {
			t.Fatalf("encoding not stable: %q then %q", line, again)
		}
	})
}

// chunkReader returns data in chunks whose sizes cycle through sizes, as a
// network would split it.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = 1 + int(r.sizes[r.i%len(r.sizes)])*int(r.sizes[r.i%len(r.sizes)])
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzReplicate feeds Replicate a stream split in random chunks. It must
// return nil at EOF or a ProtocolError, write only well-formed lines with its
// digest first and, after a local protocol error, that error last; and the
// Model must stay within its limits.
func FuzzReplicate(f *testing.F) {
	digest := `{"id":"P","clock":{}}` + "\n"
	for _, s := range []string{
		digest,
		digest + `[["k",1],1700000000000,"P"]` + "\n" + `"SYNC"` + "\n",
		digest + `[["k",1],1700000000000,"P"]` + "\n" + `[["k",null],1700000000001,"P"]` + "\n",
		`[["k",1],1700000000000,"P"]` + "\n" + digest,
		digest + digest,
		digest + "bad\n" + `[["k",1],1700000000000,"P"]` + "\n",
		digest + `{"error":{"code":"limit","message":"m"}}` + "\n",
		`[["a",1],1700000000000.5,"Q"]` + "\n" + `[["b",{"x":[1]}],1700000000001,"Q","sig"]` + "\n" + digest,
		digest + `[["k",1],1700000000000,"P"]`, // no final newline
		digest + `[["P",1],1700000000000,"P"]` + "\n" + `[["P/x",1],1700000000001,"Q"]` + "\n",
		digest + `[["P/x",1],1700000000000,"Q"]` + "\n" + `[["R",1],1700000000001,"Q"]` + "\n",
		digest + `[["Px",1],1700000000000,"P"]` + "\n",
		digest + `[["P",1],1700000000000,"S"]` + "\n",
	} {
		f.Add([]byte(s), []byte{0, 3, 1, 7}, false)
		f.Add([]byte(s), []byte{0, 3, 1, 7}, true)
	}
	f.Fuzz(func(t *testing.T, input, chunking []byte, owned bool) {
		clk := newFakeClock()
		m := model.New(model.Options{ID: "S", Now: clk.Now, SweepInterval: time.Hour, MaxKeys: 4, MaxLineBytes: 1024, MaxValueBytes: 64})
		defer m.Close()
		if err := m.Set("own", 1); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		var opts model.ReplicateOptions
		if owned {
			opts.Owner = "P"
		}
		err := replicate(m, context.Background(), &chunkReader{data: input, sizes: chunking}, &out, opts)
		var pe *model.ProtocolError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("Replicate returned %v", err)
		}
		sc := bufio.NewScanner(&out)
		sc.Buffer(nil, 1<<20)
		var msgs []model.Message
		for sc.Scan() {
			msg, perr := model.ParseLine(sc.Bytes())
			if perr != nil {
				t.Fatalf("Replicate wrote %q: %v", sc.Bytes(), perr)
			}
			msgs = append(msgs, msg)
		}
		if len(msgs) == 0 || msgs[0].Kind != model.KindDigest || msgs[0].Digest.ID != "S" {
			t.Fatalf("first line is not the digest: %+v", msgs)
		}
		if pe != nil && !pe.Remote {
			last := msgs[len(msgs)-1]
			if last.Kind != model.KindError || last.Err.Code != pe.Code || last.Err.Message != pe.Message {
				t.Fatalf("returned %v but the last line is %+v", pe, last)
			}
		}
		if owned {
			// Nothing the peer wrote is another's: every key it set
			// or deleted is P's, and no source wrote two owners' keys.
			writers := map[string]string{}
			for _, u := range m.History(nil) {
				if u.Source == "S" {
					continue
				}
				if u.Key != "P" && !strings.HasPrefix(u.Key, "P/") {
					t.Fatalf("an owned stream wrote %q", u.Key)
				}
				owner, _, _ := strings.Cut(u.Key, "/")
				if w, ok := writers[u.Source]; ok && w != owner {
					t.Fatalf("source %q wrote keys of %q and %q", u.Source, w, owner)
				}
				writers[u.Source] = owner
			}
		}
		if st := m.Stats(); st.Live > 4 {
			t.Fatalf("%d live keys", st.Live)
		}
		for _, u := range m.History(nil) {
			if n := len(model.AppendUpdate(nil, u)); n > 1024 {
				t.Fatalf("stored an update of %d bytes", n)
			}
		}
	})
}
