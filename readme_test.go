package signalchannel_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/internal/sctest"
)

// goPrograms returns the Go code blocks of a Markdown file that are whole
// programs (package main).
func goPrograms(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], "package main\n") {
			out = append(out, m[1])
		}
	}
	return out
}

// Every Go program of README.md compiles and runs against a real server,
// so that the docs cannot drift from the code.
func TestReadmeGoPrograms(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs each program")
	}
	programs := goPrograms(t, "README.md")
	if len(programs) < 2 {
		t.Fatalf("%d Go programs in README.md", len(programs))
	}
	ts := sctest.NewServer(t, sctest.Options{})
	for i, src := range programs {
		// Inside the module, so that its imports resolve; a directory
		// beginning with "." is left out of ./... patterns.
		dir, err := os.MkdirTemp(".", ".readme-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "run", "./"+dir)
		cmd.Env = append(os.Environ(), "SIGNALCHANNEL_URL="+ts.URL)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("program %d of README.md: %v\n%s\n--- the program:\n%s", i+1, err, out.String(), src)
		}
		t.Logf("program %d printed:\n%s", i+1, out.String())
	}
}
