package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/node"
	"github.com/kvs-db/kvs/node/topology"
)

func TestRing(t *testing.T) {
	f := newFakeNode()
	f.node2State = "leaving"
	g := newTestGateway(t, f, 0)
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ring", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /ring: %d %s", rec.Code, rec.Body)
	}
	var r RingJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 1 || len(r.Members) != 2 || r.Members[1].State != "leaving" || r.Change == nil ||
		r.Change.Kind != "leave" || r.Change.Streamed == nil || r.Change.Progress == nil {
		t.Errorf("ring = %+v", r)
	}
}

func TestAdminCommands(t *testing.T) {
	const secret = testSecret
	post := func(g http.Handler, path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec
	}
	f := newFakeNode()
	g := newTestGateway(t, f, 0)
	for _, tc := range []struct {
		path string
		code int
		op   string
	}{
		{"/admin/decommission", http.StatusAccepted, "decommission"},
		{"/admin/removenode?id=node2", http.StatusAccepted, "removenode node2 false"},
		{"/admin/removenode?id=node2&force=true", http.StatusAccepted, "removenode node2 true"},
		{"/admin/abort", http.StatusAccepted, "abort"},
		{"/admin/removenode", http.StatusBadRequest, ""},
		{"/admin/removenode?id=x&force=maybe", http.StatusBadRequest, ""},
		{"/admin/nothing", http.StatusNotFound, ""},
	} {
		before := len(f.adminOps)
		rec := post(g, tc.path, secret)
		if rec.Code != tc.code {
			t.Errorf("POST %s: %d %s, want %d", tc.path, rec.Code, rec.Body, tc.code)
		}
		if tc.op != "" && (len(f.adminOps) != before+1 || f.adminOps[before] != tc.op) {
			t.Errorf("POST %s: ops %v, want %q", tc.path, f.adminOps[before:], tc.op)
		}
		if tc.op == "" && len(f.adminOps) != before {
			t.Errorf("POST %s: a refused request ran %v", tc.path, f.adminOps[before:])
		}
		if rec.Code >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("POST %s: error body %s", tc.path, rec.Body)
		}
	}
	ops := slices.Clone(f.adminOps)
	if rec := post(g, "/admin/decommission", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("without the secret: %d", rec.Code)
	}
	if rec := post(g, "/admin/decommission", "wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("with a wrong secret: %d", rec.Code)
	}
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/decommission", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET an admin endpoint: %d", rec.Code)
	}
	if !slices.Equal(ops, f.adminOps) {
		t.Errorf("refused requests ran commands: %v", f.adminOps[len(ops):])
	}
	// A refused command answers with the status that says why.
	for err, code := range map[error]int{
		fmt.Errorf("wrapped: %w", topology.ErrBusy):   http.StatusConflict,
		fmt.Errorf("wrapped: %w", topology.ErrTooFew): http.StatusConflict,
		node.ErrAlive:           http.StatusConflict,
		topology.ErrNotMember:   http.StatusNotFound,
		topology.ErrInvalid:     http.StatusBadRequest,
		topology.ErrUnavailable: http.StatusServiceUnavailable,
		node.ErrNotReady:        http.StatusServiceUnavailable,
	} {
		f.adminErr = err
		// A 4xx answer says what is wrong with the command; a 5xx one
		// only what kind of failure it is, and the request ID.
		want := err.Error()
		if code >= 500 {
			want = `"request_id":"`
		}
		if rec := post(g, "/admin/decommission", secret); rec.Code != code || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%v: %d %s, want %d with %s", err, rec.Code, rec.Body, code, want)
		}
	}
}

func TestRepairStreamsLines(t *testing.T) {
	f := newFakeNode()
	g := newTestGateway(t, f, 0)
	req := httptest.NewRequest(http.MethodPost, "/admin/repair", nil)
	req.Header.Set("Authorization", "Bearer "+testSecret)
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("POST /admin/repair: %d %s", rec.Code, rec.Body)
	}
	var lines []RepairLine
	dec := json.NewDecoder(rec.Body)
	for dec.More() {
		var l RepairLine
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 || lines[0].Peer != "node2" || lines[1].Error == "" || !lines[2].Done || lines[2].Pushed != 3 || lines[2].Error == "" {
		t.Fatalf("lines = %+v", lines)
	}
	f.notReady = node.ErrNotReady
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("repair on a node that is not ready: %d", rec.Code)
	}
}
