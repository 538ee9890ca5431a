package auth

import (
	"net/http"
	"strings"
)

// QueryParam is the query parameter that carries a token for clients that
// cannot set headers (browsers opening a WebSocket).
const QueryParam = "access_token"

// FromRequest returns the token r carries, from the header
// "Authorization: Bearer <token>" (the scheme is matched case-insensitively)
// or from the query parameter access_token=<token>.
//
// It returns an *Error of kind ErrMissing when neither is present or both
// are empty, and of kind ErrInvalid when the Authorization header uses
// another scheme ("Basic ...") or when the header and the query parameter
// (or repeated copies of either) carry different tokens. The same token in
// both places is accepted.
//
// A token in the URL may end up in proxy and access logs; prefer the header
// where the client can set it.
func FromRequest(r *http.Request) (string, error) {
	var token string
	take := func(t string) *Error {
		switch {
		case t == "":
		case token == "":
			token = t
		case t != token:
			return invalid("the Authorization header and the access_token query parameter (or their copies) differ", nil)
		}
		return nil
	}
	for _, h := range r.Header.Values("Authorization") {
		t, err := bearer(h)
		if err != nil {
			return "", err
		}
		if err := take(t); err != nil {
			return "", err
		}
	}
	if r.URL != nil {
		for _, t := range r.URL.Query()[QueryParam] {
			if err := take(t); err != nil {
				return "", err
			}
		}
	}
	if token == "" {
		return "", missing()
	}
	return token, nil
}

// bearer returns the token of an Authorization header value, "" for an
// empty value or an empty Bearer token.
func bearer(h string) (string, *Error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", invalid(`the Authorization header must read "Bearer <token>"`, nil)
	}
	return strings.TrimSpace(rest), nil
}
