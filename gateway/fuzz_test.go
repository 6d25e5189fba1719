package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/node"
)

// FuzzKeyFromPath checks that key parsing never panics, accepts only keys
// of 1 to MaxKeyBytes bytes, and that every key survives escaping and
// parsing unchanged.
func FuzzKeyFromPath(f *testing.F) {
	for _, s := range []string{"", "a", "a+b", "q&r=s", "%2F", "%zz", "%", "a%2", ".", "..", "a//b", "%00%ff", strings.Repeat("%41", 1025)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := keyFromPath(kvPrefix + s)
		if err == nil && (len(key) == 0 || len(key) > node.MaxKeyBytes) {
			t.Fatalf("accepted key of %d bytes", len(key))
		}
		if err == nil {
			if want, _ := url.PathUnescape(s); want != string(key) {
				t.Fatalf("key %q, want %q", key, want)
			}
		}
		// Treat s as a raw key: escaped, it must come back as itself.
		raw := []byte(s)
		back, err := keyFromPath(kvPrefix + url.PathEscape(s))
		switch {
		case len(raw) == 0 || len(raw) > node.MaxKeyBytes:
			if err == nil {
				t.Fatalf("accepted key of %d bytes", len(raw))
			}
		case err != nil:
			t.Fatalf("escaped key %q: %v", s, err)
		case !bytes.Equal(back, raw):
			t.Fatalf("round trip %q -> %q", s, back)
		}
	})
}

// FuzzServeHTTP sends arbitrary methods, paths, queries, headers and bodies
// through the whole handler: it must never panic, and every error must be
// JSON.
func FuzzServeHTTP(f *testing.F) {
	f.Add("PUT", "/kv/a+b", "w=2", "1.1", "true", "v")
	f.Add("GET", "/kv/%zz", "r=9", "", "", "")
	f.Add("POST", "/internal/kv", "key=k", "5.x", "maybe", "x")
	f.Add("DELETE", "/kv/", "w=-1", "", "", "")
	f.Fuzz(func(t *testing.T, method, path, query, version, tomb, body string) {
		fake := newFakeNode()
		g := newTestGateway(t, fake, 64)
		u := &url.URL{Scheme: "http", Host: "kvs", RawQuery: query}
		if err := u.UnmarshalBinary([]byte("http://kvs" + path)); err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		u.RawQuery = query
		r, err := http.NewRequest(method, u.String(), strings.NewReader(body))
		if err != nil {
			return
		}
		r.Header.Set("Authorization", "Bearer "+testSecret)
		r.Header.Set("X-Kvs-Version", version)
		r.Header.Set("X-Kvs-Tombstone", tomb)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Code >= 400 && method != http.MethodHead && w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d with Content-Type %q", w.Code, w.Header().Get("Content-Type"))
		}
	})
}
