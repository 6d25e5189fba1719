package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/gateway"
	"github.com/kvs-db/kvs/lsm"
)

// runCLI runs the kvs command line in process and returns stdout, stderr
// and the exit code main would use.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"kvs"}, args...), strings.NewReader(stdin), &out, &errOut)
	code = exitCode(&errOut, err)
	return out.String(), errOut.String(), code
}

// stubServe makes `kvs serve` parse its flags without starting a node, for
// the rest of the test, and returns where the parsed options land.
func stubServe(t *testing.T) *serveOptions {
	t.Helper()
	got := new(serveOptions)
	runServe = func(_ context.Context, o serveOptions, _ io.Writer) error {
		*got = o
		return nil
	}
	t.Cleanup(func() { runServe = serveNode })
	return got
}

// clearKVSEnv unsets every KVS_* variable for the test, so that the
// developer's environment does not leak into the results.
func clearKVSEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "KVS_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func TestFlagsFirst(t *testing.T) {
	app := newApp(nil, io.Discard, io.Discard)
	tests := []struct {
		in, want []string
	}{
		{[]string{"kvs", "put", "k", "v", "--url", "U"}, []string{"kvs", "put", "--url", "U", "--", "k", "v"}},
		{[]string{"kvs", "put", "--w=2", "k", "-", "--url", "U"}, []string{"kvs", "put", "--w=2", "--url", "U", "--", "k", "-"}},
		{[]string{"kvs", "get", "k", "--show-version", "--r", "1"}, []string{"kvs", "get", "--show-version", "--r", "1", "--", "k"}},
		{[]string{"kvs", "put", "--", "-k", "-v"}, []string{"kvs", "put", "--", "-k", "-v"}},
		{[]string{"kvs", "serve", "--id", "n1"}, []string{"kvs", "serve", "--id", "n1"}},
		{[]string{"kvs", "nosuch", "a", "--b"}, []string{"kvs", "nosuch", "a", "--b"}},
		// A subcommand's flags, its bool flags taking no value.
		{[]string{"kvs", "cert", "node", "n1", "--force", "--dir", "D"}, []string{"kvs", "cert", "node", "--force", "--dir", "D", "--", "n1"}},
		{[]string{"kvs", "cert", "ca", "--dir", "D"}, []string{"kvs", "cert", "ca", "--dir", "D"}},
		{[]string{"kvs"}, []string{"kvs"}},
	}
	for _, tt := range tests {
		if got := flagsFirst(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeKey(t *testing.T) {
	for _, key := range []string{"a", "a b", "a+b", "q&r=s", "a/b", "100%", "?#", ".", "..", "a.b", "\x00\xff", "ünï"} {
		esc := escapeKey(key)
		if strings.ContainsAny(esc, "/?#&+= ") {
			t.Errorf("escapeKey(%q) = %q keeps a reserved character", key, esc)
		}
		if esc == "." || esc == ".." {
			t.Errorf("escapeKey(%q) = %q is a dot segment", key, esc)
		}
		back, err := url.PathUnescape(esc)
		if err != nil || back != key {
			t.Errorf("escapeKey(%q) = %q unescapes to %q, %v", key, esc, back, err)
		}
	}
}

func TestServeFlags(t *testing.T) {
	got := stubServe(t)

	dir := t.TempDir()
	secretFile := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const secret = "0123456789abcdef" // 16 bytes, the shortest accepted
	fileSecret := secretFile("secret", "from-a-file-0123456789\n")

	// protected checks that every listener is on loopback.
	protected := func(http string) func(t *testing.T, o serveOptions) {
		return func(t *testing.T, o serveOptions) {
			if o.httpAddr != http || o.natsHost != "127.0.0.1" {
				t.Errorf("http %q nats host %q, want %q and 127.0.0.1", o.httpAddr, o.natsHost, http)
			}
		}
	}
	// everywhere checks that the default listeners are on every interface.
	everywhere := func(t *testing.T, o serveOptions) {
		if o.httpAddr != ":8080" || o.natsHost != "0.0.0.0" || len(o.rebound) != 0 {
			t.Errorf("http %q nats host %q rebound %q, want :8080 and 0.0.0.0 untouched", o.httpAddr, o.natsHost, o.rebound)
		}
	}
	const wantFix = "set --cluster-secret (or --cluster-secret-file), or pass --insecure (KVS_INSECURE=true)"

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string // in stderr
		check    func(t *testing.T, o serveOptions)
	}{
		{name: "defaults", check: func(t *testing.T, o serveOptions) {
			if o.id != defaultNodeID() || o.httpAddr != "127.0.0.1:8080" || o.natsHost != "127.0.0.1" || o.dataDir != "./kvs-data" ||
				o.natsPort != 4222 || o.clusterPort != 6222 || o.cluster != "kvs" || o.secret != "" || o.insecure || o.n != 3 || o.w != 2 || o.r != 2 ||
				o.vnodes != 100 || o.sync != lsm.SyncAlways || len(o.seeds) != 0 || o.advertise != "" {
				t.Errorf("defaults: %+v", o)
			}
			if want := []string{"--http :8080 -> 127.0.0.1:8080", "--nats-host 0.0.0.0 -> 127.0.0.1"}; !slices.Equal(o.rebound, want) {
				t.Errorf("rebound %q, want %q", o.rebound, want)
			}
		}},
		{name: "flags", args: []string{"--id", "n2", "--http", "127.0.0.1:9000", "--data", "/d", "--nats-port", "5000",
			"--cluster-port", "5001", "--advertise", "10.0.0.2", "--seeds", "a:1, b:2,,", "--cluster", "c1",
			"--cluster-secret", secret, "--n", "5", "--w", "3", "--r", "1", "--vnodes", "7", "--sync", "none", "--log-format", "json",
			"--tombstone-grace", "48h", "--quarantine-corrupt", "--anti-entropy-interval", "-1s", "--sync-interval", "10ms"},
			check: func(t *testing.T, o serveOptions) {
				if o.id != "n2" || o.httpAddr != "127.0.0.1:9000" || o.dataDir != "/d" || o.natsPort != 5000 || o.clusterPort != 5001 ||
					o.advertise != "10.0.0.2:5001" || !slices.Equal(o.seeds, []string{"a:1", "b:2"}) || o.cluster != "c1" ||
					o.secret != secret || o.n != 5 || o.w != 3 || o.r != 1 || o.vnodes != 7 || o.sync != lsm.SyncNone || o.logFormat != "json" ||
					o.tombGrace != 48*time.Hour || !o.quarantine || o.antiEntropy != -time.Second || o.syncInterval != 10*time.Millisecond {
					t.Errorf("flags: %+v", o)
				}
			}},
		{name: "env", env: map[string]string{"KVS_ID": "envnode", "KVS_CLUSTER_SECRET": "envsecret-0123456", "KVS_SEEDS": "h1:6222,h2:6222",
			"KVS_N": "2", "KVS_SYNC": "interval", "KVS_HTTP": ":9999", "KVS_ADVERTISE": "node9:7000", "KVS_GOSSIP_INTERVAL": "250ms"},
			check: func(t *testing.T, o serveOptions) {
				if o.id != "envnode" || o.secret != "envsecret-0123456" || !slices.Equal(o.seeds, []string{"h1:6222", "h2:6222"}) ||
					o.n != 2 || o.sync != lsm.SyncInterval || o.httpAddr != ":9999" || o.advertise != "node9:7000" || o.gossip != 250*time.Millisecond {
					t.Errorf("env: %+v", o)
				}
			}},
		{name: "flag beats env", env: map[string]string{"KVS_ID": "envnode"}, args: []string{"--id", "flagnode"},
			check: func(t *testing.T, o serveOptions) {
				if o.id != "flagnode" {
					t.Errorf("id %q, want flagnode", o.id)
				}
			}},

		// Protected mode: no secret, no --insecure.
		{name: "protected: README's fourth node", args: []string{"--id", "node4", "--http", "127.0.0.1:8084", "--data", "/tmp/node4",
			"--nats-host", "127.0.0.1", "--nats-port", "4225", "--cluster-port", "6225", "--advertise", "127.0.0.1:6225", "--seeds", "127.0.0.1:6222"},
			check: func(t *testing.T, o serveOptions) {
				protected("127.0.0.1:8084")(t, o)
				if len(o.rebound) != 0 || o.advertise != "127.0.0.1:6225" {
					t.Errorf("rebound %q advertise %q, want nothing rebound", o.rebound, o.advertise)
				}
			}},
		{name: "protected: IPv6 unspecified", args: []string{"--http", "[::]:9000", "--nats-host", "::"}, check: protected("127.0.0.1:9000")},
		{name: "protected: empty host", args: []string{"--http", ":9000", "--nats-host", ""}, check: protected("127.0.0.1:9000")},
		{name: "protected: localhost and ::1", args: []string{"--http", "localhost:9000", "--nats-host", "::1", "--advertise", "localhost"},
			check: func(t *testing.T, o serveOptions) {
				if o.httpAddr != "localhost:9000" || o.natsHost != "::1" || o.advertise != "localhost:6222" || len(o.rebound) != 0 {
					t.Errorf("%+v", o)
				}
			}},
		{name: "protected: env", env: map[string]string{"KVS_HTTP": "0.0.0.0:8081", "KVS_NATS_HOST": "0.0.0.0"}, check: protected("127.0.0.1:8081")},
		{name: "protected: remote http refused", args: []string{"--http", "10.0.0.5:8080"}, wantCode: 2, wantErr: "--http 10.0.0.5:8080 is not a loopback address, and with no cluster secret it would open the HTTP API"},
		{name: "protected: host name refused", args: []string{"--http", "node1:8080"}, wantCode: 2, wantErr: wantFix},
		{name: "protected: remote nats refused", env: map[string]string{"KVS_NATS_HOST": "192.0.2.1"}, wantCode: 2, wantErr: "--nats-host 192.0.2.1 is not a loopback address, and with no cluster secret it would open the NATS client and route ports"},
		{name: "protected: remote advertise refused", args: []string{"--advertise", "10.0.0.2"}, wantCode: 2, wantErr: "--advertise 10.0.0.2:6222 is not a loopback address"},
		{name: "insecure", args: []string{"--insecure"}, check: everywhere},
		{name: "insecure env", env: map[string]string{"KVS_INSECURE": "true"}, args: []string{"--http", "10.0.0.5:8080", "--advertise", "10.0.0.5"},
			check: func(t *testing.T, o serveOptions) {
				if !o.insecure || o.httpAddr != "10.0.0.5:8080" || o.advertise != "10.0.0.5:6222" {
					t.Errorf("%+v", o)
				}
			}},
		{name: "secret: listeners untouched", args: []string{"--cluster-secret", secret}, check: everywhere},
		{name: "secret: remote listeners", env: map[string]string{"KVS_CLUSTER_SECRET": secret}, args: []string{"--http", "10.0.0.5:8080", "--nats-host", "10.0.0.5"},
			check: func(t *testing.T, o serveOptions) {
				if o.httpAddr != "10.0.0.5:8080" || o.natsHost != "10.0.0.5" {
					t.Errorf("%+v", o)
				}
			}},

		// Secrets.
		{name: "secret file", args: []string{"--cluster-secret-file", fileSecret}, check: func(t *testing.T, o serveOptions) {
			if o.secret != "from-a-file-0123456789" {
				t.Errorf("secret %q, want the file's without its newline", o.secret)
			}
			everywhere(t, o)
		}},
		{name: "secret file env, CRLF", env: map[string]string{"KVS_CLUSTER_SECRET_FILE": secretFile("crlf", "crlf-secret-0123456789\r\n")},
			check: func(t *testing.T, o serveOptions) {
				if o.secret != "crlf-secret-0123456789" {
					t.Errorf("secret %q", o.secret)
				}
			}},
		{name: "secret and file", args: []string{"--cluster-secret", secret, "--cluster-secret-file", fileSecret}, wantCode: 2, wantErr: "give one"},
		{name: "secret env and file flag", env: map[string]string{"KVS_CLUSTER_SECRET": secret}, args: []string{"--cluster-secret-file", fileSecret}, wantCode: 2, wantErr: "both"},
		{name: "secret file missing", args: []string{"--cluster-secret-file", filepath.Join(dir, "nope")}, wantCode: 2, wantErr: "no such file"},
		{name: "secret file empty", args: []string{"--cluster-secret-file", secretFile("empty", "\n")}, wantCode: 2, wantErr: "empty"},
		{name: "secret file two lines", args: []string{"--cluster-secret-file", secretFile("two", "first-line-0123456\nsecond\n")}, wantCode: 2, wantErr: "control character"},
		{name: "secret too short", args: []string{"--cluster-secret", secret[1:]}, wantCode: 2, wantErr: "15 bytes; it must be at least 16"},
		{name: "secret bcrypt", args: []string{"--cluster-secret", "$2a$10$abcdefghijklmnopqrstuv"}, wantCode: 2, wantErr: "bcrypt hash"},
		{name: "secret bcrypt prefix", env: map[string]string{"KVS_CLUSTER_SECRET": "$2y$-still-a-bcrypt-prefix"}, wantCode: 2, wantErr: `begins with "$2y$"`},
		{name: "secret trailing space", args: []string{"--cluster-secret", secret + " "}, wantCode: 2, wantErr: "whitespace"},
		{name: "secret too long", args: []string{"--cluster-secret", strings.Repeat("x", 1025)}, wantCode: 2, wantErr: "at most 1024"},

		{name: "bad sync", args: []string{"--sync", "sometimes"}, wantCode: 2},
		{name: "bad sync env", env: map[string]string{"KVS_SYNC": "never"}, wantCode: 2},
		{name: "bad tombstone grace", args: []string{"--tombstone-grace", "0s"}, wantCode: 2},
		{name: "env bool", env: map[string]string{"KVS_QUARANTINE_CORRUPT": "true"}, check: func(t *testing.T, o serveOptions) {
			if !o.quarantine {
				t.Error("KVS_QUARANTINE_CORRUPT=true not applied")
			}
		}},
		{name: "bad seed", args: []string{"--seeds", "nohost"}, wantCode: 2},
		{name: "bad http", args: []string{"--http", "8080"}, wantCode: 2},
		{name: "same ports", args: []string{"--nats-port", "7000", "--cluster-port", "7000"}, wantCode: 2},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantCode: 2},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantCode: 2},
		{name: "argument", args: []string{"extra"}, wantCode: 2},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 1},
		{name: "not a number", args: []string{"--n", "three"}, wantCode: 1},
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
			if tt.check != nil {
				tt.check(t, *got)
			}
		})
	}
}

func TestIsSelf(t *testing.T) {
	tests := []struct {
		seed, advertise string
		want            bool
	}{
		{"127.0.0.1:6222", "", true},
		{"localhost:6222", "", true},
		{"10.0.0.1:6222", "10.0.0.1:6222", true},
		{"node1:6222", "node1:6222", true},
		{"127.0.0.1:6223", "", false},
		{"node2:6222", "node1:6222", false},
	}
	for _, tt := range tests {
		if got := isSelf(tt.seed, tt.advertise, 6222); got != tt.want {
			t.Errorf("isSelf(%q, %q) = %v, want %v", tt.seed, tt.advertise, got, tt.want)
		}
	}
}

func TestPeersNeeded(t *testing.T) {
	tests := []struct {
		name  string
		seeds []string
		flag  int
		want  int
	}{
		{"single node", nil, -1, 0},
		{"every other seed", []string{"node2:6222", "node3:6222"}, -1, 2},
		{"own address in the list", []string{"node1:6222", "node2:6222", "node3:6222"}, -1, 2},
		{"operator override", []string{"node2:6222", "node3:6222"}, 1, 1},
	}
	for _, tt := range tests {
		o := serveOptions{seeds: tt.seeds, advertise: "node1:6222", clusterPort: 6222, needPeers: tt.flag}
		if got := o.peersNeeded(); got != tt.want {
			t.Errorf("%s: peersNeeded() = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// fakeServer is a kvs HTTP API double that records what it receives.
type fakeServer struct {
	mu       sync.Mutex
	srv      *httptest.Server
	data     map[string]string
	requests []string // method, escaped path and query, body
	auth     []string // the Authorization header of each request
	ready    bool
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{data: map[string]string{}, ready: true}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	path := r.URL.EscapedPath()
	switch {
	case path == "/admin/abort" && r.Method == "POST":
		json.NewEncoder(w).Encode(gateway.RingJSON{Self: "node1", Epoch: 7})
	case path == "/readyz":
		if !f.ready {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":"node: not ready: heard from 0 of 1 peers"}`)
			return
		}
		io.WriteString(w, `{"status":"ready"}`)
	case path == "/cluster":
		now := time.Now()
		json.NewEncoder(w).Encode(gateway.ClusterJSON{Self: "node1", Cluster: "kvs", N: 3, W: 2, R: 2, Ready: true,
			Members: []gateway.MemberJSON{
				{ID: "node1", HTTPAddr: "127.0.0.1:8081", Alive: true, Ownership: 0.335, LastSeen: &now},
				{ID: "node2", HTTPAddr: "127.0.0.1:8082", Alive: false, Ownership: 0.33, HintsPending: 17},
			}})
	case strings.HasPrefix(path, "/kv/"):
		key, _ := url.PathUnescape(strings.TrimPrefix(path, "/kv/"))
		switch r.Method {
		case "PUT":
			f.data[key] = string(body)
			w.Header().Set("X-Kvs-Version", "12.34")
			w.WriteHeader(204)
		case "DELETE":
			delete(f.data, key)
			w.Header().Set("X-Kvs-Version", "13.34")
			w.WriteHeader(204)
		case "GET":
			v, ok := f.data[key]
			if !ok {
				w.WriteHeader(404)
				io.WriteString(w, `{"error":"not found"}`)
				return
			}
			w.Header().Set("X-Kvs-Version", "12.34")
			io.WriteString(w, v)
		}
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeServer) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

func TestClientCommands(t *testing.T) {
	clearKVSEnv(t)
	f := newFakeServer(t)
	u := f.srv.URL

	tests := []struct {
		name       string
		env        map[string]string
		stdin      string
		args       []string
		wantCode   int
		wantOut    string // exact stdout, unless empty
		wantOutHas []string
		wantErrHas string
		wantReq    string // the last request the server saw, unless empty
	}{
		{name: "put", args: []string{"put", "a b/c?&=+", "v1", "--url", u, "--w", "2"}, wantOut: "version 12.34\n",
			wantReq: "PUT /kv/a%20b%2Fc%3F%26%3D%2B?w=2 v1"},
		{name: "put dots", args: []string{"put", "..", "v", "--url", u}, wantReq: "PUT /kv/%2E%2E v"},
		{name: "put stdin", stdin: "from\nstdin", args: []string{"put", "k", "-", "--url", u}, wantReq: "PUT /kv/k from\nstdin"},
		{name: "put url from env", env: map[string]string{"KVS_URL": u}, args: []string{"put", "k2", "v2"}, wantReq: "PUT /kv/k2 v2"},
		{name: "put flag before args", args: []string{"put", "--url", u, "k3", "v3"}, wantReq: "PUT /kv/k3 v3"},
		{name: "put key like a flag", args: []string{"put", "--url", u, "--", "-k", "-v"}, wantReq: "PUT /kv/-k -v"},
		{name: "put missing value", args: []string{"put", "k", "--url", u}, wantCode: 2},
		{name: "put negative w", args: []string{"put", "k", "v", "--url", u, "--w", "-1"}, wantCode: 2},
		{name: "put bad url", args: []string{"put", "k", "v", "--url", "ftp://x"}, wantCode: 2},
		{name: "get", args: []string{"get", "a b/c?&=+", "--url", u, "--r", "1"}, wantOut: "v1", wantReq: "GET /kv/a%20b%2Fc%3F%26%3D%2B?r=1 "},
		{name: "get version", args: []string{"get", "k", "--url", u, "--show-version"}, wantOut: "from\nstdin", wantErrHas: "version 12.34"},
		{name: "get missing", args: []string{"get", "nope", "--url", u}, wantCode: 1, wantErrHas: "not found"},
		{name: "get two keys", args: []string{"get", "a", "b", "--url", u}, wantCode: 2},
		{name: "delete", args: []string{"delete", "k", "--url", u}, wantOut: "version 13.34\n", wantReq: "DELETE /kv/k "},
		{name: "get deleted", args: []string{"get", "k", "--url", u}, wantCode: 1},
		{name: "status", args: []string{"status", "--url", u}, wantOutHas: []string{"seen from node1 (ready)", "node2", "NO", "17", "33.5%", "never"}},
		{name: "status json", args: []string{"status", "--url", u, "--json"}, wantOutHas: []string{`"hints_pending":17`}},
		{name: "health", args: []string{"health", "--url", u}, wantOut: "ready\n"},
		{name: "health from KVS_HTTP", env: map[string]string{"KVS_HTTP": strings.TrimPrefix(u, "http://")}, args: []string{"health"}, wantOut: "ready\n"},
		{name: "health unreachable", args: []string{"health", "--url", "http://127.0.0.1:1", "-q"}, wantCode: 1},
		{name: "unreachable", args: []string{"get", "k", "--url", "http://127.0.0.1:1"}, wantCode: 1, wantErrHas: "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, code := runCLI(t, tt.stdin, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			if tt.wantOut != "" && out != tt.wantOut {
				t.Errorf("stdout %q, want %q", out, tt.wantOut)
			}
			for _, s := range tt.wantOutHas {
				if !strings.Contains(out, s) {
					t.Errorf("stdout %q lacks %q", out, s)
				}
			}
			if !strings.Contains(errOut, tt.wantErrHas) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErrHas)
			}
			if tt.wantReq != "" && f.last() != tt.wantReq {
				t.Errorf("server saw %q, want %q", f.last(), tt.wantReq)
			}
		})
	}

	f.mu.Lock()
	f.ready = false
	f.mu.Unlock()
	if _, errOut, code := runCLI(t, "", "health", "--url", u); code != 1 || !strings.Contains(errOut, "not ready") {
		t.Errorf("health of an unready node: code %d, stderr %q", code, errOut)
	}
}

func TestBench(t *testing.T) {
	clearKVSEnv(t)
	f := newFakeServer(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOutHas string
		wantErrHas string
	}{
		{name: "remote refused", args: []string{"--targets", "http://192.0.2.1:8081"}, wantCode: 2, wantErrHas: "loopback"},
		{name: "remote name refused", args: []string{"--targets", "http://127.0.0.1:8081,http://198.51.100.7"}, wantCode: 2, wantErrHas: "loopback"},
		{name: "too long", args: []string{"--targets", f.srv.URL, "--duration", "61s"}, wantCode: 2},
		{name: "bad op", args: []string{"--targets", f.srv.URL, "--op", "scan"}, wantCode: 2},
		{name: "bad concurrency", args: []string{"--targets", f.srv.URL, "--concurrency", "0"}, wantCode: 2},
		{name: "no targets", args: []string{"--targets", ","}, wantCode: 2},
		{name: "run", args: []string{"--targets", f.srv.URL, "--op", "mixed", "--duration", "300ms", "--concurrency", "2", "--keys", "10", "--preload"},
			wantOutHas: "ops_per_s="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, "", append([]string{"bench"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; stdout %q stderr %q", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out, tt.wantOutHas) || !strings.Contains(errOut, tt.wantErrHas) {
				t.Errorf("stdout %q stderr %q, want %q and %q", out, errOut, tt.wantOutHas, tt.wantErrHas)
			}
		})
	}
}

func TestDevOptions(t *testing.T) {
	o := devOptions{nodes: 3, dataDir: "/d", baseHTTP: 8081, baseNATS: 4222, baseCluster: 6222, cluster: "kvs", sync: "always", logLevel: "info"}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(o.serveArgs(2), " ")
	for _, want := range []string{"--id node2", "--http 127.0.0.1:8082", "--data /d/node2", "--nats-port 4223",
		"--cluster-port 6223", "--advertise 127.0.0.1:6223", "--seeds 127.0.0.1:6222,127.0.0.1:6224"} {
		if !strings.Contains(args, want) {
			t.Errorf("serve args %q lack %q", args, want)
		}
	}
	for _, bad := range []devOptions{
		{nodes: 0, baseHTTP: 8081, baseNATS: 4222, baseCluster: 6222},
		{nodes: 3, baseHTTP: 8081, baseNATS: 8082, baseCluster: 6222},
		{nodes: 3, baseHTTP: 65534, baseNATS: 4222, baseCluster: 6222},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("validate(%+v) accepted", bad)
		}
	}
}

func TestExitCode(t *testing.T) {
	var buf bytes.Buffer
	if c := exitCode(&buf, nil); c != 0 {
		t.Errorf("nil: %d", c)
	}
	if c := exitCode(&buf, cli.Exit("x", 3)); c != 3 {
		t.Errorf("exit 3: %d", c)
	}
	if c := exitCode(&buf, errors.New("boom")); c != 1 || !strings.Contains(buf.String(), "kvs: boom") {
		t.Errorf("plain error: %d %q", c, buf.String())
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. The listeners
// are held until all ports are chosen, so no port is returned twice.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
