package main

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/gateway"
)

// SIGHUP makes `kvs serve` read again, each on its own:
//
//   - --client-tokens-file: the next request is checked against its
//     tokens, so a token taken out of the file is refused without a
//     restart;
//   - --tls-cert and --tls-key: HTTPS, the NATS client port and the routes
//     (accepted and dialled) present the new certificate in every
//     handshake from then on; connections already made keep theirs. It
//     must chain to the CA read at start, which stays: a new CA takes a
//     restart.
//
// A file that no longer parses, or breaks a rule it was held to at start,
// changes nothing of its kind: the node logs why at error level, naming
// the file (and line) and never a token, and keeps what is in force. The
// cluster secret and the NATS passwords are read once, at start.
//
// A SIGHUP no longer ends the process (Go's default for it), whether or
// not there is anything to read.

// hangups delivers SIGHUPs from the moment it is made; stop ends that.
type hangups struct {
	c chan os.Signal
}

func notifyHangups() *hangups {
	h := &hangups{c: make(chan os.Signal, 1)}
	signal.Notify(h.c, syscall.SIGHUP)
	return h
}

func (h *hangups) stop() { signal.Stop(h.c) }

// serve calls reload for each SIGHUP (one for several that come while it
// runs) until ctx ends.
func (h *hangups) serve(ctx context.Context, reload func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.c:
			reload()
		}
	}
}

// reload is what a SIGHUP does to a node serving gw on bus b with
// options o.
func reload(log *slog.Logger, o serveOptions, gw *gateway.Gateway, b *bus.Bus) {
	if o.clientAuth.tokensFile == "" && o.tls == nil {
		log.Info("SIGHUP: nothing to reload (no --client-tokens-file, no --tls-cert)")
		return
	}
	if o.clientAuth.tokensFile != "" {
		_ = reloadClientTokens(log, gw, o.clientAuth, o.secret)
	}
	if o.tls != nil {
		_ = reloadCertificate(log, o.tls, b)
	}
}

// reloadCertificate reads t's certificate and key files again and has the
// bus present them, and so HTTPS (serveHTTP asks the bus). On an error the certificate in force stays,
// and the error is logged and returned.
func reloadCertificate(log *slog.Logger, t *serveTLS, b *bus.Bus) error {
	cert, err := loadKeyPair(t.certFile, t.keyFile)
	if err == nil {
		// The bus checks it against the CA, as at start.
		err = b.SetCertificate(cert)
	}
	if err != nil {
		log.Error("TLS certificate not reloaded; the certificate in force stays", "err", err)
		return err
	}
	attrs := []any{"cert", t.certFile}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		attrs = append(attrs, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	}
	log.Info("TLS certificate reloaded", attrs...)
	return nil
}

// reloadClientTokens reads a's tokens file again and gives its tokens to
// gw. On an error the tokens in force stay, and the error is logged and
// returned.
func reloadClientTokens(log *slog.Logger, gw *gateway.Gateway, a clientAuthOptions, secret string) error {
	rw, ro, err := readTokensFile(a.tokensFile, secret)
	if err == nil {
		err = gw.SetClientTokens(rw, ro)
	}
	if err != nil {
		log.Error("client tokens not reloaded; the tokens in force stay", "err", err)
		return err
	}
	log.Info("client tokens reloaded", "file", a.tokensFile, "read_write", len(rw), "read_only", len(ro))
	return nil
}
