package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvs-db/kvs/internal/testcert"
)

// tlsFiles writes a CA and a node certificate for 127.0.0.1 and localhost
// signed by it to a new directory.
func tlsFiles(t *testing.T) (*testcert.CA, testcert.Files) {
	t.Helper()
	ca := testcert.NewCA(t, "kvs test CA")
	return ca, testcert.WriteFiles(t, t.TempDir(), "node", ca, ca.Issue(t, testcert.Leaf{Name: "node"}))
}

func TestServeTLSFlags(t *testing.T) {
	clearKVSEnv(t)
	got := stubServe(t)

	ca, good := tlsFiles(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	other := testcert.NewCA(t, "other CA")
	otherKey := write("other-key.pem", ca.Issue(t, testcert.Leaf{Name: "other"}).KeyPEM)
	otherCA := write("other-ca.pem", other.PEM())
	so := ca.Issue(t, testcert.Leaf{Name: "s", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	serverOnly, serverOnlyKey := write("server-only.pem", so.CertPEM), write("server-only-key.pem", so.KeyPEM)
	notPEM := write("notes.txt", []byte("not a certificate\n"))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr []string // all in stderr; none: success
	}{
		{name: "all three", args: []string{"--tls-cert", good.Cert, "--tls-key", good.Key, "--tls-ca", good.CA}},
		{name: "from the environment", env: map[string]string{"KVS_TLS_CERT": good.Cert, "KVS_TLS_KEY": good.Key, "KVS_TLS_CA": good.CA}},
		{name: "cert without key", args: []string{"--tls-cert", good.Cert, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert " + good.Cert + " has no --tls-key"}},
		{name: "key without cert", args: []string{"--tls-key", good.Key, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert is not set"}},
		{name: "no CA", args: []string{"--tls-cert", good.Cert, "--tls-key", good.Key},
			wantErr: []string{"has no --tls-ca", "mutual TLS"}},
		{name: "unreadable cert", args: []string{"--tls-cert", missing, "--tls-key", good.Key, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert: open " + missing}},
		{name: "unreadable CA", args: []string{"--tls-cert", good.Cert, "--tls-key", good.Key, "--tls-ca", missing},
			wantErr: []string{"--tls-ca: open " + missing}},
		{name: "key not PEM", args: []string{"--tls-cert", good.Cert, "--tls-key", notPEM, "--tls-ca", good.CA},
			wantErr: []string{"--tls-key " + notPEM + ": no PEM PRIVATE KEY block"}},
		{name: "cert is a key", args: []string{"--tls-cert", good.Key, "--tls-key", good.Key, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert " + good.Key + ": no PEM CERTIFICATE block"}},
		{name: "key of another certificate", args: []string{"--tls-cert", good.Cert, "--tls-key", otherKey, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert " + good.Cert + " with --tls-key " + otherKey, "private key does not match public key"}},
		{name: "CA that did not sign it", args: []string{"--tls-cert", good.Cert, "--tls-key", good.Key, "--tls-ca", otherCA},
			wantErr: []string{"--tls-cert " + good.Cert + " with --tls-ca " + otherCA, "does not verify against the CA"}},
		{name: "server auth only", args: []string{"--tls-cert", serverOnly, "--tls-key", serverOnlyKey, "--tls-ca", good.CA},
			wantErr: []string{"--tls-cert " + serverOnly, "not valid for client (clientAuth) authentication"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			*got = serveOptions{}
			out, errOut, code := runCLI(t, "", append([]string{"serve"}, tt.args...)...)
			if len(tt.wantErr) == 0 {
				if code != 0 {
					t.Fatalf("exit code %d; stdout %q stderr %q", code, out, errOut)
				}
				if got.tls == nil || got.tls.bus() == nil || got.tls.certFile != good.Cert {
					t.Fatalf("TLS not loaded: %+v", got.tls)
				}
				return
			}
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr %q", code, errOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

// newTLSFakeServer is newFakeServer over HTTPS with a certificate of ca
// for hosts (nil: 127.0.0.1 and localhost).
func newTLSFakeServer(t *testing.T, ca *testcert.CA, hosts ...string) *fakeServer {
	f := &fakeServer{data: map[string]string{}, ready: true}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, testcert.Leaf{Name: "node", Hosts: hosts}).Cert}}
	// The failed handshakes are the point of several cases: keep them out
	// of the test output.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func TestClientCA(t *testing.T) {
	clearKVSEnv(t)
	ca, files := tlsFiles(t)
	f := newTLSFakeServer(t, ca)
	u := f.srv.URL // https://127.0.0.1:port
	plain := newFakeServer(t)
	misnamed := newTLSFakeServer(t, ca, "kvs.invalid")
	other := testcert.NewCA(t, "other CA")
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, other.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantOut  string
		// wantOutHas is in stdout, unless empty.
		wantOutHas string
		wantErr    []string
	}{
		{name: "put with --ca", args: []string{"put", "k", "v1", "--url", u, "--ca", files.CA}, wantOut: "version 12.34\n"},
		{name: "get with KVS_CA", env: map[string]string{"KVS_CA": files.CA}, args: []string{"get", "k", "--url", u}, wantOut: "v1"},
		{name: "delete", args: []string{"delete", "k", "--url", u, "--ca", files.CA}, wantOut: "version 13.34\n"},
		{name: "status", args: []string{"status", "--url", u, "--ca", files.CA, "--json"}},
		{name: "health", args: []string{"health", "--url", u, "--ca", files.CA}, wantOut: "ready\n"},
		{name: "health from KVS_HTTP and KVS_TLS_*", env: map[string]string{
			"KVS_HTTP": strings.TrimPrefix(u, "https://"), "KVS_TLS_CERT": files.Cert, "KVS_TLS_CA": files.CA,
		}, args: []string{"health"}, wantOut: "ready\n"},
		{name: "bench", args: []string{"bench", "--targets", u, "--ca", files.CA, "--duration", "200ms", "--concurrency", "1", "--keys", "3"}},
		{name: "no CA", args: []string{"get", "k", "--url", u}, wantCode: 1,
			wantErr: []string{"x509: certificate signed by unknown authority", "give the CA that signed the node's certificate with --ca"}},
		{name: "other CA", args: []string{"get", "k", "--url", u, "--ca", otherCA}, wantCode: 1,
			wantErr: []string{"unknown authority", "no CA in --ca " + otherCA}},
		{name: "name not in the certificate", args: []string{"get", "k", "--url", misnamed.srv.URL, "--ca", files.CA}, wantCode: 1,
			wantErr: []string{"x509: cannot validate certificate for 127.0.0.1", "use a host name or address the certificate names"}},
		{name: "http to the TLS port", args: []string{"get", "k", "--url", strings.Replace(u, "https://", "http://", 1)}, wantCode: 1,
			wantErr: []string{"400 Bad Request", "HTTP request to an HTTPS server"}},
		{name: "https to a plain port", args: []string{"get", "k", "--url", strings.Replace(plain.srv.URL, "http://", "https://", 1), "--ca", files.CA}, wantCode: 1,
			wantErr: []string{"does the node serve plain HTTP"}},
		{name: "missing CA file", args: []string{"get", "k", "--url", u, "--ca", files.CA + ".missing"}, wantCode: 2,
			wantErr: []string{"--ca: open " + files.CA + ".missing"}},
		{name: "CA file not PEM", args: []string{"get", "k", "--url", u, "--ca", files.Key}, wantCode: 2,
			wantErr: []string{"--ca " + files.Key + ": no PEM CERTIFICATE block"}},
		{name: "bench without CA", args: []string{"bench", "--targets", u, "--duration", "100ms", "--concurrency", "1"},
			wantOutHas: "x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, code := runCLI(t, "", tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout %q, want %q", out, tt.wantOut)
			}
			if !strings.Contains(out, tt.wantOutHas) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOutHas)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
		})
	}
}

func TestDevTLSArgs(t *testing.T) {
	_, files := tlsFiles(t)
	st, err := loadServeTLS(files.Cert, files.Key, files.CA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{nodes: 2, dataDir: "/d", baseHTTP: 8081, baseNATS: 4222, baseCluster: 6222, cluster: "kvs", sync: "always", logLevel: "info", tls: st}
	args := strings.Join(o.serveArgs(1), " ")
	want := "--tls-cert " + files.Cert + " --tls-key " + files.Key + " --tls-ca " + files.CA
	if !strings.Contains(args, want) {
		t.Errorf("serve args %q lack %q", args, want)
	}
	o.tls = nil
	if args := strings.Join(o.serveArgs(1), " "); strings.Contains(args, "--tls") {
		t.Errorf("plaintext dev passes TLS flags: %q", args)
	}
}
