package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/node"
	"github.com/prometheus/client_golang/prometheus"
)

// testSecret is the cluster secret of gateways built by newTestGateway.
const testSecret = "s3cret"

func newTestGateway(t testing.TB, f *fakeNode, maxValue int) *Gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	g, err := New(Config{
		Node:          f,
		Secret:        testSecret,
		MaxValueBytes: maxValue,
		Registerer:    reg,
		Gatherer:      reg,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// request describes one request of a table test.
type request struct {
	method string
	target string // escaped path and query, as sent on the wire
	body   string
	header map[string]string
}

// do serves req on g and returns the recorded response. Every error
// response must be JSON with a non-empty "error".
func do(t *testing.T, g http.Handler, req request) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(req.method, "http://kvs"+req.target, strings.NewReader(req.body))
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code >= 400 && req.method != http.MethodHead {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: error with Content-Type %q, want application/json", req.method, req.target, ct)
		}
		var eb errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == "" {
			t.Errorf("%s %s: error body %q is not {\"error\": ...}", req.method, req.target, w.Body.String())
		}
	}
	return w
}

var auth = map[string]string{"Authorization": "Bearer " + testSecret}

func TestKV(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(f *fakeNode)
		req        request
		wantStatus int
		wantBody   string            // exact body unless empty
		wantHeader map[string]string // exact header values
		check      func(t *testing.T, f *fakeNode)
	}{
		{
			name:       "put",
			req:        request{method: "PUT", target: "/kv/foo", body: "bar"},
			wantStatus: 204,
			wantHeader: map[string]string{"X-Kvs-Version": "1.7"},
			check:      wantStored("foo", "bar"),
		},
		{
			name:       "put empty value",
			req:        request{method: "PUT", target: "/kv/foo"},
			wantStatus: 204,
			check:      wantStored("foo", ""),
		},
		{
			name:       "get",
			setup:      put("foo", "bar"),
			req:        request{method: "GET", target: "/kv/foo"},
			wantStatus: 200,
			wantBody:   "bar",
			wantHeader: map[string]string{"X-Kvs-Version": "1.7", "Content-Type": "application/octet-stream", "Content-Length": "3"},
		},
		{
			name:       "head",
			setup:      put("foo", "bar"),
			req:        request{method: "HEAD", target: "/kv/foo"},
			wantStatus: 200,
			wantHeader: map[string]string{"X-Kvs-Version": "1.7"},
		},
		{name: "get missing", req: request{method: "GET", target: "/kv/nope"}, wantStatus: 404},
		{
			name:       "delete",
			setup:      put("foo", "bar"),
			req:        request{method: "DELETE", target: "/kv/foo"},
			wantStatus: 204,
			wantHeader: map[string]string{"X-Kvs-Version": "2.7"},
		},
		{
			name:       "get deleted",
			setup:      func(f *fakeNode) { put("foo", "bar")(f); f.write([]byte("foo"), nil, true, 0) },
			req:        request{method: "GET", target: "/kv/foo"},
			wantStatus: 404,
		},
		// Keys are any bytes, percent-encoded once.
		{name: "key plus", req: request{method: "PUT", target: "/kv/a+b", body: "1"}, wantStatus: 204, check: wantStored("a+b", "1")},
		{name: "key query chars", req: request{method: "PUT", target: "/kv/q&r=s", body: "1"}, wantStatus: 204, check: wantStored("q&r=s", "1")},
		{name: "key escaped query chars", req: request{method: "PUT", target: "/kv/q%26r%3Ds%3Ft", body: "1"}, wantStatus: 204, check: wantStored("q&r=s?t", "1")},
		{name: "key escaped slash", req: request{method: "PUT", target: "/kv/a%2Fb", body: "1"}, wantStatus: 204, check: wantStored("a/b", "1")},
		{name: "key raw slashes", req: request{method: "PUT", target: "/kv/a//b/", body: "1"}, wantStatus: 204, check: wantStored("a//b/", "1")},
		{name: "key dot", req: request{method: "PUT", target: "/kv/..", body: "1"}, wantStatus: 204, check: wantStored("..", "1")},
		{name: "key escaped percent", req: request{method: "PUT", target: "/kv/100%25", body: "1"}, wantStatus: 204, check: wantStored("100%", "1")},
		{name: "key binary", req: request{method: "PUT", target: "/kv/%00%FF%20", body: "1"}, wantStatus: 204, check: wantStored("\x00\xff ", "1")},
		{name: "key max length", req: request{method: "PUT", target: "/kv/" + strings.Repeat("k", node.MaxKeyBytes), body: "1"}, wantStatus: 204},
		{name: "key empty", req: request{method: "PUT", target: "/kv/", body: "1"}, wantStatus: 400},
		{name: "key empty get", req: request{method: "GET", target: "/kv/"}, wantStatus: 400},
		{name: "key too long", req: request{method: "PUT", target: "/kv/" + strings.Repeat("k", node.MaxKeyBytes+1), body: "1"}, wantStatus: 400},
		{name: "key too long escaped", req: request{method: "GET", target: "/kv/" + strings.Repeat("%41", node.MaxKeyBytes+1)}, wantStatus: 400},
		{name: "key max length escaped", setup: put(strings.Repeat("A", node.MaxKeyBytes), "v"), req: request{method: "GET", target: "/kv/" + strings.Repeat("%41", node.MaxKeyBytes)}, wantStatus: 200, wantBody: "v"},
		// Per-request quorums.
		{name: "w", req: request{method: "PUT", target: "/kv/k?w=3", body: "1"}, wantStatus: 204, check: func(t *testing.T, f *fakeNode) { wantInt(t, "W", f.lastW, 3) }},
		{name: "w on delete", req: request{method: "DELETE", target: "/kv/k?w=1"}, wantStatus: 204, check: func(t *testing.T, f *fakeNode) { wantInt(t, "W", f.lastW, 1) }},
		{name: "r", setup: put("k", "v"), req: request{method: "GET", target: "/kv/k?r=1"}, wantStatus: 200, check: func(t *testing.T, f *fakeNode) { wantInt(t, "R", f.lastR, 1) }},
		{name: "no w is default", req: request{method: "PUT", target: "/kv/k", body: "1"}, wantStatus: 204, check: func(t *testing.T, f *fakeNode) { wantInt(t, "W", f.lastW, 0) }},
		{name: "w zero", req: request{method: "PUT", target: "/kv/k?w=0", body: "1"}, wantStatus: 400},
		{name: "w over N", req: request{method: "PUT", target: "/kv/k?w=4", body: "1"}, wantStatus: 400},
		{name: "w huge", req: request{method: "PUT", target: "/kv/k?w=99999999999999999999", body: "1"}, wantStatus: 400},
		{name: "w negative", req: request{method: "DELETE", target: "/kv/k?w=-1"}, wantStatus: 400},
		{name: "w empty", req: request{method: "PUT", target: "/kv/k?w=", body: "1"}, wantStatus: 400},
		{name: "w twice", req: request{method: "PUT", target: "/kv/k?w=1&w=2", body: "1"}, wantStatus: 400},
		{name: "r not a number", req: request{method: "GET", target: "/kv/k?r=two"}, wantStatus: 400},
		{name: "r over N", req: request{method: "GET", target: "/kv/k?r=4"}, wantStatus: 400},
		{name: "bad query", req: request{method: "GET", target: "/kv/k?r=%zz"}, wantStatus: 400},
		// Methods and paths.
		{name: "post kv", req: request{method: "POST", target: "/kv/k", body: "1"}, wantStatus: 405, wantHeader: map[string]string{"Allow": "GET, HEAD, PUT, DELETE"}},
		{name: "patch kv", req: request{method: "PATCH", target: "/kv/k"}, wantStatus: 405},
		{name: "unknown path", req: request{method: "GET", target: "/nope"}, wantStatus: 404},
		{name: "kv without slash", req: request{method: "GET", target: "/kv"}, wantStatus: 404},
		// Node errors.
		{name: "quorum", setup: fail(node.ErrQuorum), req: request{method: "PUT", target: "/kv/k", body: "1"}, wantStatus: 503, wantHeader: map[string]string{"Retry-After": "1"}},
		{name: "quorum read", setup: fail(node.ErrQuorum), req: request{method: "GET", target: "/kv/k"}, wantStatus: 503},
		{name: "not ready", setup: fail(node.ErrNotReady), req: request{method: "DELETE", target: "/kv/k"}, wantStatus: 503},
		{name: "deadline", setup: fail(context.DeadlineExceeded), req: request{method: "GET", target: "/kv/k"}, wantStatus: 503},
		{name: "node says too large", setup: fail(node.ErrValueTooLarge), req: request{method: "PUT", target: "/kv/k", body: "1"}, wantStatus: 413},
		{name: "node says bad key", setup: fail(node.ErrInvalidKey), req: request{method: "PUT", target: "/kv/k", body: "1"}, wantStatus: 400},
		{name: "wrapped not found", setup: fail(errors.Join(errors.New("x"), node.ErrNotFound)), req: request{method: "GET", target: "/kv/k"}, wantStatus: 404},
		{name: "node says malformed", setup: fail(node.ErrMalformed), req: request{method: "PUT", target: "/kv/k", body: "1"}, wantStatus: 400},
		{name: "internal", setup: fail(errors.New("disk on fire")), req: request{method: "GET", target: "/kv/k"}, wantStatus: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNode()
			if tt.setup != nil {
				tt.setup(f)
			}
			g := newTestGateway(t, f, 0)
			w := do(t, g, tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.wantStatus, w.Body.String())
			}
			if tt.wantBody != "" && w.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", w.Body.String(), tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if w.Code >= 400 && w.Header().Get("X-Kvs-Version") != "" {
				t.Errorf("error response carries a version header")
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func put(key, value string) func(*fakeNode) {
	return func(f *fakeNode) {
		if _, err := f.write([]byte(key), []byte(value), false, 0); err != nil {
			panic(err)
		}
	}
}

func fail(err error) func(*fakeNode) { return func(f *fakeNode) { f.err = err } }

func wantStored(key, value string) func(*testing.T, *fakeNode) {
	return func(t *testing.T, f *fakeNode) {
		t.Helper()
		rec, ok := f.data[key]
		if !ok {
			keys := make([]string, 0, len(f.data))
			for k := range f.data {
				keys = append(keys, k)
			}
			t.Fatalf("key %q not stored; stored %q", key, keys)
		}
		if string(rec.Value) != value {
			t.Errorf("value %q, want %q", rec.Value, value)
		}
	}
}

func wantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

// countingReader yields an endless stream of 'x' and counts what it gave.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestValueLimit(t *testing.T) {
	const limit = 1000
	tests := []struct {
		name          string
		size          int  // body size; -1 for endless
		declareLength bool // send Content-Length
		wantStatus    int
	}{
		{"at limit", limit, true, 204},
		{"at limit chunked", limit, false, 204},
		{"over limit", limit + 1, true, 413},
		{"over limit chunked", limit + 1, false, 413},
		{"endless chunked", -1, false, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, target := range []string{"/kv/k", "/internal/kv?key=k"} {
				f := newFakeNode()
				g := newTestGateway(t, f, limit)
				var body io.Reader
				counter := &countingReader{}
				if tt.size < 0 {
					body = counter
				} else {
					body = io.LimitReader(counter, int64(tt.size))
				}
				method := "PUT"
				if strings.HasPrefix(target, "/internal") {
					method = "POST"
				}
				r := httptest.NewRequest(method, target, body)
				r.ContentLength = -1
				if tt.declareLength {
					r.ContentLength = int64(tt.size)
				}
				r.Header.Set("Authorization", "Bearer "+testSecret)
				r.Header.Set("X-Kvs-Version", "5.1")
				w := httptest.NewRecorder()
				g.ServeHTTP(w, r)
				want := tt.wantStatus
				if want == 204 && method == "POST" {
					want = 200
				}
				if w.Code != want {
					t.Fatalf("%s: status %d, want %d; body %q", target, w.Code, want, w.Body.String())
				}
				if counter.n > limit+1 {
					t.Errorf("%s: read %d bytes of the body, want at most %d", target, counter.n, limit+1)
				}
				if want < 300 {
					rec := f.data["k"]
					if len(rec.Value) != tt.size {
						t.Errorf("%s: stored %d bytes, want %d", target, len(rec.Value), tt.size)
					}
				}
			}
		})
	}
}

// TestKeyFromPath covers what cannot be sent through TestKV: net/http
// refuses request lines with bad escapes before a handler sees them.
func TestKeyFromPath(t *testing.T) {
	tests := []struct {
		path    string
		want    string
		wantErr bool
	}{
		{path: "/kv/a", want: "a"},
		{path: "/kv/a+b", want: "a+b"},
		{path: "/kv/%2F", want: "/"},
		{path: "/kv/%zz", wantErr: true},
		{path: "/kv/a%2", wantErr: true},
		{path: "/kv/%", wantErr: true},
		{path: "/kv/", wantErr: true},
		{path: "/kv", wantErr: true},
		{path: "/other/a", wantErr: true},
	}
	for _, tt := range tests {
		got, err := keyFromPath(tt.path)
		if (err != nil) != tt.wantErr || string(got) != tt.want {
			t.Errorf("keyFromPath(%q) = %q, %v; want %q, error %v", tt.path, got, err, tt.want, tt.wantErr)
		}
	}
}
