package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signalchannel/signalchannel/channel/client"
	"github.com/signalchannel/signalchannel/internal/sctest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 named cn, and
// its key, and returns a pool that trusts it.
func selfSigned(t *testing.T, certFile, keyFile, cn string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to a temporary name and renamed, as a renewal does, so that
	// the server never reads half a file.
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{keyFile, "PRIVATE KEY", kder}, {certFile, "CERTIFICATE", der}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// servedCN dials addr with TLS and returns the common name of the
// certificate the server presents.
func servedCN(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// serve -tls-cert-file -tls-key-file serves wss:// with the certificate;
// a new certificate is taken when the files change and on SIGHUP, and a
// broken one leaves the current one in use.
func TestServeTLS(t *testing.T) {
	old := tlsPollInterval
	tlsPollInterval = 20 * time.Millisecond
	t.Cleanup(func() { tlsPollInterval = old })
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := selfSigned(t, certFile, keyFile, "first")
	addr, _, logs := startServer(t, "-tls-cert-file", certFile, "-tls-key-file", keyFile)

	d := *websocket.DefaultDialer
	d.TLSClientConfig = &tls.Config{RootCAs: pool}
	s, err := client.Dial(sctest.Ctx(t), "wss://"+addr+"/v1/channel", client.DialOptions{Dialer: &d})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	e, err := s.Echo(sctest.Ctx(t), "tls")
	if err != nil {
		t.Fatal(err)
	}
	e.Send([]byte("over tls"))
	if f, err := e.Recv(); err != nil || string(f) != "over tls" {
		t.Fatalf("%q %v", f, err)
	}
	s.Close()

	// The files change: the next handshake has the new certificate.
	selfSigned(t, certFile, keyFile, "second")
	sctest.WaitFor(t, 10*time.Second, func() error {
		if cn := servedCN(t, addr); cn != "second" {
			return fmt.Errorf("still %q", cn)
		}
		return nil
	})
	// A broken pair is refused; the current certificate stays.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	sctest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "TLS certificate not reloaded") {
			return errors.New("no refusal logged")
		}
		return nil
	})
	if cn := servedCN(t, addr); cn != "second" {
		t.Fatalf("served %q after a broken renewal", cn)
	}
}

// SIGHUP reloads the certificate (the files are not polled here).
func TestTLSReloadOnSIGHUP(t *testing.T) {
	old := tlsPollInterval
	tlsPollInterval = time.Hour
	t.Cleanup(func() { tlsPollInterval = old })
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	selfSigned(t, certFile, keyFile, "before")
	addr, _, _ := startServer(t, "-tls-cert-file", certFile, "-tls-key-file", keyFile)
	if cn := servedCN(t, addr); cn != "before" {
		t.Fatalf("served %q", cn)
	}
	selfSigned(t, certFile, keyFile, "after")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	sctest.WaitFor(t, 10*time.Second, func() error {
		if cn := servedCN(t, addr); cn != "after" {
			return fmt.Errorf("still %q", cn)
		}
		return nil
	})
}

// Half a pair is refused.
func TestTLSNeedsBoth(t *testing.T) {
	err := run(sctest.Ctx(t), []string{"serve", "-addr", "127.0.0.1:0", "-tls-cert-file", "x.pem"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "-tls-key-file") {
		t.Fatalf("%v", err)
	}
}
