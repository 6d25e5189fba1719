package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvs-db/kvs/internal/testcert"
)

// TestProcessTLS runs three `kvs serve` processes with a secret and TLS,
// each with its own certificate from one CA: they find each other over
// mutual-TLS routes and become ready, a write through node1 that waits for
// all three replicas is acknowledged and is in each node's own replica,
// `kvs get --ca` reads it from every node, a client without the CA is
// refused with a hint, and plain HTTP to the HTTPS port gets 400.
func TestProcessTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs three nodes")
	}
	clearKVSEnv(t)
	dir := t.TempDir()
	ca := testcert.NewCA(t, "kvs process test CA")
	ports := freePorts(t, 9)
	var nodes []*procNode
	for i := range 3 {
		id := "node" + strconv.Itoa(i+1)
		f := testcert.WriteFiles(t, dir, id, ca, ca.Issue(t, testcert.Leaf{Name: id}))
		var seeds []int
		for j := range 3 {
			if j != i {
				seeds = append(seeds, ports[3*j+2])
			}
		}
		p := newProcNode(t, dir, id, procPorts{ports[3*i], ports[3*i+1], ports[3*i+2]}, seeds,
			[]string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA})
		p.httpURL = strings.Replace(p.httpURL, "http://", "https://", 1)
		nodes = append(nodes, p)
	}
	caFile := testcert.WriteFiles(t, dir, "client", ca, ca.Issue(t, testcert.Leaf{Name: "client"})).CA
	t.Cleanup(func() {
		for _, p := range nodes {
			p.kill()
		}
		if t.Failed() {
			for _, p := range nodes {
				dumpLogTail(t, p.logPath, 60)
			}
		}
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	for _, p := range nodes {
		p.start()
	}
	for _, p := range nodes {
		waitReadyWith(t, client, p, 60*time.Second)
	}

	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("kvs %q: exit code %d; stdout %q stderr %q", args, code, out, errOut)
		}
		return out
	}
	// W=3: acknowledged once every replica has it, over the TLS routes.
	if out := cli("put", "greeting", "hello over TLS", "--w", "3", "--url", nodes[0].httpURL, "--ca", caFile); !strings.HasPrefix(out, "version ") {
		t.Errorf("put: %q", out)
	}
	for _, p := range nodes {
		req, err := http.NewRequest(http.MethodGet, p.httpURL+"/internal/kv?key="+url.QueryEscape("greeting"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+processSecret)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s /internal/kv: %v", p.id, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "hello over TLS" {
			t.Errorf("%s's own replica: %d %q, want the value", p.id, resp.StatusCode, body)
		}
		if out := cli("get", "greeting", "--r", "3", "--url", p.httpURL, "--ca", caFile); out != "hello over TLS" {
			t.Errorf("get through %s: %q", p.id, out)
		}
	}
	if out := cli("status", "--url", nodes[2].httpURL, "--ca", caFile); !strings.Contains(out, "seen from node3 (ready)") ||
		!strings.Contains(out, "node1") || !strings.Contains(out, "node2") {
		t.Errorf("status through node3: %q", out)
	}

	// Without the CA: refused, and told why.
	_, errOut, code := runCLI(t, "", "get", "greeting", "--url", nodes[1].httpURL)
	if code != 1 || !strings.Contains(errOut, "certificate signed by unknown authority") || !strings.Contains(errOut, "--ca") {
		t.Errorf("get without --ca: exit %d, stderr %q", code, errOut)
	}
	// Plain HTTP to the HTTPS port.
	code, body, err := httpDo(http.MethodGet, strings.Replace(nodes[1].httpURL, "https://", "http://", 1)+"/kv/greeting", nil)
	if err != nil || code != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain HTTP to the HTTPS port: %d %q %v, want 400", code, body, err)
	}
	// Each node said it serves TLS.
	for _, p := range nodes {
		log, err := os.ReadFile(p.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "tls=true") {
			t.Errorf("%s's log never says tls=true", p.id)
		}
	}
}

// TestProcessTLSReload: a SIGHUP makes `kvs serve` present the
// certificate now in its --tls-cert and --tls-key files on HTTPS and on the
// NATS client port, without a restart, and keep serving requests. A
// certificate from another CA (with that CA in the --tls-ca file too: the
// CA is read only at start) changes nothing, and the node says why.
func TestProcessTLSReload(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	clearKVSEnv(t)
	dir := t.TempDir()
	ca := testcert.NewCA(t, "kvs reload CA")
	f := testcert.WriteFiles(t, dir, "node1", ca, ca.Issue(t, testcert.Leaf{Name: "node1"}))
	p, ports := startNode1(t, dir, "--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA)
	p.httpURL = strings.Replace(p.httpURL, "http://", "https://", 1)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	waitReadyWith(t, client, p, 60*time.Second)

	// presented returns the serial of the certificate a handshake on the
	// HTTPS port and on the NATS client port (which sends INFO first)
	// shows.
	presented := func(port int, natsInfoFirst bool) string {
		t.Helper()
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if natsInfoFirst {
			if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake on port %d: %v", port, err)
		}
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	serial := func(is testcert.Issued) string {
		leaf, err := x509.ParseCertificate(is.Cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	put := func(v string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, p.httpURL+"/kv/k", strings.NewReader(v))
		req.Header.Set("Authorization", "Bearer "+processSecret)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("PUT over HTTPS: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT over HTTPS: %d", resp.StatusCode)
		}
	}
	put("before")

	renewed := ca.Issue(t, testcert.Leaf{Name: "node1"})
	testcert.WriteFiles(t, dir, "node1", ca, renewed)
	p.signal(syscall.SIGHUP)
	waitProcUntil(t, p, 20*time.Second, "HTTPS presents the renewed certificate", func() bool {
		return presented(ports[0], false) == serial(renewed)
	})
	if got := presented(ports[1], true); got != serial(renewed) {
		t.Errorf("NATS client port after the reload: certificate %s, want %s", got, serial(renewed))
	}
	put("after")
	if log := p.logText(); !strings.Contains(log, `msg="TLS certificate reloaded"`) {
		t.Errorf("no log line for the reload")
	}

	other := testcert.NewCA(t, "another CA")
	testcert.WriteFiles(t, dir, "node1", other, other.Issue(t, testcert.Leaf{Name: "node1"}))
	p.signal(syscall.SIGHUP)
	waitProcUntil(t, p, 20*time.Second, "the refused reload is logged", func() bool {
		return strings.Contains(p.logText(), "TLS certificate not reloaded")
	})
	for port, natsFirst := range map[int]bool{ports[0]: false, ports[1]: true} {
		if got := presented(port, natsFirst); got != serial(renewed) {
			t.Errorf("port %d after a refused reload: certificate %s, want %s (the one in force)", port, got, serial(renewed))
		}
	}
	put("after a refused reload")
}
