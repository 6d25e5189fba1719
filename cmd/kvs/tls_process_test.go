package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
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
