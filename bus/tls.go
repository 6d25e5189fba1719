package bus

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
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

// clientConfig is the TLS configuration of the client port: the node's
// certificate, TLS 1.2 or later, no client certificate asked for.
func (t *TLS) clientConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.Cert},
		MinVersion:   tls.VersionTLS12,
	}
}

// routeConfig is the TLS configuration of routes, both sides: nats-server
// serves accepted routes with it (a certificate that chains to CA is
// required of the peer) and dials with a copy whose ServerName is the host
// dialled (the peer's certificate is checked against CA and that name).
func (t *TLS) routeConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{t.Cert},
		RootCAs:      t.CA,
		ClientCAs:    t.CA,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// applyTLS sets the client port's and the routes' TLS options from t; nil
// leaves both in plaintext. The client port requires TLS (AllowNonTLS
// stays off); in-process connections are exempt (nats-server sees that a
// connection is in-process and lets it speak plaintext).
func applyTLS(opts *server.Options, t *TLS) {
	if t == nil {
		return
	}
	opts.TLSConfig = t.clientConfig()
	opts.TLSTimeout = tlsTimeout.Seconds()
	opts.Cluster.TLSConfig = t.routeConfig()
	opts.Cluster.TLSTimeout = tlsTimeout.Seconds()
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
