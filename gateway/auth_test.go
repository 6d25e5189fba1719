package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Client tokens of the tests; testSecret is the cluster secret.
const (
	testROToken = "read-only-token-0123"
	testRWToken = "read-write-token-0123"
)

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// newAuthGateway builds a gateway on f with cfg's secret, tokens and
// ProtectClusterInfo, and metrics.
func newAuthGateway(t *testing.T, f *fakeNode, cfg Config) *Gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Node, cfg.Registerer, cfg.Gatherer, cfg.Logger = f, reg, reg, slog.New(slog.DiscardHandler)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// authConfigs are the gateway configurations of TestAccess, by name.
var authConfigs = map[string]Config{
	"no secret":      {},
	"open":           {Secret: testSecret},
	"tokens":         {Secret: testSecret, ReadWriteTokens: []string{testRWToken}, ReadOnlyTokens: []string{testROToken}},
	"tokens+protect": {Secret: testSecret, ReadWriteTokens: []string{testRWToken}, ReadOnlyTokens: []string{testROToken}, ProtectClusterInfo: true},
	"protect only":   {Secret: testSecret, ProtectClusterInfo: true},
}

// callers are the columns of TestAccess: who sends the request.
var callers = []struct {
	name   string
	header map[string]string
}{
	{"anonymous", nil},
	{"read-only", bearer(testROToken)},
	{"read-write", bearer(testRWToken)},
	{"wrong", bearer("wrong-token-0123456789")},
	{"secret", bearer(testSecret)},
}

// TestAccess sends every route as each caller to each configuration and
// checks the status: who may call what (auth.go's table). A refused
// request changes nothing on the node.
func TestAccess(t *testing.T) {
	// Statuses for anonymous, read-only, read-write, wrong, secret.
	var (
		allOK     = func(code int) [5]int { return [5]int{code, code, code, code, code} }
		read      = [5]int{401, 200, 200, 401, 200}
		write     = [5]int{401, 403, 204, 401, 204}
		info      = [5]int{401, 200, 200, 401, 200}
		infoNoTok = [5]int{401, 401, 401, 401, 200} // protected, no client tokens configured
		secret    = func(code int) [5]int { return [5]int{401, 401, 401, 401, code} }
	)
	post := map[string]string{"X-Kvs-Version": "99.1"}
	tests := []struct {
		req  request
		want map[string][5]int // by configuration
	}{
		{request{method: "GET", target: "/kv/k"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": read, "tokens+protect": read, "protect only": allOK(200)}},
		{request{method: "HEAD", target: "/kv/k"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": read, "tokens+protect": read, "protect only": allOK(200)}},
		{request{method: "PUT", target: "/kv/k", body: "new"}, map[string][5]int{
			"no secret": allOK(204), "open": allOK(204), "tokens": write, "tokens+protect": write, "protect only": allOK(204)}},
		{request{method: "DELETE", target: "/kv/k"}, map[string][5]int{
			"no secret": allOK(204), "open": allOK(204), "tokens": write, "tokens+protect": write, "protect only": allOK(204)}},
		{request{method: "GET", target: "/cluster"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": allOK(200), "tokens+protect": info, "protect only": infoNoTok}},
		{request{method: "GET", target: "/ring"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": allOK(200), "tokens+protect": info, "protect only": infoNoTok}},
		{request{method: "GET", target: "/metrics"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": allOK(200), "tokens+protect": info, "protect only": infoNoTok}},
		{request{method: "GET", target: "/healthz"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": allOK(200), "tokens+protect": allOK(200), "protect only": allOK(200)}},
		{request{method: "GET", target: "/readyz"}, map[string][5]int{
			"no secret": allOK(200), "open": allOK(200), "tokens": allOK(200), "tokens+protect": allOK(200), "protect only": allOK(200)}},
		{request{method: "GET", target: "/internal/kv?key=k"}, map[string][5]int{
			"no secret": allOK(200), "open": secret(200), "tokens": secret(200), "tokens+protect": secret(200), "protect only": secret(200)}},
		{request{method: "POST", target: "/internal/kv?key=k", body: "x", header: post}, map[string][5]int{
			"no secret": allOK(200), "open": secret(200), "tokens": secret(200), "tokens+protect": secret(200), "protect only": secret(200)}},
		{request{method: "POST", target: "/admin/abort"}, map[string][5]int{
			"no secret": allOK(202), "open": secret(202), "tokens": secret(202), "tokens+protect": secret(202), "protect only": secret(202)}},
	}
	for _, tt := range tests {
		for _, cfgName := range slices.Sorted(maps.Keys(authConfigs)) {
			cfg := authConfigs[cfgName]
			want, ok := tt.want[cfgName]
			if !ok {
				t.Fatalf("%s %s: no statuses for %q", tt.req.method, tt.req.target, cfgName)
			}
			t.Run(cfgName+"/"+tt.req.method+" "+tt.req.target, func(t *testing.T) {
				for i, c := range callers {
					f := newFakeNode()
					put("k", "v")(f)
					g := newAuthGateway(t, f, cfg)
					req := tt.req
					req.header = map[string]string{}
					for k, v := range tt.req.header {
						req.header[k] = v
					}
					for k, v := range c.header {
						req.header[k] = v
					}
					w := do(t, g, req)
					if w.Code != want[i] {
						t.Errorf("%s: status %d, want %d; body %q", c.name, w.Code, want[i], w.Body.String())
						continue
					}
					switch w.Code {
					case http.StatusUnauthorized:
						if h := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="kvs"`) {
							t.Errorf("%s: 401 with WWW-Authenticate %q", c.name, h)
						}
					case http.StatusForbidden:
						if req.method != http.MethodHead && !strings.Contains(w.Body.String(), "read-only token: "+req.method+" needs a read-write token") {
							t.Errorf("%s: 403 body %q does not name the problem", c.name, w.Body.String())
						}
					}
					if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
						if rec := f.data["k"]; f.counter != 1 || string(rec.Value) != "v" || rec.Version.Counter != 1 || len(f.adminOps) != 0 {
							t.Errorf("%s: a refused request reached the node: counter %d, k=%+v, admin %q", c.name, f.counter, rec, f.adminOps)
						}
					}
				}
			})
		}
	}
}

// TestAuthHeaders covers the forms of the Authorization header and the
// WWW-Authenticate answer of each failure.
func TestAuthHeaders(t *testing.T) {
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantAuth   string // WWW-Authenticate
		wantError  string
	}{
		{name: "lower-case scheme", req: request{method: "PUT", target: "/kv/k", header: map[string]string{"Authorization": "bearer " + testRWToken}}, wantStatus: 204},
		{name: "missing", req: request{method: "GET", target: "/kv/k"}, wantStatus: 401, wantAuth: `Bearer realm="kvs"`, wantError: "needs a token"},
		{name: "basic", req: request{method: "GET", target: "/kv/k", header: map[string]string{"Authorization": "Basic " + testRWToken}}, wantStatus: 401, wantAuth: `Bearer realm="kvs"`},
		{name: "unknown", req: request{method: "GET", target: "/kv/k", header: bearer("nope")}, wantStatus: 401, wantAuth: `Bearer realm="kvs", error="invalid_token"`, wantError: "unknown token"},
		{name: "token prefix", req: request{method: "GET", target: "/kv/k", header: bearer(testRWToken[:10])}, wantStatus: 401, wantAuth: `Bearer realm="kvs", error="invalid_token"`},
		{name: "token with more", req: request{method: "GET", target: "/kv/k", header: bearer(testRWToken + "x")}, wantStatus: 401, wantAuth: `Bearer realm="kvs", error="invalid_token"`},
		{name: "read-only write", req: request{method: "DELETE", target: "/kv/k", header: bearer(testROToken)}, wantStatus: 403,
			wantAuth: `Bearer realm="kvs", error="insufficient_scope"`, wantError: "read-only token: DELETE needs a read-write token"},
		{name: "client token on admin", req: request{method: "POST", target: "/admin/abort", header: bearer(testRWToken)}, wantStatus: 401,
			wantAuth: `Bearer realm="kvs"`, wantError: "missing or wrong cluster secret"},
		// 405 answers before the token is asked for, as on /internal/kv.
		{name: "method first", req: request{method: "POST", target: "/kv/k"}, wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newAuthGateway(t, newFakeNode(), authConfigs["tokens+protect"])
			w := do(t, g, tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.wantStatus, w.Body.String())
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.wantAuth {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wantAuth)
			}
			if !strings.Contains(w.Body.String(), tt.wantError) {
				t.Errorf("body %q lacks %q", w.Body.String(), tt.wantError)
			}
		})
	}
}

// Every presented token is compared, as a SHA-256 hash, with every
// configured token and the secret, whatever its length and whether or
// where it matches: no early return leaks how close a guess came.
func TestTokenComparisonIsConstantTime(t *testing.T) {
	g := newAuthGateway(t, newFakeNode(), Config{Secret: testSecret,
		ReadWriteTokens: []string{testRWToken, "second-rw-token-0123"},
		ReadOnlyTokens:  []string{testROToken, "second-ro-token-0123"}})
	if n := len(g.creds.Load().list); n != 5 {
		t.Fatalf("%d credentials, want 4 tokens and the secret", n)
	}
	var lens []int
	g.creds.Load().compare = func(x, y []byte) int {
		lens = append(lens, len(x), len(y))
		return subtle.ConstantTimeCompare(x, y)
	}
	for _, token := range []string{"", "x", testRWToken[:5], testRWToken + "x", strings.Repeat("y", 10000), testRWToken, testROToken, testSecret} {
		lens = nil
		do(t, g, request{method: "GET", target: "/kv/k", header: bearer(token)})
		if len(lens) != 2*len(g.creds.Load().list) {
			t.Errorf("token of %d bytes: %d comparisons, want %d", len(token), len(lens)/2, len(g.creds.Load().list))
		}
		if slices.ContainsFunc(lens, func(n int) bool { return n != sha256.Size }) {
			t.Errorf("token of %d bytes: compared lengths %v, want only %d", len(token), lens, sha256.Size)
		}
	}
}

// Auth failures are counted by route and reason.
func TestAuthFailureMetrics(t *testing.T) {
	g := newAuthGateway(t, newFakeNode(), authConfigs["tokens+protect"])
	for _, req := range []request{
		{method: "GET", target: "/kv/k"},
		{method: "GET", target: "/kv/k"},
		{method: "PUT", target: "/kv/k", header: bearer("nope")},
		{method: "PUT", target: "/kv/k", header: bearer(testROToken)},
		{method: "PUT", target: "/kv/k", header: bearer(testRWToken)}, // accepted
		{method: "GET", target: "/internal/kv?key=k", header: bearer(testRWToken)},
		{method: "POST", target: "/admin/abort"},
		{method: "GET", target: "/cluster", header: bearer("nope")},
		{method: "GET", target: "/metrics"},
	} {
		do(t, g, req)
	}
	w := do(t, g, request{method: "GET", target: "/metrics", header: bearer(testROToken)})
	if w.Code != 200 {
		t.Fatalf("/metrics with a read-only token: %d", w.Code)
	}
	var got []string
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "kvs_http_auth_failures_total{") {
			got = append(got, line)
		}
	}
	want := []string{
		`kvs_http_auth_failures_total{reason="missing",route="admin"} 1`,
		`kvs_http_auth_failures_total{reason="missing",route="kv"} 2`,
		`kvs_http_auth_failures_total{reason="missing",route="metrics"} 1`,
		`kvs_http_auth_failures_total{reason="read_only",route="kv"} 1`,
		`kvs_http_auth_failures_total{reason="wrong",route="cluster"} 1`,
		`kvs_http_auth_failures_total{reason="wrong",route="internal_kv"} 1`,
		`kvs_http_auth_failures_total{reason="wrong",route="kv"} 1`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("auth failure series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewRejectsTokens(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"tokens without secret", Config{ReadWriteTokens: []string{testRWToken}}, "need a cluster secret"},
		{"read-only without secret", Config{ReadOnlyTokens: []string{testROToken}}, "need a cluster secret"},
		{"protect without secret", Config{ProtectClusterInfo: true}, "need a cluster secret"},
		{"empty token", Config{Secret: testSecret, ReadOnlyTokens: []string{""}}, "empty"},
		{"token is the secret", Config{Secret: testSecret, ReadWriteTokens: []string{testSecret}}, "is the cluster secret"},
		{"token in both lists", Config{Secret: testSecret, ReadWriteTokens: []string{testRWToken}, ReadOnlyTokens: []string{testRWToken}}, "twice"},
		{"token twice", Config{Secret: testSecret, ReadOnlyTokens: []string{testROToken, testROToken}}, "twice"},
	} {
		tt.cfg.Node = newFakeNode()
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// SetClientTokens replaces the tokens for the requests that follow: a
// dropped token is refused, a new one accepted with its own grant, and the
// secret and ProtectClusterInfo are kept. Lists that break Config's rules,
// and a gateway that started without tokens, change nothing.
func TestSetClientTokens(t *testing.T) {
	const newRW, newRO = "rotated-rw-token-0123", "rotated-ro-token-0123"
	g := newAuthGateway(t, newFakeNode(), authConfigs["tokens+protect"])
	status := func(method, target, token string) int {
		t.Helper()
		req := request{method: method, target: target, header: bearer(token)}
		if method == "PUT" {
			req.body = "v"
		}
		return do(t, g, req).Code
	}
	if err := g.SetClientTokens([]string{newRW}, []string{newRO}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, target, token string
		want                  int
	}{
		{"PUT", "/kv/k", testRWToken, 401}, // dropped
		{"GET", "/kv/k", testROToken, 401}, // dropped
		{"PUT", "/kv/k", newRW, 204},
		{"GET", "/kv/k", newRO, 200},
		{"PUT", "/kv/k", newRO, 403},
		{"PUT", "/kv/k", testSecret, 204},
		{"GET", "/cluster", newRO, 200},
		{"GET", "/cluster", "", 401}, // still protected
		{"POST", "/admin/abort", newRW, 401},
	} {
		if got := status(c.method, c.target, c.token); got != c.want {
			t.Errorf("%s %s with %q after the swap: %d, want %d", c.method, c.target, c.token, got, c.want)
		}
	}

	for name, lists := range map[string][2][]string{
		"none":       {nil, nil},
		"empty":      {{""}, nil},
		"the secret": {{testSecret}, nil},
		"twice":      {{"twice-token-0123456789"}, {"twice-token-0123456789"}},
	} {
		if err := g.SetClientTokens(lists[0], lists[1]); err == nil {
			t.Errorf("SetClientTokens with %s: no error", name)
		}
	}
	if got := status("PUT", "/kv/k", newRW); got != 204 {
		t.Errorf("after refused replacements, PUT with the current token: %d, want 204", got)
	}

	open := newAuthGateway(t, newFakeNode(), authConfigs["open"])
	if err := open.SetClientTokens([]string{newRW}, nil); !errors.Is(err, ErrNoClientTokens) {
		t.Errorf("SetClientTokens on a gateway without tokens: %v, want ErrNoClientTokens", err)
	}
	if got := do(t, open, request{method: "GET", target: "/kv/k"}).Code; got == 401 {
		t.Errorf("a gateway without tokens refused an anonymous GET after SetClientTokens")
	}
}
