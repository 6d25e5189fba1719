package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/gateway"
)

// The client token flags of serve: the file's lines become the gateway's
// tokens, and every mistake in it is refused with the file and line, and
// without the token.
func TestServeClientTokenFlags(t *testing.T) {
	got := stubServe(t)

	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const (
		secret = "cluster-secret-0123456789"
		rw1    = "rw-token-0123456789"
		rw2    = "aGVsbG8gd29ybGQgaGVsbG8="
		ro1    = "ro-token-0123456789"
		short  = "short-tok" // 9 bytes
	)
	good := file("good", "# tokens of the kvs client API\n\nrw:"+rw1+"\n  ro:"+ro1+"  \r\n# rw:commented-out-0123456789\nrw:"+rw2+"\n")
	withSecret := []string{"--cluster-secret", secret}

	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantCode  int
		wantErr   string // in stderr
		want      clientAuthOptions
		wantNoTok string // a token that must not show in stderr
	}{
		{name: "none", args: withSecret},
		{name: "file", args: append([]string{"--client-tokens-file", good}, withSecret...),
			want: clientAuthOptions{tokensFile: good, readWrite: []string{rw1, rw2}, readOnly: []string{ro1}}},
		{name: "env and protect", env: map[string]string{"KVS_CLIENT_TOKENS_FILE": good, "KVS_PROTECT_CLUSTER_INFO": "true", "KVS_CLUSTER_SECRET": secret},
			want: clientAuthOptions{tokensFile: good, readWrite: []string{rw1, rw2}, readOnly: []string{ro1}, protectInfo: true}},
		{name: "protect with the secret only", args: append([]string{"--protect-cluster-info"}, withSecret...),
			want: clientAuthOptions{protectInfo: true}},

		{name: "no secret", args: []string{"--client-tokens-file", good}, wantCode: 2, wantErr: "--client-tokens-file needs a cluster secret"},
		{name: "protect without secret", args: []string{"--protect-cluster-info"}, wantCode: 2, wantErr: "--protect-cluster-info needs a cluster secret"},
		{name: "missing file", args: append([]string{"--client-tokens-file", filepath.Join(dir, "nope")}, withSecret...), wantCode: 2, wantErr: "no such file"},
		{name: "no tokens", args: append([]string{"--client-tokens-file", file("empty", "# nothing yet\n\n")}, withSecret...), wantCode: 2,
			wantErr: "empty: no tokens"},
		{name: "bad line", args: append([]string{"--client-tokens-file", file("bad", "rw:"+rw1+"\n\n"+ro1+"\n")}, withSecret...), wantCode: 2,
			wantErr: filepath.Join(dir, "bad") + ":3: want rw:TOKEN or ro:TOKEN", wantNoTok: ro1},
		{name: "unknown kind", args: append([]string{"--client-tokens-file", file("kind", "admin:"+rw1+"\n")}, withSecret...), wantCode: 2,
			wantErr: "kind:1: want rw:TOKEN or ro:TOKEN", wantNoTok: rw1},
		{name: "short token", args: append([]string{"--client-tokens-file", file("short", "# short\nro:"+short+"\n")}, withSecret...), wantCode: 2,
			wantErr: filepath.Join(dir, "short") + ":2: the token is 9 bytes; it must be at least 16", wantNoTok: short},
		{name: "empty token", args: append([]string{"--client-tokens-file", file("emptytok", "rw:\n")}, withSecret...), wantCode: 2,
			wantErr: "emptytok:1: the token is 0 bytes"},
		{name: "space in token", args: append([]string{"--client-tokens-file", file("space", "rw:"+rw1+" # trailing comment\n")}, withSecret...), wantCode: 2,
			wantErr: "space:1: the token has a character (byte 20)", wantNoTok: rw1},
		{name: "token twice", args: append([]string{"--client-tokens-file", file("twice", "rw:"+rw1+"\nro:"+rw1+"\n")}, withSecret...), wantCode: 2,
			wantErr: "twice:2: the same token as line 1", wantNoTok: rw1},
		{name: "token is the secret", args: append([]string{"--client-tokens-file", file("secret", "rw:"+secret+"\n")}, withSecret...), wantCode: 2,
			wantErr: "secret:1: this token is the cluster secret", wantNoTok: secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearKVSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			*got = serveOptions{}
			_, stderr, code := runCLI(t, "", append([]string{"serve"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr, tt.wantErr)
			}
			if tt.wantNoTok != "" && strings.Contains(stderr, tt.wantNoTok) {
				t.Errorf("stderr %q shows the token", stderr)
			}
			if code != 0 {
				return
			}
			a := got.clientAuth
			if a.tokensFile != tt.want.tokensFile || !slices.Equal(a.readWrite, tt.want.readWrite) ||
				!slices.Equal(a.readOnly, tt.want.readOnly) || a.protectInfo != tt.want.protectInfo {
				t.Errorf("client auth %+v, want %+v", a, tt.want)
			}
			cfg := a.apply(gateway.Config{Secret: secret})
			if cfg.Secret != secret || !slices.Equal(cfg.ReadWriteTokens, tt.want.readWrite) ||
				!slices.Equal(cfg.ReadOnlyTokens, tt.want.readOnly) || cfg.ProtectClusterInfo != tt.want.protectInfo {
				t.Errorf("applied config %+v", cfg)
			}
		})
	}
}

func TestCheckToken(t *testing.T) {
	for _, tok := range []string{"0123456789abcdef", "aGVsbG8gd29ybGQ=", "A-._~+/z0123456789==", strings.Repeat("x", 1024)} {
		if err := checkToken(tok); err != nil {
			t.Errorf("checkToken(%q) = %v", tok, err)
		}
	}
	for _, tok := range []string{"0123456789abcde", strings.Repeat("x", 1025), "0123456789=abcdef", "0123456789abcdef\x00", "ünïcode-0123456789", "================"} {
		if err := checkToken(tok); err == nil {
			t.Errorf("checkToken(%q) accepted", tok)
		}
	}
}
