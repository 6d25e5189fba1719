package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCheckSecret(t *testing.T) {
	for _, s := range []string{"", "0123456789abcdef", "pass phrase with spaces", "ünïcödé-sëcrët", strings.Repeat("x", maxSecretBytes), "$2c$10$not-a-bcrypt-prefix"} {
		if err := checkSecret(s); err != nil {
			t.Errorf("checkSecret(%q) = %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"short":                            "5 bytes; it must be at least 16",
		strings.Repeat("x", 1025):          "at most 1024",
		"0123456789abcdef\xff":             "UTF-8",
		"0123456789\nabcdef":               "control character",
		"0123456789\tabcdef":               "control character",
		" 0123456789abcdef":                "whitespace",
		"$2a$10$N9qo8uLOickgx2ZMRZoMye":    "bcrypt hash",
		"$2x$ a long enough odd secret":    `begins with "$2x$"`,
		"$2b$-a-long-enough-odd-secret-xx": "bcrypt",
	} {
		if err := checkSecret(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkSecret(%q) = %v, want an error with %q", s, err, want)
		}
	}
}

func TestAdminSecretFile(t *testing.T) {
	clearKVSEnv(t)
	f := newFakeServer(t)
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("admin-secret-0123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lastAuth := func() string {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.auth[len(f.auth)-1]
	}

	out, errOut, code := runCLI(t, "", "abort", "--url", f.srv.URL, "--cluster-secret-file", path)
	if code != 0 || out != "change abandoned; epoch 7\n" {
		t.Fatalf("abort --cluster-secret-file: code %d stdout %q stderr %q", code, out, errOut)
	}
	if got := lastAuth(); got != "Bearer admin-secret-0123456" {
		t.Errorf("Authorization %q, want the file's secret without its newline", got)
	}
	t.Setenv("KVS_CLUSTER_SECRET_FILE", path)
	if _, errOut, code := runCLI(t, "", "abort", "--url", f.srv.URL); code != 0 || lastAuth() != "Bearer admin-secret-0123456" {
		t.Errorf("abort with KVS_CLUSTER_SECRET_FILE: code %d stderr %q Authorization %q", code, errOut, lastAuth())
	}
	os.Unsetenv("KVS_CLUSTER_SECRET_FILE")
	// A client sends what it is given: the node judges the secret.
	if _, errOut, code := runCLI(t, "", "abort", "--url", f.srv.URL, "--cluster-secret", "short"); code != 0 || lastAuth() != "Bearer short" {
		t.Errorf("abort --cluster-secret short: code %d stderr %q Authorization %q", code, errOut, lastAuth())
	}

	f.mu.Lock()
	before := len(f.requests)
	f.mu.Unlock()
	for _, args := range [][]string{
		{"decommission"}, {"removenode", "node3"}, {"abort"}, {"repair"},
	} {
		args = append(args, "--url", f.srv.URL, "--cluster-secret", "x", "--cluster-secret-file", path)
		if _, errOut, code := runCLI(t, "", args...); code != 2 || !strings.Contains(errOut, "give one") {
			t.Errorf("kvs %q: code %d stderr %q, want 2 and both flags refused", args, code, errOut)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != before {
		t.Errorf("requests sent with both secret flags: %q", f.requests[before:])
	}
}

func TestDevSecret(t *testing.T) {
	clearKVSEnv(t)
	bcrypt := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(bcrypt, []byte("$2a$10$abcdefghijklmnopqrstuv\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// --nodes 0 would also be refused: a dev that skipped the secret check
	// fails with another message instead of starting nodes.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-secret", "too-short"}, "at least 16"},
		{[]string{"--cluster-secret-file", bcrypt}, "bcrypt"},
		{[]string{"--cluster-secret", "0123456789abcdef", "--cluster-secret-file", bcrypt}, "give one"},
	} {
		args := append([]string{"dev", "--nodes", "0"}, tt.args...)
		if _, errOut, code := runCLI(t, "", args...); code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("kvs %q: code %d stderr %q, want 2 and %q", args, code, errOut, tt.want)
		}
	}
}

func TestDevEnv(t *testing.T) {
	base := []string{"PATH=/bin", "KVS_CLUSTER_SECRET=old", "KVS_CLUSTER_SECRET_FILE=/run/secret", "KVS_LOG_LEVEL=debug"}
	if got, want := devEnv(base, "new-secret-0123456"), []string{"PATH=/bin", "KVS_LOG_LEVEL=debug", "KVS_CLUSTER_SECRET=new-secret-0123456"}; !slices.Equal(got, want) {
		t.Errorf("devEnv with a secret = %q, want %q", got, want)
	}
	if got, want := devEnv(base, ""), []string{"PATH=/bin", "KVS_LOG_LEVEL=debug"}; !slices.Equal(got, want) {
		t.Errorf("devEnv without a secret = %q, want %q", got, want)
	}
}
