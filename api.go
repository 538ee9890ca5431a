package signalchannel

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/channel/server"
)

// MaxAPIBody bounds the body of an API request.
const MaxAPIBody = 1 << 20

// APIHandler returns the HTTP API of an app's back end (PROTOCOL.md
// section 13), mounted under /v1/api/: every request carries
// "Authorization: Bearer <key>". It publishes into echo namespaces, reads
// presence, disconnects peers and lists namespaces, as JSON.
func (s *Server) APIHandler(key []byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/api/echo/{namespace}", s.apiPublish)
	mux.HandleFunc("GET /v1/api/presence/{namespace}", s.apiPresence)
	mux.HandleFunc("POST /v1/api/peers/{peer}/disconnect", s.apiDisconnect)
	mux.HandleFunc("GET /v1/api/namespaces", s.apiNamespaces)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), key) != 1 {
			server.WriteError(w, http.StatusUnauthorized, channel.CodeForbidden, "the API needs Authorization: Bearer <the key of -api-key-file>")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxAPIBody)
		mux.ServeHTTP(w, r)
	})
}

// apiPublish: POST /v1/api/echo/{namespace} {"text":"..."} or {"base64":"..."}.
func (s *Server) apiPublish(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	if err := channel.ValidNamespace(ns); err != nil {
		server.WriteError(w, http.StatusBadRequest, err.Code, err.Message)
		return
	}
	var body struct {
		Text   *string `json:"text"`
		Base64 *string `json:"base64"`
	}
	if !decode(w, r, &body) {
		return
	}
	var frame []byte
	switch {
	case body.Text != nil && body.Base64 == nil:
		frame = []byte(*body.Text)
	case body.Base64 != nil && body.Text == nil:
		b, err := base64.StdEncoding.DecodeString(*body.Base64)
		if err != nil {
			server.WriteError(w, http.StatusBadRequest, channel.CodeBadHeader, "base64: "+err.Error())
			return
		}
		frame = b
	default:
		server.WriteError(w, http.StatusBadRequest, channel.CodeBadHeader, `give the frame as "text" or as "base64", one of them`)
		return
	}
	if err := s.echo.Publish(ns, frame); err != nil {
		var perr *channel.Error
		if errors.As(err, &perr) {
			server.WriteError(w, http.StatusRequestEntityTooLarge, perr.Code, perr.Message)
			return
		}
		server.WriteError(w, http.StatusInternalServerError, channel.CodeInternal, err.Error())
		return
	}
	apiJSON(w, map[string]any{"ok": true, "bytes": len(frame)})
}

// apiPresence: GET /v1/api/presence/{namespace}: its live keys and values.
func (s *Server) apiPresence(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("namespace")
	if err := channel.ValidNamespace(ns); err != nil {
		server.WriteError(w, http.StatusBadRequest, err.Code, err.Message)
		return
	}
	keys, ok := s.sb.Snapshot(ns)
	if !ok {
		keys = map[string]json.RawMessage{}
	}
	apiJSON(w, map[string]any{"namespace": ns, "keys": keys})
}

// apiDisconnect: POST /v1/api/peers/{peer}/disconnect {"code":4403,"reason":"..."}.
func (s *Server) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	peer := r.PathValue("peer")
	body := struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{Code: channel.CloseForbidden}
	if r.ContentLength != 0 && !decode(w, r, &body) {
		return
	}
	if body.Code < 4000 || body.Code > 4999 {
		server.WriteError(w, http.StatusBadRequest, channel.CodeBadHeader, "code: a close code of 4000-4999 (4403 by default)")
		return
	}
	if len(body.Reason) > 120 {
		server.WriteError(w, http.StatusBadRequest, channel.CodeBadHeader, "reason: at most 120 bytes")
		return
	}
	n := s.handler.Disconnect(peer, body.Code, body.Reason)
	if s.disconnect != nil {
		s.disconnect(peer, body.Code, body.Reason)
	}
	apiJSON(w, map[string]any{"ok": true, "sessions": n})
}

// apiNamespaces: GET /v1/api/namespaces: the namespaces on this server and
// their members.
func (s *Server) apiNamespaces(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		Namespace string `json:"namespace"`
		Members   int    `json:"members"`
	}
	list := func(m map[string]int) []entry {
		out := make([]entry, 0, len(m))
		for ns, n := range m {
			out = append(out, entry{ns, n})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Namespace < out[j].Namespace })
		return out
	}
	apiJSON(w, map[string]any{"echo": list(s.echo.Namespaces()), "scuttlebutt": list(s.sb.Namespaces())})
}

// decode reads r's JSON body into v, answering the error itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			server.WriteError(w, http.StatusRequestEntityTooLarge, channel.CodeLimit, "the body is longer than 1 MiB")
			return false
		}
		server.WriteError(w, http.StatusBadRequest, channel.CodeBadHeader, "the body is not the JSON object this route takes: "+err.Error())
		return false
	}
	return true
}

func apiJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
