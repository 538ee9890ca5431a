package model_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// fullModel returns a Model with 10 000 live keys written by 100 sources.
func fullModel(b *testing.B) *model.Model {
	clk := newFakeClock()
	m := newModel(b, "S", clk)
	for i := range 10000 {
		u := upd(fmt.Sprintf("presence/%05d", i), `{"name":"peer","status":"online","since":1700000000000}`, ms(0)+float64(i)/10, fmt.Sprintf("SOURCE%03d", i%100))
		if _, err := m.Apply(u); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// BenchmarkHistory10k selects and sorts the full history of 10 000 live
// keys, what a new replica gets on connecting.
func BenchmarkHistory10k(b *testing.B) {
	m := fullModel(b)
	size := 0
	for _, u := range m.History(nil) {
		size += len(model.AppendUpdate(nil, u))
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if h := m.History(nil); len(h) != 10000 {
			b.Fatal(len(h))
		}
	}
}

// BenchmarkApply applies fresh remote updates to 1 000 keys of a Model.
func BenchmarkApply(b *testing.B) {
	clk := newFakeClock()
	m := newModel(b, "S", clk)
	value := json.RawMessage(`{"name":"peer","status":"online"}`)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("key", i)
	}
	ts := ms(-20 * time.Second)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ts += 0.001
		if ok, err := m.Apply(model.Update{Key: keys[i%1000], Value: value, TS: ts, Source: "P"}); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
	}
}

// BenchmarkParseApply parses update lines and applies them, the work of a
// stream per incoming line.
func BenchmarkParseApply(b *testing.B) {
	clk := newFakeClock()
	m := newModel(b, "S", clk)
	lines := make([][]byte, 1000)
	ts := ms(-20 * time.Second)
	for i := range lines {
		ts += 1
		lines[i] = model.AppendUpdate(nil, upd(fmt.Sprint("key", i), `{"name":"peer","status":"online"}`, ts, "P"))
	}
	b.SetBytes(int64(len(lines[0])))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%1000 == 0 {
			m.Close()
			m = model.New(model.Options{ID: "S", Now: clk.Now, SweepInterval: time.Hour})
		}
		msg, err := model.ParseLine(lines[i%1000])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Apply(msg.Update); err != nil {
			b.Fatal(err)
		}
		i++
	}
	m.Close()
}

// BenchmarkAppendUpdate encodes update lines.
func BenchmarkAppendUpdate(b *testing.B) {
	u := upd("presence/peer-0001", `{"name":"peer","status":"online","since":1700000000000}`, 1700000000000.001, "0123456789ABCDEF0123456789ABCDEF")
	buf := model.AppendUpdate(nil, u)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = model.AppendUpdate(buf[:0], u)
	}
}

// BenchmarkAppendDigest encodes the digest of a clock of 100 sources.
func BenchmarkAppendDigest(b *testing.B) {
	d := model.Digest{ID: "S", Clock: map[string]float64{}}
	for i := range 100 {
		d.Clock[fmt.Sprintf("SOURCE%03d", i)] = ms(0) + float64(i)
	}
	buf := model.AppendDigest(nil, d)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = model.AppendDigest(buf[:0], d)
	}
}

// BenchmarkParseLine parses an update line.
func BenchmarkParseLine(b *testing.B) {
	line := []byte(`[["presence/peer-0001",{"name":"peer","status":"online","since":1700000000000}],1700000000000.001,"0123456789ABCDEF0123456789ABCDEF"]` + "\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := model.ParseLine(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplicateWrite is the work of a stream per presence write it
// reads, parse and apply, with and without an owner: what ownership costs
// (ReplicateOptions.Owner) is the ratio of the two in one run.
func BenchmarkReplicateWrite(b *testing.B) {
	for _, owner := range []string{"", "peer"} {
		name := "any key"
		if owner != "" {
			name = "owned"
		}
		b.Run(name, func(b *testing.B) {
			clk := newFakeClock()
			m := newModel(b, "S", clk)
			var lines bytes.Buffer
			ts := ms(-20 * time.Second)
			for i := range b.N {
				ts += 0.001
				lines.Write(model.AppendUpdate(nil, upd(fmt.Sprintf("peer/%d", i%1000), `{"name":"peer","status":"online"}`, ts, "P")))
			}
			input := append([]byte(`{"id":"P","clock":{}}`+"\n"), lines.Bytes()...)
			b.SetBytes(int64(lines.Len() / max(b.N, 1)))
			b.ReportAllocs()
			b.ResetTimer()
			if err := m.Replicate(context.Background(), bytes.NewReader(input), io.Discard, model.ReplicateOptions{Owner: owner, NoEcho: true}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if st := m.Stats(); st.Live != min(b.N, 1000) {
				b.Fatalf("%d live keys", st.Live)
			}
		})
	}
}
