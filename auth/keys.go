package auth

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// maxKeyFileBytes bounds what the loaders read: key files are small, and a
// path pointing at something large is a mistake.
const maxKeyFileBytes = 64 << 10

// LoadSecretFile reads an HS256 secret from path. The secret is the file's
// text with leading and trailing white space removed, used as it is (not
// hex- or base64-decoded), so that it is the same bytes every JWT library
// signs with when given that string. It must be at least MinSecretBytes
// long; `openssl rand -hex 32 > secret` makes a good one (64 characters).
// A file holding a PEM key is refused: that is a key file for
// LoadPublicKeyFile or LoadPrivateKeyFile, never a shared secret.
func LoadSecretFile(path string) ([]byte, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if bytes.HasPrefix(b, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: %s holds a PEM key, not a shared secret; use it as an Ed25519 key file instead", ErrBadKey, path)
	}
	if len(b) < MinSecretBytes {
		return nil, fmt.Errorf("%w: %s holds %d bytes after trimming white space, HS256 needs at least %d (make one with: openssl rand -hex 32)", ErrSecretTooShort, path, len(b), MinSecretBytes)
	}
	return b, nil
}

// LoadPublicKeyFile reads an Ed25519 public key from a PEM file with a
// "PUBLIC KEY" block (PKIX), as `openssl pkey -in key.pem -pubout` writes.
// A private key is refused: the server needs the public key only.
func LoadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not a PKIX public key: %v", ErrBadKey, path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %s public key, want Ed25519", ErrBadKey, path, keyKind(k))
	}
	return pub, nil
}

// LoadPrivateKeyFile reads an Ed25519 private key, for minting tokens, from
// a PEM file with a "PRIVATE KEY" block (PKCS #8), as
// `openssl genpkey -algorithm ed25519` writes.
func LoadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: not a PKCS #8 private key: %v", ErrBadKey, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %s private key, want Ed25519", ErrBadKey, path, keyKind(k))
	}
	return priv, nil
}

// GenerateEd25519 returns a new Ed25519 key pair from crypto/rand.
func GenerateEd25519() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// EncodePublicKeyPEM returns pub as a PEM "PUBLIC KEY" block, the format
// LoadPublicKeyFile reads.
func EncodePublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 public key of %d bytes, want %d", ErrBadKey, len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// EncodePrivateKeyPEM returns priv as a PEM "PRIVATE KEY" block, the format
// LoadPrivateKeyFile reads. Write it to a file only the minter can read.
func EncodePrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 private key of %d bytes, want %d", ErrBadKey, len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: key file: %w", err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; is it the right file?", ErrBadKey, path, maxKeyFileBytes)
	}
	return b, nil
}

// readPEM returns the bytes of the first PEM block of path, which must be
// of type want.
func readPEM(path, want string) ([]byte, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: %s is not a PEM file (want a %q block)", ErrBadKey, path, want)
	case block.Type == want:
		return block.Bytes, nil
	case want == "PUBLIC KEY" && block.Type == "PRIVATE KEY":
		return nil, fmt.Errorf("%w: %s holds a private key; the server needs only the public key (openssl pkey -in %s -pubout)", ErrBadKey, path, path)
	default:
		return nil, fmt.Errorf("%w: %s holds a %q PEM block, want %q", ErrBadKey, path, block.Type, want)
	}
}

func keyKind(k any) string {
	switch k.(type) {
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519"
	case *rsa.PublicKey, *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PublicKey, *ecdsa.PrivateKey:
		return "ECDSA"
	case *ecdh.PublicKey, *ecdh.PrivateKey:
		return "X25519 (ECDH)"
	}
	return fmt.Sprintf("%T", k)
}

func ed25519Clone(k ed25519.PublicKey) ed25519.PublicKey {
	return ed25519.PublicKey(bytes.Clone(k))
}
