package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProcessClientTokens runs `kvs serve` with a tokens file and
// --protect-cluster-info: an anonymous PUT is refused, `kvs put
// --token-file` with a read-write token is accepted, a read-only token
// reads but may not write, /cluster wants a token, and /readyz (kvs
// health) still answers anyone.
func TestProcessClientTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	clearKVSEnv(t)
	dir := t.TempDir()
	const rw, ro = "process-rw-token-0123456789", "process-ro-token-0123456789"
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tokens := file("client-tokens", "# kvs client tokens\nrw:"+rw+"\nro:"+ro+"\n")
	rwFile, roFile := file("rw-token", rw+"\n"), file("ro-token", ro+"\n")

	ports := freePorts(t, 3)
	p := newProcNode(t, dir, "node1", procPorts{ports[0], ports[1], ports[2]}, nil,
		[]string{"--client-tokens-file", tokens, "--protect-cluster-info"})
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpLogTail(t, p.logPath, 40)
		}
	})
	p.start()
	waitReady(t, p, 60*time.Second) // /readyz needs no token

	code, body, err := httpDo(http.MethodPut, p.httpURL+"/kv/k", []byte("anonymous"))
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("anonymous PUT: %d %q %v, want 401", code, body, err)
	}

	cli := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := runCLI(t, "", append(args, "--url", p.httpURL)...)
		if code != wantCode {
			t.Fatalf("kvs %q: exit code %d, want %d; stdout %q stderr %q", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	if out, _ := cli(0, "put", "k", "v1", "--token-file", rwFile); !strings.HasPrefix(out, "version ") {
		t.Errorf("put with a read-write token: stdout %q", out)
	}
	if out, _ := cli(0, "get", "k", "--token-file", roFile); out != "v1" {
		t.Errorf("get with a read-only token: %q, want v1", out)
	}
	if _, errOut := cli(1, "put", "k", "v2", "--token-file", roFile); !strings.Contains(errOut, "403 Forbidden: read-only token: PUT needs a read-write token") {
		t.Errorf("put with a read-only token: stderr %q", errOut)
	}
	if _, errOut := cli(1, "get", "k"); !strings.Contains(errOut, "401 Unauthorized") {
		t.Errorf("get without a token: stderr %q", errOut)
	}
	if _, errOut := cli(1, "status"); !strings.Contains(errOut, "401 Unauthorized") {
		t.Errorf("status without a token: stderr %q", errOut)
	}
	if out, _ := cli(0, "status", "--token-file", roFile); !strings.Contains(out, "seen from node1 (ready)") {
		t.Errorf("status with a read-only token: %q", out)
	}
	if out, _ := cli(0, "get", "k", "--token", processSecret); out != "v1" {
		t.Errorf("get with the cluster secret: %q, want v1", out)
	}
	if out, _ := cli(0, "health"); out != "ready\n" {
		t.Errorf("health: %q", out)
	}

	req, _ := http.NewRequest(http.MethodGet, p.httpURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+processSecret)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`kvs_http_auth_failures_total{reason="missing",route="kv"} 2`,
		`kvs_http_auth_failures_total{reason="missing",route="cluster"} 1`,
		`kvs_http_auth_failures_total{reason="read_only",route="kv"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics (%d) lacks %q", resp.StatusCode, want)
		}
	}
}
