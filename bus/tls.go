package bus

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TLS is a node's TLS material, parsed: this package reads no files.
//
// With it, the embedded server serves its client port over TLS only (a
// client that does not start TLS is refused; clients are not asked for a
// certificate and still authenticate with the secret), and its routes are
// mutual TLS: each side presents Cert, and each checks the other's
// certificate against CA, so only servers holding a certificate the CA
// signed can route to this one, secret or not. The node's own connections
// are in-process and do not use TLS; nothing outside the process reaches
// them.
//
// Route certificates are checked like any TLS server's: the certificate of
// the server dialled must name (in a DNS or IP subject alternative name)
// the host dialled, which is the seed's host for the Seeds and the
// advertised host ([Config.Advertise]) for servers learned from a peer.
// nats-server has one wrinkle: when a route URL is an IP address and some
// seed is a host name, it checks the certificate against that host name
// first, and against the IP address on the next attempt once that fails.
// Give every node a certificate that names its host name and its
// advertised address, and seeds by host name.
//
// [Bus.SetCertificate] replaces Cert while the bus runs (a renewal); CA
// stays as the bus started with it.
type TLS struct {
	// Cert is the node's certificate chain (leaf first) and private key.
	// The leaf must allow both server and client authentication (extended
	// key usages serverAuth and clientAuth, or none at all): the node is
	// the server of the routes peers dial and the client of those it
	// dials.
	Cert tls.Certificate

	// CA holds the certificates of the authorities that sign the cluster's
	// certificates. A peer's route certificate must chain to one of them,
	// and so must Cert.
	CA *x509.CertPool
}

// ErrTLS is wrapped by the errors of [TLS.Validate]: TLS material that
// cannot work.
var ErrTLS = errors.New("bus: TLS")

// Validate checks that t can work at time now: Cert has a certificate and
// a private key that belongs to it, its leaf allows server and client
// authentication and chains to CA, and it is valid now. A node whose own
// certificate does not chain to CA would be refused by every peer that
// trusts the same CA.
func (t *TLS) Validate(now time.Time) error {
	if len(t.Cert.Certificate) == 0 {
		return fmt.Errorf("%w: no certificate", ErrTLS)
	}
	if t.Cert.PrivateKey == nil {
		return fmt.Errorf("%w: no private key", ErrTLS)
	}
	if t.CA == nil {
		return fmt.Errorf("%w: no CA: routes are mutual TLS, and a node checks its peers' certificates against the CA", ErrTLS)
	}
	leaf, err := t.leaf()
	if err != nil {
		return err
	}
	priv, ok := t.Cert.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%w: private key of type %T cannot sign", ErrTLS, t.Cert.PrivateKey)
	}
	pub, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return fmt.Errorf("%w: the private key does not belong to the certificate (%s)", ErrTLS, leaf.Subject)
	}
	inter := x509.NewCertPool()
	for i, der := range t.Cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: certificate %d of the chain: %w", ErrTLS, i+2, err)
		}
		inter.AddCert(c)
	}
	for _, u := range []struct {
		usage x509.ExtKeyUsage
		what  string
	}{
		{x509.ExtKeyUsageServerAuth, "server (serverAuth)"},
		{x509.ExtKeyUsageClientAuth, "client (clientAuth)"},
	} {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         t.CA,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{u.usage},
		})
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
			return fmt.Errorf("%w: the certificate (%s) is not valid for %s authentication, which routes need: give it extendedKeyUsage serverAuth and clientAuth", ErrTLS, leaf.Subject, u.what)
		}
		if err != nil {
			return fmt.Errorf("%w: the certificate (%s) does not verify against the CA: %w", ErrTLS, leaf.Subject, err)
		}
	}
	return nil
}

// leaf returns the parsed leaf certificate.
func (t *TLS) leaf() (*x509.Certificate, error) {
	if t.Cert.Leaf != nil {
		return t.Cert.Leaf, nil
	}
	leaf, err := x509.ParseCertificate(t.Cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrTLS, err)
	}
	return leaf, nil
}

// names reports whether the leaf certificate is valid for host.
func (t *TLS) names(host string) bool {
	leaf, err := t.leaf()
	return err == nil && leaf.VerifyHostname(host) == nil
}

// certificate is the node's certificate as the handshakes see it: the
// TLS configurations below read it at each handshake, so that
// [Bus.SetCertificate] replaces it for every connection made after.
// (tls.Config.Certificates stays empty: a server consults GetCertificate
// only then, or on SNI.)
type certificate struct {
	p atomic.Pointer[tls.Certificate]
}

func (c *certificate) set(cert tls.Certificate) { c.p.Store(&cert) }

func (c *certificate) forServer(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.p.Load(), nil
}

func (c *certificate) forClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.p.Load(), nil
}

// clientConfig is the TLS configuration of the client port: the node's
// certificate, TLS 1.2 or later, no client certificate asked for.
func clientConfig(cert *certificate) *tls.Config {
	return &tls.Config{
		GetCertificate: cert.forServer,
		MinVersion:     tls.VersionTLS12,
	}
}

// routeConfig is the TLS configuration of routes, both sides: nats-server
// serves accepted routes with it (a certificate that chains to CA is
// required of the peer) and dials with a copy whose ServerName is the host
// dialled (the peer's certificate is checked against CA and that name).
// Either way the node presents cert.
func (t *TLS) routeConfig(cert *certificate) *tls.Config {
	return &tls.Config{
		GetCertificate:       cert.forServer,
		GetClientCertificate: cert.forClient,
		RootCAs:              t.CA,
		ClientCAs:            t.CA,
		ClientAuth:           tls.RequireAndVerifyClientCert,
		MinVersion:           tls.VersionTLS12,
	}
}

// applyTLS sets the client port's and the routes' TLS options from t,
// presenting cert (which it sets to t.Cert); nil leaves both in plaintext.
// The client port requires TLS (AllowNonTLS stays off); in-process
// connections are exempt (nats-server sees that a connection is in-process
// and lets it speak plaintext).
func applyTLS(opts *server.Options, t *TLS, cert *certificate) {
	if t == nil {
		return
	}
	cert.set(t.Cert)
	opts.TLSConfig = clientConfig(cert)
	opts.TLSTimeout = tlsTimeout.Seconds()
	opts.Cluster.TLSConfig = t.routeConfig(cert)
	opts.Cluster.TLSTimeout = tlsTimeout.Seconds()
}

// Certificate returns the certificate the node presents now (the one it
// started with, or the last SetCertificate's); nil without TLS.
func (b *Bus) Certificate() *tls.Certificate { return b.cert.p.Load() }

// SetCertificate replaces the node's certificate (chain and key) on the
// client port and on routes, both those it accepts and those it dials,
// for every handshake from now on; connections already made keep theirs.
// The certificate must pass [TLS.Validate] against the CA the bus started
// with, which stays: a new CA takes a restart. On an error (wrapping
// ErrTLS) nothing changes; a bus without TLS refuses any certificate.
func (b *Bus) SetCertificate(cert tls.Certificate) error {
	if b.cfg.TLS == nil {
		return fmt.Errorf("%w: this node runs without TLS; TLS takes a restart", ErrTLS)
	}
	t := TLS{Cert: cert, CA: b.cfg.TLS.CA}
	if err := t.Validate(time.Now()); err != nil {
		return err
	}
	b.cert.set(cert)
	if w := checkAdvertiseName(&t, b.advert); w != "" {
		b.log.Warn(w)
	}
	return nil
}

// tlsTimeout bounds a TLS handshake on the client port and on routes. It
// is nats-server's default (2 s), made explicit: in-process connections
// wait at most this long for their first bytes (nats-server reads them to
// tell TLS from plaintext), which they send at once.
const tlsTimeout = 2 * time.Second

// checkAdvertiseName returns a warning when the certificate does not name
// the advertised host, which peers that learn of this node from another
// dial: their handshake would fail. Empty when it does, or without TLS.
func checkAdvertiseName(t *TLS, advertise string) string {
	if t == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil || t.names(host) {
		return ""
	}
	return fmt.Sprintf("the TLS certificate does not name the advertised route host %q (no such DNS or IP subject alternative name): "+
		"peers that learn of this node from another and dial it will fail the TLS handshake; "+
		"set --advertise to a name the certificate carries, or add it to the certificate", host)
}
