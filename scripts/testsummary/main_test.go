package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for name, c := range map[string]struct {
		in     string
		failed bool
		want   []string // lines the output must hold
	}{
		"all pass": {
			in: `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}`,
			want: []string{"ok  \tp\t0.1s", "go: 1 passed, 0 failed, 1 skipped"},
		},
		"a test fails": {
			in: `{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:9: boom\n"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}`,
			failed: true,
			want:   []string{"--- FAIL: TestA (p)", "a_test.go:9: boom", "FAIL\tp\t0.1s", "go: 1 passed, 1 failed, 0 skipped"},
		},
		"a build error": {
			in: `# p
p/a.go:3:1: syntax error
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p"}`,
			failed: true,
			want:   []string{"p/a.go:3:1: syntax error", "go: 0 passed, 1 failed, 0 skipped"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			failed, err := summarize(strings.NewReader(c.in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if failed != c.failed {
				t.Errorf("failed %v, want %v", failed, c.failed)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
