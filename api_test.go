package signalchannel_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
	"github.com/signalchannel/signalchannel/model"
)

var apiKey = []byte("the key of the app's back end, 32 bytes or more")

// call makes an API request and decodes its JSON answer.
func call(t *testing.T, base, method, path, key string, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %q: %v", method, path, b, err)
	}
	return resp.StatusCode, out
}

// The API publishes into an echo namespace, reads presence, lists
// namespaces and disconnects a peer; a wrong key and bad bodies are
// refused with JSON errors.
func TestAPI(t *testing.T) {
	ts := sctest.NewServer(t, sctest.Options{})
	api := httptest.NewServer(ts.Server.APIHandler(apiKey))
	defer api.Close()
	key := string(apiKey)

	s := sctest.Dial(t, ts.URL)
	e, err := s.Echo(sctest.Ctx(t), "announcements")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(model.Options{})
	defer m.Close()
	rep, err := s.Replicate(sctest.Ctx(t), "presence", m, client.ReplicateOptions{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	m.Set(s.ID(), map[string]string{"name": "Alice"})

	// publish
	if code, out := call(t, api.URL, "POST", "/v1/api/echo/announcements", key, `{"text":"the room closes at six"}`); code != 200 || out["ok"] != true {
		t.Fatalf("%d %v", code, out)
	}
	if f, err := e.Recv(); err != nil || string(f) != "the room closes at six" {
		t.Fatalf("%q %v", f, err)
	}
	if code, _ := call(t, api.URL, "POST", "/v1/api/echo/announcements", key, `{"base64":"AAEC"}`); code != 200 {
		t.Fatal(code)
	}
	if f, _ := e.Recv(); !bytes.Equal(f, []byte{0, 1, 2}) {
		t.Fatalf("%v", f)
	}
	// presence
	sctest.WaitFor(t, 10*time.Second, func() error {
		_, out := call(t, api.URL, "GET", "/v1/api/presence/presence", key, "")
		keys, _ := out["keys"].(map[string]any)
		if v, ok := keys[s.ID()].(map[string]any); !ok || v["name"] != "Alice" {
			return fmt.Errorf("presence %v", out)
		}
		return nil
	})
	// namespaces
	_, out := call(t, api.URL, "GET", "/v1/api/namespaces", key, "")
	if fmt.Sprint(out["echo"]) != "[map[members:1 namespace:announcements]]" || fmt.Sprint(out["scuttlebutt"]) != "[map[members:1 namespace:presence]]" {
		t.Fatalf("%v", out)
	}
	// refusals
	for _, c := range []struct {
		method, path, key, body string
		status                  int
		code                    string
	}{
		{"GET", "/v1/api/namespaces", "", "", 401, "forbidden"},
		{"GET", "/v1/api/namespaces", key + "x", "", 401, "forbidden"},
		{"POST", "/v1/api/echo/announcements", key, `{"text":`, 400, "bad_header"},
		{"POST", "/v1/api/echo/announcements", key, `{"text":"a","base64":"AA=="}`, 400, "bad_header"},
		{"POST", "/v1/api/echo/announcements", key, `{"txt":"a"}`, 400, "bad_header"},
		{"POST", "/v1/api/echo/announcements", key, `{"text":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "limit"},
		{"POST", "/v1/api/echo/announcements", key, `{"text":"` + strings.Repeat("x", 70000) + `"}`, 413, "limit"},
		{"POST", "/v1/api/echo/a%01b", key, `{"text":"a"}`, 400, "bad_namespace"},
		{"POST", "/v1/api/peers/x/disconnect", key, `{"code":1000}`, 400, "bad_header"},
	} {
		status, out := call(t, api.URL, c.method, c.path, c.key, c.body)
		e, _ := out["error"].(map[string]any)
		if status != c.status || e["code"] != c.code || e["message"] == "" {
			t.Errorf("%s %s %.40q: %d %v", c.method, c.path, c.body, status, out)
		}
	}
	// disconnect: the peer's session closes with the code and reason.
	if code, out := call(t, api.URL, "POST", "/v1/api/peers/"+s.ID()+"/disconnect", key, `{"code":4403,"reason":"removed by a moderator"}`); code != 200 || out["sessions"] != float64(1) {
		t.Fatalf("%d %v", code, out)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived its disconnect")
	}
	if code, reason := s.CloseReason(); code != 4403 || reason != "removed by a moderator" {
		t.Fatalf("closed %d %q", code, reason)
	}
	if _, err := e.Recv(); err == nil {
		t.Fatal("the echo stream outlived its session")
	}
}

// Across a cluster: a frame published through one server's API reaches a
// member on the other; a peer held by the other is disconnected.
func TestAPIAcrossCluster(t *testing.T) {
	var urls, apis []string
	for _, srv := range clusterOf(t, 2) {
		mux := http.NewServeMux()
		mux.Handle("/v1/channel", srv)
		mux.Handle("/v1/api/", srv.APIHandler(apiKey))
		hs := httptest.NewServer(mux)
		t.Cleanup(hs.Close)
		urls = append(urls, "ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/channel")
		apis = append(apis, hs.URL)
	}
	alice := sctest.Dial(t, urls[1])
	e, err := alice.Echo(sctest.Ctx(t), "news")
	if err != nil {
		t.Fatal(err)
	}
	// The other server learns of the namespace's member as frames cross:
	// publish until one arrives.
	got := make(chan string, 1)
	go func() {
		f, err := e.Recv()
		if err == nil {
			got <- string(f)
		}
	}()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		if code, out := call(t, apis[0], "POST", "/v1/api/echo/news", string(apiKey), `{"text":"from node 0"}`); code != 200 {
			t.Fatalf("%d %v", code, out)
		}
		select {
		case f := <-got:
			if f != "from node 0" {
				t.Fatalf("%q", f)
			}
			break wait
		case <-tick.C:
		case <-deadline:
			t.Fatal("the frame published on node 0 did not reach node 1's member")
		}
	}
	// Disconnect through node 0; alice is on node 1.
	if code, out := call(t, apis[0], "POST", "/v1/api/peers/"+alice.ID()+"/disconnect", string(apiKey), `{"code":4403,"reason":"gone"}`); code != 200 || out["sessions"] != float64(0) {
		t.Fatalf("%d %v", code, out)
	}
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("alice was not disconnected by the other node")
	}
	if code, reason := alice.CloseReason(); code != 4403 || reason != "gone" {
		t.Fatalf("closed %d %q", code, reason)
	}
}
