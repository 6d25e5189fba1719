package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvs-db/kvs/gateway"
)

// The client commands send --token, --token-file, KVS_TOKEN or
// KVS_TOKEN_FILE as a bearer token; health sends none.
func TestClientTokenFlags(t *testing.T) {
	clearKVSEnv(t)
	f := newFakeServer(t)
	u := f.srv.URL
	const token = "client-token-0123456789"
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tokenFile := file("token", token+"\n")

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantErrHas string
		wantAuth   string // the Authorization header of the last request
	}{
		{name: "put without token", args: []string{"put", "k", "v", "--url", u}},
		{name: "put --token", args: []string{"put", "k", "v", "--url", u, "--token", token}, wantAuth: "Bearer " + token},
		{name: "put --token-file", args: []string{"put", "k", "v", "--url", u, "--token-file", tokenFile}, wantAuth: "Bearer " + token},
		{name: "put token file CRLF", args: []string{"put", "k", "v", "--url", u, "--token-file", file("crlf", token+"\r\n")}, wantAuth: "Bearer " + token},
		{name: "get KVS_TOKEN", env: map[string]string{"KVS_TOKEN": token}, args: []string{"get", "k", "--url", u}, wantAuth: "Bearer " + token},
		{name: "delete KVS_TOKEN_FILE", env: map[string]string{"KVS_TOKEN_FILE": tokenFile}, args: []string{"delete", "k", "--url", u}, wantAuth: "Bearer " + token},
		{name: "status --token", args: []string{"status", "--url", u, "--token", token}, wantAuth: "Bearer " + token},
		{name: "health sends none", env: map[string]string{"KVS_TOKEN": token}, args: []string{"health", "--url", u}},
		{name: "both", args: []string{"put", "k", "v", "--url", u, "--token", token, "--token-file", tokenFile}, wantCode: 2, wantErrHas: "give one"},
		{name: "both env", env: map[string]string{"KVS_TOKEN": token, "KVS_TOKEN_FILE": tokenFile}, args: []string{"get", "k", "--url", u}, wantCode: 2, wantErrHas: "give one"},
		{name: "missing file", args: []string{"get", "k", "--url", u, "--token-file", filepath.Join(dir, "nope")}, wantCode: 2, wantErrHas: "no such file"},
		{name: "empty file", args: []string{"status", "--url", u, "--token-file", file("empty", "\n")}, wantCode: 2, wantErrHas: "empty"},
		{name: "two lines", args: []string{"put", "k", "v", "--url", u, "--token-file", file("two", token+"\nmore\n")}, wantCode: 2, wantErrHas: "control character"},
		{name: "space", args: []string{"get", "k", "--url", u, "--token", "a token"}, wantCode: 2, wantErrHas: "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			f.mu.Lock()
			f.auth = nil
			f.mu.Unlock()
			out, errOut, code := runCLI(t, "", tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(errOut, tt.wantErrHas) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErrHas)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if code != 0 {
				if len(f.auth) != 0 {
					t.Errorf("a refused command sent %d requests", len(f.auth))
				}
				return
			}
			if len(f.auth) != 1 || f.auth[0] != tt.wantAuth {
				t.Errorf("Authorization of the requests %q, want [%q]", f.auth, tt.wantAuth)
			}
		})
	}

	// bench sends the token on every request, preload included.
	f.mu.Lock()
	f.auth = nil
	f.mu.Unlock()
	if out, errOut, code := runCLI(t, "", "bench", "--targets", u, "--op", "mixed", "--duration", "200ms", "--concurrency", "2",
		"--keys", "5", "--preload", "--token-file", tokenFile); code != 0 || !strings.Contains(out, "errors=0") {
		t.Fatalf("bench: code %d stdout %q stderr %q", code, out, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auth) < 5 {
		t.Fatalf("bench sent %d requests", len(f.auth))
	}
	for i, a := range f.auth {
		if a != "Bearer "+token {
			t.Fatalf("bench request %d: Authorization %q", i, a)
		}
	}
}

// ringServer answers /ring and /admin/removenode as a node whose member
// node2 is being removed, and records the Authorization of each request.
type ringServer struct {
	mu   sync.Mutex
	auth []string // "METHOD path Authorization"
}

func (s *ringServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.auth = append(s.auth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	s.mu.Unlock()
	ring := gateway.RingJSON{Self: "node1", Epoch: 3, Members: []gateway.RingMemberJSON{
		{ID: "node1", State: "normal"}, {ID: "node2", State: "removed", Since: 3}}}
	if r.URL.Path == "/admin/removenode" {
		ring.Epoch, ring.Members[1].State = 2, "leaving"
		ring.Change = &gateway.RingChangeJSON{Kind: "remove", Node: "node2", Epoch: 2}
		w.WriteHeader(http.StatusAccepted)
	}
	json.NewEncoder(w).Encode(ring)
}

// kvs ring sends its token; a topology command follows the change on
// /ring with the cluster secret, which a node with --protect-cluster-info
// asks for there.
func TestRingTokens(t *testing.T) {
	clearKVSEnv(t)
	s := &ringServer{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	const token, secret = "client-token-0123456789", "cluster-secret-0123456789"

	if out, errOut, code := runCLI(t, "", "ring", "--url", srv.URL, "--token", token); code != 0 || !strings.Contains(out, "node2") {
		t.Fatalf("ring: code %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, "", "removenode", "node2", "--url", srv.URL, "--cluster-secret", secret); code != 0 || !strings.Contains(out, "node2 removed at epoch 3") {
		t.Fatalf("removenode: code %d stdout %q stderr %q", code, out, errOut)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := []string{
		"GET /ring Bearer " + token,
		"POST /admin/removenode Bearer " + secret,
		"GET /ring Bearer " + secret,
	}
	if strings.Join(s.auth, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(s.auth, "\n"), strings.Join(want, "\n"))
	}
}
