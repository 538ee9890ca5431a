package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// tlsPollInterval is how often the certificate files are checked for a
// change.
var tlsPollInterval = 10 * time.Second

// certReloader serves a certificate and key pair read from files, read
// again on SIGHUP and when the files change (a renewal by certbot or
// cert-manager), so that the server never needs a restart for a new
// certificate. A pair that fails to load leaves the current one in use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp string // the files' sizes and modification times at the last load
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// stampOf describes the files' state, to see that they changed.
func (r *certReloader) stampOf() string {
	var out string
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			out += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return out
}

func (r *certReloader) load() error {
	stamp := r.stampOf()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.stamp = &cert, stamp
	r.mu.Unlock()
	return nil
}

// reload loads the pair again, keeping the current one when it fails.
func (r *certReloader) reload(why string) {
	if err := r.load(); err != nil {
		r.log.Error("TLS certificate not reloaded: the current one stays in use", "why", why, "err", err)
		return
	}
	r.log.Info("TLS certificate reloaded", "why", why, "cert", r.certFile)
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}

// watch reloads on SIGHUP and when the files change, until ctx ends. It
// takes SIGHUP before it returns, so that none is missed (nor kills the
// process, as SIGHUP does by default).
// The returned function waits for the watcher to stop.
func (r *certReloader) watch(ctx context.Context) (wait func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		t := time.NewTicker(tlsPollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.reload("SIGHUP")
			case <-t.C:
				r.mu.Lock()
				changed := r.stampOf() != r.stamp
				r.mu.Unlock()
				if changed {
					r.reload("the files changed")
				}
			}
		}
	}()
	return func() { <-done }
}
