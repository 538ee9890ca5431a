package demo_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/signalchannel/signalchannel/internal/demo"
)

// newServer mounts the demo as a server does: at /demo/ of a mux.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/demo/", demo.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "other", http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHandlerServesPageScriptAndClient(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		path, contentType, contains string
	}{
		{"/demo/", "text/html", `<script type="module" src="app.js">`},
		{"/demo/app.js", "text/javascript", `from './signalchannel/index.js'`},
		{"/demo/signalchannel/index.js", "text/javascript", "export { connect"},
		{"/demo/signalchannel/yamux.js", "text/javascript", "export class Session"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, srv.URL+tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
			if !strings.Contains(body, tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
		})
	}
}

// Every module the page loads is served: the page's script and, following
// relative imports, the whole client.
func TestHandlerServesEveryImport(t *testing.T) {
	srv := newServer(t)
	importRe := regexp.MustCompile(`(?m)^(?:import|export)\s[^'"]*from\s+'(\./[^']+)'`)
	seen := map[string]bool{}
	queue := []string{"/demo/app.js"}
	for len(queue) > 0 && len(seen) < 100 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp, body := get(t, srv.URL+p)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", p, resp.StatusCode)
		}
		dir := p[:strings.LastIndex(p, "/")+1]
		for _, m := range importRe.FindAllStringSubmatch(body, -1) {
			queue = append(queue, dir+strings.TrimPrefix(m[1], "./"))
		}
	}
	for _, want := range []string{"/demo/signalchannel/channel.js", "/demo/signalchannel/model.js", "/demo/signalchannel/relay.js"} {
		if !seen[want] {
			t.Errorf("%s not reached from app.js (reached %v)", want, seen)
		}
	}
}

func TestHandlerPaths(t *testing.T) {
	srv := newServer(t)
	if resp, _ := get(t, srv.URL+"/demo"); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/demo/" {
		t.Errorf("/demo: status %d, Location %q; want a redirect to /demo/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/demo/missing.js", "/demo/signalchannel/missing.js"} {
		if resp, _ := get(t, srv.URL+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, body := get(t, srv.URL+"/demo/signalchannel/../../demo/demo.go"); resp.StatusCode == http.StatusOK || strings.Contains(body, "package webrtc") {
		t.Errorf("a path with .. served %d %.40q", resp.StatusCode, body)
	}
	resp, err := http.Post(srv.URL+"/demo/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /demo/: status %d, want 405", resp.StatusCode)
	}
}
