package model_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/signalchannel/signalchannel/model"
)

// TestNumberFormat checks timestamps are written as JavaScript's
// Number#toString writes them (the expected strings are node's output).
func TestNumberFormat(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-1, "-1"},
		{1795379713538, "1795379713538"},
		{1795379713538.001, "1795379713538.001"},
		{1795379713589.002, "1795379713589.002"},
		{0.1, "0.1"},
		{1.0 / 3, "0.3333333333333333"},
		{123.456, "123.456"},
		{1e20, "100000000000000000000"},
		{1e21, "1e+21"},
		{123456789012345680000, "123456789012345680000"},
		{1.5e21, "1.5e+21"},
		{1e-6, "0.000001"},
		{1.5e-6, "0.0000015"},
		{1e-7, "1e-7"},
		{1.25e-7, "1.25e-7"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{1 << 53, "9007199254740992"},
		{-2.2332961844750456e+78, "-2.2332961844750456e+78"},
		{-0.000123, "-0.000123"},
	} {
		line := string(model.AppendUpdate(nil, model.Update{Key: "k", Value: json.RawMessage("1"), TS: tc.f, Source: "s"}))
		want := `[["k",1],` + tc.want + `,"s"]` + "\n"
		if line != want {
			t.Errorf("%v: got %s, want %s", tc.f, line, want)
		}
	}
}

// TestStringFormat checks keys and sources are written as JSON.stringify
// writes strings.
func TestStringFormat(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\b\t\n\f\r", `"\b\t\n\f\r"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x7f", "\"\x7f\""},
		{"<>&", `"<>&"`},
		{"\u2028\u2029", "\"\u2028\u2029\""},
		{"é😀", `"é😀"`},
		{"a\xffb", `"a\ufffdb"`},
	} {
		got := string(model.AppendError(nil, tc.s, ""))
		want := `{"error":{"code":` + tc.want + `,"message":""}}` + "\n"
		if got != want {
			t.Errorf("%q: got %s, want %s", tc.s, got, want)
		}
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       model.Message
	}{
		{"update", `[["k",{"a":1}],1700000000000.5,"A"]`,
			model.Message{Kind: model.KindUpdate, Update: model.Update{Key: "k", Value: json.RawMessage(`{"a":1}`), TS: 1700000000000.5, Source: "A"}}},
		{"update with newline and spaces", " [ [ \"k\" , { \"a\" : [1, 2] } ] , 17e11 , \"A\" ] \r\n",
			model.Message{Kind: model.KindUpdate, Update: model.Update{Key: "k", Value: json.RawMessage(`{"a":[1,2]}`), TS: 17e11, Source: "A"}}},
		{"deletion", `[["k",null],1,"A"]`,
			model.Message{Kind: model.KindUpdate, Update: model.Update{Key: "k", Value: json.RawMessage(`null`), TS: 1, Source: "A"}}},
		{"signed", `[["k","v"],2,"A",{"sig": "x y"}]`,
			model.Message{Kind: model.KindUpdate, Update: model.Update{Key: "k", Value: json.RawMessage(`"v"`), TS: 2, Source: "A", Sig: json.RawMessage(`{"sig":"x y"}`)}}},
		{"digest", `{"id":"A","clock":{"A":1,"B":2.5}}`,
			model.Message{Kind: model.KindDigest, Digest: model.Digest{ID: "A", Clock: map[string]float64{"A": 1, "B": 2.5}}}},
		{"digest with meta and extra fields", `{"id":"A","clock":{},"meta":{"m":1},"x":[1]}`,
			model.Message{Kind: model.KindDigest, Digest: model.Digest{ID: "A", Clock: map[string]float64{}, Meta: json.RawMessage(`{"m":1}`)}}},
		{"digest without id", `{"clock":{}}`,
			model.Message{Kind: model.KindDigest, Digest: model.Digest{Clock: map[string]float64{}}}},
		{"digest with null id", `{"id":null,"clock":{}}`,
			model.Message{Kind: model.KindDigest, Digest: model.Digest{Clock: map[string]float64{}}}},
		{"sync", `"SYNC"` + "\n", model.Message{Kind: model.KindSync}},
		{"error", `{"error":{"code":"limit","message":"value larger than 8192 bytes"}}`,
			model.Message{Kind: model.KindError, Err: &model.ProtocolError{Code: "limit", Message: "value larger than 8192 bytes", Remote: true}}},
		{"error without message", `{"error":{"code":"internal"}}`,
			model.Message{Kind: model.KindError, Err: &model.ProtocolError{Code: "internal", Remote: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := model.ParseLine([]byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseLineBad(t *testing.T) {
	for _, line := range []string{
		"",
		"\n",
		"   \n",
		"not json",
		`[["k",1],1,"A"]x`,
		`{"id":"A"}`,                         // digest without clock
		`{"id":"A","clock":null}`,            // clock not an object
		`{"id":"A","clock":[]}`,              // clock not an object
		`{"id":"A","clock":{"A":"1"}}`,       // clock value not a number
		`{"id":"A","clock":{"A":null}}`,      // clock value not a number
		`{"id":"A","clock":{"A":1e999}}`,     // clock value not finite
		`{"id":5,"clock":{}}`,                // id not a string
		`"sync"`,                             // only "SYNC"
		`"SYNC2"`,                            // only "SYNC"
		`42`,                                 // not a message
		`null`,                               // not a message
		`true`,                               // not a message
		`[]`,                                 // too short
		`[["k",1],1]`,                        // no source
		`[["k",1],1,"A",null,5]`,             // too long
		`[["k"],1,"A"]`,                      // no value
		`[["k",1,2],1,"A"]`,                  // too long pair
		`["k",1,"A"]`,                        // key/value not a pair
		`[[1,1],1,"A"]`,                      // key not a string
		`[[null,1],1,"A"]`,                   // key not a string
		`[["k",1],"1","A"]`,                  // ts not a number
		`[["k",1],null,"A"]`,                 // ts not a number
		`[["k",1],1e400,"A"]`,                // ts not finite
		`[["k",1],1,5]`,                      // source not a string
		`[["k",1],1,null]`,                   // source not a string
		`{"error":"limit"}`,                  // error not an object
		`{"error":{"message":"m"}}`,          // error without code
		`{"error":{"code":1}}`,               // code not a string
		`{"error":{"code":"x","message":1}}`, // message not a string
	} {
		_, err := model.ParseLine([]byte(line))
		var pe *model.ProtocolError
		if !errors.As(err, &pe) || pe.Code != model.CodeBadLine || pe.Remote {
			t.Errorf("%q: got %v, want a bad_line ProtocolError", line, err)
			continue
		}
		if !errors.Is(err, model.ErrBadLine) || errors.Is(err, model.ErrLimit) {
			t.Errorf("%q: %v does not match ErrBadLine alone", line, err)
		}
	}
}

func TestAppendLineRoundTrip(t *testing.T) {
	msgs := []model.Message{
		{Kind: model.KindUpdate, Update: model.Update{Key: "k\n\"", Value: json.RawMessage(`{"a":"<b>"}`), TS: 1700000000000.001, Source: "A"}},
		{Kind: model.KindUpdate, Update: model.Update{Key: "", Value: json.RawMessage(`null`), TS: 1e-7, Source: ""}},
		{Kind: model.KindUpdate, Update: model.Update{Key: "k", Value: json.RawMessage(`[1]`), TS: 1, Source: "A", Sig: json.RawMessage(`"sig"`)}},
		{Kind: model.KindDigest, Digest: model.Digest{ID: "A", Clock: map[string]float64{"B": 2, "A": 1.5}}},
		{Kind: model.KindDigest, Digest: model.Digest{ID: "A", Clock: map[string]float64{}, Meta: json.RawMessage(`{"x":1}`)}},
		{Kind: model.KindSync},
		{Kind: model.KindError, Err: &model.ProtocolError{Code: "bad_line", Message: "line is not JSON", Remote: true}},
	}
	wantLines := []string{
		`[["k\n\"",{"a":"<b>"}],1700000000000.001,"A"]`,
		`[["",null],1e-7,""]`,
		`[["k",[1]],1,"A","sig"]`,
		`{"id":"A","clock":{"A":1.5,"B":2}}`,
		`{"id":"A","clock":{},"meta":{"x":1}}`,
		`"SYNC"`,
		`{"error":{"code":"bad_line","message":"line is not JSON"}}`,
	}
	for i, msg := range msgs {
		line := model.AppendLine(nil, msg)
		if string(line) != wantLines[i]+"\n" {
			t.Errorf("got %s, want %s", line, wantLines[i])
		}
		back, err := model.ParseLine(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if !reflect.DeepEqual(back, msg) {
			t.Errorf("%s: parsed back as %+v, want %+v", line, back, msg)
		}
	}
}

func TestProtocolErrorMatching(t *testing.T) {
	m := model.New(model.Options{})
	defer m.Close()
	err := m.Set(strings.Repeat("k", 300), 1)
	var pe *model.ProtocolError
	if !errors.As(err, &pe) || pe.Code != model.CodeLimit || pe.Message != "key longer than 256 bytes" {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(err, model.ErrLimit) || !errors.Is(err, model.ErrKeyTooLong) || errors.Is(err, model.ErrBadLine) {
		t.Fatalf("%v does not match ErrLimit and ErrKeyTooLong", err)
	}
	if got := err.Error(); got != "model: limit: key longer than 256 bytes" {
		t.Fatalf("Error() = %q", got)
	}
}
