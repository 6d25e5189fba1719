package main

import (
	"crypto"
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
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/bus"
	"github.com/kvs-db/kvs/node/atomicfile"
)

// `kvs cert` makes what --tls-cert, --tls-key and --tls-ca take: a private
// CA, and certificates it signs for nodes, each valid for server and
// client authentication (routes are mutual TLS) and naming the node's
// hosts. It does what the OpenSSL recipe in the README did, with the
// checks `kvs serve` makes at start applied to what it writes.
//
//	kvs cert ca --dir certs                    certs/ca.pem, certs/ca-key.pem
//	kvs cert node node1 --dir certs            certs/node1.pem, certs/node1-key.pem
//
// Keys are ECDSA P-256 in PKCS #8, written with mode 0600; every file is
// replaced atomically, so a node reloading on SIGHUP never reads half of
// one. A CA is never overwritten (its node certificates would be orphaned);
// a node certificate only with --force, which is how one is renewed.

// Files of `kvs cert` in --dir.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// certNamePattern is what a node certificate's name may be: it names
// files in --dir and is the certificate's common name and first host.
var certNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// maxCertDays bounds --days: a certificate past that is a typo.
const maxCertDays = 36500

// clockSkew backdates a certificate's start, so that a node whose clock is
// a little behind the machine that made it accepts it at once.
const clockSkew = 5 * time.Minute

func certCommand() *cli.Command {
	dir := &cli.StringFlag{Name: "dir", Usage: "write to and read from `DIR` (created 0700 when missing)", Value: "certs", EnvVars: envVars("cert-dir")}
	return &cli.Command{
		Name:  "cert",
		Usage: "make a private CA and node certificates for --tls-cert, --tls-key and --tls-ca",
		Description: "`kvs cert ca` makes a CA (ca.pem, ca-key.pem); keep ca-key.pem off the nodes.\n" +
			"`kvs cert node NAME` makes NAME.pem and NAME-key.pem, signed by that CA, for\n" +
			"server and client authentication, naming NAME, localhost, 127.0.0.1 and every --host.\n" +
			"Renew one with --force, copy it to the node and send the node a SIGHUP.",
		Subcommands: []*cli.Command{
			{
				Name:      "ca",
				Usage:     "make a CA: DIR/ca.pem and DIR/ca-key.pem (never overwritten)",
				ArgsUsage: " ",
				Flags: []cli.Flag{dir,
					&cli.StringFlag{Name: "name", Usage: "the CA's common `NAME`", Value: "kvs CA"},
					&cli.IntFlag{Name: "days", Usage: "valid for `N` days", Value: 3650},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usageError("cert ca takes no arguments, got %q", c.Args().Slice())
					}
					if err := checkDays(c.Int("days")); err != nil {
						return usageError("%v", err)
					}
					return makeCA(c.App.Writer, c.String("dir"), c.String("name"), c.Int("days"), time.Now())
				},
			},
			{
				Name:      "node",
				Usage:     "make a node certificate signed by DIR's CA: DIR/NAME.pem and DIR/NAME-key.pem",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{dir,
					&cli.StringSliceFlag{Name: "host", Usage: "also name `HOST` (a DNS name or an IP address; repeat for more): every name clients and peers dial"},
					&cli.IntFlag{Name: "days", Usage: "valid for `N` days", Value: 825},
					&cli.BoolFlag{Name: "force", Usage: "replace NAME's certificate and key if they exist (a renewal)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("cert node takes one NAME, got %q", c.Args().Slice())
					}
					name := c.Args().First()
					if !certNamePattern.MatchString(name) || name == "ca" {
						return usageError("cert node: name %q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not \"ca\"", name)
					}
					if err := checkDays(c.Int("days")); err != nil {
						return usageError("%v", err)
					}
					hosts := append([]string{name, "localhost", "127.0.0.1"}, c.StringSlice("host")...)
					return makeNodeCert(c.App.Writer, c.String("dir"), name, hosts, c.Int("days"), c.Bool("force"), time.Now())
				},
			},
		},
	}
}

func checkDays(days int) error {
	if days < 1 || days > maxCertDays {
		return fmt.Errorf("--days %d: want 1 to %d", days, maxCertDays)
	}
	return nil
}

// makeCA writes a new CA's certificate and key to dir, refusing to replace
// either.
func makeCA(out io.Writer, dir, name string, days int, now time.Time) error {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return fmt.Errorf("%w: a CA is never replaced, as the certificates it signed would no longer verify; remove both files first to start over", err)
	}
	key, tmpl, err := newKeyAndTemplate(name, now, days)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLenZero = true, true, true
	der, err := signCert(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	if err := writeCertAndKey(dir, certPath, keyPath, der, key); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (CA %q, valid until %s) and %s: keep the key off the nodes\n",
		certPath, name, tmpl.NotAfter.UTC().Format(time.DateOnly), keyPath)
	return nil
}

// makeNodeCert writes a certificate for name, naming hosts and signed by
// dir's CA, and its key to dir. It replaces existing ones only with force.
func makeNodeCert(out io.Writer, dir, name string, hosts []string, days int, force bool, now time.Time) error {
	certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if !force {
		if err := refuseExisting(certPath, keyPath); err != nil {
			return fmt.Errorf("%w: give --force to replace them (a renewal)", err)
		}
	}
	caCert, caKey, err := loadCAPair(dir)
	if err != nil {
		return err
	}
	key, tmpl, err := newKeyAndTemplate(name, now, days)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	seen := map[string]bool{}
	for _, h := range hosts {
		switch {
		case seen[h]:
			continue
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		case validDNSName(h):
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		default:
			return fmt.Errorf("--host %q: neither an IP address nor a DNS name", h)
		}
		seen[h] = true
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter // a chain is valid only while its CA is
	}
	der, err := signCert(tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return err
	}
	// The check `kvs serve` makes at start, on what is about to be written.
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	material := bus.TLS{Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, CA: pool}
	if err := material.Validate(now); err != nil {
		return fmt.Errorf("cert node %s: %w", name, err)
	}
	if err := writeCertAndKey(dir, certPath, keyPath, der, key); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (node %q for %s, valid until %s) and %s\n",
		certPath, name, strings.Join(hostsOf(tmpl), ", "), tmpl.NotAfter.UTC().Format(time.DateOnly), keyPath)
	return nil
}

// newKeyAndTemplate returns a new P-256 key and the template of a
// certificate for name, valid from now (less clockSkew) for days.
func newKeyAndTemplate(name string, now time.Time, days int) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return key, &x509.Certificate{
		Subject:   pkix.Name{CommonName: name},
		NotBefore: now.Add(-clockSkew),
		NotAfter:  now.AddDate(0, 0, days),
	}, nil
}

// dnsNamePattern is a DNS subject alternative name: labels of letters,
// digits and '-', a '*' label first at most.
var dnsNamePattern = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// validDNSName reports whether h can be a DNS subject alternative name.
func validDNSName(h string) bool { return len(h) <= 253 && dnsNamePattern.MatchString(h) }

// hostsOf lists a certificate's names, DNS names first.
func hostsOf(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// refuseExisting returns an error naming the first of paths that exists.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// signCert signs tmpl with parent's key, giving it a random 128-bit
// serial number.
func signCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

// writeCertAndKey writes the key (0600), then the certificate (0644),
// each atomically, creating dir (0700) when missing.
func writeCertAndKey(dir, certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return fmt.Errorf("write %s: %w", keyPath, err)
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return fmt.Errorf("write %s: %w", certPath, err)
	}
	return os.Chmod(certPath, 0o644)
}

// loadCAPair reads dir's CA certificate and key (made by `kvs cert ca`, or
// any CA whose key is PEM in PKCS #8, SEC 1 or PKCS #1).
func loadCAPair(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err := readPEMFile("CA certificate", certPath, "CERTIFICATE")
	if err != nil {
		return nil, nil, fmt.Errorf("%w (make one with `kvs cert ca --dir %s`)", err, dir)
	}
	caCert, err := x509.ParseCertificate(pemBlock(certPEM, "CERTIFICATE").Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if !caCert.IsCA {
		return nil, nil, fmt.Errorf("CA certificate %s: not a CA certificate (no basic constraints CA:TRUE)", certPath)
	}
	keyPEM, err := readPEMFile("CA key", keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, nil, err
	}
	key, err := parsePrivateKey(pemBlock(keyPEM, "PRIVATE KEY").Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(caCert.PublicKey) {
		return nil, nil, fmt.Errorf("CA key %s is not the key of %s", keyPath, certPath)
	}
	return caCert, key, nil
}

// parsePrivateKey parses a DER private key in PKCS #8, SEC 1 (EC) or
// PKCS #1 (RSA).
func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("a %T cannot sign", k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS #8, SEC 1 or PKCS #1 private key")
}
