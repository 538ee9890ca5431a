package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/signalchannel/signalchannel/auth"
)

func TestFromRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		query   string
		want    string
		kind    error
	}{
		{name: "header", headers: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "lower-case scheme", headers: []string{"bearer abc"}, want: "abc"},
		{name: "upper-case scheme", headers: []string{"BEARER abc"}, want: "abc"},
		{name: "extra spaces", headers: []string{"  Bearer   abc  "}, want: "abc"},
		{name: "query", query: "access_token=abc.def.ghi", want: "abc.def.ghi"},
		{name: "query escaped", query: "access_token=a%2Eb&x=1", want: "a.b"},
		{name: "both the same", headers: []string{"Bearer abc"}, query: "access_token=abc", want: "abc"},
		{name: "header repeated, same", headers: []string{"Bearer abc", "Bearer abc"}, want: "abc"},
		{name: "empty query with header", headers: []string{"Bearer abc"}, query: "access_token=", want: "abc"},
		{name: "empty header with query", headers: []string{"Bearer "}, query: "access_token=abc", want: "abc"},
		{name: "nothing", kind: auth.ErrMissing},
		{name: "empty bearer", headers: []string{"Bearer"}, kind: auth.ErrMissing},
		{name: "empty header", headers: []string{""}, kind: auth.ErrMissing},
		{name: "empty query", query: "access_token=", kind: auth.ErrMissing},
		{name: "other parameter", query: "token=abc", kind: auth.ErrMissing},
		{name: "both different", headers: []string{"Bearer abc"}, query: "access_token=xyz", kind: auth.ErrInvalid},
		{name: "headers different", headers: []string{"Bearer abc", "Bearer xyz"}, kind: auth.ErrInvalid},
		{name: "queries different", query: "access_token=abc&access_token=xyz", kind: auth.ErrInvalid},
		{name: "basic scheme", headers: []string{"Basic YWxpY2U6cHc="}, kind: auth.ErrInvalid},
		{name: "no scheme", headers: []string{"abc.def.ghi"}, kind: auth.ErrInvalid},
		{name: "basic scheme with query", headers: []string{"Basic YWxpY2U6cHc="}, query: "access_token=abc", kind: auth.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/channel?"+tc.query, nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := auth.FromRequest(r)
			if tc.kind != nil {
				wantErr(t, err, tc.kind, "")
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("FromRequest = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestVerifyRequestOverHTTP runs a real HTTP server whose handler verifies
// each request and answers 401 with the close reason on failure.
func TestVerifyRequestOverHTTP(t *testing.T) {
	v := hsVerifier(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.VerifyRequest(r)
		if err != nil {
			http.Error(w, auth.CloseReason(err), http.StatusUnauthorized)
			return
		}
		ctx := auth.NewContext(r.Context(), c)
		got, _ := auth.FromContext(ctx)
		fmt.Fprintf(w, "%s %v", got.Subject, got.Allows("echo", "room-1"))
	}))
	t.Cleanup(srv.Close)

	good := mint(t, secret, grant)
	old := mint(t, secret, auth.Grant{Subject: "alice", Allow: []string{"echo:*"}, IssuedAt: now.Add(-3 * time.Hour), TTL: time.Hour})
	for _, tc := range []struct {
		name, header, query string
		status              int
		body                string
	}{
		{"header", "Bearer " + good, "", 200, "alice true"},
		{"query", "", "access_token=" + url.QueryEscape(good), 200, "alice true"},
		{"missing", "", "", 401, "missing credentials"},
		{"expired", "Bearer " + old, "", 401, "token expired"},
		{"garbage", "Bearer nope", "", 401, "invalid token: malformed"},
		{"different", "Bearer " + good, "access_token=x", 401, "invalid token: the Authorization header and the access_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/channel?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
		})
	}
}

func TestContext(t *testing.T) {
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Error("claims in an empty context")
	}
	if _, ok := auth.FromContext(auth.NewContext(context.Background(), nil)); ok {
		t.Error("nil claims reported present")
	}
	c := &auth.Claims{Subject: "alice"}
	got, ok := auth.FromContext(auth.NewContext(context.Background(), c))
	if !ok || got != c {
		t.Errorf("FromContext = %v, %v", got, ok)
	}
}

func TestErrorUnwrap(t *testing.T) {
	_, err := hsVerifier(t).Verify(mint(t, otherSecret, grant))
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Cause() == nil {
		t.Fatalf("no cause in %v", err)
	}
	if err.Error() != "auth: invalid token: signature" {
		t.Errorf("Error() = %q", err.Error())
	}
	if errors.Is(err, auth.ErrExpired) || errors.Is(err, auth.ErrMissing) {
		t.Error("an invalid token is also reported as another kind")
	}
}
