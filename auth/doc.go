// Package auth verifies the credentials of PROTOCOL.md section 7: a JWT,
// HS256 with a shared secret or EdDSA (Ed25519) with a public key, whose
// allow claim lists the endpoints and namespaces a connection may open.
//
// # Verifying
//
// A server builds one Verifier at start, from exactly one key, and shares it
// between all connections (it is safe for concurrent use):
//
//	secret, err := auth.LoadSecretFile("secret")        // HS256, or
//	pub, err := auth.LoadPublicKeyFile("ed25519.pub")   // EdDSA
//	v, err := auth.NewVerifier(auth.Config{PublicKey: pub})
//
// At connection time it takes the token from the request, either
// "Authorization: Bearer <token>" or the query parameter access_token (see
// FromRequest), and verifies it:
//
//	claims, err := v.VerifyRequest(r)
//	if err != nil {
//		// errors.Is(err, auth.ErrMissing / auth.ErrInvalid / auth.ErrExpired);
//		// close with 4401 and auth.CloseReason(err), e.g. "token expired".
//	}
//
// The Verifier accepts only the algorithm of its key; requires exp, sub (a
// non-empty string) and allow (an array of well-formed patterns); honours
// nbf and iat; and tolerates Config.Leeway (default 30 s) of clock skew.
// Claims.ValidUntil is when the token stops being accepted: the moment to
// close a connection whose token expires while it is open.
//
// # Allowing streams
//
// Per stream, Claims.Allows(endpoint, namespace) reports whether any allow
// entry matches. Entries are parsed once, at verification; see Pattern for
// the matching rules ("echo:room-*", "*:lobby", "relay:*"). NewContext and
// FromContext carry a connection's Claims to code that sees only a context.
//
// # Minting
//
// Mint signs a token with an HS256 secret or an Ed25519 private key:
//
//	pub, priv, _ := auth.GenerateEd25519()
//	tok, _ := auth.Mint(priv, auth.Grant{Subject: "alice", Allow: []string{"echo:room-*"}, TTL: time.Hour})
//	v, _ := auth.NewVerifier(auth.Config{PublicKey: pub})
//	claims, _ := v.Verify(tok)
//	claims.Allows("echo", "room-1") // true
//	claims.Allows("relay", "room-1") // false
//
// Key files: a secret file holds at least 32 bytes of text (openssl rand -hex
// 32); an Ed25519 private key is a PEM "PRIVATE KEY" (openssl genpkey
// -algorithm ed25519) and its public key a PEM "PUBLIC KEY" (openssl pkey
// -pubout). Only the minter needs the private key.
package auth
