package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	tokens := writeTestFile(t, dir, "client-tokens", "# kvs client tokens\nrw:"+rw+"\nro:"+ro+"\n")
	rwFile, roFile := writeTestFile(t, dir, "rw-token", rw+"\n"), writeTestFile(t, dir, "ro-token", ro+"\n")

	p, _ := startNode1(t, dir, "--client-tokens-file", tokens, "--protect-cluster-info")
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

// writeTestFile writes content to dir/name (mode 0600) and returns its
// path.
func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProcessClientTokensReload: a SIGHUP makes `kvs serve` read its
// tokens file again. Once the file holds other tokens, the revoked one is
// refused and the new ones hold their grants; a file that breaks the rules
// changes nothing, and the node says why in its log without the token.
// The process lives through both signals.
func TestProcessClientTokensReload(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds the binary and runs a node")
	}
	clearKVSEnv(t)
	dir := t.TempDir()
	const revoked, rw, ro, bad = "reload-old-token-0123456789", "reload-rw-token-0123456789", "reload-ro-token-0123456789", "shorty"
	tokens := writeTestFile(t, dir, "client-tokens", "rw:"+revoked+"\n")
	p, _ := startNode1(t, dir, "--client-tokens-file", tokens)
	waitReady(t, p, 60*time.Second)

	status := func(method, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, p.httpURL+"/kv/k", strings.NewReader("v"))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatalf("%s with a token: %v", method, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(http.MethodPut, revoked); got != http.StatusNoContent {
		t.Fatalf("PUT with the first token: %d, want 204", got)
	}

	writeTestFile(t, dir, "client-tokens", "rw:"+rw+"\nro:"+ro+"\n")
	p.signal(syscall.SIGHUP)
	waitProcUntil(t, p, 20*time.Second, "the new read-write token is accepted", func() bool { return status(http.MethodPut, rw) == http.StatusNoContent })
	for _, c := range []struct {
		method, token string
		want          int
	}{
		{http.MethodPut, revoked, http.StatusUnauthorized},
		{http.MethodGet, revoked, http.StatusUnauthorized},
		{http.MethodGet, ro, http.StatusOK},
		{http.MethodPut, ro, http.StatusForbidden},
		{http.MethodPut, processSecret, http.StatusNoContent},
	} {
		if got := status(c.method, c.token); got != c.want {
			t.Errorf("%s after the reload with %.12s...: %d, want %d", c.method, c.token, got, c.want)
		}
	}

	writeTestFile(t, dir, "client-tokens", "rw:"+bad+"\n")
	p.signal(syscall.SIGHUP)
	waitProcUntil(t, p, 20*time.Second, "the refused reload is logged", func() bool {
		return strings.Contains(p.logText(), "client tokens not reloaded")
	})
	if log := p.logText(); !strings.Contains(log, "client-tokens:1") || strings.Contains(log, bad) {
		t.Errorf("the refused reload's log should name the file and line, never the token:\n%s", log)
	}
	if got := status(http.MethodPut, rw); got != http.StatusNoContent {
		t.Errorf("PUT with the token in force after a refused reload: %d, want 204", got)
	}
	if got := status(http.MethodPut, bad); got != http.StatusUnauthorized {
		t.Errorf("PUT with the refused file's token: %d, want 401", got)
	}
}
