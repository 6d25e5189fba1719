package gateway

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/kvs-db/kvs/lsm"
)

func TestInternalKV(t *testing.T) {
	held := func(f *fakeNode) {
		f.data["k"] = lsm.Record{Key: []byte("k"), Value: []byte("held"), Version: lsm.Version{Counter: 5, Node: 1}}
		f.data["gone"] = lsm.Record{Key: []byte("gone"), Version: lsm.Version{Counter: 9, Node: 2}, Tombstone: true}
		f.data["a+b&c=d"] = lsm.Record{Key: []byte("a+b&c=d"), Value: []byte("odd"), Version: lsm.Version{Counter: 1, Node: 1}}
	}
	withAuth := func(h map[string]string) map[string]string {
		out := map[string]string{"Authorization": "Bearer " + testSecret}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantBody   string
		wantHeader map[string]string
		wantRecord *lsm.Record // what the replica holds for "k" afterwards
	}{
		{name: "no auth", req: request{method: "GET", target: "/internal/kv?key=k"}, wantStatus: 401, wantHeader: map[string]string{"WWW-Authenticate": `Bearer realm="kvs"`}},
		{name: "wrong secret", req: request{method: "GET", target: "/internal/kv?key=k", header: map[string]string{"Authorization": "Bearer nope"}}, wantStatus: 401},
		{name: "secret prefix", req: request{method: "GET", target: "/internal/kv?key=k", header: map[string]string{"Authorization": "Bearer s3cre"}}, wantStatus: 401},
		{name: "basic auth", req: request{method: "GET", target: "/internal/kv?key=k", header: map[string]string{"Authorization": "Basic czNjcmV0"}}, wantStatus: 401},
		{name: "no auth post", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: map[string]string{"X-Kvs-Version": "9.9"}}, wantStatus: 401,
			wantRecord: &lsm.Record{Value: []byte("held"), Version: lsm.Version{Counter: 5, Node: 1}}},
		{name: "get", req: request{method: "GET", target: "/internal/kv?key=k", header: auth}, wantStatus: 200, wantBody: "held",
			wantHeader: map[string]string{"X-Kvs-Version": "5.1", "X-Kvs-Tombstone": "false"}},
		{name: "lower case bearer", req: request{method: "GET", target: "/internal/kv?key=k", header: map[string]string{"Authorization": "bearer " + testSecret}}, wantStatus: 200, wantBody: "held"},
		{name: "get tombstone", req: request{method: "GET", target: "/internal/kv?key=gone", header: auth}, wantStatus: 200, wantBody: "",
			wantHeader: map[string]string{"X-Kvs-Version": "9.2", "X-Kvs-Tombstone": "true"}},
		{name: "get escaped key", req: request{method: "GET", target: "/internal/kv?key=a%2Bb%26c%3Dd", header: auth}, wantStatus: 200, wantBody: "odd"},
		{name: "get missing", req: request{method: "GET", target: "/internal/kv?key=nope", header: auth}, wantStatus: 404},
		{name: "no key", req: request{method: "GET", target: "/internal/kv", header: auth}, wantStatus: 400},
		{name: "empty key", req: request{method: "GET", target: "/internal/kv?key=", header: auth}, wantStatus: 400},
		{name: "two keys", req: request{method: "GET", target: "/internal/kv?key=a&key=b", header: auth}, wantStatus: 400},
		{name: "put method", req: request{method: "PUT", target: "/internal/kv?key=k", header: auth}, wantStatus: 405, wantHeader: map[string]string{"Allow": "GET, HEAD, POST"}},
		{name: "apply newer", req: request{method: "POST", target: "/internal/kv?key=k", body: "new", header: withAuth(map[string]string{"X-Kvs-Version": "6.1"})},
			wantStatus: 200, wantHeader: map[string]string{"X-Kvs-Version": "6.1", "X-Kvs-Applied": "true"},
			wantRecord: &lsm.Record{Value: []byte("new"), Version: lsm.Version{Counter: 6, Node: 1}}},
		{name: "apply older", req: request{method: "POST", target: "/internal/kv?key=k", body: "old", header: withAuth(map[string]string{"X-Kvs-Version": "4.9"})},
			wantStatus: 200, wantHeader: map[string]string{"X-Kvs-Version": "5.1", "X-Kvs-Applied": "false"},
			wantRecord: &lsm.Record{Value: []byte("held"), Version: lsm.Version{Counter: 5, Node: 1}}},
		{name: "apply tombstone", req: request{method: "POST", target: "/internal/kv?key=k", header: withAuth(map[string]string{"X-Kvs-Version": "7.3", "X-Kvs-Tombstone": "true"})},
			wantStatus: 200, wantHeader: map[string]string{"X-Kvs-Version": "7.3"},
			wantRecord: &lsm.Record{Version: lsm.Version{Counter: 7, Node: 3}, Tombstone: true}},
		{name: "apply new key", req: request{method: "POST", target: "/internal/kv?key=fresh", body: "v", header: withAuth(map[string]string{"X-Kvs-Version": "1.1"})},
			wantStatus: 200, wantHeader: map[string]string{"X-Kvs-Applied": "true"}},
		{name: "apply no version", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: auth}, wantStatus: 400},
		{name: "apply zero version", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "0.0"})}, wantStatus: 400},
		{name: "apply bad version", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "abc"})}, wantStatus: 400},
		{name: "apply version no node", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "12"})}, wantStatus: 400},
		{name: "apply version node too big", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "12.4294967296"})}, wantStatus: 400},
		{name: "apply version negative", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "-1.1"})}, wantStatus: 400},
		{name: "apply version three parts", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "1.2.3"})}, wantStatus: 400},
		{name: "apply bad tombstone", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "9.1", "X-Kvs-Tombstone": "maybe"})}, wantStatus: 400},
		{name: "apply tombstone with value", req: request{method: "POST", target: "/internal/kv?key=k", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "9.1", "X-Kvs-Tombstone": "true"})}, wantStatus: 400,
			wantRecord: &lsm.Record{Value: []byte("held"), Version: lsm.Version{Counter: 5, Node: 1}}},
		{name: "apply with expiry", req: request{method: "POST", target: "/internal/kv?key=k", body: "e", header: withAuth(map[string]string{"X-Kvs-Version": "8.1", "X-Kvs-Expiry": "1764000000000"})},
			wantStatus: 200, wantRecord: &lsm.Record{Value: []byte("e"), Version: lsm.Version{Counter: 8, Node: 1}, Expiry: 1764000000000}},
		{name: "apply bad expiry", req: request{method: "POST", target: "/internal/kv?key=k", body: "e", header: withAuth(map[string]string{"X-Kvs-Version": "8.1", "X-Kvs-Expiry": "soon"})}, wantStatus: 400},
		{name: "apply zero expiry", req: request{method: "POST", target: "/internal/kv?key=k", body: "e", header: withAuth(map[string]string{"X-Kvs-Version": "8.1", "X-Kvs-Expiry": "0"})}, wantStatus: 400},
		{name: "apply no key", req: request{method: "POST", target: "/internal/kv", body: "x", header: withAuth(map[string]string{"X-Kvs-Version": "9.1"})}, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNode()
			held(f)
			g := newTestGateway(t, f, 0)
			w := do(t, g, tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", w.Code, tt.wantStatus, w.Body.String())
			}
			if tt.wantStatus == 200 && tt.req.method == "GET" && w.Body.String() != tt.wantBody {
				t.Errorf("body %q, want %q", w.Body.String(), tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.req.method == "POST" && w.Code == 200 {
				var body internalApplied
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Version != w.Header().Get("X-Kvs-Version") {
					t.Errorf("body %q does not match header %q", w.Body.String(), w.Header().Get("X-Kvs-Version"))
				}
			}
			if tt.wantRecord != nil {
				got := f.data["k"]
				if string(got.Value) != string(tt.wantRecord.Value) || got.Version != tt.wantRecord.Version || got.Tombstone != tt.wantRecord.Tombstone || got.Expiry != tt.wantRecord.Expiry {
					t.Errorf("replica holds %+v, want %+v", got, *tt.wantRecord)
				}
			}
		})
	}
}

func TestInternalKVWithoutSecret(t *testing.T) {
	f := newFakeNode()
	g, err := New(Config{Node: f})
	if err != nil {
		t.Fatal(err)
	}
	f.data["k"] = lsm.Record{Key: []byte("k"), Value: []byte("v"), Version: lsm.Version{Counter: 1, Node: 1}}
	w := do(t, g, request{method: "GET", target: "/internal/kv?key=k"})
	if w.Code != http.StatusOK || w.Body.String() != "v" {
		t.Fatalf("status %d body %q, want 200 v", w.Code, w.Body.String())
	}
}
