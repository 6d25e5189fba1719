package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCertCommands: `kvs cert ca` and `kvs cert node` write what `kvs
// serve` accepts (loadServeTLS, its check at start): a certificate for
// server and client authentication naming the node, localhost, 127.0.0.1
// and every --host, signed by the CA, with keys of mode 0600; two node
// certificates complete a mutual TLS handshake, as routes do. The CA is
// never replaced and a node certificate only with --force (a new key and
// serial). Bad names, hosts and days, and a missing CA, are refused and
// write nothing.
func TestCertCommands(t *testing.T) {
	clearKVSEnv(t)
	dir := filepath.Join(t.TempDir(), "certs")
	cli := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := runCLI(t, "", append([]string{"cert"}, args...)...)
		if code != wantCode {
			t.Fatalf("kvs cert %q: exit code %d, want %d; stdout %q stderr %q", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	path := func(name string) string { return filepath.Join(dir, name) }

	cli(0, "ca", "--dir", dir)
	cli(0, "node", "node1", "--dir", dir, "--host", "db1.example.com", "--host", "10.0.0.5")
	cli(0, "node", "node2", "--dir", dir)
	for _, n := range []string{"node1", "node2"} {
		if _, err := loadServeTLS(path(n+".pem"), path(n+"-key.pem"), path("ca.pem"), time.Now()); err != nil {
			t.Errorf("kvs serve would refuse %s's files: %v", n, err)
		}
	}
	for _, key := range []string{"ca-key.pem", "node1-key.pem"} {
		if fi, err := os.Stat(path(key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", key, err, fi.Mode().Perm())
		}
	}
	st, err := loadServeTLS(path("node1.pem"), path("node1-key.pem"), path("ca.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(st.material.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := hostsOf(leaf); !slices.Equal(got, []string{"node1", "localhost", "db1.example.com", "127.0.0.1", "10.0.0.5"}) {
		t.Errorf("node1 names %q", got)
	}
	if leaf.Subject.CommonName != "node1" || !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("node1: subject %v, extended key usages %v", leaf.Subject, leaf.ExtKeyUsage)
	}

	// node2 dials node1 by a --host name; each checks the other against
	// the CA, as on a route.
	n2, err := loadServeTLS(path("node2.pem"), path("node2-key.pem"), path("ca.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- tls.Server(a, &tls.Config{Certificates: []tls.Certificate{st.material.Cert},
			ClientCAs: st.material.CA, ClientAuth: tls.RequireAndVerifyClientCert}).Handshake()
	}()
	cerr := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{n2.material.Cert},
		RootCAs: n2.material.CA, ServerName: "db1.example.com"}).Handshake()
	b.Close()
	if serr := <-srvErr; cerr != nil || serr != nil {
		t.Errorf("mutual TLS between node1 and node2: client %v, server %v", cerr, serr)
	}

	caBefore, _ := os.ReadFile(path("ca.pem"))
	if _, errOut := cli(1, "ca", "--dir", dir); !strings.Contains(errOut, "ca.pem exists") {
		t.Errorf("a second CA: %q", errOut)
	}
	if caAfter, _ := os.ReadFile(path("ca.pem")); string(caAfter) != string(caBefore) {
		t.Error("the CA was replaced")
	}
	if _, errOut := cli(1, "node", "node1", "--dir", dir); !strings.Contains(errOut, "give --force") {
		t.Errorf("node1 again without --force: %q", errOut)
	}
	cli(0, "node", "node1", "--dir", dir, "--force")
	renewed, err := loadServeTLS(path("node1.pem"), path("node1-key.pem"), path("ca.pem"), time.Now())
	if err != nil {
		t.Fatalf("renewed node1: %v", err)
	}
	rl, err := x509.ParseCertificate(renewed.material.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if rl.SerialNumber.Cmp(leaf.SerialNumber) == 0 || rl.PublicKey.(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Error("--force kept the serial or the key")
	}

	before, _ := os.ReadDir(dir)
	for _, c := range []struct {
		code int
		args []string
		want string
	}{
		{2, []string{"node", "../x", "--dir", dir}, `name "../x"`},
		{2, []string{"node", "ca", "--dir", dir}, `name "ca"`},
		{2, []string{"node", "--dir", dir}, "one NAME"},
		{2, []string{"node", "n3", "--dir", dir, "--days", "0"}, "--days 0"},
		{1, []string{"node", "n3", "--dir", dir, "--host", "bad host"}, `--host "bad host"`},
		{1, []string{"node", "n3", "--dir", filepath.Join(dir, "none")}, "kvs cert ca --dir"},
	} {
		if _, errOut := cli(c.code, c.args...); !strings.Contains(errOut, c.want) {
			t.Errorf("kvs cert %q: stderr %q, want %q", c.args, errOut, c.want)
		}
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("refused commands wrote files: %d entries, then %d", len(before), len(after))
	}
}
