package auth_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/signalchannel/signalchannel/auth"
)

// Mint a token with an Ed25519 private key, verify it with the public key,
// and ask what it allows.
func Example() {
	pub, priv, err := auth.GenerateEd25519()
	if err != nil {
		panic(err)
	}
	tok, err := auth.Mint(priv, auth.Grant{
		Subject: "alice",
		Allow:   []string{"echo:room-*", "scuttlebutt:presence", "relay:*"},
		TTL:     time.Hour,
	})
	if err != nil {
		panic(err)
	}

	v, err := auth.NewVerifier(auth.Config{PublicKey: pub})
	if err != nil {
		panic(err)
	}
	claims, err := v.Verify(tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject)
	fmt.Println(claims.Allows("echo", "room-1"))
	fmt.Println(claims.Allows("echo", "lobby"))
	fmt.Println(claims.Allows("relay", "calls"))
	// Output:
	// alice
	// true
	// false
	// true
}

// A failed verification tells missing, invalid and expired apart, and
// carries the reason for the 4401 close frame.
func ExampleVerifier_Verify() {
	secret := []byte("a shared secret of at least 32 bytes")
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	expired, _ := auth.Mint(secret, auth.Grant{
		Subject:  "alice",
		Allow:    []string{"echo:*"},
		IssuedAt: time.Now().Add(-2 * time.Hour),
		TTL:      time.Hour,
	})
	other, _ := auth.Mint([]byte("some other secret, also 32 bytes long"), auth.Grant{
		Subject: "mallory",
		Allow:   []string{"*:*"},
		TTL:     time.Hour,
	})
	for _, tok := range []string{"", expired, other, "not-a-jwt"} {
		_, err := v.Verify(tok)
		fmt.Printf("%-5v %s\n", errors.Is(err, auth.ErrExpired), auth.CloseReason(err))
	}
	// Output:
	// false missing credentials
	// true  token expired
	// false invalid token: signature
	// false invalid token: malformed (want a JWT: three base64url parts joined by '.')
}
