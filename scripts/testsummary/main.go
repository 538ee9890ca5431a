// Command testsummary reads `go test -json` on its standard input and
// writes what a person needs from it: each package's result line, the
// whole output of every test that failed, and a last line with the counts,
//
//	go: 812 passed, 0 failed, 3 skipped
//
// It exits 1 if a test or a package failed (a build error fails the
// package without any test), else 0. scripts/test.sh uses it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func summarize(r io.Reader, w io.Writer) (failed bool, err error) {
	var passed, fails, skipped, pkgFails int
	outputs := map[string][]string{} // package/test -> output so far
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintf(w, "%s\n", line) // not an event: a build error, say
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "output":
			if e.Test == "" {
				if keepPackageLine(e.Output) {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			outputs[key] = append(outputs[key], e.Output)
		case "pass", "skip":
			if e.Test != "" {
				if e.Action == "pass" {
					passed++
				} else {
					skipped++
				}
			}
			delete(outputs, key)
		case "fail":
			if e.Test == "" {
				pkgFails++
				continue
			}
			fails++
			fmt.Fprintf(w, "--- FAIL: %s (%s)\n%s", e.Test, e.Package, strings.Join(outputs[key], ""))
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	if pkgFails > 0 && fails == 0 {
		fails = pkgFails // a package that failed to build or run counts once
	}
	fmt.Fprintf(w, "go: %d passed, %d failed, %d skipped\n", passed, fails, skipped)
	return fails > 0, nil
}

// keepPackageLine keeps a package's result lines and whatever it printed
// outside its tests (a panic, a build error), not the runner's chatter.
func keepPackageLine(s string) bool {
	for _, p := range []string{"=== ", "PASS\n", "FAIL\n", "coverage:"} {
		if strings.HasPrefix(s, p) {
			return false
		}
	}
	return true
}
