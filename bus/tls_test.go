package bus

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kvs-db/kvs/internal/testcert"
)

// withTLS gives each node its own certificate from ca, for 127.0.0.1 and
// localhost, and the secret.
func withTLS(t testing.TB, ca *testcert.CA) func(*Config) {
	return func(c *Config) {
		c.Secret = testSecret
		c.TLS = &TLS{Cert: ca.Issue(t, testcert.Leaf{Name: c.NodeID}).Cert, CA: ca.Pool()}
	}
}

func TestTLSClusterRoutesRequestsAndJetStream(t *testing.T) {
	ca := testcert.NewCA(t, "kvs test CA")
	tlsOn := withTLS(t, ca)
	buses := startCluster(t, 3, func(c *Config) {
		tlsOn(c)
		c.JetStreamDir = t.TempDir()
	})
	for _, b := range buses {
		echo(t, b)
	}
	for _, from := range buses {
		for _, to := range buses {
			if from != to {
				waitReachable(t, from, to)
			}
		}
	}
	for _, b := range buses {
		vz, err := b.Server().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !vz.TLSRequired || vz.TLSVerify || !vz.Cluster.TLSRequired || !vz.Cluster.TLSVerify {
			t.Errorf("%s: client port TLS required %v, verify %v; routes TLS required %v, verify %v; want true, false, true, true",
				b.NodeID(), vz.TLSRequired, vz.TLSVerify, vz.Cluster.TLSRequired, vz.Cluster.TLSVerify)
		}
	}

	// JetStream's meta group and a bucket's replicas talk over the routes.
	ctx := tctx(t, 2*waitTimeout)
	kv0, kv2 := mustKV(t, buses[0], "tls", 3), mustKV(t, buses[2], "tls", 3)
	rev, err := kv0.Create(ctx, "k", []byte("v1"))
	if err != nil {
		t.Fatalf("create over TLS routes: %v", err)
	}
	if _, err := kv2.Update(ctx, "k", []byte("v2"), rev); err != nil {
		t.Fatalf("update from another node: %v", err)
	}
	v, _, err := kv0.Get(ctx, "k")
	if err != nil || string(v) != "v2" {
		t.Fatalf("get: %q %v, want v2", v, err)
	}
	waitCurrent(t, kv0, "n1", "n2", "n3")
}

func TestTLSRouteFromOtherCARefused(t *testing.T) {
	ca, other := testcert.NewCA(t, "cluster CA"), testcert.NewCA(t, "other CA")
	rec := &recorder{level: slog.LevelDebug}
	cfg := testConfig(t, "secure")
	withTLS(t, ca)(&cfg)
	cfg.Logger = slog.New(rec)
	secure := start(t, cfg)
	echo(t, secure)

	// The intruder knows the secret and trusts the cluster's CA, so it
	// accepts the secure node's certificate; its own is signed by another
	// CA, which the secure node refuses.
	both := other.Pool()
	both.AddCert(ca.Cert)
	cfg = testConfig(t, "intruder")
	cfg.Secret = testSecret
	cfg.TLS = &TLS{Cert: other.Issue(t, testcert.Leaf{Name: "intruder"}).Cert, CA: both}
	cfg.Seeds = []string{secure.ClusterAddr()}
	intruder := start(t, cfg)

	waitFor(t, "the secure node fails the route's TLS handshake", func() bool {
		return rec.has(slog.LevelDebug, "TLS route handshake error")
	})
	// The refusal holds: no route forms while the intruder redials.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if secure.NumRoutes() != 0 || intruder.NumRoutes() != 0 {
			t.Fatalf("a route formed: secure %d, intruder %d", secure.NumRoutes(), intruder.NumRoutes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := intruder.Request(ctx, secure.Subjects().Node("secure", "echo"), nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("intruder's request to the secure node: %v, want unreachable", err)
	}

	// A node with a certificate of the cluster's CA joins.
	cfg = testConfig(t, "friend")
	withTLS(t, ca)(&cfg)
	cfg.Seeds = []string{secure.ClusterAddr()}
	friend := start(t, cfg)
	waitRoutes(t, friend, 1)
	waitReachable(t, friend, secure)
}

func TestTLSRouteFromPlaintextRefused(t *testing.T) {
	ca := testcert.NewCA(t, "cluster CA")
	cfg := testConfig(t, "secure")
	withTLS(t, ca)(&cfg)
	secure := start(t, cfg)

	cfg = testConfig(t, "plain")
	cfg.Secret = testSecret
	cfg.Seeds = []string{secure.ClusterAddr()}
	plain := start(t, cfg)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if secure.NumRoutes() != 0 {
			t.Fatalf("the TLS node accepted a plaintext route")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitRoutes(t, plain, 0)
}

func TestTLSClientPort(t *testing.T) {
	ca := testcert.NewCA(t, "cluster CA")
	buses := startCluster(t, 2, withTLS(t, ca))
	n1, n2 := buses[0], buses[1]
	echo(t, n2)
	waitReachable(t, n1, n2) // in-process connections speak plaintext

	if !strings.HasPrefix(n1.ClientURL(), "tls://") {
		t.Errorf("ClientURL %q, want tls://", n1.ClientURL())
	}
	u, err := url.Parse(n1.ClientURL())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("plaintext client refused", func(t *testing.T) {
		// A raw connection: nats.go would switch to TLS by itself.
		conn, err := net.DialTimeout("tcp", u.Host, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitTimeout))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, `"tls_required":true`) {
			t.Errorf("INFO %q does not require TLS", info)
		}
		if _, err := conn.Write([]byte(`CONNECT {"verbose":false,"user":"kvs","pass":"` + testSecret + "\"}\r\nPING\r\n")); err != nil {
			t.Fatal(err)
		}
		// The server takes the CONNECT for a bad TLS record and closes
		// the connection: no PONG, whatever else arrives first.
		for {
			line, err := r.ReadString('\n')
			if strings.HasPrefix(line, "PONG") {
				t.Fatal("plaintext client got PONG")
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("server kept the plaintext connection open")
				}
				break
			}
		}
	})

	t.Run("right CA and secret", func(t *testing.T) {
		nc, err := nats.Connect(n1.ClientURL(), nats.Secure(&tls.Config{RootCAs: ca.Pool()}),
			nats.UserInfo(AppUser, testSecret), nats.NoReconnect())
		if err != nil {
			t.Fatalf("TLS client: %v", err)
		}
		defer nc.Close()
		if !nc.TLSRequired() {
			t.Error("connection does not report TLS")
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		msg, err := nc.RequestWithContext(ctx, n1.Subjects().Node("n2", "echo"), []byte("x"))
		if err != nil || string(msg.Data) != "n2:x" {
			t.Fatalf("request across the TLS route: %v %v", msg, err)
		}
	})

	t.Run("right CA, no secret", func(t *testing.T) {
		nc, err := nats.Connect(n1.ClientURL(), nats.Secure(&tls.Config{RootCAs: ca.Pool()}), nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Fatal("TLS client without the secret connected")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("err = %v, want an authorization error", err)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		other := testcert.NewCA(t, "other CA")
		nc, err := nats.Connect(n1.ClientURL(), nats.Secure(&tls.Config{RootCAs: other.Pool()}),
			nats.UserInfo(AppUser, testSecret), nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Fatal("client trusting another CA connected")
		}
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Errorf("err = %v, want x509.UnknownAuthorityError", err)
		}
	})
}

func TestTLSValidate(t *testing.T) {
	ca, other := testcert.NewCA(t, "cluster CA"), testcert.NewCA(t, "other CA")
	good := ca.Issue(t, testcert.Leaf{Name: "n1"}).Cert
	mismatched := good
	mismatched.PrivateKey = ca.Issue(t, testcert.Leaf{Name: "n2"}).Cert.PrivateKey
	noLeaf := good
	noLeaf.Leaf = nil
	now := time.Now()

	tests := []struct {
		name string
		tls  TLS
		want string // in the error; "" for none
	}{
		{"good", TLS{Cert: good, CA: ca.Pool()}, ""},
		{"leaf parsed from DER", TLS{Cert: noLeaf, CA: ca.Pool()}, ""},
		{"no certificate", TLS{CA: ca.Pool()}, "no certificate"},
		{"no key", TLS{Cert: tls.Certificate{Certificate: good.Certificate}, CA: ca.Pool()}, "no private key"},
		{"no CA", TLS{Cert: good}, "no CA"},
		{"key of another certificate", TLS{Cert: mismatched, CA: ca.Pool()}, "does not belong to the certificate"},
		{"other CA", TLS{Cert: good, CA: other.Pool()}, "does not verify against the CA"},
		{"server only", TLS{Cert: ca.Issue(t, testcert.Leaf{Name: "s", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).Cert, CA: ca.Pool()},
			"not valid for client (clientAuth) authentication"},
		{"client only", TLS{Cert: ca.Issue(t, testcert.Leaf{Name: "c", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).Cert, CA: ca.Pool()},
			"not valid for server (serverAuth) authentication"},
		{"expired", TLS{Cert: ca.Issue(t, testcert.Leaf{Name: "old", NotAfter: now.Add(-time.Hour)}).Cert, CA: ca.Pool()}, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tls.Validate(now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrTLS with %q", err, tt.want)
			}
		})
	}

	// Config.Validate checks it too.
	cfg := testConfig(t, "n1")
	cfg.TLS = &TLS{Cert: good}
	if err := cfg.Validate(); !errors.Is(err, ErrTLS) {
		t.Errorf("Config.Validate with TLS lacking a CA: %v, want ErrTLS", err)
	}
}

func TestCheckAdvertiseName(t *testing.T) {
	ca := testcert.NewCA(t, "cluster CA")
	tl := &TLS{Cert: ca.Issue(t, testcert.Leaf{Name: "n1", Hosts: []string{"node1", "10.0.0.1"}}).Cert, CA: ca.Pool()}
	for _, tt := range []struct {
		advertise string
		warn      bool
	}{
		{"node1:6222", false},
		{"10.0.0.1:6222", false},
		{"node2:6222", true},
		{"10.0.0.2:6222", true},
	} {
		if got := checkAdvertiseName(tl, tt.advertise); (got != "") != tt.warn {
			t.Errorf("checkAdvertiseName(%s) = %q, want a warning: %v", tt.advertise, got, tt.warn)
		}
	}
	if got := checkAdvertiseName(nil, "node2:6222"); got != "" {
		t.Errorf("without TLS: %q", got)
	}
}

// SetCertificate replaces what the node presents on its client port, on
// the routes it accepts and on those it dials, for the handshakes that
// follow; routes keep working (a node that joins after the swap routes to
// both). A certificate the CA did not sign, a key that is not the
// certificate's, or a bus without TLS change nothing.
func TestTLSSetCertificate(t *testing.T) {
	ca := testcert.NewCA(t, "cluster CA")
	tlsOn := withTLS(t, ca)
	buses := startCluster(t, 2, tlsOn)
	n1 := buses[0]
	client := ca.Issue(t, testcert.Leaf{Name: "client"})

	clientPortLeaf := func() *x509.Certificate {
		t.Helper()
		nc, err := nats.Connect(n1.ClientURL(), nats.Secure(&tls.Config{RootCAs: ca.Pool()}),
			nats.UserInfo(AppUser, testSecret), nats.NoReconnect())
		if err != nil {
			t.Fatalf("TLS client: %v", err)
		}
		defer nc.Close()
		cs, err := nc.TLSConnectionState()
		if err != nil {
			t.Fatal(err)
		}
		return cs.PeerCertificates[0]
	}
	routePortLeaf := func() *x509.Certificate {
		t.Helper()
		conn, err := net.DialTimeout("tcp", n1.ClusterAddr(), waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(waitTimeout))
		// Routes start with the TLS handshake (INFO comes after).
		tc := tls.Client(conn, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{client.Cert}, MinVersion: tls.VersionTLS12})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("route handshake: %v", err)
		}
		return tc.ConnectionState().PeerCertificates[0]
	}
	dialLeaf := func() *x509.Certificate {
		t.Helper()
		c, _ := n1.cert.forClient(nil)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	check := func(when string, want *x509.Certificate) {
		t.Helper()
		for what, got := range map[string]*x509.Certificate{
			"client port": clientPortLeaf(), "route port": routePortLeaf(), "routes dialled": dialLeaf()} {
			if got.SerialNumber.Cmp(want.SerialNumber) != 0 {
				t.Errorf("%s, %s: certificate %v, want %v", when, what, got.SerialNumber, want.SerialNumber)
			}
		}
	}
	first, err := x509.ParseCertificate(n1.cfg.TLS.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	check("at start", first)

	renewed := ca.Issue(t, testcert.Leaf{Name: "n1"})
	if err := n1.SetCertificate(renewed.Cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	renewedLeaf, _ := x509.ParseCertificate(renewed.Cert.Certificate[0])
	check("after SetCertificate", renewedLeaf)

	other := testcert.NewCA(t, "other CA").Issue(t, testcert.Leaf{Name: "n1"})
	mismatched := renewed.Cert
	mismatched.PrivateKey = ca.Issue(t, testcert.Leaf{Name: "n1"}).Cert.PrivateKey
	for what, cert := range map[string]tls.Certificate{"another CA's": other.Cert, "a key not its own": mismatched} {
		if err := n1.SetCertificate(cert); !errors.Is(err, ErrTLS) {
			t.Errorf("SetCertificate with %s: %v, want ErrTLS", what, err)
		}
	}
	check("after refused certificates", renewedLeaf)

	// A node that joins now routes to both over the new certificates.
	n3cfg := testConfig(t, "n3")
	tlsOn(&n3cfg)
	n3cfg.Seeds = []string{n1.ClusterAddr()}
	n3, err := Start(n3cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n3.Close() })
	waitRoutes(t, n3, 2)
	echo(t, buses[1])
	waitReachable(t, n3, buses[1])

	plain := startCluster(t, 1, nil)[0]
	if err := plain.SetCertificate(renewed.Cert); !errors.Is(err, ErrTLS) {
		t.Errorf("SetCertificate without TLS: %v, want ErrTLS", err)
	}
}
