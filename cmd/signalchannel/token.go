package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/signalchannel/signalchannel/auth"
	"github.com/signalchannel/signalchannel/channel"
)

// listFlag collects a repeatable flag. It does not split on commas, since a
// namespace may hold one.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// token mints a token for a client (PROTOCOL.md section 7).
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "who the token is for (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token lives")
	var allow listFlag
	fs.Var(&allow, "allow", "an endpoint:namespace-pattern the token allows, e.g. 'echo:room-*' (repeatable)")
	var own listFlag
	fs.Var(&own, "own", "an endpoint:namespace-pattern where the peer may write only its own keys, e.g. 'scuttlebutt:presence' (repeatable)")
	meta := fs.String("meta", "", `public peer metadata the server hands to others with the id: a JSON object, e.g. '{"name":"Alice"}'`)
	secretFile := fs.String("auth-secret-file", "", "sign with HS256 and the secret in this file")
	privateFile := fs.String("auth-private-key-file", "", "sign with EdDSA and this Ed25519 private key (PEM)")
	if err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	var key any
	var err error
	switch {
	case (*secretFile == "") == (*privateFile == ""):
		return errors.New("token: give -auth-secret-file or -auth-private-key-file")
	case *secretFile != "":
		key, err = auth.LoadSecretFile(*secretFile)
	default:
		key, err = auth.LoadPrivateKeyFile(*privateFile)
	}
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	for _, list := range []struct {
		flag string
		pats []string
	}{{"-allow", allow}, {"-own", own}} {
		for _, p := range list.pats {
			ep, _, _ := strings.Cut(p, ":")
			switch ep {
			case "*", channel.EndpointEcho, channel.EndpointScuttlebutt, channel.EndpointRelay:
			default:
				return fmt.Errorf("token: %s %q names the endpoint %q, which the server does not have: use echo, scuttlebutt, relay or *", list.flag, p, ep)
			}
		}
	}
	if len(allow) == 0 {
		fmt.Fprintln(stderr, "token: warning: the token allows no stream (no -allow): it opens a session that tells who it is, and nothing else; add e.g. -allow 'echo:room-*'")
	}
	g := auth.Grant{Subject: *sub, Allow: allow, Own: own, TTL: *ttl}
	if *meta != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(*meta), &m); err != nil || m == nil {
			return fmt.Errorf("token: -meta must be a JSON object such as '{\"name\":\"Alice\"}'")
		}
		g.Meta = json.RawMessage(*meta)
	}
	tok, err := auth.Mint(key, g)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// keygen writes a new Ed25519 key pair: the private key signs tokens
// (signalchannel token), the public key verifies them (serve
// -auth-public-key-file).
func keygen(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	priv := fs.String("private", "signalchannel-private.pem", "where to write the private key (mode 0600)")
	pub := fs.String("public", "signalchannel-public.pem", "where to write the public key")
	force := fs.Bool("force", false, "replace existing key files (every token signed with the old private key stops working)")
	if err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	if !*force {
		for _, f := range []string{*priv, *pub} {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("keygen: %s exists: a new key pair would make every token signed with the old one fail; give -force to replace it, or -private and -public to write elsewhere", f)
			}
		}
	}
	pk, sk, err := auth.GenerateEd25519()
	if err != nil {
		return err
	}
	skPEM, err := auth.EncodePrivateKeyPEM(sk)
	if err != nil {
		return err
	}
	pkPEM, err := auth.EncodePublicKeyPEM(pk)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*priv, skPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*pub, pkPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, `keygen: wrote %[1]s (the private key: keep it secret, it signs tokens) and %[2]s (the public key)
next, run the server with the public key:
  signalchannel serve -auth-public-key-file %[2]s
and mint a token with the private key:
  signalchannel token -auth-private-key-file %[1]s -sub alice -allow 'echo:room-*'
`, *priv, *pub)
	return nil
}
