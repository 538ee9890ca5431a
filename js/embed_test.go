package signalchanneljs

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// Every relative import of every embedded module names an embedded file, so
// that a browser loading src/index.js finds the whole client.
func TestFSHoldsEveryImport(t *testing.T) {
	importRe := regexp.MustCompile(`(?m)^(?:import|export)\s[^'"]*from\s+'\./([^']+)'`)
	files, err := fs.Glob(FS, "src/*.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("embedded modules: %v", files)
	}
	for _, name := range files {
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(b), -1) {
			if _, err := fs.Stat(FS, "src/"+m[1]); err != nil {
				t.Errorf("%s imports ./%s, which is not embedded", name, m[1])
			}
		}
	}
	for _, want := range []string{"src/index.js", "src/index.d.ts"} {
		if _, err := fs.Stat(FS, want); err != nil {
			t.Errorf("%s is not embedded", want)
		}
	}
	entries, _ := fs.ReadDir(FS, ".")
	for _, e := range entries {
		if e.Name() != "src" || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("unexpected embedded entry %q", e.Name())
		}
	}
}
