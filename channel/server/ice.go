package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/google/uuid"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
)

// ICEHandler returns the handler of the ICE servers route (PROTOCOL.md
// section 11; by convention GET /v1/ice-servers): the ICE servers of
// Config.ICE as JSON, with TURN credentials for the caller's peer id. With
// a Verifier it takes the channel's token (Authorization: Bearer, or the
// access_token query parameter) and issues for its sub; on an open server
// for a new id each time. Browsers of the allowed origins may call it
// across origins. Errors are JSON: {"error":{"code","message"}}.
func (h *Handler) ICEHandler() http.Handler {
	return http.HandlerFunc(h.serveICE)
}

func (h *Handler) serveICE(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Add("Vary", "Origin")
	if !h.cfg.checkOrigin(r) {
		h.originRefused(r)
		WriteError(w, http.StatusForbidden, channel.CodeForbidden, "this origin may not use this server (see -allowed-origins)")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		hdr.Set("Access-Control-Allow-Origin", origin)
	}
	switch r.Method {
	case http.MethodOptions: // a browser's preflight for the Authorization header
		hdr.Set("Access-Control-Allow-Methods", "GET")
		hdr.Set("Access-Control-Allow-Headers", "Authorization")
		hdr.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
	default:
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		WriteError(w, http.StatusMethodNotAllowed, channel.CodeBadHeader, "use GET")
		return
	}
	iss := h.cfg.ICE
	if iss == nil {
		WriteError(w, http.StatusNotFound, channel.CodeUnknownEndpoint, "this server hands out no ICE servers (see -stun and -turn)")
		return
	}
	id := uuid.NewString()
	if v := h.cfg.Verifier; v != nil {
		c, err := v.VerifyRequest(r)
		if err != nil {
			code := channel.CodeBadToken
			if errors.Is(err, auth.ErrMissing) {
				code = channel.CodeForbidden
			}
			WriteError(w, http.StatusUnauthorized, code, auth.CloseReason(err))
			return
		}
		id = c.Subject
	}
	hdr.Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(iss.Issue(id))
}

// WriteError writes an HTTP error as the server's JSON routes answer it:
// {"error":{"code":"<code>","message":"<msg>"}} with status.
func WriteError(w http.ResponseWriter, status int, code channel.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}
