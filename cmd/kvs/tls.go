package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/bus"
)

// TLS of a node (serve) and of the client commands.
//
// A node given --tls-cert, --tls-key and --tls-ca serves HTTPS on --http
// (the client API, /internal/* and /admin/* alike), TLS only on the NATS
// client port, and mutual TLS on the NATS routes (see bus.TLS). One
// certificate serves all three, so it must allow serverAuth and clientAuth
// and name every host that clients and peers dial. The files are read at
// start; a SIGHUP reads the certificate and key again (reload.go), while
// the CA stays as it was read.
//
// The client commands take --ca to trust a private CA for https:// URLs;
// without it they trust the system's CAs.

// maxPEMFileBytes bounds what is read of a certificate, key or CA file, so
// that a wrong path (a log, a device) fails at once.
const maxPEMFileBytes = 1 << 20

// serveTLSFlags are the TLS flags of serve and dev.
func serveTLSFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS, NATS clients and routes over TLS with the certificate chain in `FILE` (PEM; needs --tls-key and --tls-ca)", EnvVars: envVars("tls-cert")},
		&cli.StringFlag{Name: "tls-key", Usage: "private key of --tls-cert, in `FILE` (PEM)", EnvVars: envVars("tls-key")},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA certificates in `FILE` (PEM) that peers' route certificates must chain to (mutual TLS)", EnvVars: envVars("tls-ca")},
	}
}

// serveTLS is a node's TLS material and the files it came from.
type serveTLS struct {
	certFile, keyFile, caFile string
	material                  bus.TLS // as loaded at start; the bus holds the certificate in force
}

// parseServeTLS reads --tls-cert, --tls-key and --tls-ca: nil when none is
// set. The three go together; every error names the flag and the file.
func parseServeTLS(c *cli.Context) (*serveTLS, error) {
	return loadServeTLS(c.String("tls-cert"), c.String("tls-key"), c.String("tls-ca"), time.Now())
}

// loadServeTLS loads and checks the TLS files at time now; nil when all
// three paths are empty.
func loadServeTLS(certFile, keyFile, caFile string, now time.Time) (*serveTLS, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	switch {
	case certFile == "":
		return nil, errors.New("--tls-cert is not set, but --tls-key or --tls-ca is (or KVS_TLS_KEY, KVS_TLS_CA): give the certificate, its key and the CA")
	case keyFile == "":
		return nil, fmt.Errorf("--tls-cert %s has no --tls-key (KVS_TLS_KEY): give its private key", certFile)
	case caFile == "":
		return nil, fmt.Errorf("--tls-cert %s has no --tls-ca (KVS_TLS_CA): routes are mutual TLS, and a node checks its peers' certificates against the CA", certFile)
	}
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := loadCA("--tls-ca", caFile)
	if err != nil {
		return nil, err
	}
	t := &serveTLS{certFile: certFile, keyFile: keyFile, caFile: caFile, material: bus.TLS{Cert: cert, CA: pool}}
	if err := t.material.Validate(now); err != nil {
		return nil, fmt.Errorf("--tls-cert %s with --tls-ca %s: %w", certFile, caFile, err)
	}
	return t, nil
}

// loadKeyPair reads the certificate chain and its private key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readPEMFile("--tls-cert", certFile, "CERTIFICATE")
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile("--tls-key", keyFile, "PRIVATE KEY")
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--tls-cert %s with --tls-key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// readPEMFile reads the PEM file of flag, refusing one larger than
// maxPEMFileBytes or without a block whose type ends in want.
func readPEMFile(flag, path, want string) ([]byte, error) {
	b, err := readFlagFile(flag, path, maxPEMFileBytes)
	if err != nil {
		return nil, err
	}
	if pemBlock(b, want) == nil {
		return nil, fmt.Errorf("%s %s: no PEM %s block; is it the right file?", flag, path, want)
	}
	return b, nil
}

// pemBlock returns the first block of b whose type ends in want, nil when
// there is none.
func pemBlock(b []byte, want string) *pem.Block {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil || strings.HasSuffix(block.Type, want) {
			return block
		}
	}
}

// loadCA reads a PEM file of CA certificates into a pool.
func loadCA(flag, path string) (*x509.CertPool, error) {
	b, err := readPEMFile(flag, path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no certificate could be parsed", flag, path)
	}
	return pool, nil
}

// bus returns the material for bus.Config.TLS; nil without TLS.
func (t *serveTLS) bus() *bus.TLS {
	if t == nil {
		return nil
	}
	m := t.material
	return &m
}

// serveHTTP serves srv on ln until it is shut down: HTTPS with the
// certificate b presents (TLS 1.2 or later, HTTP/2 offered; the one a
// SIGHUP renewed, reload.go), or plain HTTP when t is nil. A plain HTTP
// request to the HTTPS port gets 400 ("Client sent an HTTP request to an
// HTTPS server").
func serveHTTP(srv *http.Server, ln net.Listener, t *serveTLS, b *bus.Bus) error {
	if t == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return b.Certificate(), nil },
		MinVersion:     tls.VersionTLS12,
	}
	return srv.ServeTLS(ln, "", "")
}

// caFlag is --ca of the client commands.
func caFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca", Usage: "trust the CA certificates in `FILE` (PEM) for an https:// --url, instead of the system's", EnvVars: envVars("ca")}
}

// newHTTPClient is the client of the one-shot commands: no redirects
// followed, the command's --timeout, and for https:// the CAs of --ca
// (else the system's).
func newHTTPClient(c *cli.Context) (*http.Client, error) {
	return httpClientWithCA(c.Duration("timeout"), c.String("ca"))
}

// httpClientWithCA is newHTTPClient with the timeout and the CA file
// (empty: the system's CAs) given.
func httpClientWithCA(timeout time.Duration, caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := loadCA("--ca", caFile)
		if err != nil {
			return nil, usageError("%v", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: tlsHintTransport{rt: tr, ca: caFile},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// tlsHintTransport adds to TLS errors what to do about them.
type tlsHintTransport struct {
	rt http.RoundTripper
	ca string // the --ca file, "" for none
}

// RoundTrip implements http.RoundTripper.
func (t tlsHintTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, tlsHint(err, t.ca)
	}
	return resp, nil
}

// tlsHint wraps a request error that TLS explains with a hint: ca is the
// --ca file ("" for none).
func tlsHint(err error, ca string) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown) && ca == "":
		return fmt.Errorf("%w (give the CA that signed the node's certificate with --ca or KVS_CA)", err)
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (no CA in --ca %s signed the node's certificate)", err, ca)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (use a host name or address the certificate names in the URL)", err)
	case errors.As(err, &record):
		return fmt.Errorf("%w (does the node serve plain HTTP? then use an http:// URL)", err)
	}
	return err
}

// doRequest sends req with the client of newHTTPClient.
func doRequest(c *cli.Context, req *http.Request) (*http.Response, error) {
	client, err := newHTTPClient(c)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}
