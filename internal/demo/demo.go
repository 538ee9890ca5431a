// Package demo is the browser demo of signalchannel, built on the peer API
// of the JavaScript client: pages of one room connect to each other, a
// mesh, over WebRTC data channels, or through the relay when no direct
// connection forms, and show each peer's path; they send messages and, on
// request, their camera to every peer. Go peers (examples/peer) join the
// same rooms.
//
// Handler serves the page and the JavaScript client. A server mounts it
// with mux.Handle("/demo/", demo.Handler()); the page connects to the
// channel at /v1/channel on the same host unless its URL names another with
// ?server=ws://host:port/v1/channel.
package demo

import (
	"embed"
	"io/fs"
	"net/http"

	signalchanneljs "github.com/signalchannel/signalchannel/js"
)

//go:embed static
var static embed.FS

// Prefix is the path Handler serves under.
const Prefix = "/demo/"

// Handler returns the handler of the demo, for requests whose path starts
// with /demo/: /demo/ is the page, /demo/app.js its script and
// /demo/signalchannel/ the JavaScript client (index.js and the modules it
// imports). Other paths get 404. It is safe for concurrent use.
func Handler() http.Handler {
	page, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	client, err := fs.Sub(signalchanneljs.FS, "src")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"signalchannel/", http.StripPrefix(Prefix+"signalchannel/", http.FileServerFS(client)))
	mux.Handle("GET "+Prefix, http.StripPrefix(Prefix, http.FileServerFS(page)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		mux.ServeHTTP(w, r)
	})
}
